import Foundation

public struct Direction: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let inbound: Direction = "inbound"
    public static let outbound: Direction = "outbound"
}

/// Who caused a message. Helpdesks filter on it so they never treat their own replies (or the
/// business's replies from elsewhere) as customer messages.
public struct Origin: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let customer: Origin = "customer"
    public static let helpdesk: Origin = "helpdesk"
    /// Sent by the business outside the helpdesk (Messenger `is_echo`, another mail client).
    public static let echo: Origin = "echo"
    public static let system: Origin = "system"
}

/// Our side on a channel: the channel type and the configured channel id.
public struct ChannelRefFields: KnownFields {
    public var type: String
    public var id: String
    public enum CodingKeys: String, CodingKey, CaseIterable { case type, id }
    public typealias Keys = CodingKeys
}
public typealias ChannelRef = Open<ChannelRefFields>
extension Open where Fields == ChannelRefFields {
    public init(type: String, id: String) { self.init(ChannelRefFields(type: type, id: id)) }
}

public struct ParticipantFields: KnownFields {
    public var role: String
    public var identityID: String?
    public var channelUserID: String?
    public var displayName: String?
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case role, identityID = "identity_id", channelUserID = "channel_user_id", displayName = "display_name"
    }
    public typealias Keys = CodingKeys
}
public typealias Participant = Open<ParticipantFields>
extension Open where Fields == ParticipantFields {
    public init(role: String, identityID: String? = nil, channelUserID: String? = nil, displayName: String? = nil) {
        self.init(ParticipantFields(role: role, identityID: identityID, channelUserID: channelUserID, displayName: displayName))
    }
}

public struct MessageRefFields: KnownFields {
    public var messageID: String?
    public var externalID: String?
    public enum CodingKeys: String, CodingKey, CaseIterable { case messageID = "message_id", externalID = "external_id" }
    public typealias Keys = CodingKeys
}
public typealias MessageRef = Open<MessageRefFields>
extension Open where Fields == MessageRefFields {
    public init(messageID: String? = nil, externalID: String? = nil) { self.init(MessageRefFields(messageID: messageID, externalID: externalID)) }
}

/// The channel's original payload: inline when small, else a reference to `GET /v1/messages/{id}/raw`.
public struct RawRef: Codable, Sendable, Hashable {
    public var format: String
    public var inline: JSONValue?
    public var ref: String?
    public var size: Int?
    public var sha256: String?
    public init(format: String, inline: JSONValue? = nil, ref: String? = nil, size: Int? = nil, sha256: String? = nil) {
        self.format = format; self.inline = inline; self.ref = ref; self.size = size; self.sha256 = sha256
    }
}

public struct MessageFields: KnownFields {
    public var id: String
    public var conversationID: String
    public var direction: Direction
    public var origin: Origin
    public var channel: ChannelRef
    public var sender: Participant?
    public var externalID: String?
    public var replyTo: MessageRef?
    public var sentAt: Timestamp?
    public var receivedAt: Timestamp
    public var parts: [Part]
    public var textFallback: String
    public var metadata: JSONObject?
    public var channelData: JSONObject?
    public var raw: RawRef?

    public init(id: String, conversationID: String, direction: Direction, origin: Origin, channel: ChannelRef,
                sender: Participant? = nil, externalID: String? = nil, replyTo: MessageRef? = nil,
                sentAt: Timestamp? = nil, receivedAt: Timestamp, parts: [Part], textFallback: String,
                metadata: JSONObject? = nil, channelData: JSONObject? = nil, raw: RawRef? = nil) {
        self.id = id; self.conversationID = conversationID; self.direction = direction; self.origin = origin
        self.channel = channel; self.sender = sender; self.externalID = externalID; self.replyTo = replyTo
        self.sentAt = sentAt; self.receivedAt = receivedAt; self.parts = parts; self.textFallback = textFallback
        self.metadata = metadata; self.channelData = channelData; self.raw = raw
    }

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, direction, origin, channel, sender, parts, metadata, raw
        case conversationID = "conversation_id", externalID = "external_id", replyTo = "reply_to"
        case sentAt = "sent_at", receivedAt = "received_at", textFallback = "text_fallback", channelData = "channel_data"
    }
    public typealias Keys = CodingKeys
}
public typealias Message = Open<MessageFields>

public struct ConversationFields: KnownFields {
    public var id: String
    public var channel: ChannelRef
    public var identityID: String
    /// `*` for a 1:1 chat; the group/room for LINE groups; the thread root for email.
    public var thread: String
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var lastInboundAt: Timestamp?
    public var metadata: JSONObject?
    /// The customer's latest message by the platform's clock (`sent_at`) and its channel id, as
    /// the store keeps them: reply windows that run on the platform's clock (WhatsApp's 24
    /// hours) and "mark as read" use them. Not part of the JSON (a conversation read back from
    /// JSON has none), and nil for conversations with no customer message since v6 of the store.
    public var lastInbound: LastInbound? = nil
    public struct LastInbound: Sendable, Hashable {
        public var sentAt: Timestamp
        public var externalID: String?
        public init(sentAt: Timestamp, externalID: String?) { self.sentAt = sentAt; self.externalID = externalID }
    }
    public init(id: String, channel: ChannelRef, identityID: String, thread: String, createdAt: Timestamp,
                updatedAt: Timestamp, lastInboundAt: Timestamp? = nil, metadata: JSONObject? = nil) {
        self.id = id; self.channel = channel; self.identityID = identityID; self.thread = thread
        self.createdAt = createdAt; self.updatedAt = updatedAt; self.lastInboundAt = lastInboundAt; self.metadata = metadata
    }
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, channel, thread, metadata
        case identityID = "identity_id", createdAt = "created_at", updatedAt = "updated_at", lastInboundAt = "last_inbound_at"
    }
    public typealias Keys = CodingKeys
}
public typealias Conversation = Open<ConversationFields>

public struct IdentityFields: KnownFields {
    /// The key of an identity whose customer moved to ids another identity already had
    /// (`moved:<identity id>`): it names nobody on the channel, and sends to it fail.
    public static let movedKeyPrefix = "moved:"
    public var id: String
    public var channel: ChannelRef
    /// The customer's id on the channel: wa_id, PSID, IGSID, LINE userId, email address, visitor id.
    public var channelUserID: String
    public var displayName: String?
    public var profile: JSONObject?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public init(id: String, channel: ChannelRef, channelUserID: String, displayName: String? = nil,
                profile: JSONObject? = nil, createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id; self.channel = channel; self.channelUserID = channelUserID; self.displayName = displayName
        self.profile = profile; self.createdAt = createdAt; self.updatedAt = updatedAt
    }
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, channel, profile
        case channelUserID = "channel_user_id", displayName = "display_name", createdAt = "created_at", updatedAt = "updated_at"
    }
    public typealias Keys = CodingKeys
}
public typealias Identity = Open<IdentityFields>

extension Array where Element == Part {
    /// A plain-text rendering of the parts, for helpdesks (and channels) that show only text.
    public var textFallback: String {
        compactMap { $0.textFallback }.joined(separator: "\n")
    }
}

extension Part {
    public var textFallback: String? {
        switch self {
        case .text(let t): return t.text
        case .media(let m):
            let label = m.caption ?? m.filename ?? ""
            return label.isEmpty ? "[\(m.kind.rawValue)]" : "[\(m.kind.rawValue): \(label)]"
        case .location(let l):
            return "[location: \(l.name ?? "") \(l.lat),\(l.long)]".replacingOccurrences(of: ":  ", with: ": ")
        case .contactCard(let c): return "[contact: \(c.name)]"
        case .buttons(let b): return b.text
        case .quickReplies(let q): return q.text
        case .card(let c): return [c.title, c.subtitle].compactMap { $0 }.joined(separator: "\n")
        case .carousel(let c): return c.cards.map { $0.title }.joined(separator: "\n")
        case .list(let l): return l.text
        case .template(let t): return "[template: \(t.name)]"
        case .interaction(let i): return i.title ?? i.payload
        case .reaction(let r): return r.emoji
        case .unsupported(let u): return "[unsupported: \(u.description)]"
        case .unknown(let type, let o): return o["text"]?.stringValue ?? "[\(type)]"
        }
    }
}
