import Foundation
import Testing
@testable import EmailAdapter
import EmailParsing
@testable import SwitchboardCore
@testable import SwitchboardRuntime

/// Runs `body` with a helpdesk and a daemon that has an email channel listening for LMTP on a
/// Unix socket in the daemon's temp dir.
func withEmailDaemon<T: Sendable>(channel: String = "mail", maxSize: String = "1MB", extra: String = "",
                                  _ body: (TestDaemon, TestHelpdesk, String) async throws -> T) async throws -> T {
    try await withHelpdesk { helpdesk in
        let dir = TempDir()
        let socket = dir.file("lmtp.sock")
        let yaml = """
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
            \(EmailFixture.channelYAML(channel, lmtpSocket: socket, maxSize: maxSize, extra: extra))
            """
        return try await withDaemon(yaml, registry: EmailFixture.registry(), dir: dir) { d in
            try await eventually(timeout: 10, "LMTP socket") { FileManager.default.fileExists(atPath: socket) }
            return try await body(d, helpdesk, socket)
        }
    }
}


@Suite("Email LMTP ingest", .serialized)
struct EmailLMTPTests {
    @Test("a message over LMTP is committed, then answered once per accepted recipient; envelope and raw source are kept")
    func deliversWithPerRecipientReplies() async throws {
        try await withEmailDaemon { d, helpdesk, socket in
            let mid = "cust1.\(UUID().uuidString.prefix(8))@example.org"
            let msg = EmailFixture.message(messageID: "<\(mid)>", body: "Hello, my order is late.\n.hidden line starts with a dot\n")
            let t = try await EmailFixture.lmtp(socket, from: "jane@example.org",
                                                to: ["support@example.test", "nobody@example.test", "Support+sales@example.test"],
                                                message: msg, dir: d.dir)
            let replies = EmailFixture.replies(t)
            #expect(replies.count == 8, "\(t)")
            // The socket's mode is lmtp.socket_mode's default, whatever the process umask.
            let mode = (try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? NSNumber)?.intValue ?? 0
            #expect(mode & 0o777 == 0o660, "\(String(mode, radix: 8))")
            #expect(replies[0] == "250 2.1.0 Sender OK")
            #expect(replies[1] == "250 2.1.5 Recipient OK")
            #expect(replies[2] == "550 5.1.1 <nobody@example.test> User doesn't exist")
            #expect(replies[3] == "250 2.1.5 Recipient OK")
            #expect(replies[4].hasPrefix("354 "))
            #expect(replies[5].hasPrefix("250 2.0.0 <support@example.test> Stored in conv_"))
            #expect(replies[6].hasPrefix("250 2.0.0 <Support+sales@example.test> Stored in conv_"))
            #expect(replies[7].hasPrefix("221 "))

            try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            let ev = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" })
            let data = try #require(ev.data)
            #expect(data["origin"]?.stringValue == "customer")
            #expect(data["external_id"]?.stringValue == mid)
            #expect(data["sender"]?["channel_user_id"]?.stringValue == "jane@example.org")
            #expect(data["sender"]?["display_name"]?.stringValue == "Jane Doe")
            #expect(data["parts"]?.element(0)?["type"]?.stringValue == "text")
            #expect(data["parts"]?.element(0)?["text"]?.stringValue == "Hello, my order is late.\n.hidden line starts with a dot")
            let email = try #require(data["channel_data"]?["email"])
            #expect(email["subject"]?.stringValue == "Order 42 is late")
            #expect(email["classification"]?.stringValue == "customer")
            #expect(email["envelope"]?["mail_from"]?.stringValue == "jane@example.org")
            #expect(email["envelope"]?["rcpt_to"] == .array(["support@example.test", "Support+sales@example.test"]))
            #expect(replies[5].hasSuffix(ev.subject ?? "-"))

            // The raw payload is the message as received, with the Return-Path the delivery agent adds.
            let id = try #require(data["id"]?.stringValue)
            #expect(data["raw"]?["format"]?.stringValue == "rfc822")
            let raw = try await d.api("GET", "/v1/messages/\(id)/raw")
            #expect(raw.status == 200)
            let expected = "Return-Path: <jane@example.org>\r\n" + msg.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\n", with: "\r\n")
            #expect(String(decoding: raw.body, as: UTF8.self) == expected + (expected.hasSuffix("\r\n") ? "" : "\r\n"))

            // The same message again (an MTA retry) is acknowledged and not stored twice.
            let again = EmailFixture.replies(try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                                                         message: msg, dir: d.dir))
            #expect(again.contains("250 2.0.0 <support@example.test> Already stored"))
            try await Task.sleep(for: .milliseconds(300))
            #expect(helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 1)
        }
    }

    @Test("pipelined commands (as Postfix sends them) are answered in order")
    func pipelining() async throws {
        try await withEmailDaemon { d, helpdesk, socket in
            let t = try await EmailFixture.lmtp(socket, from: "bob@example.org", to: ["support@example.test"],
                                                message: EmailFixture.message(from: "bob@example.org", body: "Pipelined hello\n"),
                                                pipelined: true, dir: d.dir)
            let replies = EmailFixture.replies(t)
            #expect(replies.count == 5, "\(t)")
            #expect(replies[0] == "250 2.1.0 Sender OK")
            #expect(replies[1] == "250 2.1.5 Recipient OK")
            #expect(replies[2].hasPrefix("354 "))
            #expect(replies[3].hasPrefix("250 2.0.0 <support@example.test> Stored in conv_"))
            try await eventually("message.received") {
                helpdesk.events.contains { $0.type == "switchboard.message.received" && $0.data?["parts"]?.element(0)?["text"]?.stringValue == "Pipelined hello" }
            }
        }
    }

    @Test("the size limit: SIZE= over the limit gets 552 at MAIL; an oversized body gets 552 per recipient after DATA")
    func sizeLimit() async throws {
        try await withEmailDaemon(maxSize: "2KiB") { d, helpdesk, socket in
            let big = EmailFixture.message(body: String(repeating: "0123456789abcdef0123456789abcdef0123456789abcdef\n", count: 80))
            let declared = EmailFixture.replies(try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                                                            message: big, size: 999_999, dir: d.dir))
            #expect(declared.first == "552 5.3.4 Message size exceeds fixed limit of 2048 bytes")
            let undeclared = EmailFixture.replies(try await EmailFixture.lmtp(socket, from: "jane@example.org",
                                                                              to: ["support@example.test", "support+x@example.test"],
                                                                              message: big, dir: d.dir))
            #expect(undeclared.filter { $0.hasPrefix("552 5.3.4 Message too big") }.count == 2, "\(undeclared)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(!helpdesk.events.contains { $0.type == "switchboard.message.received" })
        }
    }

    @Test("a store failure answers 451 for every recipient, so the MTA retries; the retry is stored once")
    func storeFailureIsTemporary() async throws {
        try await withEmailDaemon { d, helpdesk, socket in
            // The media store can't write: a file where its directory should be.
            let media = d.dir.file("media")
            try? FileManager.default.removeItem(atPath: media)
            FileManager.default.createFile(atPath: media, contents: Data("not a directory".utf8))
            let msg = EmailFixture.message(headers: ["Content-Type: multipart/mixed; boundary=\"b1\""].map { $0 }, body: """
                --b1
                Content-Type: text/plain

                See the attached file.
                --b1
                Content-Type: application/pdf; name="invoice.pdf"
                Content-Transfer-Encoding: base64

                JVBERi0xLjQKJcfsj6IK
                --b1--
                """ + "\n")
                .replacingOccurrences(of: "Content-Type: text/plain; charset=utf-8\r\nContent-Type: multipart", with: "Content-Type: multipart")
            let failed = EmailFixture.replies(try await EmailFixture.lmtp(socket, from: "jane@example.org",
                                                                          to: ["support@example.test", "support+a@example.test"],
                                                                          message: msg, dir: d.dir))
            #expect(failed.filter { $0.hasPrefix("451 4.3.0 <support") }.count == 2, "\(failed)")
            try await Task.sleep(for: .milliseconds(200))
            #expect(!helpdesk.events.contains { $0.type == "switchboard.message.received" })

            try FileManager.default.removeItem(atPath: media)
            let retried = EmailFixture.replies(try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                                                           message: msg, dir: d.dir))
            #expect(retried.contains { $0.hasPrefix("250 2.0.0 <support@example.test> Stored in conv_") }, "\(retried)")
            try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            let data = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.data)
            #expect(data["parts"]?.element(0)?["text"]?.stringValue == "See the attached file.")
            #expect(data["parts"]?.element(1)?["filename"]?.stringValue == "invoice.pdf")
            #expect(data["parts"]?.element(1)?["media_id"]?.stringValue?.hasPrefix("med_") == true)
        }
    }

    @Test("auto-replies and list mail are stored with origin system, never as customer messages")
    func machineMailIsSystem() async throws {
        try await withEmailDaemon { d, helpdesk, socket in
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                            message: EmailFixture.message(subject: "Out of office", headers: ["Auto-Submitted: auto-replied"],
                                                                          body: "I am away until Monday.\n"), dir: d.dir)
            _ = try await EmailFixture.lmtp(socket, from: "news@lists.example.org", to: ["support@example.test"],
                                            message: EmailFixture.message(from: "news@lists.example.org", subject: "Weekly news",
                                                                          headers: ["List-Id: <news.lists.example.org>", "Precedence: list"],
                                                                          body: "News.\n"), dir: d.dir)
            try await eventually("two messages") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2 }
            let received = helpdesk.events.filter { $0.type == "switchboard.message.received" }
            #expect(received.allSatisfy { $0.data?["origin"]?.stringValue == "system" })
            #expect(received[0].data?["channel_data"]?["email"]?["classification"]?.stringValue == "auto_reply")
            #expect(received[1].data?["channel_data"]?["email"]?["classification"]?.stringValue == "bulk")
        }
    }

    @Test("a customer's follow-up that references their first mail lands in the same conversation; a new mail starts another")
    func customerThreadsWithoutUs() async throws {
        try await withEmailDaemon { d, helpdesk, socket in
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                            message: EmailFixture.message(messageID: "<first@example.org>", body: "First.\n"), dir: d.dir)
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                            message: EmailFixture.message(subject: "Re: Order 42 is late", messageID: "<second@example.org>",
                                                                          headers: ["In-Reply-To: <first@example.org>", "References: <first@example.org>"],
                                                                          body: "Second.\n"), dir: d.dir)
            // Same subject, no references: a new conversation (never matched by subject).
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                            message: EmailFixture.message(messageID: "<third@example.org>", body: "Third.\n"), dir: d.dir)
            try await eventually("three messages") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 3 }
            let convs = helpdesk.events.filter { $0.type == "switchboard.message.received" }.map { $0.data?["conversation_id"]?.stringValue }
            #expect(convs[0] != nil && convs[0] == convs[1])
            #expect(convs[2] != convs[0])
        }
    }
}

@Suite("Email config")
struct EmailConfigTests {
    func problems(_ yaml: String) -> [String] {
        let diagnostics = ConfigDiagnostics()
        let root = ConfigNode.parse(yaml: yaml, diagnostics: diagnostics, environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"))
        let node = root.list("channels")[0]
        _ = EmailChannelAdapter.factory(ChannelRef(type: "email", id: "m"), node,
                                        AdapterEnvironment(httpClient: .shared, publicURL: "http://127.0.0.1", logger: testLogger))
        return diagnostics.problems
    }

    @Test("config problems name the key path")
    func diagnostics() {
        let p = problems("""
            channels:
              - id: m
                type: email
                address: "not-an-address"
                lmtp: { listen: "nowhere", max_message_size: 10 }
                smtp: { host: smtp.example.com, tls: sometimes, port: 99999, username: agent, pasword: x }
                imap: { host: imap.example.com }
            """)
        #expect(p.contains("channels[0].address: expected an email address such as support@example.com"))
        #expect(p.contains("channels[0].lmtp.listen: expected host:port (127.0.0.1:2424) or a Unix socket path"))
        #expect(p.contains("channels[0].lmtp.max_message_size: must be between 1KiB and 1GiB"))
        #expect(p.contains("channels[0].smtp.tls: expected starttls, implicit or none"))
        #expect(p.contains("channels[0].smtp.port: must be between 1 and 65535"))
        #expect(p.contains("channels[0].smtp.pasword: unknown key (did you mean password?)"))
        #expect(p.contains("channels[0].smtp.password: username and password go together"))
        #expect(p.contains("channels[0].imap.username: missing (required)"))
        #expect(p.contains("channels[0].imap.password: missing (required; or give password_file)"))
        #expect(p.count == 9, "\(p)")
    }

    @Test("a valid channel has no problems; secrets never appear in them")
    func valid() throws {
        let dir = TempDir()
        defer { dir.remove() }
        try "s3cret-password".write(toFile: dir.file("smtp-pw"), atomically: true, encoding: .utf8)
        #expect(problems("""
            channels:
              - id: m
                type: email
                address: "support@example.com"
                lmtp: { listen: "127.0.0.1:2424" }
                smtp: { host: smtp.example.com, port: 587, tls: starttls, username: support, password_file: "\(dir.file("smtp-pw"))" }
            """) == [])
        #expect(problems("""
            channels: [ { id: m, type: email, address: "support@example.com" } ]
            """) == ["channels[0]: an email channel needs at least one of imap, lmtp or smtp"])
        #expect(problems("""
            channels: [ { id: m, type: email, address: "support@example.com", thread_secret: "short", smtp: { host: h, tls: none } } ]
            """) == ["channels[0].thread_secret: too short: use at least 16 random characters"])
    }

    @Test("LMTP has no authentication: a non-loopback address is refused unless allow_remote; a relative socket path is the config's")
    func lmtpExposure() {
        let open = problems("""
            channels: [ { id: m, type: email, address: "support@example.com", lmtp: { listen: "0.0.0.0:2424" } } ]
            """)
        #expect(open.count == 1 && open[0].hasPrefix("channels[0].lmtp.listen: LMTP has no authentication"), "\(open)")
        #expect(problems("""
            channels: [ { id: m, type: email, address: "support@example.com", lmtp: { listen: "0.0.0.0:2424", allow_remote: true } } ]
            """) == [])
        #expect(problems("""
            channels: [ { id: m, type: email, address: "support@example.com", lmtp: { listen: "[::1]:2424", socket_mode: 660 } } ]
            """) == ["channels[0].lmtp.socket_mode: quote the mode so it is read as octal: socket_mode: \"0660\""])
    }

    @Test("listen addresses")
    func listen() {
        #expect(LMTPListenAddress.parse("127.0.0.1:2424") == .tcp(host: "127.0.0.1", port: 2424))
        #expect(LMTPListenAddress.parse("[::1]:24") == .tcp(host: "::1", port: 24))
        #expect(LMTPListenAddress.parse("/run/switchboard/lmtp.sock") == .unix(path: "/run/switchboard/lmtp.sock"))
        #expect(LMTPListenAddress.parse("unix:/tmp/x.sock") == .unix(path: "/tmp/x.sock"))
        #expect(LMTPListenAddress.parse("localhost") == nil)
        #expect(LMTPListenAddress.parse(":25") == nil)
    }
}

@Suite struct EmailConfigDocsTests {
    /// adapters/email/sample.yaml and the commented support-mail block of Config/switchboard.yaml
    /// validate as they are (apart from the IMAP note), with their files present, and show every key.
    @Test func sampleAndReferenceBlockValidateAndShowEveryKey() throws {
        let dir = TempDir()
        defer { dir.remove() }
        FileManager.default.createFile(atPath: dir.file("email-thread-secret"), contents: Data("0123456789abcdef0123456789abcdef\n".utf8))
        FileManager.default.createFile(atPath: dir.file("smtp-password"), contents: Data("password\n".utf8))
        FileManager.default.createFile(atPath: dir.file("smtp-ca.pem"), contents: Data("pem".utf8))
        FileManager.default.createFile(atPath: dir.file("imap-password"), contents: Data("password\n".utf8))
        FileManager.default.createFile(atPath: dir.file("imap-ca.pem"), contents: Data("pem".utf8))
        let reference = try ContractTests.text("Config/switchboard.yaml")
        let lines = reference.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex(of: "  # - id: support-mail"))
        let block = lines[start...].prefix { $0.hasPrefix("  # ") }.map { String($0.dropFirst(4)) }
        let documents = [
            ("adapters/email/sample.yaml", try ContractTests.text("adapters/email/sample.yaml")),
            ("Config/switchboard.yaml support-mail", "channels:\n" + block.map { "  " + $0 }.joined(separator: "\n")),
        ]
        let env = AdapterEnvironment(httpClient: .shared, publicURL: "https://chat.example.com", logger: testLogger)
        for (what, text) in documents {
            let d = ConfigDiagnostics()
            let cfg = ConfigLoader.load(text: text, environment: ConfigEnvironment(variables: [:], baseDirectory: dir.path),
                                        adapterKinds: ["email"], diagnostics: d)
            let channel = try #require(cfg.channels.first, "\(what): no channel")
            #expect(EmailFixture.registry().make(channel, env: env) != nil, "\(what)")
            #expect(d.problems.isEmpty, "\(what): \(d.problems)")
            let shown = Set(text.split(separator: "\n").compactMap { line -> String? in
                let t = line.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "- ", with: "")
                guard let colon = t.firstIndex(of: ":"), !t.hasPrefix("#") else { return nil }
                return String(t[..<colon])
            })
            let expected: Set<String> = ["id", "type", "address", "display_name", "aliases", "thread_secret_file", "default_subject", "lmtp",
                                         "listen", "max_message_size", "hostname", "smtp", "host", "port", "tls", "username", "password_file",
                                         "imap", "mailbox", "processed_folder", "poll_interval"]
            #expect(expected.subtracting(shown).isEmpty, "\(what) does not show \(expected.subtracting(shown))")
        }
    }
}
