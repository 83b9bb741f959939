import EmailParsing
import Crypto
import Foundation
import SwitchboardCore

/// The hand-off from the parser to the adapter: one parsed message turned into what
/// `AdapterContext.emit` needs — parts, peer, external id, channel_data, raw payload — plus the
/// attachment bytes that still have to go into the media store.
///
/// Flow in the adapter: `EmailInbound(parsing:…)` → `storeMedia(in: context.media)` (fills
/// `media_id`, or `unavailable: too_large`) → `inboundEvent(thread:)` → `emit`. Messages the loop
/// guard classifies as automatic are not customer messages: `inboundEvent` gives them
/// `origin: system`.
public struct EmailInbound: Sendable {
    /// An attachment waiting for the media store; `partIndex` is its media part in `parts`.
    public struct PendingMedia: Sendable, Hashable {
        public var partIndex: Int
        public var bytes: [UInt8]
        public var mimeType: String
        public var filename: String
    }

    public var email: ParsedEmail
    public var classification: EmailClassification
    /// The customer: the From address (lower-cased) and display name; Sender, then Return-Path,
    /// when there is no From.
    public var peer: Peer
    /// The Message-ID (synthesized from a hash of the bytes when missing).
    public var externalID: String
    /// The Message-ID this one answers (the first In-Reply-To id).
    public var replyToExternalID: String?
    public var parts: [Part]
    public var pendingMedia: [PendingMedia]
    /// `{"email": {…}}`: subject, addresses, ids, html, cid map, stripped quote, classification…
    public var channelData: JSONObject
    public var raw: RawPayload
    public var occurredAt: Timestamp?

    /// The largest HTML body copied into channel_data (bigger ones are left to the raw message).
    public static let maxHTMLInChannelData = 512 * 1024

    /// Builds the hand-off from raw RFC 822 bytes.
    /// - Parameters:
    ///   - envelope: MAIL FROM and RCPT TO from an LMTP/SMTP session, when there was one.
    public init(parsing raw: [UInt8], ownAddresses: [String] = [], codec: ThreadCodec? = nil,
                envelope: (from: String?, to: [String])? = nil, limits: MIMELimits = .default) {
        let email = EmailParser.parse(raw, limits: limits)
        self.init(email: email, raw: raw, classification: EmailClassifier.classify(email, ownAddresses: ownAddresses, codec: codec),
                  envelope: envelope, ownAddresses: ownAddresses)
    }

    public init(email: ParsedEmail, raw: [UInt8], classification: EmailClassification, envelope: (from: String?, to: [String])? = nil,
                ownAddresses: [String] = []) {
        self.email = email
        self.classification = classification
        peer = Self.customer(email, ownAddresses: ownAddresses)
        externalID = email.messageIDOrSynthesized
        replyToExternalID = email.inReplyTo.first
        occurredAt = email.date
        self.raw = RawPayload(format: "rfc822", bytes: raw)

        let stripped = QuoteStripper.strip(email.text)
        var parts: [Part] = []
        var textExtra: JSONObject = [:]
        if stripped.stripped { textExtra["full_text"] = .string(stripped.fullText) }
        if !stripped.text.isEmpty || email.attachments.isEmpty {
            parts.append(.text(Open(TextFields(text: stripped.text, format: .plain), extra: textExtra)))
        }

        var pending: [PendingMedia] = []
        var cidMap: JSONObject = [:]
        for a in email.attachments {
            var extra: JSONObject = [:]
            if let cid = a.contentID { extra["content_id"] = .string(cid) }
            if let d = a.disposition { extra["disposition"] = .string(d) }
            if a.isInline { extra["inline"] = .bool(true) }
            if a.isCalendar, let method = a.parameters["method"] { extra["calendar_method"] = .string(method.uppercased()) }
            if a.isTNEF { extra["tnef"] = .bool(true) }
            let kind: MediaKind = a.mimeType.hasPrefix("image/") ? .image
                : a.mimeType.hasPrefix("video/") ? .video : a.mimeType.hasPrefix("audio/") ? .audio : .file
            let fields = MediaFields(kind: kind, mimeType: a.mimeType, size: Int64(a.size),
                                     sha256: Hex.encode(SHA256.hash(data: a.bytes)), filename: a.filename)
            if let cid = a.contentID { cidMap[cid] = .int(Int64(parts.count)) }
            pending.append(PendingMedia(partIndex: parts.count, bytes: a.bytes, mimeType: a.mimeType, filename: a.filename))
            parts.append(.media(Open(fields, extra: extra)))
        }
        self.parts = parts
        self.pendingMedia = pending

        var data: JSONObject = [:]
        func addresses(_ list: [EmailAddress]) -> JSONValue {
            .array(list.map { a in
                var o: JSONObject = ["address": .string(a.address)]
                if let n = a.displayName { o["name"] = .string(n) }
                return .object(o)
            })
        }
        if let s = email.subject { data["subject"] = .string(s) }
        if let f = email.from { data["from"] = addresses([f]).arrayValue?.first }
        if !email.to.isEmpty { data["to"] = addresses(email.to) }
        if !email.cc.isEmpty { data["cc"] = addresses(email.cc) }
        if !email.replyTo.isEmpty { data["reply_to"] = addresses(email.replyTo) }
        if let m = email.messageID { data["message_id"] = .string(m) }
        if !email.inReplyTo.isEmpty { data["in_reply_to"] = .array(email.inReplyTo.map { .string($0) }) }
        if !email.references.isEmpty { data["references"] = .array(email.references.map { .string($0) }) }
        if let d = email.date { data["date"] = .string(d.rfc3339) }
        if let html = email.html {
            if html.utf8.count <= Self.maxHTMLInChannelData {
                data["html"] = .string(html)
            } else {
                data["html_omitted"] = .string("larger than \(Self.maxHTMLInChannelData) bytes; see the raw message")
            }
        }
        if email.textDerivedFromHTML { data["text_from_html"] = .bool(true) }
        if stripped.stripped, let q = stripped.quoted {
            data["quoted_text"] = .string(q)
            if let m = stripped.marker { data["quote_marker"] = .string(m) }
        }
        if !cidMap.isEmpty { data["content_ids"] = .object(cidMap) }
        data["classification"] = .string(classification.name)
        if let r = classification.reason { data["classification_reason"] = .string(r) }
        if case .bounce(let report, _) = classification {
            var b: JSONObject = [:]
            if let v = report.originalMessageID { b["original_message_id"] = .string(v) }
            if let v = report.status { b["status"] = .string(v) }
            if let v = report.action { b["action"] = .string(v) }
            if let v = report.recipient { b["recipient"] = .string(v) }
            if let v = report.diagnostic { b["diagnostic"] = .string(v) }
            data["bounce"] = .object(b)
        }
        if let envelope {
            var e: JSONObject = [:]
            if let f = envelope.from { e["mail_from"] = .string(f) }
            e["rcpt_to"] = .array(envelope.to.map { .string($0) })
            data["envelope"] = .object(e)
        }
        if !email.warnings.isEmpty { data["parse_warnings"] = .array(email.warnings.map { .string($0) }) }
        channelData = ["email": .object(data)]
    }

    /// Puts every pending attachment into the media store and fills the media parts
    /// (`media_id`, `sha256`, `size`); an attachment over the store's limit keeps its part with
    /// `unavailable: too_large`. Other store errors propagate (the message must not be
    /// acknowledged without its files).
    public func storeMedia(in store: any MediaStore) async throws -> EmailInbound {
        var copy = self
        for p in pendingMedia {
            guard case .media(var m) = copy.parts[p.partIndex] else { continue }
            if Int64(p.bytes.count) > store.maxBytes {
                m.unavailable = "too_large"
            } else {
                do {
                    let stored = try await store.put(p.bytes, mimeType: p.mimeType, filename: p.filename)
                    m.mediaID = stored.id
                    m.sha256 = stored.sha256
                    m.size = stored.size
                } catch is MediaTooLarge {
                    m.unavailable = "too_large"
                }
            }
            copy.parts[p.partIndex] = .media(m)
        }
        copy.pendingMedia = []
        return copy
    }

    /// Who the customer is, and where answers go: the first `Reply-To` that isn't ours (a
    /// contact form's `From: forms@…` with the visitor in Reply-To; a Google Group that rewrote
    /// the member's From to our own address), else From, Sender, the return path.
    static func customer(_ email: ParsedEmail, ownAddresses: [String]) -> Peer {
        let from = email.from ?? email.sender ?? email.returnPath.flatMap { $0.address.isEmpty ? nil : $0 }
        if let replyTo = email.replyTo.first(where: { !$0.address.isEmpty && !EmailClassifier.isOwn($0.address, ownAddresses) }),
           replyTo.address.lowercased() != from?.address.lowercased() {
            // The From's name is the customer's only when From is not a shared address of ours.
            let fromIsOurs = from.map { EmailClassifier.isOwn($0.address, ownAddresses) } ?? false
            return Peer(channelUserID: replyTo.address, displayName: replyTo.displayName ?? (fromIsOurs ? nil : from?.displayName))
        }
        return Peer(channelUserID: from?.address ?? "", displayName: from?.displayName)
    }

    /// The stable code for a bounce's enhanced status (RFC 3463): 5.1.x bad address →
    /// `invalid_recipient`; 5.2.x mailbox full or disabled → `recipient_unavailable`; 5.3.4
    /// too big → `too_large`; anything else the receiving side refused → `rejected` (the same
    /// codes a refusal during the SMTP conversation gets).
    static func bounceCode(_ status: String?) -> String {
        guard let s = status else { return "rejected" }
        if s.hasPrefix("5.1.") { return "invalid_recipient" }
        if s == "5.2.3" || s == "5.3.4" { return "too_large" }
        if s.hasPrefix("5.2.") { return "recipient_unavailable" }
        return "rejected"
    }

    /// For a bounce of one of our messages: the `message.status` `failed` event for it (looked up
    /// by the runtime through its external id, our Message-ID). nil when this is no bounce, the
    /// report names no original message, or it only reports a delay.
    public func bounceStatusEvent() -> InboundEvent? {
        guard case .bounce(let report, _) = classification, let original = report.originalMessageID, report.isFailure else { return nil }
        let code = Self.bounceCode(report.status)
        let message = report.diagnostic ?? "delivery failed (status \(report.status ?? "unknown"))"
        // The reporting MTA has given up on it: retrying the same message will not help.
        let error = StatusError(code: code, channelCode: report.status, message: message, retryable: false)
        return InboundEvent(.status(externalID: original, status: .failed, error: error),
                            peer: Peer(channelUserID: report.recipient ?? ""), dedupeKey: "bounce:\(externalID)",
                            occurredAt: occurredAt, channelData: channelData)
    }

    /// For a read receipt of one of our messages that says it was displayed: the `message.status`
    /// `read` event for it (looked up through its external id, our Message-ID).
    public func readStatusEvent() -> InboundEvent? {
        guard case .autoReply = classification, let receipt = EmailClassifier.readReceipt(email), receipt.displayed else { return nil }
        return InboundEvent(.status(externalID: receipt.originalMessageID, status: .read, error: nil),
                            peer: Peer(channelUserID: peer.channelUserID), dedupeKey: "mdn:\(externalID)",
                            occurredAt: occurredAt, channelData: channelData)
    }

    /// The event for `AdapterContext.emit`; `thread` is the conversation's thread root.
    public func inboundEvent(thread: String) -> InboundEvent {
        let origin: Origin = classification == .customer ? .customer : .system
        let message = InboundMessage(origin: origin, externalID: externalID, parts: parts, replyToExternalID: replyToExternalID)
        return InboundEvent(.message(message), peer: peer, thread: thread, dedupeKey: externalID, occurredAt: occurredAt,
                            raw: raw, channelData: channelData)
    }
}
