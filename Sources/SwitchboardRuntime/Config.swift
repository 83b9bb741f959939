import Foundation
import SwitchboardCore
import SwitchboardDelivery

/// A TCP address `host:port` (IPv6 as `[::1]:8080`).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) { self.host = host; self.port = port }
    public init?(_ s: String) {
        let t = s.trimmingCharacters(in: .whitespaces)
        guard let colon = t.lastIndex(of: ":"), let port = Int(t[t.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(t[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host; self.port = port
    }
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct APIToken: Sendable, Hashable {
    public var name: String
    public var token: String
}

public struct HelpdeskConfig: Sendable {
    public enum Kind: Sendable, Equatable { case http(url: String), console }
    public var name: String
    public var kind: Kind
    /// `whsec_…` (several, space-separated, during a rotation); nil = unsigned (console only).
    public var secret: String?
    public var events: [String]
    public var timeout: Double
    public var maxInFlight: Int
    public var retry: RetrySchedule
    public var headers: [(String, String)]
}

public struct ChannelConfig: Sendable {
    public var id: String
    public var type: String
    /// The channel's whole config mapping, for its adapter factory.
    public var node: ConfigNode
}

public struct SwitchboardConfig: Sendable {
    public var instance: String
    public var listen: HostPort
    public var publicURL: String
    public var apiListen: HostPort?
    public var apiSocket: String?
    public var apiSocketMode: Int
    /// The group the API socket is handed to when the daemon binds it itself (without
    /// switchboard.socket, whose SocketGroup= does it otherwise).
    public var apiSocketGroup: String? = nil

    public var tokens: [APIToken]
    public var storagePath: String
    public var durability: String
    public var mediaPath: String
    public var mediaMaxBytes: Int64
    /// How long events stay in the log once every helpdesk is past them, in seconds (0: for
    /// ever); `storage.event_retention`.
    public var eventRetentionSeconds: Double = 30 * 86400
    /// How long a platform's message id is remembered to drop its redeliveries (0: for ever);
    /// `storage.dedupe_retention`.
    public var dedupeRetentionSeconds: Double = 0
    public var helpdesks: [HelpdeskConfig]
    public var channels: [ChannelConfig]
    public var logLevel: String
    public var heartbeatSeconds: Double
    public var sendRetry: RetrySchedule
    public var shutdownGraceSeconds: Double
    /// Whose forwarding headers name the client (`server.trusted_proxies`).
    public var trustedProxies: TrustedProxies = .loopback

    /// The CloudEvents `source` of every event.
    public var eventSource: String { "urn:switchboard:\(instance)" }
}

/// Reads a configuration file into `SwitchboardConfig`, collecting every problem with its key path.
public enum ConfigLoader {
    public static let defaultPath = "/etc/switchboard/switchboard.yaml"

    /// Parses text; `adapterKinds` are the channel types the registry knows (each factory then
    /// checks its own keys when the adapter is built).
    /// What is wrong with a helpdesk URL, or nil: it must parse, name a host (http/https), or
    /// for `http+unix://` a percent-encoded absolute socket path (`/run/desk.sock` written as
    /// is would be read as host "" and path "/run/desk.sock").
    /// Request headers an HTTP sink writes itself: the message framing and the Standard
    /// Webhooks signature. (`Host`, `Content-Type` and `User-Agent` may be configured; a
    /// configured value replaces the daemon's.)
    static let headersTheSinkSets: Set<String> = [
        "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
        "webhook-id", "webhook-timestamp", "webhook-signature",
    ]

    static func sinkURLProblem(_ url: String) -> String? {
        let shape = "expected an https://, http:// or http+unix://<percent-encoded socket path>/<path> URL"
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), URL(string: url) != nil else { return shape }
        switch scheme {
        case "http", "https":
            guard let host = c.host, !host.isEmpty else { return "\(shape): no host" }
            return nil
        case "http+unix":
            guard let socket = c.percentEncodedHost?.removingPercentEncoding, socket.hasPrefix("/") else {
                return "\(shape): the socket path goes percent-encoded in the host part (http+unix://%2Frun%2Fdesk.sock/hooks)"
            }
            return nil
        default:
            return shape
        }
    }

    public static func load(text: String, environment: ConfigEnvironment, adapterKinds: Set<String>,
                            diagnostics: ConfigDiagnostics) -> SwitchboardConfig {
        let root = ConfigNode.parse(yaml: text, diagnostics: diagnostics, environment: environment)
        root.rejectUnknownKeys(["server", "api", "storage", "media", "helpdesks", "channels", "logging", "outbound", "instance"])

        let server = root["server"]
        server.rejectUnknownKeys(["listen", "public_url", "shutdown_grace", "trusted_proxies", "client_address_header"])
        var trustedProxies = TrustedProxies.loopback
        if server["trusted_proxies"].isPresent {
            var ranges: [IPRange] = []
            for (i, text) in server.stringList("trusted_proxies", default: []).enumerated() {
                if let r = IPRange(text) { ranges.append(r) } else {
                    server.diagnostics.add("\(server["trusted_proxies"].path)[\(i)]", "expected an IP address or a range like 10.0.0.0/8, got \"\(text)\"")
                }
            }
            trustedProxies = TrustedProxies(ranges)
        }
        if let h = server.string("client_address_header") {
            if let header = TrustedProxies.Header(rawValue: h.lowercased()) { trustedProxies.header = header } else {
                server["client_address_header"].problem("expected X-Forwarded-For or Forwarded")
            }
        }
        let listenText = server.string("listen", default: "127.0.0.1:8080")!
        let listen = HostPort(listenText) ?? { server["listen"].problem("expected host:port, e.g. 127.0.0.1:8080"); return HostPort(host: "127.0.0.1", port: 8080) }()
        var publicURL = server.string("public_url") ?? "http://\(listen)"
        if !(publicURL.hasPrefix("http://") || publicURL.hasPrefix("https://")) || (URLComponents(string: publicURL)?.host ?? "").isEmpty {
            server["public_url"].problem("expected an http:// or https:// URL with a host")
        }
        while publicURL.hasSuffix("/") { publicURL.removeLast() }

        let api = root["api"]
        api.rejectUnknownKeys(["listen", "socket", "socket_mode", "socket_group", "tokens", "heartbeat"])
        let socketGroup = api.string("socket_group")
        if let g = socketGroup, g.isEmpty || g.contains(where: { $0.isWhitespace || $0 == ":" }) {
            api["socket_group"].problem("expected a group name such as switchboard-api")
        }
        let apiListenText = api.string("listen")
        let apiListen = apiListenText.flatMap { t -> HostPort? in
            if let hp = HostPort(t) { return hp }
            api["listen"].problem("expected host:port, e.g. 127.0.0.1:8081")
            return nil
        }
        let apiSocket = api.string("socket").map { api.resolvePath($0) }
        if apiListenText == nil && apiSocket == nil && root["api"].isPresent {
            api.problem("give api.listen, api.socket or both")
        }
        let socketMode = api.fileMode("socket_mode", default: 0o660)
        var tokens: [APIToken] = []
        for (i, t) in api.list("tokens").enumerated() {
            t.rejectUnknownKeys(["name"], secrets: ["token"])
            let name = t.string("name") ?? "token\(i)"
            if let token = t.secret("token", required: true) {
                if token.count < 16 { t["token"].problem("too short: use at least 16 random characters") }
                tokens.append(APIToken(name: name, token: token))
            }
        }
        if apiListen != nil && tokens.isEmpty {
            api["tokens"].problem("api.listen serves the API over TCP, which needs at least one token")
        }

        let storage = root["storage"]
        storage.rejectUnknownKeys(["path", "durability", "event_retention", "dedupe_retention"])
        let storagePathText = storage.string("path", default: "/var/lib/switchboard/switchboard.sqlite")!
        if storagePathText.isEmpty { storage["path"].problem("must not be empty") }
        let storagePath = storage.resolvePath(storagePathText)
        let durability = storage.string("durability", default: "full")!
        if !["full", "normal"].contains(durability) { storage["durability"].problem("expected full or normal") }
        let eventRetention = storage.seconds("event_retention", default: 30 * 86400)
        if eventRetention > 0 && eventRetention < 3600 {
            storage["event_retention"].problem("at least 1h (or 0 to keep events for ever): GET /v1/events clients need time to catch up")
        }
        // Kept for ever by default: they are small (a key per message, beside the message
        // itself, which is kept anyway), and an IMAP mailbox whose UIDVALIDITY changes is read
        // again from the start, with only these keys to recognise what was already stored.
        let dedupeRetention = storage.seconds("dedupe_retention", default: 0)
        if dedupeRetention > 0 && dedupeRetention < 86400 {
            storage["dedupe_retention"].problem("at least 1d (or 0 to keep them for ever): platforms redeliver webhooks for days (WhatsApp up to 7)")
        }

        let media = root["media"]
        media.rejectUnknownKeys(["path", "max_bytes"])
        let mediaPath = media.resolvePath(media.string("path", default: (storagePath as NSString).deletingLastPathComponent + "/media")!)
        let maxBytes = media.bytes("max_bytes", default: 25 * 1024 * 1024)

        var helpdesks: [HelpdeskConfig] = []
        var names = Set<String>()
        for h in root.list("helpdesks") {
            h.rejectUnknownKeys(["name", "type", "url", "events", "timeout", "max_in_flight", "retry", "headers"], secrets: ["secret"])
            guard let name = h.string("name", required: true) else { continue }
            if !names.insert(name).inserted { h["name"].problem("duplicate helpdesk name \(name)") }
            if name.isEmpty { h["name"].problem("must not be empty") }
            if name.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                h["name"].problem("use letters, digits, - and _ only")
            }
            let type = h.string("type", default: "http")!
            let kind: HelpdeskConfig.Kind
            var secret: String? = nil
            switch type {
            case "console": kind = .console
            case "http":
                let url = h.string("url", required: true) ?? ""
                if h["url"].isPresent, let problem = Self.sinkURLProblem(url) { h["url"].problem(problem) }
                kind = .http(url: url)
                secret = h.secret("secret", required: true)
                if let s = secret, (try? WebhookSigner(secrets: s)) == nil {
                    h["secret"].problem("expected whsec_ followed by base64 (generate one with `switchboard generate-secret`)")
                }
            default:
                h["type"].problem("expected http or console")
                kind = .console
            }
            let events = h.stringList("events", default: ["*"])
            for (i, e) in events.enumerated() where !EventType.isValidPattern(e) {
                diagnostics.add("\(h["events"].path)[\(i)]", "unknown event type \(e) (use *, a family such as message.*, or a type such as message.status)")
            }
            var retry = RetrySchedule.standard
            if h["retry"].isPresent {
                let r = h["retry"]
                r.rejectUnknownKeys(["schedule", "jitter"])
                let delays = r.durations("schedule", default: [])
                if !delays.isEmpty { retry.delays = delays }
                if let j = r.string("jitter") {
                    if let v = Double(j), (0...1).contains(v) { retry.jitter = v } else { r["jitter"].problem("expected a fraction between 0 and 1") }
                }
            }
            var headers: [(String, String)] = []
            if case .object(let o)? = h["headers"].value {
                let fields = h["headers"]
                for k in o.keys.sorted() {
                    if Self.headersTheSinkSets.contains(k.lowercased()) {
                        fields[k].problem("set by the daemon for every request; it cannot be configured")
                        continue
                    }
                    if case .object? = o[k] {
                        // `{ file: <path> }`: a value to keep out of the config file, such as a
                        // helpdesk's API token, read like any `*_file` secret.
                        let entry = fields[k]
                        entry.rejectUnknownKeys(["file"])
                        guard entry["file"].isPresent else { entry.problem("expected a header value, or { file: <path> }"); continue }
                        if let v = entry.secretFile("file") {
                            // Named, never shown: the value is a secret.
                            if v.contains(where: \.isNewline) { entry["file"].problem("the file's value has a line break inside") }
                            else { headers.append((k, v)) }
                        }
                    } else if let v = fields.string(k) {
                        if v.contains(where: \.isNewline) { fields[k].problem("a header value cannot contain a line break") }
                        else { headers.append((k, v)) }
                    }
                }
            }
            helpdesks.append(HelpdeskConfig(name: name, kind: kind, secret: secret, events: events,
                                            timeout: h.seconds("timeout", default: 15), maxInFlight: h.int("max_in_flight", default: 64, range: 1...1024)!,
                                            retry: retry, headers: headers))
        }

        var channels: [ChannelConfig] = []
        var ids = Set<String>()
        for c in root.list("channels") {
            guard let id = c.string("id", required: true), let type = c.string("type", required: true) else { continue }
            if !ids.insert(id).inserted { c["id"].problem("duplicate channel id \(id)") }
            if id.isEmpty || id.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
                c["id"].problem("use letters, digits, - and _ only (it is part of the webhook URL)")
            }
            if !adapterKinds.contains(type) {
                c["type"].problem("unknown channel type \(type) (known: \(adapterKinds.sorted().joined(separator: ", ")))")
                continue
            }
            channels.append(ChannelConfig(id: id, type: type, node: c))
        }

        let logging = root["logging"]
        logging.rejectUnknownKeys(["level"])
        let level = logging.string("level", default: "info")!
        if !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(level) {
            logging["level"].problem("expected trace, debug, info, notice, warning, error or critical")
        }
        let outbound = root["outbound"]
        outbound.rejectUnknownKeys(["retry"])
        outbound["retry"].rejectUnknownKeys(["schedule", "jitter"])
        var sendRetry = RetrySchedule.outbound
        let sched = outbound["retry"].durations("schedule", default: [])
        if !sched.isEmpty { sendRetry.delays = sched }
        if let j = outbound["retry"].string("jitter") {
            if let v = Double(j), (0...1).contains(v) { sendRetry.jitter = v } else { outbound["retry"]["jitter"].problem("expected a fraction between 0 and 1") }
        }

        let instance = root.string("instance") ?? ProcessInfo.processInfo.hostName
        if instance.isEmpty { root["instance"].problem("must not be empty (it names this daemon in every event's source)") }
        let grace = server.seconds("shutdown_grace", default: 20)
        if grace < 1 { server["shutdown_grace"].problem("at least 1s: the send and delivery workers need time to record what they finished") }
        var loaded = SwitchboardConfig(
            instance: instance, listen: listen, publicURL: publicURL, apiListen: apiListen, apiSocket: apiSocket, apiSocketMode: socketMode,
            tokens: tokens, storagePath: storagePath, durability: durability, mediaPath: mediaPath, mediaMaxBytes: maxBytes,
            helpdesks: helpdesks, channels: channels, logLevel: level, heartbeatSeconds: api.seconds("heartbeat", default: 15),
            sendRetry: sendRetry, shutdownGraceSeconds: grace, trustedProxies: trustedProxies)
        loaded.apiSocketGroup = socketGroup
        loaded.eventRetentionSeconds = eventRetention
        loaded.dedupeRetentionSeconds = dedupeRetention
        return loaded
    }
}
