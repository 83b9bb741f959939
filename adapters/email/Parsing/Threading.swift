import Crypto
import Foundation
import SwitchboardCore

/// Message-ID lists (Message-ID, In-Reply-To, References).
public enum MessageIDs {
    /// The ids in a header value, without angle brackets, in order. Comments and phrases (old
    /// In-Reply-To forms such as `<id> (Jane's message of …)`) are ignored; a value without any
    /// `<…>` falls back to whitespace-separated tokens that contain `@`.
    public static func parse(_ value: String) -> [String] {
        var ids: [String] = []
        var i = value.startIndex
        var depth = 0
        var foundAngle = false
        while i < value.endIndex {
            let c = value[i]
            if c == "(" { depth += 1 } else if c == ")" { depth = max(0, depth - 1) } else if c == "<" && depth == 0 {
                guard let close = value[i...].firstIndex(of: ">") else { break }
                let inner = value[value.index(after: i)..<close].filter { !$0.isWhitespace }
                if !inner.isEmpty { ids.append(String(inner)) }
                foundAngle = true
                i = value.index(after: close)
                continue
            }
            i = value.index(after: i)
        }
        if !foundAngle {
            ids = value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," })
                .map(String.init).filter { $0.contains("@") }
        }
        return unique(ids)
    }

    /// Removes repeats, keeping the first occurrence.
    public static func unique(_ ids: [String]) -> [String] {
        var seen = Set<String>()
        return ids.filter { seen.insert($0).inserted }
    }
}

/// Our outbound Message-IDs and plus-address tokens, both carrying the conversation id and an
/// HMAC tag from a secret so a reply can be matched without a database hit and an outsider can't
/// forge one that lands in someone else's conversation.
///
/// - Message-ID: `<sb.<conversation id>.<random>.<tag>@<domain>>`, random = 80 bits, tag =
///   HMAC-SHA256(secret, "mid" ‖ conversation ‖ random), 80 bits, base32.
/// - Plus address: `<local>+<conversation id>-<tag>@<domain>`, tag = HMAC-SHA256(secret,
///   "plus" ‖ conversation), 65 bits, base32.
///
/// Conversation ids are `prefix_ULID`, which is case-insensitive; both forms are written in lower
/// case (mail systems may lower-case local parts) and decoded back to the canonical
/// `prefix_ULIDUPPER` form.
public struct ThreadCodec: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    private let secret: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: secret) }
    /// The domain of our Message-IDs (usually the support address's domain).
    public let domain: String

    public init(secret: [UInt8], domain: String) {
        self.secret = secret
        self.domain = domain.lowercased()
    }

    /// Never shows the secret.
    public var description: String { "ThreadCodec(domain: \(domain), secret: <redacted>)" }
    public var debugDescription: String { description }

    // MARK: Message-ID

    /// A new Message-ID (without angle brackets) for a message in `conversationID`.
    public func makeMessageID(conversationID: String) -> String {
        var random = [UInt8](repeating: 0, count: 10)
        for i in random.indices { random[i] = UInt8.random(in: 0...255) }
        return makeMessageID(conversationID: conversationID, random: Base32.encode(random))
    }

    public func makeMessageID(conversationID: String, random: String) -> String {
        let conv = conversationID.lowercased()
        return "sb.\(conv).\(random).\(messageTag(conv, random))@\(domain)"
    }

    /// The conversation a Message-ID of ours belongs to; nil for anyone else's id or a forged tag.
    public func conversationID(fromMessageID raw: String) -> String? {
        let id = MIMEParser.stripAngles(raw).lowercased()
        guard let at = id.lastIndex(of: "@") else { return nil }
        let local = id[..<at]
        let pieces = local.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.count == 4, pieces[0] == "sb", !pieces[1].isEmpty, !pieces[2].isEmpty else { return nil }
        let conv = String(pieces[1]), random = String(pieces[2])
        guard constantTimeEqual(Array(messageTag(conv, random).utf8), Array(pieces[3].utf8)) else { return nil }
        return Self.canonical(conv)
    }

    /// Whether a Message-ID is one we made (and the tag checks out).
    public func isOurs(messageID: String) -> Bool { conversationID(fromMessageID: messageID) != nil }

    private func messageTag(_ conv: String, _ random: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("mid\u{0}\(conv)\u{0}\(random)".utf8), using: key)
        return Base32.encode(Array(mac.prefix(10)))
    }

    // MARK: Plus addressing

    /// `support@example.com` + conversation → `support+conv_01j…-<tag>@example.com`.
    public func plusAddress(base: String, conversationID: String) -> String {
        let base = base.lowercased()
        guard let at = base.lastIndex(of: "@") else { return base }
        let local = base[..<at].split(separator: "+", maxSplits: 1).first.map(String.init) ?? String(base[..<at])
        let conv = conversationID.lowercased()
        return "\(local)+\(conv)-\(plusTag(conv))\(base[at...])"
    }

    /// The conversation a plus address points at, when `address` is `base` with a valid token.
    public func conversationID(fromPlusAddress address: String, base: String) -> String? {
        let a = address.lowercased(), b = base.lowercased()
        guard let at = a.lastIndex(of: "@"), let bat = b.lastIndex(of: "@"), a[at...] == b[bat...] else { return nil }
        let local = a[..<at]
        let baseLocal = b[..<bat]
        guard local.hasPrefix(baseLocal + "+") else { return nil }
        let token = local.dropFirst(baseLocal.count + 1)
        guard let dash = token.lastIndex(of: "-") else { return nil }
        let conv = String(token[..<dash]), tag = String(token[token.index(after: dash)...])
        guard !conv.isEmpty, constantTimeEqual(Array(plusTag(conv).utf8), Array(tag.utf8)) else { return nil }
        return Self.canonical(conv)
    }

    private func plusTag(_ conv: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array("plus\u{0}\(conv)".utf8), using: key)
        return Base32.encode(Array(mac.prefix(8)))
    }

    /// `conv_01jabc…` → `conv_01JABC…`.
    static func canonical(_ lower: String) -> String {
        guard let us = lower.firstIndex(of: "_") else { return lower }
        return lower[..<us].lowercased() + "_" + lower[lower.index(after: us)...].uppercased()
    }
}

/// RFC 4648 base32, lower-case, unpadded (safe in local parts and Message-IDs of any case-folding system).
public enum Base32 {
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for b in bytes {
            buffer = buffer << 8 | UInt32(b)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Where an inbound message belongs.
public enum ThreadMatch: Sendable, Hashable {
    /// An existing conversation, and the evidence.
    case conversation(id: String, via: Evidence)
    /// No known conversation: a new thread whose root is this Message-ID (the first References
    /// id, else In-Reply-To, else the message's own id), so later replies among the customer's
    /// own mails land together.
    case newThread(root: String)

    public enum Evidence: Sendable, Hashable {
        /// Our Message-ID (tag verified) in In-Reply-To.
        case inReplyTo(String)
        /// Our Message-ID (tag verified) in References.
        case references(String)
        /// A Message-ID the lookup knew (a stored inbound or outbound message).
        case knownMessage(String)
        /// A plus-address token (verified) on a recipient.
        case plusAddress(String)
    }
}

public enum ThreadResolver {
    /// Finds the conversation of `email`: In-Reply-To, then References newest first — each id
    /// either one of ours (decoded and verified) or known to `lookup` (stored Message-IDs) — then a
    /// plus-address token on the envelope recipients, Delivered-To, X-Original-To, To or Cc.
    /// Never by subject.
    public static func resolve(_ email: ParsedEmail, codec: ThreadCodec, supportAddress: String,
                               envelopeRecipients: [String] = []) async -> ThreadMatch {
        await resolve(email, codec: codec, supportAddress: supportAddress, envelopeRecipients: envelopeRecipients,
                      lookup: { _ in nil })
    }

    /// As above, with `lookup` mapping a stored Message-ID (inbound or outbound) to its conversation.
    public static func resolve(_ email: ParsedEmail, codec: ThreadCodec, supportAddress: String,
                               envelopeRecipients: [String] = [],
                               lookup: (String) async throws -> String?) async rethrows -> ThreadMatch {
        for id in email.inReplyTo {
            if let conv = codec.conversationID(fromMessageID: id) { return .conversation(id: conv, via: .inReplyTo(id)) }
            if let conv = try await lookup(id) { return .conversation(id: conv, via: .knownMessage(id)) }
        }
        for id in email.references.reversed() where !email.inReplyTo.contains(id) {
            if let conv = codec.conversationID(fromMessageID: id) { return .conversation(id: conv, via: .references(id)) }
            if let conv = try await lookup(id) { return .conversation(id: conv, via: .knownMessage(id)) }
        }
        var recipients = envelopeRecipients.map { MIMEParser.stripAngles($0).lowercased() }
        for name in ["Delivered-To", "X-Original-To", "Envelope-To"] {
            recipients += email.headers.values(name).flatMap { AddressParser.parse($0).map(\.address) }
        }
        recipients += (email.to + email.cc).map(\.address)
        for r in recipients {
            if let conv = codec.conversationID(fromPlusAddress: r, base: supportAddress) {
                return .conversation(id: conv, via: .plusAddress(r))
            }
        }
        let root = email.references.first ?? email.inReplyTo.first ?? email.messageIDOrSynthesized
        return .newThread(root: root)
    }
}
