import EmailParsing
import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// How the SMTP connection is protected.
public enum SMTPTLSMode: String, Sendable, Hashable, CaseIterable {
    /// `STARTTLS` after EHLO; refuse to continue when the server doesn't offer it.
    case starttls
    /// TLS from the first byte (port 465).
    case implicit
    /// Plain text (a local relay on loopback; tests).
    case none
}

public struct SMTPClientConfig: Sendable {
    public var host: String
    public var port: Int
    public var tls: SMTPTLSMode
    public var username: String?
    public var password: String?
    /// A file holding an OAuth 2 access token (refreshed by the operator): AUTH XOAUTH2, re-read
    /// for every connection.
    public var oauthTokenFile: String?
    /// PEM file of the CA that signs the server's certificate (self-signed test servers).
    public var caFile: String?
    /// Whether to check the certificate (off only for tests and broken relays).
    public var verifyCertificate: Bool
    /// Our name in EHLO.
    public var heloName: String
    public var timeout: TimeAmount

    public init(host: String, port: Int, tls: SMTPTLSMode = .starttls, username: String? = nil, password: String? = nil,
                oauthTokenFile: String? = nil, caFile: String? = nil, verifyCertificate: Bool = true, heloName: String = "localhost",
                timeout: TimeAmount = .seconds(60)) {
        self.host = host; self.port = port; self.tls = tls; self.username = username; self.password = password
        self.oauthTokenFile = oauthTokenFile
        self.caFile = caFile; self.verifyCertificate = verifyCertificate; self.heloName = heloName; self.timeout = timeout
    }
}

/// An SMTP failure: `code` is the server's reply code (0 when the connection itself failed).
public struct SMTPError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var enhanced: String?
    public var message: String
    /// The command that got the answer (`RCPT TO`, `DATA`…), or `connect`.
    public var stage: String
    /// 4xx and connection problems: try again later.
    public var isTemporary: Bool { code == 0 || (400..<500).contains(code) }
    public var description: String { code == 0 ? "\(stage): \(message)" : "\(stage): \(code) \(message)" }
}

/// What the server said about an accepted message.
public struct SMTPSendReport: Sendable, Hashable {
    /// The final reply to DATA (often carries the server's queue id).
    public var response: String
    public var accepted: [String]
    /// Recipients refused at RCPT (the others still got the message).
    public var rejected: [String: String]
}

/// A small SMTP submission client on SwiftNIO: EHLO, STARTTLS (or implicit TLS), AUTH PLAIN or
/// LOGIN, MAIL FROM (with SIZE when offered), RCPT TO per recipient (one refusal doesn't stop the
/// others, except a refusal of `required`), DATA with dot-stuffing, QUIT. One connection per
/// message.
public struct SMTPClient: Sendable {
    public var config: SMTPClientConfig
    public init(config: SMTPClientConfig) { self.config = config }

    /// `required`: a recipient the message is pointless without (the customer, when others are
    /// copied). Its refusal ends the exchange before DATA, so nobody gets the message and a
    /// retry later does not send the copies twice.
    public func send(from: String, to recipients: [String], required: String? = nil, message: [UInt8]) async throws -> SMTPSendReport {
        let config = self.config
        let sslContext: NIOSSLContext?
        if config.tls != .none {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let ca = config.caFile { tls.trustRoots = .file(ca) }
            if !config.verifyCertificate { tls.certificateVerification = .none }
            do { sslContext = try NIOSSLContext(configuration: tls) } catch {
                throw SMTPError(code: 0, message: "TLS setup failed: \(error)", stage: "connect")
            }
        } else {
            sslContext = nil
        }
        let serverName = Self.isIPAddress(config.host) ? nil : config.host
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(config.timeout)
                .connect(host: config.host, port: config.port) { ch in
                    ch.eventLoop.makeCompletedFuture {
                        if config.tls == .implicit, let sslContext {
                            try ch.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: serverName))
                        }
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
                    }
                }
        } catch {
            throw SMTPError(code: 0, message: "cannot connect to \(config.host):\(config.port): \(error)", stage: "connect")
        }
        do {
            return try await withTimeout(config.timeout * 3) {
                try await channel.executeThenClose { inbound, outbound in
                    var conn = SMTPConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound)
                    return try await Self.dialogue(&conn, channel: channel.channel, sslContext: sslContext, serverName: serverName,
                                                   config: config, from: from, recipients: recipients, required: required, message: message)
                }
            }
        } catch let e as SMTPError {
            throw e
        } catch {
            // TLS handshake failures (an untrusted certificate) and I/O errors.
            throw SMTPError(code: 0, message: "\(error)", stage: error is NIOSSLError ? "TLS" : "connection")
        }
    }

    static func dialogue(_ c: inout SMTPConnection, channel: any Channel, sslContext: NIOSSLContext?, serverName: String?,
                         config: SMTPClientConfig, from: String, recipients: [String], required: String?, message: [UInt8]) async throws -> SMTPSendReport {
        try c.expect(try await c.reply(), 220, stage: "greeting")
        var ehlo = try await c.command("EHLO \(config.heloName)")
        if ehlo.code != 250 {
            try c.expect(try await c.command("HELO \(config.heloName)"), 250, stage: "HELO")
            ehlo = SMTPReply(code: 250, lines: [])
        }
        var extensions = ehlo.extensions
        if config.tls == .starttls {
            guard extensions["STARTTLS"] != nil, let sslContext else {
                throw SMTPError(code: 0, message: "the server does not offer STARTTLS (set smtp.tls: none to send in plain text)",
                                stage: "STARTTLS")
            }
            try c.expect(try await c.command("STARTTLS"), 220, stage: "STARTTLS")
            // Nothing may follow the 220 in plain text (STARTTLS command injection).
            guard c.buffer.isEmpty else { throw SMTPError(code: 0, message: "unexpected data after STARTTLS", stage: "STARTTLS") }
            try await channel.eventLoop.submit {
                let handler = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                try channel.pipeline.syncOperations.addHandler(handler, position: .first)
            }.get()
            do { ehlo = try await c.command("EHLO \(config.heloName)") } catch {
                // The handshake runs on the first bytes after STARTTLS: its failure (an untrusted
                // certificate) surfaces here, as an error or as a closed connection.
                throw SMTPError(code: 0, message: "TLS handshake failed: \(error)", stage: "TLS")
            }
            try c.expect(ehlo, 250, stage: "EHLO")
            extensions = ehlo.extensions
        }
        if let user = config.username, let tokenFile = config.oauthTokenFile {
            let token = try readOAuthToken(tokenFile)
            var reply = try await c.command("AUTH XOAUTH2 \(xoauth2(user: user, token: token))", redacted: "AUTH XOAUTH2 <redacted>")
            // A failure comes as a 334 challenge with a JSON error; an empty line ends the exchange.
            if reply.code == 334 { reply = try await c.command("") }
            try c.expect(reply, 235, stage: "AUTH")
        } else if let user = config.username, let password = config.password {
            let mechanisms = Set((extensions["AUTH"] ?? "").uppercased().split(separator: " ").map(String.init))
            if mechanisms.contains("PLAIN") || !mechanisms.contains("LOGIN") {
                let token = Data(([0] + Array(user.utf8) + [0] + Array(password.utf8))).base64EncodedString()
                try c.expect(try await c.command("AUTH PLAIN \(token)", redacted: "AUTH PLAIN <redacted>"), 235, stage: "AUTH")
            } else {
                try c.expect(try await c.command("AUTH LOGIN"), 334, stage: "AUTH")
                try c.expect(try await c.command(Data(user.utf8).base64EncodedString(), redacted: "<user>"), 334, stage: "AUTH")
                try c.expect(try await c.command(Data(password.utf8).base64EncodedString(), redacted: "<password>"), 235, stage: "AUTH")
            }
        }
        var mail = "MAIL FROM:<\(from)>"
        if extensions["SIZE"] != nil { mail += " SIZE=\(message.count)" }
        if extensions["8BITMIME"] != nil, message.contains(where: { $0 >= 0x80 }) { mail += " BODY=8BITMIME" }
        try c.expect(try await c.command(mail), 250, stage: "MAIL FROM")
        var accepted: [String] = []
        var rejected: [String: String] = [:]
        var lastRefusal: SMTPError? = nil
        for r in recipients {
            let reply = try await c.command("RCPT TO:<\(r)>")
            if reply.code == 250 || reply.code == 251 {
                accepted.append(r)
            } else {
                rejected[r] = "\(reply.code) \(reply.text)"
                let e = SMTPError(code: reply.code, enhanced: reply.enhanced, message: reply.text, stage: "RCPT TO")
                if r == required {
                    _ = try? await c.command("QUIT")
                    throw e
                }
                // A temporary refusal decides over a permanent one: the message can still go out later.
                if lastRefusal == nil || e.isTemporary { lastRefusal = e }
            }
        }
        guard !accepted.isEmpty else {
            _ = try? await c.command("QUIT")
            throw lastRefusal ?? SMTPError(code: 554, message: "no recipients", stage: "RCPT TO")
        }
        try c.expect(try await c.command("DATA"), 354, stage: "DATA")
        try await c.outbound.write(ByteBuffer(bytes: dotStuffed(message)))
        let final = try await c.reply()
        try c.expect(final, 250, stage: "DATA")
        _ = try? await c.command("QUIT")
        return SMTPSendReport(response: "\(final.code) \(final.text)", accepted: accepted, rejected: rejected)
    }

    /// The message body for DATA: CRLF line ends, a leading `.` doubled, ended by `CRLF.CRLF`.
    static func dotStuffed(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 50 + 5)
        var atLineStart = true
        var i = 0
        while i < message.count {
            let b = message[i]
            if atLineStart && b == 46 { out.append(46) }
            if b == 10 {
                if out.last != 13 { out.append(13) }
                out.append(10)
                atLineStart = true
            } else {
                out.append(b)
                atLineStart = false
            }
            i += 1
        }
        if !(out.count >= 2 && out[out.count - 2] == 13 && out[out.count - 1] == 10) && !out.isEmpty { out += [13, 10] }
        out += [46, 13, 10]
        return out
    }

    static func isIPAddress(_ host: String) -> Bool {
        host.contains(":") || host.split(separator: ".").count == 4 && host.split(separator: ".").allSatisfy { Int($0) != nil }
    }
}

/// One SMTP reply: code and text lines.
struct SMTPReply: Sendable {
    var code: Int
    var lines: [String]
    var text: String { lines.joined(separator: " ") }
    var enhanced: String? {
        guard let first = lines.first?.split(separator: " ").first, first.split(separator: ".").count == 3,
              first.allSatisfy({ $0.isNumber || $0 == "." }) else { return nil }
        return String(first)
    }
    /// EHLO keywords (upper-cased) → parameters.
    var extensions: [String: String] {
        var out: [String: String] = [:]
        for line in lines.dropFirst() {
            let pieces = line.split(separator: " ", maxSplits: 1)
            guard let k = pieces.first else { continue }
            out[k.uppercased()] = pieces.count > 1 ? String(pieces[1]) : ""
        }
        return out
    }
}

/// Reads replies and writes commands over an async channel.
struct SMTPConnection {
    var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    var buffer: [UInt8] = []

    mutating func command(_ line: String, redacted: String? = nil) async throws -> SMTPReply {
        try await outbound.write(ByteBuffer(string: line + "\r\n"))
        return try await reply()
    }

    mutating func reply() async throws -> SMTPReply {
        var lines: [String] = []
        while true {
            let line = try await readLine()
            guard line.count >= 3, let code = Int(line.prefix(3)) else {
                throw SMTPError(code: 0, message: "malformed reply \(line.prefix(80).debugDescription)", stage: "reply")
            }
            lines.append(line.count > 4 ? String(line.dropFirst(4)) : "")
            let continued = line.count > 3 && line[line.index(line.startIndex, offsetBy: 3)] == "-"
            if !continued { return SMTPReply(code: code, lines: lines) }
        }
    }

    mutating func readLine() async throws -> String {
        while true {
            if let lf = buffer.firstIndex(of: 10) {
                var end = lf
                if end > 0 && buffer[end - 1] == 13 { end -= 1 }
                let line = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(lf + 1)
                return line
            }
            if buffer.count > 64 * 1024 { throw SMTPError(code: 0, message: "reply line too long", stage: "reply") }
            guard let chunk = try await inbound.next() else {
                throw SMTPError(code: 0, message: "the server closed the connection", stage: "reply")
            }
            buffer.append(contentsOf: chunk.readableBytesView)
        }
    }

    func expect(_ reply: SMTPReply, _ code: Int, stage: String) throws {
        guard reply.code == code else { throw SMTPError(code: reply.code, enhanced: reply.enhanced, message: reply.text, stage: stage) }
    }
}

/// Runs `body`, throwing a temporary `SMTPError` when it takes longer than `limit`.
func withTimeout<T: Sendable>(_ limit: TimeAmount, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .nanoseconds(limit.nanoseconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw SMTPError(code: 0, message: "timed out after \(limit.nanoseconds / 1_000_000_000) s", stage: "timeout")
        }
        return value
    }
}

/// The SASL XOAUTH2 initial response (Google, Microsoft): base64("user=…^Aauth=Bearer …^A^A").
public func xoauth2(user: String, token: String) -> String {
    Data(Array("user=\(user)\u{1}auth=Bearer \(token)\u{1}\u{1}".utf8)).base64EncodedString()
}

/// Reads the access token file (first line, trimmed); a missing or empty file is a login failure.
func readOAuthToken(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw SMTPError(code: 0, message: "cannot read the OAuth token file \(path)", stage: "AUTH")
    }
    let token = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init)?
        .trimmingCharacters(in: .whitespaces) ?? ""
    guard !token.isEmpty else { throw SMTPError(code: 0, message: "the OAuth token file \(path) is empty", stage: "AUTH") }
    return token
}
