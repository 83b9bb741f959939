import Foundation
import Testing
@testable import EmailAdapter
import EmailParsing
@testable import SwitchboardCore
@testable import SwitchboardRuntime
#if canImport(Glibc)
import Glibc
#endif

/// A private Postfix on a loopback port, in a temp dir (Tests/tools/postfix_instance.py), routing
/// each domain to a transport such as `lmtp:inet:127.0.0.1:<port>`.
final class TestPostfix: Sendable {
    let dir: TempDir
    let process: Spawned
    let port: Int

    /// Postfix's master must start as root; the Makefile installs it unconfigured.
    static var available: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/postfix")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/swaks")
    }

    /// Starts it; a start that fails (the free port taken by another test's listener between
    /// picking it and Postfix binding it) is tried again on a new port, twice.
    static func start(routes: [String: String]) async throws -> TestPostfix {
        var failure: (any Error)? = nil
        for _ in 1...3 {
            do { return try await startOnce(routes: routes) } catch { failure = error }
        }
        throw failure!
    }

    static func startOnce(routes: [String: String]) async throws -> TestPostfix {
        let dir = TempDir()
        let port = freePort()
        let args = [DaemonProcess.repoRoot + "/Tests/tools/postfix_instance.py", "--dir", dir.file("postfix"), "--smtp-port", "\(port)",
                    "--recipient-delimiter", "+"] + routes.sorted { $0.key < $1.key }.flatMap { ["--route", "\($0.key)=\($0.value)"] }
        // /usr/bin/python3, not a PATH shim that may not forward SIGTERM.
        let p = try Spawned("/usr/bin/python3", args, outputPath: dir.file("postfix.out"))
        let postfix = TestPostfix(dir: dir, process: p, port: port)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if p.output.contains("ready \(port)") { return postfix }
            if !p.isRunning { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let output = p.output + postfix.maillog
        await postfix.stop()
        throw DaemonError(message: "postfix did not start: \(output)")
    }

    private init(dir: TempDir, process: Spawned, port: Int) { self.dir = dir; self.process = process; self.port = port }

    var maillog: String { (try? String(contentsOfFile: dir.file("postfix/maillog"), encoding: .utf8)) ?? "" }

    /// Submits a message with swaks (a real SMTP client) through this Postfix.
    func send(from: String, to: String, headers: [String], body: String) async throws {
        var args = ["--server", "127.0.0.1", "--port", "\(port)", "--from", from, "--to", to, "--body", body, "--silent", "1"]
        for h in headers { args += ["--header", h] }
        let (status, output) = try await Spawned.run("swaks", args, timeout: 30)
        #expect(status == 0, "swaks: \(output)")
    }

    func stop() async {
        process.signal(SIGTERM)
        if await process.wait(timeout: 15) == nil { process.signal(SIGKILL); _ = await process.wait(timeout: 2) }
        process.cleanUp()
        dir.remove()
    }
}

/// The whole email loop through real mail servers: the customer writes through Postfix; the mail
/// reaches Switchboard over LMTP (Postfix's transport) or over IMAP (Postfix delivers it into the
/// support mailbox in Dovecot); the helpdesk answers through the API; Switchboard submits the
/// reply to Postfix, which delivers it into the customer's Dovecot mailbox; the customer's mail
/// client (Python imaplib) fetches it, threaded; the customer's answer comes back the same way
/// and lands in the same conversation.
@Suite("Email loop through Postfix and Dovecot", .serialized,
       .enabled(if: TestDovecot.available && TestPostfix.available, "needs root, postfix, swaks and dovecot (make test-deps installs them)"))
struct EmailLoopTests {
    static let support = "support@example.com"
    static let customer = "jane@customer.test"

    enum Inbound: String, CaseIterable, Sendable { case lmtp, imap }

    @Test("mail in, reply out into the customer's mailbox threaded, the customer's answer in the same conversation", arguments: Inbound.allCases)
    func loop(_ inbound: Inbound) async throws {
        let dovecot = try await TestDovecot.start(users: [Self.customer, Self.support])
        let lmtpPort = freePort()
        let supportRoute = inbound == .lmtp ? "lmtp:inet:127.0.0.1:\(lmtpPort)" : "lmtp:inet:127.0.0.1:\(dovecot.lmtpPort)"
        let postfix: TestPostfix
        do {
            postfix = try await TestPostfix.start(routes: ["example.com": supportRoute, "customer.test": "lmtp:inet:127.0.0.1:\(dovecot.lmtpPort)"])
        } catch { await dovecot.stop(); throw error }
        do {
            try await withHelpdesk { helpdesk in
                let source = inbound == .lmtp
                    ? "lmtp: { listen: \"127.0.0.1:\(lmtpPort)\" }"
                    : "imap: { host: 127.0.0.1, port: \(dovecot.imapPort), tls: none, username: \"\(Self.support)\", password: \"\(TestDovecot.password)\", poll_interval: 0.5s }"
                try await withDaemon("""
                    helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                    channels:
                      - id: mail
                        type: email
                        address: "\(Self.support)"
                        display_name: "Example Support"
                        thread_secret: "\(EmailFixture.secret)"
                        \(source)
                        smtp: { host: 127.0.0.1, port: \(postfix.port), tls: none, timeout: 10s }
                    """, registry: EmailFixture.registry()) { d in
                    try await runLoop(d, helpdesk, dovecot, postfix)
                }
            }
        } catch {
            Issue.record("postfix log:\n\(postfix.maillog.suffix(3000))")
            await postfix.stop(); await dovecot.stop()
            throw error
        }
        await postfix.stop(); await dovecot.stop()
    }

    func runLoop(_ d: TestDaemon, _ helpdesk: TestHelpdesk, _ dovecot: TestDovecot, _ postfix: TestPostfix) async throws {
        // 1. The customer writes.
        let firstID = "first.\(UUID().uuidString.prefix(8).lowercased())@customer.test"
        try await postfix.send(from: Self.customer, to: Self.support, headers: [
            "From: Jane Doe <\(Self.customer)>", "Subject: Order 42 is late", "Message-Id: <\(firstID)>",
        ], body: "Where is my order?")
        try await eventually(timeout: 30, "the customer's mail reaches the helpdesk") {
            helpdesk.events.contains { $0.type == "switchboard.message.received" }
        }
        let received = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" })
        let conv = try #require(received.data?["conversation_id"]?.stringValue)
        #expect(received.data?["parts"]?.element(0)?["text"]?.stringValue == "Where is my order?")
        #expect(received.data?["channel_data"]?["email"]?["message_id"]?.stringValue == firstID)

        // 2. The helpdesk answers; it goes out through Postfix into the customer's mailbox.
        let sent = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"Hi Jane, it ships today."}]}"#)
        #expect(sent.status == 202, "\(String(decoding: sent.body, as: UTF8.self))")
        let ourMessage = try #require(sent.json?["id"]?.stringValue)
        try await eventually(timeout: 30, "the reply is in the customer's mailbox") {
            !dovecot.files(user: Self.customer).isEmpty
        }
        try await eventually(timeout: 10, "message.status sent") {
            helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == ourMessage
                && $0.data?["status"]?.stringValue == "sent" }
        }

        // 3. The customer's mail client fetches it over IMAP.
        let (status, fetched) = try await Spawned.run("python3", ["-c", Self.imapFetch, "\(dovecot.imapPort)", Self.customer, TestDovecot.password])
        #expect(status == 0, "\(fetched)")
        let raw = try #require(Data(base64Encoded: fetched.trimmingCharacters(in: .whitespacesAndNewlines)), "imaplib: \(fetched)")
        let reply = EmailParser.parse(Array(raw))
        #expect(reply.from?.address == Self.support)
        #expect(reply.subject == "Re: Order 42 is late")
        #expect(reply.inReplyTo == [firstID])
        #expect(reply.text.contains("Hi Jane, it ships today."))
        let replyID = try #require(reply.messageID)
        let replyTo = try #require(reply.replyTo.first?.address)
        #expect(replyTo.hasPrefix("support+"))
        #expect(reply.headers.values("Received").count >= 1, "it went through Postfix")

        // 4. The customer answers from the mail client: to the Reply-To, threaded on our reply.
        try await postfix.send(from: Self.customer, to: replyTo, headers: [
            "From: Jane Doe <\(Self.customer)>", "To: \(replyTo)", "Subject: Re: Order 42 is late",
            "Message-Id: <second.\(UUID().uuidString.prefix(8).lowercased())@customer.test>",
            "In-Reply-To: <\(replyID)>", "References: <\(firstID)> <\(replyID)>",
        ], body: "Great, thanks!\n\nOn Mon, Jane wrote:\n> Hi Jane, it ships today.")
        try await eventually(timeout: 30, "the answer reaches the helpdesk") {
            helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2
        }
        let answer = try #require(helpdesk.events.last { $0.type == "switchboard.message.received" })
        #expect(answer.data?["conversation_id"]?.stringValue == conv)
        #expect(answer.data?["parts"]?.element(0)?["text"]?.stringValue == "Great, thanks!")
        #expect(answer.data?["reply_to"]?["message_id"]?.stringValue == ourMessage)
        #expect(answer.data?["channel_data"]?["email"]?["matched_conversation"]?.stringValue == conv)
    }

    /// Logs in as the customer, fetches the newest message of INBOX, prints it base64-encoded.
    static let imapFetch = """
        import base64, imaplib, sys
        port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        m = imaplib.IMAP4("127.0.0.1", port)
        m.login(user, password)
        m.select("INBOX")
        typ, data = m.search(None, "ALL")
        last = data[0].split()[-1]
        typ, msg = m.fetch(last, "(RFC822)")
        print(base64.b64encode(msg[0][1]).decode())
        m.logout()
        """
}
