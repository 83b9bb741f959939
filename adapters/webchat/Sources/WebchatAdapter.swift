import Crypto
import Foundation
import Logging
import Synchronization
import SwitchboardCore
import SwitchboardRuntime

/// A value that must never reach a log line or a diagnostic.
struct WebchatSecret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    let value: String
    init(_ value: String) { self.value = value }
    var description: String { "<redacted>" }
    var debugDescription: String { "<redacted>" }
}

/// One pre-chat form field (`name`, `email` or `phone`).
public struct PrechatField: Sendable, Hashable {
    public var name: String
    public var required: Bool
    public init(name: String, required: Bool) { self.name = name; self.required = required }
}

/// The website chat widget, served by the daemon itself.
///
/// Public paths (`/webchat/<channel id>/…`, see `handlePublic`): `widget.js` (the loader a site
/// embeds), `chat` (the iframe page) with `chat.js`/`chat.css`, `history` and `upload` (REST,
/// `Authorization: Bearer <visitor token>`), and `ws` (the WebSocket; protocol in
/// adapters/webchat/README.md). The visitor token is 256 random bits; only its SHA-256 is kept
/// (adapter state), it is never put in a URL and never logged.
///
/// The conversation log the widget shows (both directions, numbered per visitor by `seq`) is kept
/// in the adapter state store, so a reconnecting client asks for everything after the last
/// `seq` it saw and gets each message exactly once.
public final class WebchatChannelAdapter: ChannelAdapter, Sendable {
    public static let type = "webchat"
    public static let area = "webchat"

    public static let webchatCapabilities = ChannelCapabilities(
        textFormats: [.plain], maxTextLength: 10_000, mediaKinds: [.image, .file, .video, .audio],
        maxButtons: 10, maxButtonTitle: 80, buttonActions: [.reply, .postback, .link],
        maxQuickReplies: 13, cards: true, maxCarouselCards: 10, maxListRows: 30,
        location: false, contactCard: false, reactions: false, typing: true, markRead: true)

    public struct Settings: Sendable {
        public var allowedOrigins: [String] = []
        public var identitySecret: String? = nil
        public var requireIdentity = false
        public var prechat: [PrechatField] = []
        public var hours: BusinessHours? = nil
        public var awayMessage: String? = nil
        public var title = "Chat with us"
        public var greeting: String? = nil
        public var position = "right"
        public var color = "#2457d6"
        public var locale: String? = nil
        public var demoPage = false
        public var maxTextLength = 4000
        public var uploadMaxBytes: Int64 = 5_000_000
        public var uploadTypes = ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"]
        /// Messages one visitor may send per minute (a bucket this size, refilled evenly).
        public var visitorMessagesPerMinute = 20
        /// Messages from one IP address per minute (all visitors behind it together).
        public var ipMessagesPerMinute = 120
        /// New visitors (tokens issued) per IP address per hour.
        public var ipNewVisitorsPerHour = 60
        public var historyLimit = 500
        /// Unread agent replies go by email to a visitor who gave an address (see `EmailFollowup`).
        public var emailFollowup: EmailFollowup? = nil
        public init() {}
    }

    public let channel: ChannelRef
    public var capabilities: ChannelCapabilities { Self.webchatCapabilities }
    public var publicArea: String? { Self.area }
    let settings: Settings
    let secret: WebchatSecret?
    let hub = LiveHub()
    let limits: RateLimits
    let log = LogWriter()
    /// Scheduling a follow-up and finishing one take turns (see `sendFollowup`).
    let followupLock = AsyncLock()

    public init(channel: ChannelRef, settings: Settings) {
        self.channel = channel
        var s = settings
        self.secret = settings.identitySecret.map(WebchatSecret.init)
        s.identitySecret = nil
        self.settings = s
        self.limits = RateLimits(visitorPerMinute: settings.visitorMessagesPerMinute, ipPerMinute: settings.ipMessagesPerMinute,
                                 newVisitorsPerHour: settings.ipNewVisitorsPerHour)
        // Read the widget's files now, at startup, not during the first request: requests
        // are served on the connection's event loop, where a file read would block the loop.
        _ = WebchatAssets.files
    }

    /// The registry entry: reads and checks this channel's keys.
    public static let factory: AdapterFactory = { channel, node, env in
        node.rejectUnknownKeys(AdapterRegistry.commonKeys + [
            "allowed_origins", "require_identity", "prechat", "business_hours", "away_message", "title", "greeting",
            "position", "color", "locale", "demo_page", "max_text_length", "upload_max_bytes", "upload_types", "rate_limits",
            "history_limit", "email_followup",
        ], secrets: ["identity_secret"])
        var s = Settings()
        s.allowedOrigins = node.stringList("allowed_origins", default: [])
        for (i, o) in s.allowedOrigins.enumerated() where !(o == "*" || o.hasPrefix("https://") || o.hasPrefix("http://")) || o.hasSuffix("/") {
            node["allowed_origins"].problem("entry \(i) \"\(o)\": expected an origin like https://www.example.com (no path, no trailing slash) or *")
        }
        s.identitySecret = node.secret("identity_secret")?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let sec = s.identitySecret, sec.count < 16 { node["identity_secret"].problem("too short: use at least 16 characters (32 random bytes recommended)") }
        s.requireIdentity = node.bool("require_identity", default: false)
        if s.requireIdentity && s.identitySecret == nil { node["require_identity"].problem("needs identity_secret (or identity_secret_file)") }
        if node["prechat"].isPresent {
            let p = node["prechat"]
            p.rejectUnknownKeys(["fields"])
            for (i, f) in p.list("fields").enumerated() {
                f.rejectUnknownKeys(["name", "required"])
                let name = f.string("name", required: true) ?? ""
                if !["name", "email", "phone"].contains(name) { p["fields"].problem("entry \(i): name must be name, email or phone") }
                s.prechat.append(PrechatField(name: name, required: f.bool("required", default: false)))
            }
        }
        if node["business_hours"].isPresent {
            s.hours = BusinessHours.read(node["business_hours"])
        }
        s.awayMessage = node.string("away_message")
        s.title = node.string("title", default: s.title) ?? s.title
        s.greeting = node.string("greeting")
        s.position = node.string("position", default: "right") ?? "right"
        if !["left", "right"].contains(s.position) { node["position"].problem("must be left or right") }
        s.color = node.string("color", default: s.color) ?? s.color
        if s.color.range(of: "^#[0-9a-fA-F]{3,8}$", options: .regularExpression) == nil { node["color"].problem("expected a hex colour like #2457d6") }
        s.locale = node.string("locale")
        if let l = s.locale, !["en", "ko", "ja"].contains(l) { node["locale"].problem("must be en, ko or ja") }
        s.demoPage = node.bool("demo_page", default: false)
        s.maxTextLength = node.int("max_text_length", default: 4000, range: 1...10_000) ?? 4000
        s.uploadMaxBytes = node.bytes("upload_max_bytes", default: 5_000_000)
        s.uploadTypes = node.stringList("upload_types", default: s.uploadTypes).map { $0.lowercased() }
        // Uploads are served from the chat's own origin: nothing a browser would run.
        let active = ["text/html", "image/svg+xml", "application/xhtml+xml", "text/javascript", "application/javascript", "text/xml", "application/xml"]
        if let bad = s.uploadTypes.first(where: { active.contains($0) }) {
            node["upload_types"].problem("\(bad) is active content a browser would run; it can't be uploaded")
        }
        if node["rate_limits"].isPresent {
            let r = node["rate_limits"]
            r.rejectUnknownKeys(["visitor_messages_per_minute", "ip_messages_per_minute", "ip_new_visitors_per_hour"])
            s.visitorMessagesPerMinute = r.int("visitor_messages_per_minute", default: 20, range: 1...10_000) ?? 20
            s.ipMessagesPerMinute = r.int("ip_messages_per_minute", default: 120, range: 1...100_000) ?? 120
            s.ipNewVisitorsPerHour = r.int("ip_new_visitors_per_hour", default: 60, range: 1...100_000) ?? 60
        }
        s.historyLimit = node.int("history_limit", default: 500, range: 10...10_000) ?? 500
        if node["email_followup"].isPresent {
            let f = node["email_followup"]
            f.rejectUnknownKeys(["channel", "delay", "subject"])
            let delay = f.seconds("delay", default: 180)
            if delay < 0 || delay > 7 * 86_400 { f["delay"].problem("must be between 0s and 7d") }
            if let target = f.string("channel", required: true) {
                if target == channel.id { f["channel"].problem("must name an email channel, not this one") }
                s.emailFollowup = EmailFollowup(channel: target, delay: min(max(delay, 0), 7 * 86_400), subject: f.string("subject"))
            }
        }
        return WebchatChannelAdapter(channel: channel, settings: s)
    }

    /// Closes sockets that never said hello, until the channel stops (reload or shutdown); then
    /// closes its sockets so the widgets reconnect to whatever serves the channel next.
    public func run(context: any AdapterContext) async throws {
        await withTaskGroup(of: Void.self) { group in
            if let followup = settings.emailFollowup {
                group.addTask { await self.runFollowups(followup, context: context) }
            }
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                closeSilentSockets()
            }
            group.cancelAll()
        }
        hub.closeAll()
    }

    public var relayTargets: [RelayTarget] {
        settings.emailFollowup.map { [RelayTarget(channelID: $0.channel, configKey: ["email_followup", "channel"])] } ?? []
    }

    // MARK: tokens and identity

    static func newToken() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func newVisitorID() -> String {
        var g = SystemRandomNumberGenerator()
        return "v_" + (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    static func tokenKey(_ token: String) -> String {
        "tok:" + SHA256.hash(data: Array(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// hex(HMAC-SHA256(identity secret, user id)): what the site's server computes.
    public static func identityHash(userID: String, secret: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Array(userID.utf8), using: SymmetricKey(data: Array(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    func verifyIdentity(userID: String, hash: String) -> Bool {
        guard let secret, !userID.isEmpty, userID.utf8.count <= 200 else { return false }
        let expected = Self.identityHash(userID: userID, secret: secret.value)
        return constantTimeEqual(Array(expected.utf8), Array(hash.lowercased().utf8))
    }

    /// A short-lived HS256 JWT signed with the identity secret by the site's server: `sub` is the
    /// user id, `exp` is required (at most 24 hours ahead); `name` and `email` fill the profile.
    /// Returns the user id and those claims, or nil.
    func verifyJWT(_ jwt: String, now: Double = Date().timeIntervalSince1970) -> (userID: String, profile: JSONObject)? {
        guard let secret, jwt.utf8.count <= 4096 else { return nil }
        let segments = jwt.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3, let headerBytes = Self.base64URL(segments[0]), let payloadBytes = Self.base64URL(segments[1]),
              let signature = Self.base64URL(segments[2]),
              let header = try? JSONValue.parse(headerBytes), header["alg"]?.stringValue == "HS256",
              let claims = try? JSONValue.parse(payloadBytes) else { return nil }
        let signed = Array("\(segments[0]).\(segments[1])".utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed, using: SymmetricKey(data: Array(secret.value.utf8))) else { return nil }
        guard let sub = claims["sub"]?.stringValue, !sub.isEmpty, sub.utf8.count <= 200,
              let exp = claims["exp"]?.doubleValue, exp > now, exp <= now + 86_400 else { return nil }
        if let nbf = claims["nbf"]?.doubleValue, nbf > now + 60 { return nil }
        var profile: JSONObject = [:]
        for key in ["name", "email"] { if let v = claims[key]?.stringValue, v.count <= 200 { profile[key] = .string(v) } }
        return (sub, profile)
    }

    static func base64URL(_ s: Substring) -> [UInt8]? {
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b.count % 4 != 0 { b += "=" }
        return Data(base64Encoded: b).map(Array.init)
    }

    /// The visitor a token belongs to, or nil.
    func peer(forToken token: String, context: any AdapterContext) async throws -> String? {
        guard token.count >= 20, token.count <= 100 else { return nil }
        return try await context.state.get(Self.tokenKey(token))
    }

    func bearer(_ request: WebhookRequest) -> String? {
        guard let h = request.header("authorization"), h.lowercased().hasPrefix("bearer ") else { return nil }
        return String(h.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    // MARK: outbound

    public func send(_ message: OutboundMessage, context: any AdapterContext) async throws -> SendResult {
        let peer = message.recipient.channelUserID
        let externalID = "wc_" + message.message.id
        var parts = message.rendered.parts
        if parts.isEmpty { parts = [.text(Open(TextFields(text: message.rendered.textFallback)))] }
        let entry: LogEntry
        do {
            entry = try await log.append(peer: peer, direction: "out", externalID: externalID, parts: parts,
                                         text: message.rendered.textFallback, clientID: nil, context: context)
        } catch {
            throw SendError(code: "store_unavailable", message: "cannot record the message for the widget: \(error)", retryable: true)
        }
        hub.push(peer: peer, seq: entry.seq, frame: frame(entry, context: context))
        await scheduleFollowup(message, context: context)
        return SendResult(externalIDs: [externalID], channelData: ["seq": .int(entry.seq), "online": .bool(hub.isOnline(peer))])
    }

    public func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws {
        let peer = recipient.channelUserID
        switch kind {
        case .typingStart: hub.push(peer: peer, seq: nil, frame: Frames.object(["type": "typing", "on": true]))
        case .typingStop: hub.push(peer: peer, seq: nil, frame: Frames.object(["type": "typing", "on": false]))
        case .markRead:
            let last = try await log.lastSeq(peer: peer, context: context)
            try await context.state.set("agentread:\(peer)", String(last))
            hub.push(peer: peer, seq: nil, frame: Frames.object(["type": "read", "seq": .int(last)]))
        }
    }

    public func resolveAddress(_ address: String, context: any AdapterContext) async throws -> (peer: Peer, thread: String) {
        // Only visitors who have chatted can be reached: their id must have a log.
        guard try await context.state.get("seq:\(address)") != nil else {
            throw SendRejection(code: "invalid_request", status: 422, detail: "no webchat visitor \(address) on this channel")
        }
        return (Peer(channelUserID: address), "*")
    }

    /// A log entry as the widget receives it: parts as JSON, media with a signed link.
    func frame(_ e: LogEntry, context: any AdapterContext) -> String {
        var parts: [JSONValue] = []
        for part in e.parts {
            guard var v = try? JSONValue.from(part), case .object(var o) = v else { continue }
            if o["type"]?.stringValue == "media", let id = o["media_id"]?.stringValue, o["url"] == nil {
                o["url"] = .string(Self.mediaLink(id, context: context))
                v = .object(o)
            }
            parts.append(v)
        }
        var o: JSONObject = ["type": "message", "seq": .int(e.seq), "id": .string(e.externalID), "direction": .string(e.direction),
                             "parts": .array(parts), "text": .string(e.text), "at": .int(e.at)]
        if let c = e.clientID { o["client_id"] = .string(c) }
        return Frames.object(o)
    }
}

extension WebchatChannelAdapter {
    /// A signed link to stored media for the widget, relative to the daemon (the iframe is served
    /// from it), so it works whatever host name the visitor reached us by.
    static func mediaLink(_ id: String, context: any AdapterContext) -> String {
        let url = context.publicMediaURL(id, validFor: 7 * 86_400)
        var base = context.publicURL
        while base.hasSuffix("/") { base.removeLast() }
        return url.hasPrefix(base + "/") ? String(url.dropFirst(base.count)) : url
    }
}

/// Small helpers for JSON frames.
enum Frames {
    static func object(_ o: JSONObject) -> String { JSON.string(JSONValue.object(o)) }
    static func error(_ code: String, _ message: String, clientID: String? = nil) -> String {
        var o: JSONObject = ["type": "error", "code": .string(code), "message": .string(message)]
        if let clientID { o["client_id"] = .string(clientID) }
        return object(o)
    }
}

/// One message of a visitor's conversation as the widget shows it.
struct LogEntry: Sendable, Codable {
    var seq: Int64
    var direction: String
    var externalID: String
    var parts: [Part]
    var text: String
    var at: Int64
    var clientID: String?
    enum CodingKeys: String, CodingKey { case seq, direction, parts, text, at, externalID = "id", clientID = "client_id" }
}

/// Appends to the per-visitor logs one at a time per visitor, so sequence numbers never
/// collide: an agent's reply and the visitor's message written at once would otherwise both
/// read seq N and both write N+1, the second over the first (an actor alone doesn't prevent
/// it: its method lets another call in at each await).
final class LogWriter: Sendable {
    /// Striped by visitor: one visitor's appends queue up, different visitors' don't wait on
    /// each other. Shared by every adapter instance: across a reload the old channel's
    /// draining send worker and the new one's sockets append to the same logs.
    private static let locks = (0..<64).map { _ in AsyncLock() }
    private var locks: [AsyncLock] { Self.locks }

    func lastSeq(peer: String, context: any AdapterContext) async throws -> Int64 {
        Int64(try await context.state.get("seq:\(peer)") ?? "0") ?? 0
    }

    /// Appends an entry and returns it; with a `clientID` already in the log (the same message
    /// sent again from a second socket), the entry stored for it, appending nothing.
    func append(peer: String, direction: String, externalID: String, parts: [Part], text: String, clientID: String?,
                context: any AdapterContext) async throws -> LogEntry {
        let stripe = peer.utf8.reduce(UInt32(5381)) { ($0 &* 33) &+ UInt32($1) } % UInt32(locks.count)
        return try await locks[Int(stripe)].run {
            if let clientID, let known = try await context.state.get("cid:\(peer):\(clientID)").flatMap({ Int64($0) }),
               let stored = try await context.state.get(Self.key(peer, known)),
               let entry = try? JSON.decode(LogEntry.self, from: Array(stored.utf8)) {
                return entry
            }
            let seq = try await self.lastSeq(peer: peer, context: context) + 1
            let entry = LogEntry(seq: seq, direction: direction, externalID: externalID, parts: parts, text: text,
                                 at: Timestamp.now().milliseconds, clientID: clientID)
            try await context.state.set(Self.key(peer, seq), JSON.string(entry))
            if let clientID { try await context.state.set("cid:\(peer):\(clientID)", String(seq)) }
            try await context.state.set("seq:\(peer)", String(seq))
            return entry
        }
    }

    static func key(_ peer: String, _ seq: Int64) -> String {
        let s = String(seq)
        return "log:\(peer):" + String(repeating: "0", count: max(0, 12 - s.count)) + s
    }

    /// Entries after `after`, oldest first, at most `limit` (the newest ones when cut).
    static func entries(peer: String, after: Int64, limit: Int, context: any AdapterContext) async throws -> [LogEntry] {
        // Keys are zero-padded, so key order is seq order: read only the range wanted.
        let rows = try await context.state.entries(prefix: "log:\(peer):", after: key(peer, max(0, after)), last: limit)
        var out: [LogEntry] = []
        for row in rows {
            guard let seq = Int64(row.key.split(separator: ":").last ?? ""), seq > after,
                  let e = try? JSON.decode(LogEntry.self, from: Array(row.value.utf8)) else { continue }
            out.append(e)
        }
        out.sort { $0.seq < $1.seq }
        return out.count > limit ? Array(out.suffix(limit)) : out
    }
}

/// A lock for short async critical sections (an actor runs the body; awaits inside it don't
/// let a second body start, unlike an actor method's reentrancy).
actor AsyncLock {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        while busy { await withCheckedContinuation { waiters.append($0) } }
        busy = true
        defer {
            busy = false
            if !waiters.isEmpty { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}
