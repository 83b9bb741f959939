import EmailParsing
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

public struct IMAPError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    /// NO/BAD at LOGIN/AUTHENTICATE.
    public var isAuthentication: Bool = false
    /// The server's text when it answered a command NO or BAD (the connection is fine); nil
    /// for broken connections and protocol errors.
    public var refusal: String? = nil
    public var description: String { message }
}

public struct IMAPClientConfig: Sendable {
    public var host: String
    public var port: Int
    public var tls: SMTPTLSMode
    public var username: String
    public var password: String
    /// An OAuth 2 access token file (refreshed by the operator): AUTHENTICATE XOAUTH2, re-read at
    /// every login. When set, `password` is unused.
    public var oauthTokenFile: String?
    public var caFile: String?
    public var verifyCertificate: Bool
    public var timeout: TimeAmount
    public init(host: String, port: Int, tls: SMTPTLSMode, username: String, password: String, oauthTokenFile: String? = nil,
                caFile: String? = nil, verifyCertificate: Bool = true, timeout: TimeAmount = .seconds(60)) {
        self.host = host; self.port = port; self.tls = tls; self.username = username; self.password = password
        self.oauthTokenFile = oauthTokenFile
        self.caFile = caFile; self.verifyCertificate = verifyCertificate; self.timeout = timeout
    }
}

/// One IMAP session (a tagged command at a time).
public struct IMAPSession {
    var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let channel: any Channel
    var buffer: [UInt8] = []
    var nextTag = 1
    public var capabilities: Set<String> = []
    /// How long to wait for the server's next bytes before giving the connection up (`imap.timeout`;
    /// longer while in IDLE). A dead connection or a hung server then ends the session, and it
    /// reconnects, instead of freezing the mailbox while the channel still shows connected.
    var readTimeout: TimeAmount = .seconds(60)
    /// The server announced more mail (`EXISTS` above the count it last gave) during a
    /// command: sync again before IDLE.
    var sawExists = false
    /// The mailbox's message count as the server last told it (EXISTS, minus EXPUNGEs since).
    var knownExists: Int64? = nil

    mutating func noteMailboxSize(_ r: IMAPResponse) {
        guard case .data(let v) = r, v.count >= 2, let n = v[0].number else { return }
        switch v[1].text?.uppercased() {
        case "EXISTS":
            if let known = knownExists, n > known { sawExists = true }
            knownExists = n
        case "EXPUNGE":
            knownExists = knownExists.map { max(0, $0 - 1) }
        default:
            break
        }
    }

    init(inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, channel: any Channel) {
        self.inbound = inbound; self.outbound = outbound; self.channel = channel
    }

    mutating func next() async throws -> IMAPResponse {
        while true {
            if let (r, n) = try IMAPParser.parse(buffer) {
                buffer.removeFirst(n)
                if case .status("BYE", let text) = r { throw IMAPError(message: "server said BYE: \(text)") }
                return r
            }
            let channel = self.channel
            let limit = readTimeout
            let fired = Mutex(false)
            let watchdog = channel.eventLoop.scheduleTask(in: limit) {
                fired.withLock { $0 = true }
                channel.close(promise: nil)
            }
            let chunk = try await inbound.next()
            watchdog.cancel()
            guard let chunk else {
                if fired.withLock({ $0 }) {
                    throw IMAPError(message: "no answer from the server within \(limit.nanoseconds / 1_000_000_000) s (imap.timeout)")
                }
                throw IMAPError(message: "the server closed the connection")
            }
            buffer.append(contentsOf: chunk.readableBytesView)
        }
    }

    /// Sends `tag command` and collects the untagged responses until the tagged answer; throws
    /// on NO/BAD.
    public mutating func command(_ command: String, logged: String? = nil) async throws -> [IMAPResponse] {
        let tag = "A\(nextTag)"
        nextTag += 1
        try await outbound.write(ByteBuffer(string: "\(tag) \(command)\r\n"))
        var untagged: [IMAPResponse] = []
        while true {
            let r = try await next()
            if case .continuation = r {
                // Only AUTHENTICATE gets one here (an XOAUTH2 error challenge): an empty line ends it.
                try await outbound.write(ByteBuffer(string: "\r\n"))
                continue
            }
            if case .tagged(let t, let status, let text) = r, t == tag {
                guard status == "OK" else {
                    throw IMAPError(message: "\(logged ?? command.split(separator: " ").first.map(String.init) ?? command) → \(status) \(text)",
                                    isAuthentication: command.hasPrefix("LOGIN") || command.hasPrefix("AUTHENTICATE"),
                                    refusal: text)
                }
                untagged.append(.status(status: "OK", text: text))
                return untagged
            }
            noteMailboxSize(r)
            untagged.append(r)
        }
    }

    mutating func readCapabilities(from responses: [IMAPResponse]) {
        for r in responses {
            if case .data(let v) = r, v.first?.text?.uppercased() == "CAPABILITY" {
                capabilities = Set(v.dropFirst().compactMap { $0.text?.uppercased() })
            }
            if case .status(_, let text) = r, text.uppercased().hasPrefix("[CAPABILITY ") {
                let inner = text.dropFirst(12).prefix { $0 != "]" }
                capabilities = Set(inner.split(separator: " ").map { $0.uppercased() })
            }
        }
    }

    /// Connects, upgrades to TLS as configured and logs in (AUTHENTICATE PLAIN when offered, else LOGIN).
    static func open(_ config: IMAPClientConfig) async throws -> (NIOAsyncChannel<ByteBuffer, ByteBuffer>, NIOSSLContext?) {
        var ssl: NIOSSLContext? = nil
        if config.tls != .none {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let ca = config.caFile { tls.trustRoots = .file(ca) }
            if !config.verifyCertificate { tls.certificateVerification = .none }
            ssl = try NIOSSLContext(configuration: tls)
        }
        let sslContext = ssl
        let serverName = SMTPClient.isIPAddress(config.host) ? nil : config.host
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(config.timeout)
            .connect(host: config.host, port: config.port) { ch in
                ch.eventLoop.makeCompletedFuture {
                    if config.tls == .implicit, let sslContext {
                        try ch.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                    }
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
                }
            }
        return (channel, sslContext)
    }

    mutating func login(_ config: IMAPClientConfig, sslContext: NIOSSLContext?) async throws {
        let greeting = try await next()
        guard case .status(let s, let text) = greeting, s == "OK" || s == "PREAUTH" else { throw IMAPError(message: "unexpected greeting \(greeting)") }
        readCapabilities(from: [.status(status: s, text: text)])
        if capabilities.isEmpty { readCapabilities(from: try await command("CAPABILITY")) }
        if config.tls == .starttls {
            guard capabilities.contains("STARTTLS"), let sslContext else { throw IMAPError(message: "the server does not offer STARTTLS") }
            _ = try await command("STARTTLS")
            guard buffer.isEmpty else { throw IMAPError(message: "unexpected data after STARTTLS") }
            let serverName = SMTPClient.isIPAddress(config.host) ? nil : config.host
            let channel = self.channel
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: serverName),
                                                               position: .first)
            }.get()
            readCapabilities(from: try await command("CAPABILITY"))
        }
        // Servers may advertise more (IDLE, MOVE, UIDPLUS) once logged in; read them again
        // unless the login's OK carried them.
        let beforeLogin = capabilities
        let loggedIn: [IMAPResponse]
        if let tokenFile = config.oauthTokenFile {
            let token: String
            do { token = try readOAuthToken(tokenFile) } catch { throw IMAPError(message: "\(error)", isAuthentication: true) }
            loggedIn = try await command("AUTHENTICATE XOAUTH2 \(xoauth2(user: config.username, token: token))", logged: "AUTHENTICATE XOAUTH2")
        } else if capabilities.contains("AUTH=PLAIN") && capabilities.contains("SASL-IR") {
            let token = Data([0] + Array(config.username.utf8) + [0] + Array(config.password.utf8)).base64EncodedString()
            loggedIn = try await command("AUTHENTICATE PLAIN \(token)", logged: "AUTHENTICATE PLAIN")
        } else {
            loggedIn = try await command("LOGIN \(IMAPParser.quoted(config.username)) \(IMAPParser.quoted(config.password))", logged: "LOGIN")
        }
        capabilities = []
        readCapabilities(from: loggedIn)
        if capabilities.isEmpty { readCapabilities(from: try await command("CAPABILITY")) }
        if capabilities.isEmpty { capabilities = beforeLogin }
    }

    /// SELECT: (UIDVALIDITY, UIDNEXT).
    mutating func select(_ mailbox: String) async throws -> (uidValidity: Int64, uidNext: Int64?) {
        let r = try await command("SELECT \(IMAPParser.mailbox(mailbox))")
        var validity: Int64? = nil, next: Int64? = nil
        for case .status(_, let text) in r {
            let t = text.uppercased()
            if t.hasPrefix("[UIDVALIDITY ") { validity = Int64(t.dropFirst(13).prefix { $0.isNumber }) }
            if t.hasPrefix("[UIDNEXT ") { next = Int64(t.dropFirst(9).prefix { $0.isNumber }) }
        }
        guard let validity else { throw IMAPError(message: "SELECT \(mailbox) gave no UIDVALIDITY") }
        return (validity, next)
    }

    /// UIDs above `after`, ascending (`n:*` always includes the last message, so filter).
    mutating func uids(after: Int64) async throws -> [Int64] {
        try await search("UID \(after + 1):*").filter { $0 > after }
    }

    /// UIDs from 1 through `last` not marked `\Deleted` (a COPY-and-delete move without
    /// UIDPLUS leaves those until an expunge), ascending.
    mutating func uids(through last: Int64) async throws -> [Int64] {
        guard last >= 1 else { return [] }
        return try await search("UID 1:\(last) UNDELETED").filter { $0 <= last }
    }

    private mutating func search(_ criteria: String) async throws -> [Int64] {
        let r = try await command("UID SEARCH \(criteria)")
        var out: [Int64] = []
        for case .data(let v) in r where v.first?.text?.uppercased() == "SEARCH" {
            out += v.dropFirst().compactMap(\.number)
        }
        return out.sorted()
    }

    /// RFC822.SIZE of a message.
    mutating func size(uid: Int64) async throws -> Int64? {
        let r = try await command("UID FETCH \(uid) (UID RFC822.SIZE)")
        for case .data(let v) in r where v.count >= 3 && v[1].text?.uppercased() == "FETCH" {
            guard case .list(let items) = v[2] else { continue }
            var i = 0
            var size: Int64? = nil, gotUID: Int64? = nil
            while i + 1 < items.count {
                let key = items[i].text?.uppercased() ?? ""
                if key == "UID" { gotUID = items[i + 1].number }
                if key == "RFC822.SIZE" { size = items[i + 1].number }
                i += 2
            }
            if gotUID == uid || gotUID == nil, let size { return size }
        }
        return nil
    }

    /// The whole message (or only its header block), without setting \Seen.
    mutating func fetch(uid: Int64, headerOnly: Bool = false) async throws -> [UInt8]? {
        let want = headerOnly ? "BODY[HEADER]" : "BODY[]"
        let r = try await command("UID FETCH \(uid) (UID \(headerOnly ? "BODY.PEEK[HEADER]" : "BODY.PEEK[]"))")
        for case .data(let v) in r where v.count >= 3 && v[1].text?.uppercased() == "FETCH" {
            guard case .list(let items) = v[2] else { continue }
            var body: [UInt8]? = nil
            var gotUID: Int64? = nil
            var i = 0
            while i + 1 < items.count {
                let key = items[i].text?.uppercased() ?? ""
                if key == "UID" { gotUID = items[i + 1].number }
                if key == want { body = items[i + 1].bytes }
                i += 2
            }
            if gotUID == uid || gotUID == nil, let body { return body }
        }
        return nil
    }

    /// IDLE (RFC 2177) until the server reports new mail (`EXISTS`) or `maxSeconds` pass, then
    /// DONE. Returns whether new mail was announced. Servers without IDLE: false at once.
    mutating func idle(maxSeconds: Double) async throws -> Bool {
        guard capabilities.contains("IDLE") else { return false }
        // In IDLE the server is silent by design until maxSeconds (its own keepalives aside).
        let saved = readTimeout
        readTimeout = max(readTimeout, .milliseconds(Int64(maxSeconds * 1000)) + .seconds(60))
        defer { readTimeout = saved }
        let tag = "A\(nextTag)"
        nextTag += 1
        try await outbound.write(ByteBuffer(string: "\(tag) IDLE\r\n"))
        // The continuation, or a refusal.
        while true {
            let r = try await next()
            if case .continuation = r { break }
            if case .tagged(let t, let status, let text) = r, t == tag { throw IMAPError(message: "IDLE → \(status) \(text)") }
        }
        let done = DoneOnce(outbound)
        var sawNew = false
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int64(maxSeconds * 1000)))
                if !Task.isCancelled { try? await done.send() }
            }
            defer { group.cancelAll() }
            while true {
                let r = try await next()
                noteMailboxSize(r)
                if case .data(let v) = r, v.count >= 2, v[1].text?.uppercased() == "EXISTS" {
                    sawNew = true
                    try await done.send()
                }
                if case .tagged(let t, let status, let text) = r, t == tag {
                    guard status == "OK" else { throw IMAPError(message: "IDLE → \(status) \(text)") }
                    return
                }
            }
        }
        return sawNew
    }
}

/// Sends `DONE` once, from whichever comes first: new mail or the re-IDLE timer.
final class DoneOnce: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let sent = Mutex(false)
    init(_ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) { self.outbound = outbound }
    func send() async throws {
        guard sent.withLock({ s in defer { s = true }; return !s }) else { return }
        try await outbound.write(ByteBuffer(string: "DONE\r\n"))
    }
}
