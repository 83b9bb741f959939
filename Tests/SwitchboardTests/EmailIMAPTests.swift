import Foundation
import Testing
@testable import EmailAdapter
import EmailParsing
import NIOCore
import NIOPosix
@testable import SwitchboardCore
@testable import SwitchboardRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A free loopback TCP port (bound and released; the server binds it right after).
func freePort() -> Int { freePorts(1)[0] }

/// `count` distinct free loopback TCP ports. Each socket stays bound until all are picked:
/// released one at a time, the kernel may hand out the same port twice.
func freePorts(_ count: Int) -> [Int] {
    var fds: [Int32] = []
    defer { fds.forEach { close($0) } }
    return (0..<count).map { _ in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        fds.append(fd)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// A real Dovecot (IMAP + LMTP) in a temp dir on loopback ports, as in the reference note.
final class TestDovecot: Sendable {
    let dir: TempDir
    let process: Spawned
    let imapPort: Int
    let lmtpPort: Int
    let imapsPort: Int
    static let user = "agent@example.test"
    static let password = "secret"

    static var available: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/dovecot") }

    /// `tls`: a certificate and key: the server then offers STARTTLS on the imap port and
    /// implicit TLS on `imapsPort`. `users` all have `password`.
    /// `oauthIntrospection`: a token introspection URL; the server then also offers XOAUTH2
    /// (Dovecot's oauth2 passdb POSTs `token=…` there and wants `{"active": true, "username": …}`).
    static func start(tls: (cert: String, key: String)? = nil, users: [String] = [user], oauthIntrospection: String? = nil) async throws -> TestDovecot {
        // A free port can be taken by another test between freePort() and Dovecot's bind:
        // then try again with new ports.
        for attempt in 1... {
            do {
                return try await startOnce(tls: tls, users: users, oauthIntrospection: oauthIntrospection)
            } catch let e as DaemonError where attempt < 3
                && (e.message.contains("Address already in use") || e.message.contains("duplicate listener")) {
                continue
            }
        }
        fatalError("unreachable")
    }

    private static func startOnce(tls: (cert: String, key: String)?, users: [String], oauthIntrospection: String?) async throws -> TestDovecot {
        let dir = TempDir()
        chmod(dir.path, 0o755)
        let ports = freePorts(3)
        let imap = ports[0], lmtp = ports[1], imaps = tls == nil ? 0 : ports[2]
        for d in ["run", "state", "mail"] { try FileManager.default.createDirectory(atPath: dir.file(d), withIntermediateDirectories: true) }
        _ = try await Spawned.run("chown", ["nobody:nogroup", dir.file("mail")])
        try users.map { "\($0):{PLAIN}\(password)::::::\n" }.joined().write(toFile: dir.file("users"), atomically: true, encoding: .utf8)
        chmod(dir.file("users"), 0o644)
        let conf = """
            protocols = imap lmtp
            listen = 127.0.0.1
            base_dir = \(dir.file("run"))
            state_dir = \(dir.file("state"))
            log_path = \(dir.file("dovecot.log"))
            \(tls.map { "ssl = yes\nssl_cert = <\($0.cert)\nssl_key = <\($0.key)" } ?? "ssl = no")
            disable_plaintext_auth = no
            recipient_delimiter = +
            auth_mechanisms = plain login\(oauthIntrospection == nil ? "" : " xoauth2 oauthbearer")
            \(oauthIntrospection == nil ? "" : "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = \(dir.file("oauth2.conf"))\n}")
            mail_location = maildir:\(dir.file("mail"))/%u
            passdb {
              driver = passwd-file
              args = scheme=PLAIN username_format=%u \(dir.file("users"))
            }
            userdb {
              driver = static
              args = uid=nobody gid=nogroup home=\(dir.file("mail"))/%u
            }
            service imap-login {
              inet_listener imap {
                address = 127.0.0.1
                port = \(imap)
              }
              inet_listener imaps {
                address = 127.0.0.1
                port = \(imaps)
              }
            }
            service lmtp {
              inet_listener lmtp {
                address = 127.0.0.1
                port = \(lmtp)
              }
            }
            namespace inbox {
              inbox = yes
              mailbox Processed {
                auto = create
              }
            }

            """
        try conf.write(toFile: dir.file("dovecot.conf"), atomically: true, encoding: .utf8)
        if let url = oauthIntrospection {
            try """
                introspection_mode = post
                introspection_url = \(url)
                force_introspection = yes
                username_attribute = username
                active_attribute = active
                active_value = true

                """.write(toFile: dir.file("oauth2.conf"), atomically: true, encoding: .utf8)
        }
        let p = try Spawned("/usr/sbin/dovecot", ["-c", dir.file("dovecot.conf"), "-F"], outputPath: dir.file("dovecot.out"))
        let d = TestDovecot(dir: dir, process: p, imapPort: imap, lmtpPort: lmtp, imapsPort: imaps)
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if Self.listening(imap) && Self.listening(lmtp) { return d }
            if !p.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let log = p.output + ((try? String(contentsOfFile: dir.file("dovecot.log"), encoding: .utf8)) ?? "")
        await d.stop()
        throw DaemonError(message: "dovecot did not start: \(log)")
    }

    private init(dir: TempDir, process: Spawned, imapPort: Int, lmtpPort: Int, imapsPort: Int) {
        self.dir = dir; self.process = process; self.imapPort = imapPort; self.lmtpPort = lmtpPort; self.imapsPort = imapsPort
    }

    static func listening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    /// Delivers a message into the agent's mailbox over Dovecot's LMTP.
    func deliver(_ message: String) async throws {
        let t = try await EmailFixture.lmtp("127.0.0.1:\(lmtpPort)", from: "jane@example.org", to: [Self.user], message: message, dir: dir)
        #expect(t.contains { $0.hasPrefix("S: 250 2.0.0 <\(Self.user)>") }, "\(t)")
    }

    /// Maildir file names in a folder of a user (`cur` and `new`); the agent's by default.
    func files(_ folder: String = "", user: String = TestDovecot.user) -> [String] {
        let base = dir.file("mail/\(user)") + (folder.isEmpty ? "" : "/.\(folder)")
        return ["cur", "new"].flatMap { sub in ((try? FileManager.default.contentsOfDirectory(atPath: "\(base)/\(sub)")) ?? []).map { "\(sub)/\($0)" } }
    }

    func stop() async {
        // The master exits after SIGTERM within a few seconds; its children follow it.
        process.signal(SIGTERM)
        if await process.wait(timeout: 8) == nil { process.signal(SIGKILL); _ = await process.wait(timeout: 2) }
        process.cleanUp()
        dir.remove()
    }
}

@Suite("Email IMAP (real Dovecot)", .serialized, .enabled(if: TestDovecot.available, "dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)"))
struct EmailIMAPTests {
    /// A daemon whose email channel reads the test Dovecot's mailbox over IMAP.
    static func yaml(_ helpdesk: TestHelpdesk, _ dovecot: TestDovecot, processedFolder: String? = nil, poll: String = "0.2s",
                     maxSize: String = "1MB") -> String {
        let folder = processedFolder.map { ", processed_folder: \($0)" } ?? ""
        return """
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
            channels:
              - id: mail
                type: email
                address: "\(EmailFixture.support)"
                thread_secret: "\(EmailFixture.secret)"
                imap: { host: 127.0.0.1, port: \(dovecot.imapPort), tls: none, username: "\(TestDovecot.user)", password: "\(TestDovecot.password)", poll_interval: \(poll), max_message_size: \(maxSize)\(folder) }
            """
    }

    /// A Dovecot for `body`, stopped after it however it ends.
    func withDovecot(_ body: (TestDovecot) async throws -> Void) async throws {
        let dovecot = try await TestDovecot.start()
        do {
            try await body(dovecot)
        } catch {
            await dovecot.stop()
            throw error
        }
        await dovecot.stop()
    }

    func withDovecotDaemon(processedFolder: String? = nil, poll: String = "0.2s", maxSize: String = "1MB", _ body: (TestDaemon, TestHelpdesk, TestDovecot) async throws -> Void) async throws {
        try await withDovecot { dovecot in
            try await withHelpdesk { helpdesk in
                let d = try await TestDaemon.start(Self.yaml(helpdesk, dovecot, processedFolder: processedFolder, poll: poll, maxSize: maxSize),
                                                   registry: EmailFixture.registry())
                do { try await body(d, helpdesk, dovecot) } catch { await d.stop(); throw error }
                await d.stop()
            }
        }
    }

    @Test("mail in the mailbox is fetched with BODY.PEEK, committed, then flagged \\Seen; the UID cursor is kept; new mail follows")
    func fetchesAndFlags() async throws {
        try await withDovecotDaemon { d, helpdesk, dovecot in
            try await dovecot.deliver(EmailFixture.message(messageID: "<imap1@example.org>", body: "Hello over IMAP.\n"))
            try await eventually(timeout: 15, "first message") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            let first = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.data)
            #expect(first["external_id"]?.stringValue == "imap1@example.org")
            #expect(first["parts"]?.element(0)?["text"]?.stringValue == "Hello over IMAP.")
            #expect(first["channel_data"]?["email"]?["envelope"] == nil)
            try await eventually("\\Seen") { dovecot.files().count == 1 && dovecot.files()[0].hasSuffix(",S") }
            let cursor = try await d.context("mail").state.get("imap_cursor:INBOX")
            #expect(cursor?.hasSuffix(":1") == true, "\(cursor ?? "nil")")

            try await dovecot.deliver(EmailFixture.message(messageID: "<imap2@example.org>", body: "Second one.\n"))
            try await eventually(timeout: 15, "second message") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2 }
            try await Task.sleep(for: .milliseconds(600))
            #expect(helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2)
            #expect(try await d.context("mail").state.get("imap_cursor:INBOX")?.hasSuffix(":2") == true)
            let status = try await d.api("GET", "/v1/channels")
            #expect(status.json?["channels"]?.element(0)?["state"]?.stringValue == "connected")
        }
    }

    @Test("XOAUTH2: with imap.oauth_token_file the client logs in with the bearer token (checked by Dovecot's oauth2 introspection), read anew at each login")
    func xoauth2() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let token = "ya29.test-\(UUID().uuidString)"
        let introspectPort = freePort()
        // The identity provider's introspection endpoint: active only for the current token.
        let provider = try Spawned("/usr/bin/python3", ["-c", Self.introspectionServer, "\(introspectPort)", dir.file("valid-token"), TestDovecot.user, dir.file("introspected")],
                                   outputPath: dir.file("provider.out"))
        defer { provider.signal(SIGTERM); provider.cleanUp() }
        try token.write(toFile: dir.file("valid-token"), atomically: true, encoding: .utf8)
        try token.write(toFile: dir.file("token"), atomically: true, encoding: .utf8)
        try await eventually("the introspection endpoint listens") { TestDovecot.listening(introspectPort) }
        let dovecot = try await TestDovecot.start(oauthIntrospection: "http://127.0.0.1:\(introspectPort)/introspect")
        do {
            try await withHelpdesk { helpdesk in
                try await withDaemon("""
                    helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                    channels:
                      - id: mail
                        type: email
                        address: "\(EmailFixture.support)"
                        thread_secret: "\(EmailFixture.secret)"
                        imap: { host: 127.0.0.1, port: \(dovecot.imapPort), tls: none, username: "\(TestDovecot.user)", oauth_token_file: "\(dir.file("token"))", poll_interval: 0.2s }
                    """, registry: EmailFixture.registry()) { d in
                    try await dovecot.deliver(EmailFixture.message(messageID: "<oauth1@example.org>", body: "Hello over XOAUTH2.\n"))
                    try await eventually(timeout: 15, "the message") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                    let seen = (try? String(contentsOfFile: dir.file("introspected"), encoding: .utf8)) ?? ""
                    #expect(seen.split(separator: "\n").contains { $0 == token }, "the provider saw: \(seen)")
                    let channels = try await d.api("GET", "/v1/channels")
                    #expect(channels.json?["channels"]?.element(0)?["state"]?.stringValue == "connected")

                    // The operator's refresher rotates the token; the provider stops accepting the
                    // old one; the server drops the session. The next login uses the new token.
                    let rotated = "ya29.rotated-\(UUID().uuidString)"
                    try rotated.write(toFile: dir.file("token"), atomically: true, encoding: .utf8)
                    try rotated.write(toFile: dir.file("valid-token"), atomically: true, encoding: .utf8)
                    // The session ends: the imap process of this login (its pid is in Dovecot's log) dies.
                    let log = (try? String(contentsOfFile: dovecot.dir.file("dovecot.log"), encoding: .utf8)) ?? ""
                    let login = try #require(log.split(separator: "\n").last { $0.contains("Login: user=<\(TestDovecot.user)>, method=XOAUTH2") })
                    let mpid = try #require(login.range(of: #"mpid=[0-9]+"#, options: .regularExpression).flatMap { Int32(login[$0].dropFirst(5)) })
                    #expect(kill(mpid, SIGKILL) == 0)
                    try await eventually(timeout: 20, "a login with the rotated token") {
                        ((try? String(contentsOfFile: dir.file("introspected"), encoding: .utf8)) ?? "").split(separator: "\n").contains { $0 == rotated }
                    }
                    try await dovecot.deliver(EmailFixture.message(messageID: "<oauth2@example.org>", body: "After the rotation.\n"))
                    try await eventually(timeout: 20, "the message after the rotation") {
                        helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2
                    }
                }
            }
        } catch { await dovecot.stop(); throw error }
        await dovecot.stop()
    }

    /// A token introspection endpoint (RFC 7662 style) on 127.0.0.1:<port>: POST token=… →
    /// active when it equals the file's content; every token asked about is appended to a file.
    static let introspectionServer = """
        import http.server, json, sys, urllib.parse
        port, valid_file, user, log_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                token = urllib.parse.parse_qs(body).get("token", [""])[0]
                with open(log_file, "a") as f: f.write(token + "\\n")
                active = token == open(valid_file).read().strip()
                answer = json.dumps({"active": active, "username": user} if active else {"active": False}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            def log_message(self, *a): pass
        http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
        """

    @Test("IDLE: new mail arrives within a second although the poll interval is ten minutes")
    func idle() async throws {
        try await withDovecotDaemon(poll: "10m") { d, helpdesk, dovecot in
            try await dovecot.deliver(EmailFixture.message(messageID: "<idle1@example.org>", body: "Before.\n"))
            try await eventually(timeout: 15, "first") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            try await Task.sleep(for: .milliseconds(300))   // the client is in IDLE now
            let start = ContinuousClock.now
            try await dovecot.deliver(EmailFixture.message(messageID: "<idle2@example.org>", body: "During IDLE.\n"))
            try await eventually(timeout: 10, "second") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2 }
            #expect(ContinuousClock.now - start < .seconds(3))
            #expect(helpdesk.events.filter { $0.type == "switchboard.message.received" }.last?.data?["parts"]?.element(0)?["text"]?.stringValue == "During IDLE.")
        }
    }

    @Test("a message over imap.max_message_size is stored from its headers with an unsupported part; the mailbox moves on")
    func oversized() async throws {
        try await withDovecotDaemon(maxSize: "2KiB") { d, helpdesk, dovecot in
            try await dovecot.deliver(EmailFixture.message(subject: "Huge scan", messageID: "<big@example.org>",
                                                           body: String(repeating: "0123456789abcdef0123456789abcdef0123456789abcdef\n", count: 100)))
            try await dovecot.deliver(EmailFixture.message(messageID: "<small@example.org>", body: "Small one.\n"))
            try await eventually(timeout: 15, "both") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2 }
            let received = helpdesk.events.filter { $0.type == "switchboard.message.received" }.compactMap(\.data)
            #expect(received[0]["external_id"]?.stringValue == "big@example.org")
            #expect(received[0]["parts"]?.element(0)?["type"]?.stringValue == "unsupported")
            #expect(received[0]["parts"]?.element(0)?["description"]?.stringValue?.hasSuffix("exceeds imap.max_message_size (2048 bytes); not downloaded, it stays on the IMAP server") == true)
            #expect(received[0]["channel_data"]?["email"]?["subject"]?.stringValue == "Huge scan")
            #expect((received[0]["channel_data"]?["email"]?["too_large"]?.intValue ?? 0) > 2048)
            #expect(received[1]["parts"]?.element(0)?["text"]?.stringValue == "Small one.")
        }
    }

    @Test("with processed_folder, a committed message is moved there")
    func movesToProcessed() async throws {
        try await withDovecotDaemon(processedFolder: "Processed") { d, helpdesk, dovecot in
            try await dovecot.deliver(EmailFixture.message(messageID: "<move1@example.org>", body: "Move me.\n"))
            try await eventually(timeout: 15, "message") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            try await eventually("moved") { dovecot.files().isEmpty && dovecot.files("Processed").count == 1 }
        }
    }

    @Test("a processed_folder that doesn't exist yet is created, its non-ASCII name sent in modified UTF-7")
    func createsTheProcessedFolder() async throws {
        try await withDovecotDaemon(processedFolder: "\"Traité\"") { d, helpdesk, dovecot in
            try await dovecot.deliver(EmailFixture.message(messageID: "<move2@example.org>", body: "Move me too.\n"))
            try await eventually(timeout: 15, "message") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            // Dovecot keeps the folder's name as it came over IMAP: modified UTF-7.
            try await eventually("moved") { dovecot.files().isEmpty && dovecot.files("Trait&AOk-").count == 1 }
        }
    }

    @Test("a move the server refuses leaves that message in the mailbox and the next ones still arrive")
    func aRefusedMoveDoesNotStopTheMailbox() async throws {
        // Dovecot refuses this name (no CREATE, no MOVE): every move fails.
        try await withDovecotDaemon(processedFolder: "\"\(Self.refusedFolder)\"") { d, helpdesk, dovecot in
            try await dovecot.deliver(EmailFixture.message(messageID: "<stay1@example.org>", body: "First.\n"))
            try await eventually(timeout: 15, "first") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 1 }
            try await dovecot.deliver(EmailFixture.message(messageID: "<stay2@example.org>", body: "Second.\n"))
            try await eventually(timeout: 15, "second") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2 }
            try await Task.sleep(for: .milliseconds(600))
            #expect(helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2, "each stored once")
            #expect(dovecot.files().count == 2, "both left in the mailbox")
        }
    }
    static let refusedFolder = "bad/name"
}

@Suite("Email IMAP over TLS (real Dovecot)", .enabled(if: TestDovecot.available, "dovecot is not installed"))
struct EmailIMAPTLSTests {
    @Test("implicit TLS and STARTTLS log in and select, checking the certificate; an untrusted certificate and a wrong password fail")
    func tls() async throws {
        let certDir = TempDir()
        defer { certDir.remove() }
        let pem = try await makeTestCertificate(in: certDir)
        chmod(certDir.path, 0o755)
        chmod(pem.cert, 0o644); chmod(pem.key, 0o644)
        let dovecot = try await TestDovecot.start(tls: pem)
        do { try await check(dovecot, ca: pem.cert) } catch { await dovecot.stop(); throw error }
        await dovecot.stop()
    }

    func session(_ config: IMAPClientConfig) async throws -> (Set<String>, Int64) {
        let (channel, ssl) = try await IMAPSession.open(config)
        return try await channel.executeThenClose { inbound, outbound in
            var s = IMAPSession(inbound: inbound.makeAsyncIterator(), outbound: outbound, channel: channel.channel)
            try await s.login(config, sslContext: ssl)
            let (validity, _) = try await s.select("INBOX")
            return (s.capabilities, validity)
        }
    }

    func check(_ dovecot: TestDovecot, ca: String) async throws {
        let implicit = try await session(IMAPClientConfig(host: "localhost", port: dovecot.imapsPort, tls: .implicit, username: TestDovecot.user,
                                                          password: TestDovecot.password, caFile: ca, timeout: .seconds(10)))
        #expect(implicit.0.contains("IDLE") && implicit.1 > 0)
        let starttls = try await session(IMAPClientConfig(host: "localhost", port: dovecot.imapPort, tls: .starttls, username: TestDovecot.user,
                                                          password: TestDovecot.password, caFile: ca, timeout: .seconds(10)))
        #expect(starttls.0.contains("IDLE") && starttls.1 == implicit.1)
        await #expect(throws: (any Error).self) {
            _ = try await session(IMAPClientConfig(host: "localhost", port: dovecot.imapsPort, tls: .implicit, username: TestDovecot.user,
                                                   password: TestDovecot.password, timeout: .seconds(10)))
        }
        do {
            _ = try await session(IMAPClientConfig(host: "localhost", port: dovecot.imapsPort, tls: .implicit, username: TestDovecot.user,
                                                   password: "wrong", caFile: ca, timeout: .seconds(10)))
            Issue.record("expected a failure")
        } catch let e as IMAPError {
            #expect(e.isAuthentication, "\(e)")
        }
    }
}

/// An IMAP server that greets and then never answers.
@Suite("IMAP client timeouts")
struct IMAPTimeoutTests {
    final class Greeter: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(NIOAny(ByteBuffer(string: "* OK silent server ready\r\n")), promise: nil)
        }
    }

    @Test("a server that stops answering ends the session after imap.timeout instead of hanging it", .timeLimit(.minutes(1)))
    func silentServer() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(Greeter()) } }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let config = IMAPClientConfig(host: "127.0.0.1", port: server.localAddress!.port!, tls: .none, username: "u", password: "p",
                                      timeout: .seconds(1))
        let (channel, ssl) = try await IMAPSession.open(config)
        let started = ContinuousClock.now
        do {
            try await channel.executeThenClose { inbound, outbound in
                var s = IMAPSession(inbound: inbound.makeAsyncIterator(), outbound: outbound, channel: channel.channel)
                s.readTimeout = config.timeout
                try await s.login(config, sslContext: ssl)
            }
            Issue.record("login to a silent server succeeded")
        } catch let e as IMAPError {
            #expect(e.message.contains("no answer from the server within 1 s"), "\(e)")
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}

@Suite("IMAP response parser")
struct IMAPParserTests {
    func parseAll(_ s: [UInt8]) throws -> [IMAPResponse] {
        var buf = s
        var out: [IMAPResponse] = []
        while let (r, n) = try IMAPParser.parse(buf) { out.append(r); buf.removeFirst(n) }
        #expect(buf.isEmpty)
        return out
    }

    @Test("mailbox names go out in modified UTF-7 (RFC 3501 §5.1.3)")
    func mailboxNames() {
        #expect(IMAPParser.modifiedUTF7("Processed") == "Processed")
        #expect(IMAPParser.modifiedUTF7("Traité") == "Trait&AOk-")
        #expect(IMAPParser.modifiedUTF7("Entwürfe") == "Entw&APw-rfe")
        #expect(IMAPParser.modifiedUTF7("日本語") == "&ZeVnLIqe-")
        #expect(IMAPParser.modifiedUTF7("R&D") == "R&-D")
        #expect(IMAPParser.modifiedUTF7("~peter/mail/台北") == "~peter/mail/&U,BTFw-")
        #expect(IMAPParser.mailbox("Say \"hi\"") == #""Say \"hi\"""#)
    }

    @Test("literals are read by count, whatever their bytes; partial input asks for more")
    func literals() throws {
        let body: [UInt8] = Array("Subject: x\r\n\r\n) A1 OK fake\r\n* BYE no\r\n".utf8) + [0, 0xFF]
        let wire = Array("* 1 FETCH (UID 7 FLAGS (\\Seen) BODY[] {\(body.count)}\r\n".utf8) + body + Array(")\r\nA1 OK done\r\n".utf8)
        let r = try parseAll(wire)
        #expect(r.count == 2)
        #expect(r[0] == .data([.number(1), .atom("FETCH"), .list([.atom("UID"), .number(7), .atom("FLAGS"), .list([.atom("\\Seen")]),
                                                                 .atom("BODY[]"), .string(body)])]))
        #expect(r[1] == .tagged(tag: "A1", status: "OK", text: "done"))
        for cut in [5, 30, wire.count - 20, wire.count - 1] {
            #expect(try IMAPParser.parse(Array(wire.prefix(cut))) == nil || cut > wire.count - 16)
        }
    }

    @Test("quoted strings, NIL, status codes, continuations, SEARCH")
    func forms() throws {
        let r = try parseAll(Array("* OK [UIDVALIDITY 1795345361] UIDs valid\r\n+ idling\r\n* SEARCH 2 5 9\r\n* 3 FETCH (ENVELOPE (NIL \"a \\\"q\\\" \\\\b\"))\r\n".utf8))
        #expect(r[0] == .status(status: "OK", text: "[UIDVALIDITY 1795345361] UIDs valid"))
        #expect(r[1] == .continuation("idling"))
        #expect(r[2] == .data([.atom("SEARCH"), .number(2), .number(5), .number(9)]))
        #expect(r[3] == .data([.number(3), .atom("FETCH"), .list([.atom("ENVELOPE"), .list([.nilValue, .string(Array("a \"q\" \\b".utf8))])])]))
        #expect(throws: IMAPParser.Failure.self) { _ = try IMAPParser.parse(Array("* 1 FETCH (UID 1))\r\n".utf8)) }
        #expect(throws: IMAPParser.Failure.self) { _ = try IMAPParser.parse(Array("* 1 FETCH {x}\r\n".utf8)) }
    }

    @Test("mutated and truncated responses never trap: each parse returns a response, asks for more, or throws")
    func fuzz() {
        let body = Array("From: a@b\r\n\r\nx)y{3}\r\n".utf8)
        let seed = Array("* OK [UIDVALIDITY 1] ok\r\n* 2 FETCH (UID 9 FLAGS (\\Seen NIL) BODY[] {\(body.count)}\r\n".utf8) + body
            + Array(" INTERNALDATE \"01-Jan-2026 00:00:00 +0000\" BINARY[] ~{2}\r\nab)\r\n+ go\r\nA9 NO [ALERT] x\r\n* SEARCH\r\n".utf8)
        var state: UInt64 = 0x9E3779B97F4A7C15
        func next(_ n: Int) -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int((state >> 33) % UInt64(n)) }
        let alphabet = Array("(){}[]\"\\~+* \r\n0123456789AZaz".utf8) + [0, 0xFF]
        var outcomes = [0, 0, 0]
        for _ in 0..<3000 {
            var buf = seed
            for _ in 0..<(1 + next(6)) {
                switch next(3) {
                case 0: buf[next(buf.count)] = alphabet[next(alphabet.count)]
                case 1: buf.insert(alphabet[next(alphabet.count)], at: next(buf.count))
                default: buf.remove(at: next(buf.count))
                }
            }
            if next(4) == 0 { buf = Array(buf.prefix(next(buf.count + 1))) }
            // Parse the whole buffer as a session would.
            var rest = buf
            var rounds = 0
            while rounds < 100 {
                rounds += 1
                do {
                    guard let (_, n) = try IMAPParser.parse(rest) else { outcomes[1] += 1; break }
                    #expect(n > 0 && n <= rest.count)
                    rest.removeFirst(n)
                    outcomes[0] += 1
                } catch { outcomes[2] += 1; break }
            }
        }
        #expect(outcomes.allSatisfy { $0 > 0 }, "\(outcomes)")
    }
}

extension EmailIMAPTests {
    @Test("mail stored but left in the mailbox (no move before a restart) is moved to processed_folder at the next login, not stored again")
    func storedButUnfiledMailIsFiledLater() async throws {
        try await withDovecot { dovecot in
            try await withHelpdesk { helpdesk in
                // First run: every move fails, as if the connection dropped after each commit.
                let first = try await TestDaemon.start(Self.yaml(helpdesk, dovecot, processedFolder: "\"\(Self.refusedFolder)\""),
                                                       registry: EmailFixture.registry())
                try await dovecot.deliver(EmailFixture.message(messageID: "<left1@example.org>", body: "Left behind.\n"))
                try await eventually(timeout: 15, "stored") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 1 }
                try await Task.sleep(for: .milliseconds(300))
                await first.stop(keepFiles: true)
                #expect(dovecot.files().count == 1, "still in the mailbox")
                // Next run, with a folder that works: the leftover is filed, not stored again.
                let second = try await TestDaemon.start(Self.yaml(helpdesk, dovecot, processedFolder: "Processed"), registry: EmailFixture.registry(),
                                                        dir: first.dir)
                try await eventually(timeout: 15, "filed") { dovecot.files().isEmpty && dovecot.files("Processed").count == 1 }
                try await dovecot.deliver(EmailFixture.message(messageID: "<left2@example.org>", body: "New one.\n"))
                try await eventually(timeout: 15, "the next one") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2 }
                #expect(helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2, "the leftover was not stored twice")
                await second.stop()
            }
        }
    }
}
