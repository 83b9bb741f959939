import EmailParsing
import Foundation
import Logging
import NIOCore
import NIOPosix

/// Where the LMTP listener binds: `host:port` (IPv6 as `[::1]:2424`) or a Unix socket path.
public enum LMTPListenAddress: Sendable, Hashable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// `127.0.0.1:2424`, `[::1]:2424`, `/run/switchboard/lmtp.sock`, `unix:/path`.
    public static func parse(_ s: String) -> LMTPListenAddress? {
        let t = s.trimmingCharacters(in: .whitespaces)
        if t.hasPrefix("unix:") { let p = String(t.dropFirst(5)); return p.isEmpty ? nil : .unix(path: p) }
        if t.hasPrefix("/") || t.hasPrefix("./") { return .unix(path: t) }
        guard let colon = t.lastIndex(of: ":"), let port = Int(t[t.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(t[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let h, let p): return h.contains(":") ? "[\(h)]:\(p)" : "\(h):\(p)"
        case .unix(let p): return p
        }
    }
}

/// The outcome of handing one received message to the store.
public enum LMTPDelivery: Sendable, Hashable {
    /// Committed (or a duplicate of a committed message): `250`.
    case accepted(detail: String)
    /// Not stored now, try again later: `451`.
    case temporaryFailure(detail: String)
    /// Refused for good: `554`.
    case rejected(detail: String)
}

/// An RFC 2033 LMTP server (and, after `EHLO`/`HELO`, a plain SMTP one) for an MTA's transport
/// map: `LHLO`, `MAIL FROM` (with `SIZE=`), `RCPT TO` (each recipient checked on its own),
/// `DATA` with dot-unstuffing and bare-LF tolerance, `RSET`, `NOOP`, `VRFY`, `QUIT`. Commands may
/// be pipelined. After the final dot, LMTP answers once per accepted recipient, and only after
/// `deliver` returned — i.e. after the store commit; a store failure answers 4xx so the MTA
/// retries. A message larger than `maxMessageBytes` is refused with 552 (it is still read to
/// the end, so the session stays in sync).
public struct LMTPServer: Sendable {
    public typealias Deliver = @Sendable (_ raw: [UInt8], _ mailFrom: String, _ recipients: [String]) async -> LMTPDelivery

    public var hostname: String
    public var maxMessageBytes: Int
    public var maxRecipients: Int
    public var maxLineBytes: Int
    /// Whether a RCPT TO address is ours (others get 550 5.1.1).
    public var acceptsRecipient: @Sendable (String) -> Bool
    public var deliver: Deliver
    public var logger: Logger

    public init(hostname: String = "switchboard", maxMessageBytes: Int = 25 * 1024 * 1024, maxRecipients: Int = 100,
                maxLineBytes: Int = 8192, logger: Logger = Logger(label: "lmtp"),
                acceptsRecipient: @escaping @Sendable (String) -> Bool, deliver: @escaping Deliver) {
        self.hostname = hostname; self.maxMessageBytes = maxMessageBytes; self.maxRecipients = maxRecipients
        self.maxLineBytes = maxLineBytes; self.logger = logger; self.acceptsRecipient = acceptsRecipient; self.deliver = deliver
    }

    /// Binds and serves until the task is cancelled. `onBound` gets the bound address (the real
    /// port when 0 was asked for).
    public func run(listen: LMTPListenAddress, onBound: @Sendable (String) -> Void = { _ in }) async throws {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
        switch listen {
        case .tcp(let host, let port):
            server = try await bootstrap.bind(host: host, port: port) { child in
                child.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child) }
            }
        case .unix(let path):
            server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { child in
                child.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child) }
            }
        }
        let bound: String
        switch listen {
        case .unix(let path): bound = path
        case .tcp(let host, _): bound = LMTPListenAddress.tcp(host: host, port: server.channel.localAddress?.port ?? 0).description
        }
        onBound(bound)
        logger.info("LMTP listener ready", metadata: ["listen": "\(bound)"])
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask {
                        do { try await self.serve(connection) } catch {
                            self.logger.debug("LMTP session ended", metadata: ["error": "\(error)"])
                        }
                    }
                }
            }
        }
    }

    /// One session.
    func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws {
        try await connection.executeThenClose { inbound, outbound in
            var session = LMTPSession(server: self)
            try await outbound.write(ByteBuffer(string: "220 \(hostname) LMTP Switchboard ready\r\n"))
            var pending: [UInt8] = []
            for try await chunk in inbound {
                pending.append(contentsOf: chunk.readableBytesView)
                var start = 0
                var replies = ""
                var quit = false
                while let lf = pending[start...].firstIndex(of: 10) {
                    var end = lf
                    if end > start && pending[end - 1] == 13 { end -= 1 }
                    let line = Array(pending[start..<end])
                    start = lf + 1
                    switch session.feed(line) {
                    case .none: break
                    case .reply(let r): replies += r
                    case .deliver:
                        // Answer what came before the message, then store it.
                        if !replies.isEmpty { try await outbound.write(ByteBuffer(string: replies)); replies = "" }
                        replies += await session.finishData()
                    case .quit(let r): replies += r; quit = true
                    }
                    if quit { break }
                }
                pending.removeFirst(start)
                if !session.inData && pending.count > maxLineBytes {
                    replies += "500 5.5.2 Line too long\r\n"
                    pending.removeAll()
                }
                if !replies.isEmpty { try await outbound.write(ByteBuffer(string: replies)) }
                if quit { return }
            }
        }
    }
}

/// The per-connection state machine (no I/O, so it is testable line by line).
struct LMTPSession {
    enum Step { case none, reply(String), deliver, quit(String) }

    let server: LMTPServer
    var greeted = false
    var lmtp = true
    var mailFrom: String? = nil
    var recipients: [String] = []
    var inData = false
    var data: [UInt8] = []
    var dataTooLarge = false

    init(server: LMTPServer) { self.server = server }

    mutating func reset() { mailFrom = nil; recipients = []; inData = false; data = []; dataTooLarge = false }

    mutating func feed(_ line: [UInt8]) -> Step {
        if inData {
            if line == [46] { inData = false; return .deliver }           // "."
            let content = line.first == 46 ? line.dropFirst() : line[...]  // dot-unstuffing
            if !dataTooLarge {
                if data.count + content.count + 2 > server.maxMessageBytes {
                    dataTooLarge = true
                    data = []
                } else {
                    data.append(contentsOf: content)
                    data.append(13); data.append(10)
                }
            }
            return .none
        }
        let text = String(decoding: line, as: UTF8.self)
        let space = text.firstIndex(of: " ")
        let verb = (space.map { String(text[..<$0]) } ?? text).uppercased()
        let arg = space.map { String(text[text.index(after: $0)...]).trimmingCharacters(in: .whitespaces) } ?? ""
        switch verb {
        case "LHLO", "EHLO":
            lmtp = verb == "LHLO"
            greeted = true
            reset()
            return .reply("250-\(server.hostname)\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE \(server.maxMessageBytes)\r\n")
        case "HELO":
            lmtp = false; greeted = true; reset()
            return .reply("250 \(server.hostname)\r\n")
        case "MAIL":
            guard greeted else { return .reply("503 5.5.1 Send LHLO first\r\n") }
            guard mailFrom == nil else { return .reply("503 5.5.1 Nested MAIL command\r\n") }
            guard arg.uppercased().hasPrefix("FROM:"), let (address, params) = Self.path(String(arg.dropFirst(5))) else {
                return .reply("501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            }
            for p in params {
                let kv = p.split(separator: "=", maxSplits: 1)
                if kv.first?.uppercased() == "SIZE", kv.count == 2, let n = Int(kv[1]), n > server.maxMessageBytes {
                    return .reply("552 5.3.4 Message size exceeds fixed limit of \(server.maxMessageBytes) bytes\r\n")
                }
            }
            mailFrom = address
            return .reply("250 2.1.0 Sender OK\r\n")
        case "RCPT":
            guard mailFrom != nil else { return .reply("503 5.5.1 Need MAIL command\r\n") }
            guard arg.uppercased().hasPrefix("TO:"), let (address, _) = Self.path(String(arg.dropFirst(3))), !address.isEmpty else {
                return .reply("501 5.5.4 Syntax: RCPT TO:<address>\r\n")
            }
            guard recipients.count < server.maxRecipients else { return .reply("452 4.5.3 Too many recipients\r\n") }
            guard server.acceptsRecipient(address.lowercased()) else { return .reply("550 5.1.1 <\(address)> User doesn't exist\r\n") }
            recipients.append(address)
            return .reply("250 2.1.5 Recipient OK\r\n")
        case "DATA":
            guard mailFrom != nil else { return .reply("503 5.5.1 Need MAIL command\r\n") }
            guard !recipients.isEmpty else { return .reply("503 5.5.1 No valid recipients\r\n") }
            inData = true; data = []; dataTooLarge = false
            return .reply("354 Start mail input; end with <CRLF>.<CRLF>\r\n")
        case "RSET":
            reset(); return .reply("250 2.0.0 OK\r\n")
        case "NOOP":
            return .reply("250 2.0.0 OK\r\n")
        case "VRFY":
            return .reply("252 2.5.2 Cannot VRFY; send some mail\r\n")
        case "QUIT":
            return .quit("221 2.0.0 \(server.hostname) closing connection\r\n")
        case "STARTTLS", "AUTH", "BDAT":
            return .reply("502 5.5.1 Not implemented\r\n")
        case "":
            return .reply("500 5.5.2 Empty command\r\n")
        default:
            return .reply("500 5.5.2 Unknown command\r\n")
        }
    }

    /// Stores the message just read and answers: one line per recipient (LMTP) or one (SMTP).
    mutating func finishData() async -> String {
        defer { reset() }
        let count = lmtp ? recipients.count : 1
        if dataTooLarge {
            return String(repeating: "552 5.3.4 Message too big for this system (limit \(server.maxMessageBytes) bytes)\r\n", count: count)
        }
        let outcome = await server.deliver(data, mailFrom ?? "", recipients)
        var lines = ""
        for i in 0..<count {
            let who = lmtp ? "<\(recipients[i])> " : ""
            switch outcome {
            case .accepted(let detail): lines += "250 2.0.0 \(who)\(detail)\r\n"
            case .temporaryFailure(let detail): lines += "451 4.3.0 \(who)\(detail)\r\n"
            case .rejected(let detail): lines += "554 5.6.0 \(who)\(detail)\r\n"
            }
        }
        return lines
    }

    /// `<address> PARAM=…` → the address (angle brackets removed; `<>` is "") and the parameters.
    static func path(_ s: String) -> (String, [String])? {
        let t = s.trimmingCharacters(in: .whitespaces)
        if t.hasPrefix("<") {
            guard let close = t.firstIndex(of: ">") else { return nil }
            var addr = String(t[t.index(after: t.startIndex)..<close])
            // Source routes (`<@a,@b:user@c>`) are obsolete: keep the mailbox.
            if addr.hasPrefix("@"), let colon = addr.firstIndex(of: ":") { addr = String(addr[addr.index(after: colon)...]) }
            let rest = t[t.index(after: close)...].split(separator: " ").map(String.init)
            return (addr, rest)
        }
        let pieces = t.split(separator: " ").map(String.init)
        guard let first = pieces.first else { return nil }
        return (first, Array(pieces.dropFirst()))
    }
}
