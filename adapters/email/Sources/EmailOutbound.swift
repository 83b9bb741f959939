import EmailParsing
import Crypto
import Foundation
import SwitchboardCore

extension EmailChannelAdapter {
    /// Our Message-ID for a stored outbound message: the same on every retry of that message
    /// (the random piece is derived from our message id), carrying the conversation.
    static func outboundMessageID(codec: ThreadCodec, conversationID: String, messageID: String) -> String {
        let random = Base32.encode(Array(SHA256.hash(data: Array("switchboard-email:\(messageID)".utf8)).prefix(10)))
        return codec.makeMessageID(conversationID: conversationID, random: random)
    }

    public func send(_ out: OutboundMessage, context: any AdapterContext) async throws -> SendResult {
        guard let smtp else {
            throw SendError(code: "capability_unsupported", message: "channel \(channel.id) has no smtp settings; it cannot send", retryable: false)
        }
        let codec: ThreadCodec
        do { codec = try await self.codec(context) } catch {
            throw SendError(code: "store_unavailable", message: "cannot read the threading secret: \(error)", retryable: true)
        }
        let conversationID = out.conversation.id
        let messageID = Self.outboundMessageID(codec: codec, conversationID: conversationID, messageID: out.message.id)
        let to = out.recipient.channelUserID
        guard Self.isAddress(to) else {
            throw SendError(code: "invalid_recipient", message: "\(to) is not an email address", retryable: false)
        }
        // Recorded before sending, so an answer that arrives at once finds its conversation.
        if out.conversation.channel.id == channel.id {
            try? await context.state.set(Self.threadKey(conversationID), out.conversation.thread)
        } else {
            // Relayed for another channel's conversation (a web chat's email follow-up): the
            // customer's answer from this address goes back into that conversation.
            let relay = RelayedConversation(address: to.lowercased(), channel: out.conversation.channel.id)
            if let json = try? JSONEncoder().encode(relay) { try? await context.state.set(Self.relayKey(conversationID), String(decoding: json, as: UTF8.self)) }
        }
        try? await context.state.set(Self.messageKey(messageID), conversationID)
        try? await context.state.set(Self.recipientKey(messageID), to.lowercased())

        var last: LastInbound? = nil
        if let s = try? await context.state.get(Self.lastKey(conversationID)) {
            last = try? JSONDecoder().decode(LastInbound.self, from: Data(s.utf8))
        }
        var lastSent: LastSent? = nil
        if let s = try? await context.state.get(Self.sentKey(conversationID)) {
            lastSent = try? JSONDecoder().decode(LastSent.self, from: Data(s.utf8))
        }
        let override = out.rendered.override?.objectValue ?? [:]
        let copies: CopyRecipients
        do { copies = try Self.copyRecipients(override) } catch {
            throw SendError(code: "invalid_request", message: error.detail, retryable: false)
        }
        let relayed = out.conversation.channel.id != channel.id
        let chosen = out.message.metadata?["email_subject"]?.stringValue
        // The helpdesk's chosen subject wins over "Re: <the customer's>"; a relaying channel's
        // is only a default for the first mail, then the thread keeps the customer's subject.
        var subject = override["subject"]?.stringValue ?? (relayed ? nil : chosen)
        if subject == nil, let s = last?.subject ?? lastSent?.subject, !s.isEmpty {
            subject = s.range(of: #"^\s*(re|aw|sv|vs|antw)\s*(\[\d+\])?\s*:"#, options: [.regularExpression, .caseInsensitive]) != nil ? s : "Re: \(s)"
        }
        if subject == nil { subject = chosen }
        // In-Reply-To: the message the helpdesk answers, else the customer's latest, else our
        // own latest (a conversation the helpdesk started). References: that message's chain
        // and it — for an older message, the conversation's chain — so every client threads it.
        var inReplyTo: String? = nil
        var references: [String] = []
        if let replyTo = out.replyToExternalID ?? last?.messageID ?? lastSent?.messageID {
            inReplyTo = replyTo
            let chain: [String]
            if replyTo == last?.messageID { chain = last?.references ?? [] }
            else if replyTo == lastSent?.messageID { chain = lastSent?.references ?? [] }
            else { chain = (last.map { $0.references + [$0.messageID] } ?? lastSent.map { $0.references + [$0.messageID] } ?? []) }
            var seen = Set<String>()
            references = (chain + [replyTo]).filter { seen.insert($0).inserted }
        }
        let body = try await Self.body(out.rendered.parts, context: context)

        var mail = OutboundEmail(from: EmailAddress(address: address, displayName: displayName),
                                 to: [EmailAddress(address: to, displayName: out.recipient.displayName)],
                                 subject: subject ?? defaultSubject, messageID: messageID, text: body.text, html: body.html)
        mail.replyTo = codec.plusAddress(base: address, conversationID: conversationID)
        mail.inReplyTo = inReplyTo
        mail.references = references
        mail.attachments = body.attachments
        mail.cc = copies.cc
        do { mail.autoSubmitted = try Self.autoSubmitted(override) } catch {
            throw SendError(code: "invalid_request", message: error.detail, retryable: false)
        }
        let bytes = MIMEBuilder.build(mail)
        let client = SMTPClient(config: smtp)
        // The envelope: the customer, then each copy once (Bcc only here, never in a header).
        var envelope = [to]
        for a in copies.cc + copies.bcc where !envelope.contains(where: { $0.caseInsensitiveCompare(a.address) == .orderedSame }) {
            envelope.append(a.address)
        }
        do {
            let report = try await client.send(from: address, to: envelope, required: envelope.count > 1 ? to : nil, message: bytes)
            var data: JSONObject = ["message_id": .string(messageID), "smtp_response": .string(report.response)]
            if let inReplyTo { data["in_reply_to"] = .string(inReplyTo) }
            if !copies.cc.isEmpty { data["cc"] = .array(copies.cc.map { .string($0.address) }) }
            if !copies.bcc.isEmpty { data["bcc"] = .array(copies.bcc.map { .string($0.address) }) }
            // A copy the server refused doesn't fail the message (the customer has it); the
            // helpdesk sees which in the sent status.
            if !report.rejected.isEmpty { data["refused_recipients"] = .object(report.rejected.mapValues { .string($0) }) }
            if let json = try? JSONEncoder().encode(LastSent(messageID: messageID, references: references, subject: subject ?? defaultSubject)) {
                try? await context.state.set(Self.sentKey(conversationID), String(decoding: json, as: UTF8.self))
            }
            return SendResult(externalIDs: [messageID], channelData: ["email": .object(data)])
        } catch let e as SMTPError {
            throw Self.classify(e)
        } catch let e as SendError {
            throw e
        } catch {
            throw SendError(code: "channel_unreachable", message: "SMTP: \(error)", retryable: true)
        }
    }

    /// Checked before a reply is queued: copy recipients the send could not use are a 422 now,
    /// not a failed status later.
    public func validateSend(parts: [Part], override: JSONValue?, conversation: Conversation, context: any AdapterContext) async throws {
        guard let override else { return }
        guard let o = override.objectValue else {
            throw SendRejection(code: "invalid_request", status: 422, detail: "overrides.email must be an object (subject, auto_submitted, cc, bcc)")
        }
        do {
            _ = try Self.copyRecipients(o)
            _ = try Self.autoSubmitted(o)
        } catch { throw SendRejection(code: "invalid_request", status: 422, detail: error.detail) }
    }

    /// `overrides.email.auto_submitted`: `true` (→ `auto-replied`), `false`, or one of RFC
    /// 3834's keywords. Nothing else reaches the header: a free string could carry a line break
    /// and with it headers of the helpdesk's choosing.
    static func autoSubmitted(_ override: JSONObject) throws(CopyProblem) -> String? {
        guard let v = override["auto_submitted"], v != .null else { return nil }
        if let b = v.boolValue { return b ? "auto-replied" : nil }
        let keywords = ["no", "auto-replied", "auto-generated", "auto-notified"]
        guard let s = v.stringValue, keywords.contains(s.lowercased()) else {
            throw CopyProblem(detail: "overrides.email.auto_submitted must be true, false or one of \(keywords.joined(separator: ", "))")
        }
        return s.lowercased() == "no" ? nil : s.lowercased()
    }

    /// At most this many `cc` and `bcc` addresses together: a reply copies a few colleagues, and
    /// a long list through the support address is more likely a mistake or abuse.
    static let maxCopyRecipients = 50

    struct CopyRecipients { var cc: [EmailAddress] = []; var bcc: [EmailAddress] = [] }
    struct CopyProblem: Error { var detail: String }

    /// `overrides.email.cc` and `.bcc`: each a list of addresses as strings (`kim@example.org`,
    /// `Kim Lee <kim@example.org>`) or `{"address", "name"}` objects; a single string may hold a
    /// comma-separated list.
    static func copyRecipients(_ override: JSONObject) throws(CopyProblem) -> CopyRecipients {
        func list(_ key: String) throws(CopyProblem) -> [EmailAddress] {
            guard let v = override[key], v != .null else { return [] }
            let items = v.arrayValue ?? [v]
            var out: [EmailAddress] = []
            for (i, item) in items.enumerated() {
                let found: [EmailAddress]
                if let s = item.stringValue {
                    found = AddressParser.parse(s)
                } else if let o = item.objectValue, let a = o["address"]?.stringValue {
                    found = AddressParser.parse(a).map { EmailAddress(address: $0.address, displayName: o["name"]?.stringValue ?? $0.displayName) }
                } else {
                    throw CopyProblem(detail: "overrides.email.\(key)[\(i)] must be an address string or {\"address\": …, \"name\": …}")
                }
                guard !found.isEmpty, found.allSatisfy({ isAddress($0.address) }) else {
                    throw CopyProblem(detail: "overrides.email.\(key)[\(i)] is not an email address such as kim@example.org")
                }
                out += found
            }
            return out
        }
        let copies = CopyRecipients(cc: try list("cc"), bcc: try list("bcc"))
        if copies.cc.count + copies.bcc.count > maxCopyRecipients {
            throw CopyProblem(detail: "overrides.email: at most \(maxCopyRecipients) cc and bcc addresses together")
        }
        return copies
    }

    /// SMTP answers as `SendError`s: 4xx and connection trouble are retried, 5xx are final.
    static func classify(_ e: SMTPError) -> SendError {
        let channelCode = e.code == 0 ? nil : ([String(e.code)] + (e.enhanced.map { [$0] } ?? [])).joined(separator: " ")
        if e.code == 0 {
            return SendError(code: "channel_unreachable", message: "SMTP \(e.description)", retryable: true)
        }
        if e.isTemporary {
            return SendError(code: "channel_error", channelCode: channelCode, message: "SMTP \(e.description)", retryable: true)
        }
        if e.stage == "AUTH" {
            return SendError(code: "auth_expired", channelCode: channelCode, message: "SMTP login refused: \(e.message)",
                             retryable: true, retryAfter: 300, channelState: .authExpired)
        }
        // An enhanced status (RFC 3463) says what was wrong, the same way a bounce does.
        if let enhanced = e.enhanced, enhanced.hasPrefix("5.") {
            return SendError(code: EmailInbound.bounceCode(enhanced), channelCode: channelCode, message: "SMTP \(e.description)", retryable: false)
        }
        let code = e.stage == "RCPT TO" ? "invalid_recipient" : (e.code == 552 || e.code == 554 && e.message.lowercased().contains("size") ? "too_large" : "rejected")
        return SendError(code: code, channelCode: channelCode, message: "SMTP \(e.description)", retryable: false)
    }

    struct Body { var text: String; var html: String?; var attachments: [OutboundAttachment] }

    /// Text and HTML from the rendered parts; stored media become attachments (links when they
    /// are only URLs).
    static func body(_ parts: [Part], context: any AdapterContext) async throws -> Body {
        var markdown: [String] = []
        var attachments: [OutboundAttachment] = []
        for part in parts {
            switch part {
            case .text(let t):
                markdown.append(t.text)
            case .media(let m):
                if let id = m.mediaID {
                    let found: (StoredMedia, [UInt8])?
                    do { found = try await context.media.get(id) } catch {
                        throw SendError(code: "store_unavailable", message: "cannot read media \(id): \(error)", retryable: true)
                    }
                    guard let (stored, bytes) = found else {
                        throw SendError(code: "invalid_request", message: "media \(id) not found", retryable: false)
                    }
                    let name = m.filename ?? stored.filename ?? "\(m.kind.rawValue)\(Self.fileExtension(stored.mimeType))"
                    attachments.append(OutboundAttachment(bytes: bytes, mimeType: m.mimeType ?? stored.mimeType, filename: name))
                    if let caption = m.caption, !caption.isEmpty { markdown.append(caption) }
                } else if let url = m.url {
                    markdown.append([m.caption, url].compactMap { $0 }.joined(separator: ": "))
                }
            default:
                let fallback = [part].textFallback
                if !fallback.isEmpty { markdown.append(fallback) }
            }
        }
        let source = markdown.joined(separator: "\n\n")
        return Body(text: MIMEBuilder.plain(fromMarkdown: source), html: MIMEBuilder.html(fromMarkdown: source), attachments: attachments)
    }

    static func fileExtension(_ mime: String) -> String {
        switch mime.lowercased() {
        case "image/jpeg": return ".jpg"
        case "image/png": return ".png"
        case "image/gif": return ".gif"
        case "application/pdf": return ".pdf"
        case "text/plain": return ".txt"
        default: return ""
        }
    }
}
