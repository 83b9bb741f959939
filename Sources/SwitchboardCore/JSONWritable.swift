/// A value that can write its own JSON straight into a `JSONWriter`, without Codable's
/// containers. Every inbound message is encoded on the ingest path, and going through
/// `Encodable` there (a container box per object, a generic call per member, metadata lookups
/// for each key type) cost about a tenth of the daemon's CPU per WhatsApp webhook.
///
/// `writeJSON` must write exactly the bytes `StreamingJSONEncoder` writes through `encode(to:)`
/// (members sorted by name, absent optionals left out), or return false before writing
/// anything, and the encoder takes the Codable path instead (used for the rare shapes, such as
/// unknown members kept in `Open.extra`). `JSONWritableTests` holds the two paths to the same
/// bytes.
public protocol JSONWritable: Encodable {
    func writeJSON(to w: inout JSONWriter) throws -> Bool
}

/// The known fields of an `Open` type that can write themselves (see `JSONWritable`); the
/// `Open` value does so when it has no unknown members.
public protocol JSONWritableFields: KnownFields {
    func writeJSON(to w: inout JSONWriter) throws
}

extension Open: JSONWritable where Fields: JSONWritableFields {
    public func writeJSON(to w: inout JSONWriter) throws -> Bool {
        guard extra.isEmpty else { return false }
        try fields.writeJSON(to: &w)
        return true
    }
}

extension JSONWriter {
    /// `"name":`, after a comma unless it is the object's first member.
    @inline(__always) mutating func member(_ name: StaticString, first: inout Bool) {
        if first { first = false } else { raw(UInt8(ascii: ",")) }
        raw(UInt8(ascii: "\""))
        raw(name)
        raw("\":")
    }

    /// A nested value: through its own writer, or through Codable when it declines.
    @inline(__always) mutating func nested(_ v: some JSONWritable) throws {
        if try !v.writeJSON(to: &self) { raw(try StreamingJSONEncoder.encode(v, fastPaths: false)) }
    }
}

extension MessageFields: JSONWritableFields {
    public func writeJSON(to w: inout JSONWriter) throws {
        var first = true
        w.raw(UInt8(ascii: "{"))
        w.member("channel", first: &first); try w.nested(channel)
        if let v = channelData { w.member("channel_data", first: &first); try w.object(v) }
        w.member("conversation_id", first: &first); w.string(conversationID)
        w.member("direction", first: &first); w.string(direction.rawValue)
        if let v = externalID { w.member("external_id", first: &first); w.string(v) }
        w.member("id", first: &first); w.string(id)
        if let v = metadata { w.member("metadata", first: &first); try w.object(v) }
        w.member("origin", first: &first); w.string(origin.rawValue)
        w.member("parts", first: &first)
        w.raw(UInt8(ascii: "["))
        for (k, part) in parts.enumerated() {
            if k > 0 { w.raw(UInt8(ascii: ",")) }
            try w.nested(part)
        }
        w.raw(UInt8(ascii: "]"))
        if let v = raw { w.member("raw", first: &first); try w.nested(v) }
        w.member("received_at", first: &first); w.string(receivedAt.rfc3339)
        if let v = replyTo { w.member("reply_to", first: &first); try w.nested(v) }
        if let v = sender { w.member("sender", first: &first); try w.nested(v) }
        if let v = sentAt { w.member("sent_at", first: &first); w.string(v.rfc3339) }
        w.member("text_fallback", first: &first); w.string(textFallback)
        w.raw(UInt8(ascii: "}"))
    }
}

extension ChannelRefFields: JSONWritableFields {
    public func writeJSON(to w: inout JSONWriter) throws {
        w.raw("{\"id\":")
        w.string(id)
        w.raw(",\"type\":")
        w.string(type)
        w.raw(UInt8(ascii: "}"))
    }
}

extension ParticipantFields: JSONWritableFields {
    public func writeJSON(to w: inout JSONWriter) throws {
        var first = true
        w.raw(UInt8(ascii: "{"))
        if let v = channelUserID { w.member("channel_user_id", first: &first); w.string(v) }
        if let v = displayName { w.member("display_name", first: &first); w.string(v) }
        if let v = identityID { w.member("identity_id", first: &first); w.string(v) }
        w.member("role", first: &first); w.string(role)
        w.raw(UInt8(ascii: "}"))
    }
}

extension MessageRefFields: JSONWritableFields {
    public func writeJSON(to w: inout JSONWriter) throws {
        var first = true
        w.raw(UInt8(ascii: "{"))
        if let v = externalID { w.member("external_id", first: &first); w.string(v) }
        if let v = messageID { w.member("message_id", first: &first); w.string(v) }
        w.raw(UInt8(ascii: "}"))
    }
}

extension RawRef: JSONWritable {
    public func writeJSON(to w: inout JSONWriter) throws -> Bool {
        var first = true
        w.raw(UInt8(ascii: "{"))
        w.member("format", first: &first); w.string(format)
        if let v = inline { w.member("inline", first: &first); try w.value(v) }
        if let v = ref { w.member("ref", first: &first); w.string(v) }
        if let v = sha256 { w.member("sha256", first: &first); w.string(v) }
        if let v = size { w.member("size", first: &first); w.int(Int64(v)) }
        w.raw(UInt8(ascii: "}"))
        return true
    }
}

extension Part: JSONWritable {
    /// Text parts (most of what customers send) write themselves; the other types go through
    /// Codable.
    public func writeJSON(to w: inout JSONWriter) throws -> Bool {
        guard case .text(let t) = self, t.extra.isEmpty else { return false }
        var first = true
        w.raw(UInt8(ascii: "{"))
        if let v = t.fields.format { w.member("format", first: &first); w.string(v.rawValue) }
        if let v = t.fields.lang { w.member("lang", first: &first); w.string(v) }
        w.member("text", first: &first); w.string(t.fields.text)
        w.raw(",\"type\":\"text\"}")
        return true
    }
}
