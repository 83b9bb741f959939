import Foundation
import GRDB
import Testing
@testable import EmailAdapter
import EmailParsing
@testable import SwitchboardCore
@testable import SwitchboardDaemon
@testable import SwitchboardRuntime
@testable import WebchatAdapter

/// The web chat's email follow-up: an agent's reply the visitor hasn't read goes by email
/// through the daemon's email channel (a real SMTP server, aiosmtpd), and the visitor's answer
/// by email (over LMTP) comes back into the web conversation.
@Suite("Web chat email follow-up", .serialized)
struct WebchatFollowupTests {
    static func registry() -> AdapterRegistry {
        var r = WebchatFixture.registry()
        r.register(EmailChannelAdapter.type, EmailChannelAdapter.factory)
        return r
    }

    /// A daemon with web chat `site` (follow-ups after `delay`, always outside business hours so
    /// the away notice shows) and email channel `mail` (LMTP in, SMTP out to an aiosmtpd sink).
    func withFollowups<T: Sendable>(delay: String = "1s", smtpPort: Int? = nil,
                                    _ body: (TestDaemon, TestHelpdesk, String, SMTPSink) async throws -> T) async throws -> T {
        let dir = TempDir()
        let sink = try await SMTPSink.start(in: dir)
        defer { dir.remove() }
        do {
            let r = try await withHelpdesk { helpdesk in
                let socket = dir.file("lmtp.sock")
                let yaml = """
                    helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                    channels:
                      - id: site
                        type: webchat
                        allowed_origins: ["https://shop.example.com"]
                        business_hours: { time_zone: "UTC", mon: closed, tue: closed, wed: closed, thu: closed, fri: closed, sat: closed, sun: closed }
                        email_followup: { channel: mail, delay: \(delay) }
                      - id: mail
                        type: email
                        address: "\(EmailFixture.support)"
                        display_name: "Example Support"
                        thread_secret: "\(EmailFixture.secret)"
                        lmtp: { listen: "\(socket)" }
                        smtp: { host: 127.0.0.1, port: \(smtpPort ?? sink.port), tls: none, username: agent, password: secret, timeout: 10s }
                    """
                return try await withDaemon(yaml, registry: Self.registry(), dir: dir) { d in
                    try await eventually("LMTP socket") { FileManager.default.fileExists(atPath: socket) }
                    return try await body(d, helpdesk, socket, sink)
                }
            }
            await sink.stop()
            return r
        } catch {
            await sink.stop()
            throw error
        }
    }

    func received(_ helpdesk: TestHelpdesk) -> [JSONValue] {
        helpdesk.events.filter { $0.type == "switchboard.message.received" }.compactMap(\.data)
    }

    @Test("an unread agent reply goes by email; the visitor's email answer continues the web conversation; the next email carries only what is new")
    func followupLoop() async throws {
        try await withFollowups { d, helpdesk, socket, sink in
            // A visitor who gave an email address asks, sees the away notice, and leaves.
            let v = WebchatVisitor.connect(d, "site")
            let welcome = try await v.hello(extra: #""profile":{"name":"Jane Roe","email":"jane@example.org"},"context":{"url":"https://shop.example.com/cart","locale":"en-GB"}"#)
            let token = try #require(welcome?["token"]?.stringValue)
            v.message("c1", "Where is my order?")
            let notice = try await v.waitFor("notice") { $0["type"]?.stringValue == "notice" }
            #expect(notice["email"]?.boolValue == true, "the away notice promises an email answer only because one will come")
            try await eventually("message.received") { !received(helpdesk).isEmpty }
            let conversation = try #require(received(helpdesk).first?["conversation_id"]?.stringValue)
            await v.close()

            // The agent answers; the visitor is gone, so after the delay it goes by email.
            let reply = try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                        json: #"{"parts":[{"type":"text","text":"It ships tomorrow."}]}"#)
            #expect(reply.status == 202)
            let agentMessage = try #require(reply.json?["id"]?.stringValue)
            try await eventually(timeout: 15, "the follow-up email") { sink.messages.count == 1 }
            let got = sink.messages[0]
            #expect(got.rcptTos == ["jane@example.org"])
            let mail = EmailParser.parse(Array(got.content.utf8))
            #expect(mail.from?.address == EmailFixture.support)
            #expect(mail.to.map(\.address) == ["jane@example.org"])
            #expect(mail.to.first?.displayName == "Jane Roe")
            #expect(mail.subject == "New reply to your chat")
            #expect(mail.text.contains("It ships tomorrow."))
            #expect(mail.text.contains("Reply to this email"))
            #expect(mail.text.contains("https://shop.example.com/cart"), "links back to the page they chatted on")
            let messageID = try #require(mail.messageID)
            // Both the Message-ID and the Reply-To address carry the web conversation, HMAC-tagged.
            #expect(EmailFixture.codec.conversationID(fromMessageID: messageID) == conversation)
            let replyTo = try #require(mail.replyTo.first?.address)
            #expect(EmailFixture.codec.conversationID(fromPlusAddress: replyTo, base: EmailFixture.support) == conversation)

            // The helpdesk learns of it: the follow-up is a system message of the web conversation,
            // sent through the email channel, naming the agent messages it carried.
            try await eventually("message.status sent for the follow-up") {
                helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "sent"
                    && $0.data?["metadata"]?["email_followup"] != nil }
            }
            let status = try #require(helpdesk.events.first { $0.data?["metadata"]?["email_followup"] != nil }?.data)
            #expect(status["conversation_id"]?.stringValue == conversation)
            #expect(status["metadata"]?["email_followup"]?["messages"]?.arrayValue == [.string(agentMessage)])
            #expect(status["metadata"]?["email_followup"]?["to"]?.stringValue == "jane@example.org")
            let followupID = try #require(status["message_id"]?.stringValue)
            let stored = try #require(try await d.runtime.store.message(followupID))
            #expect(stored.origin == .system && stored.channel.id == "mail" && stored.conversationID == conversation)

            // Jane answers the email: it lands in the web conversation.
            let janeReplyID = "jane.\(UUID().uuidString.prefix(8).lowercased())@example.org"
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: [replyTo], message: EmailFixture.message(
                from: "Jane Roe <jane@example.org>", to: replyTo, subject: "Re: New reply to your chat", messageID: "<\(janeReplyID)>",
                headers: ["In-Reply-To: <\(messageID)>", "References: <\(messageID)>"], body: "Great, thanks!\n"), dir: d.dir)
            try await eventually("Jane's email answer") { received(helpdesk).count == 2 }
            let answer = received(helpdesk)[1]
            #expect(answer["conversation_id"]?.stringValue == conversation)
            #expect(answer["channel"]?["type"]?.stringValue == "email")
            #expect(answer["text_fallback"]?.stringValue == "Great, thanks!")
            #expect(answer["reply_to"]?["message_id"]?.stringValue == followupID)
            // Back on the site, her chat history shows her email answer after the agent's reply.
            let back = WebchatVisitor.connect(d, "site")
            try await back.hello(token: token)
            let shown = try await back.waitFor("the email answer in the widget") { $0["text"]?.stringValue == "Great, thanks!" }
            #expect(shown["direction"]?.stringValue == "in")
            #expect(back.frames("message").compactMap { $0["text"]?.stringValue } == ["Where is my order?", "It ships tomorrow.", "Great, thanks!"])
            await back.close()

            // Someone else writing to the same Reply-To address does not get into her conversation.
            _ = try await EmailFixture.lmtp(socket, from: "mallory@example.net", to: [replyTo], message: EmailFixture.message(
                from: "Mallory <mallory@example.net>", to: replyTo, subject: "Re: New reply to your chat",
                messageID: "<m.\(UUID().uuidString.prefix(8))@example.net>", headers: ["In-Reply-To: <\(messageID)>"],
                body: "Let me in\n"), dir: d.dir)
            try await eventually("Mallory's mail") { received(helpdesk).count == 3 }
            let other = received(helpdesk)[2]
            #expect(other["conversation_id"]?.stringValue != conversation)
            #expect(other["channel"]?["id"]?.stringValue == "mail")

            // The agent answers again: the second email carries only the new message, threaded
            // under Jane's email.
            #expect(try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                    json: #"{"parts":[{"type":"text","text":"You are welcome."}]}"#).status == 202)
            try await eventually(timeout: 15, "the second follow-up") { sink.messages.count == 2 }
            let second = EmailParser.parse(Array(sink.messages[1].content.utf8))
            #expect(second.text.contains("You are welcome."))
            #expect(!second.text.contains("It ships tomorrow."))
            #expect(second.inReplyTo == [janeReplyID])
            #expect(second.subject == "Re: New reply to your chat")

            // Her out-of-office answer to it is filed in the web conversation for the agent, but
            // the widget shows only what she wrote herself.
            let again = WebchatVisitor.connect(d, "site")
            try await again.hello(token: token)
            try await again.waitFor("the history") { $0["text"]?.stringValue == "You are welcome." }
            let secondID = try #require(second.messageID)
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: [replyTo], message: EmailFixture.message(
                from: "Jane Roe <jane@example.org>", to: replyTo, subject: "Out of office", messageID: "<ooo.\(UUID().uuidString.prefix(8))@example.org>",
                headers: ["In-Reply-To: <\(secondID)>", "Auto-Submitted: auto-replied"], body: "I am away until Monday.\n"), dir: d.dir)
            try await eventually("the auto-reply") { received(helpdesk).contains { $0["text_fallback"]?.stringValue == "I am away until Monday." } }
            let away = try #require(received(helpdesk).first { $0["text_fallback"]?.stringValue == "I am away until Monday." })
            #expect(away["conversation_id"]?.stringValue == conversation)
            #expect(away["origin"]?.stringValue != "customer")
            // The LMTP answer came after the commit and the widget hand-off: nothing more can arrive.
            #expect(!again.frames.contains { $0["text"]?.stringValue == "I am away until Monday." })
            await again.close()
        }
    }

    @Test("nothing is emailed when the visitor reads the reply in time, or gave no address")
    func readInTime() async throws {
        try await withFollowups(delay: "2s") { d, helpdesk, _, sink in
            let jane = WebchatVisitor.connect(d, "site")
            try await jane.hello(extra: #""profile":{"email":"jane@example.org"}"#)
            jane.message("c1", "Hi")
            let anon = WebchatVisitor.connect(d, "site")
            try await anon.hello()
            anon.message("a1", "Hello from nobody")
            try await eventually("both messages") { received(helpdesk).count == 2 }
            let janeData = try #require(received(helpdesk).first { $0["text_fallback"]?.stringValue == "Hi" })
            let janeConv = try #require(janeData["conversation_id"]?.stringValue)
            let janePeer = try #require(janeData["sender"]?["channel_user_id"]?.stringValue)
            let anonData = try #require(received(helpdesk).first { $0["text_fallback"]?.stringValue == "Hello from nobody" })
            let anonConv = try #require(anonData["conversation_id"]?.stringValue)
            let anonPeer = try #require(anonData["sender"]?["channel_user_id"]?.stringValue)

            for conv in [janeConv, anonConv] {
                #expect(try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"On it."}]}"#).status == 202)
            }
            let shown = try await jane.waitFor("the reply") { $0["type"]?.stringValue == "message" && $0["direction"]?.stringValue == "out" }
            let state = d.context("site").state
            // Scheduled right after the reply reached the widget.
            try await eventually("a follow-up waits for Jane") { try await state.get("fu:\(janePeer)") != nil }
            try await eventually("the reply reached the other visitor") {
                anon.frames.contains { $0["type"]?.stringValue == "message" && $0["direction"]?.stringValue == "out" }
            }
            #expect(try await state.get("fu:\(anonPeer)") == nil, "no address, no follow-up")
            // Jane reads it; when the follow-up falls due there is nothing unread and it is dropped.
            jane.send(#"{"type":"read","seq":\#(shown["seq"]?.intValue ?? 0)}"#)
            try await eventually(timeout: 10, "the follow-up is dropped") { try await state.get("fu:\(janePeer)") == nil }
            #expect(sink.messages.isEmpty)
            #expect(try await state.get("fusent:\(janePeer)") == nil)
            #expect(try await state.get("fu:\(anonPeer)") == nil, "still nothing for the visitor without an address")
            await jane.close()
            await anon.close()
        }
    }

    @Test("a follow-up waiting for a mail server that is down does not hold up the chat's own replies")
    func aStuckFollowupDoesNotBlockTheChat() async throws {
        // Port 9 (discard) on loopback: nothing listens, every SMTP attempt fails and is retried.
        try await withFollowups(smtpPort: 9) { d, helpdesk, _, _ in
            let v = WebchatVisitor.connect(d, "site")
            let token = try #require(try await v.hello(extra: #""profile":{"email":"jane@example.org"}"#)?["token"]?.stringValue)
            v.message("c1", "Hello?")
            try await eventually("message.received") { !received(helpdesk).isEmpty }
            let conversation = try #require(received(helpdesk).first?["conversation_id"]?.stringValue)
            await v.close()
            #expect(try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"First answer"}]}"#).status == 202)
            // The follow-up is queued on the email channel and fails there.
            try await eventually(timeout: 15, "the follow-up's failed attempt") {
                try await d.runtime.store.pool.read { db in
                    try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM send_queue WHERE channel_id = 'mail' AND attempts > 0") ?? 0
                } == 1
            }
            // The visitor is back, and the agent's next reply reaches the widget meanwhile.
            let back = WebchatVisitor.connect(d, "site")
            try await back.hello(token: token)
            #expect(try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"Second answer"}]}"#).status == 202)
            try await back.waitFor("the second answer") { $0["text"]?.stringValue == "Second answer" }
            await back.close()
        }
    }

    /// The race: an agent's message arrives while a follow-up is going out. Its scheduling sees
    /// that follow-up pending and leaves it; finishing the follow-up must then wait again for
    /// the new message rather than delete the pending entry (which would leave it unmailed).
    @Test("an agent message that comes in while a follow-up goes out gets a follow-up of its own")
    func aReplyDuringAFollowupIsNotLost() async throws {
        try await withFollowups(delay: "1h") { d, helpdesk, _, _ in
            let jane = WebchatVisitor.connect(d, "site")
            try await jane.hello(extra: #""profile":{"email":"jane@example.org"}"#)
            jane.message("c1", "Hi")
            try await eventually("message.received") { !received(helpdesk).isEmpty }
            let data = try #require(received(helpdesk).first)
            let conversation = try #require(data["conversation_id"]?.stringValue)
            let peer = try #require(data["sender"]?["channel_user_id"]?.stringValue)
            let adapter = try #require(d.runtime.hub.entry("site")?.adapter as? WebchatChannelAdapter)
            let context = d.context("site")
            let followup = try #require(adapter.settings.emailFollowup)
            func reply(_ text: String) async throws -> Int64 {
                #expect(try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"\#(text)"}]}"#).status == 202)
                let shown = try await jane.waitFor(text) { $0["text"]?.stringValue == text }
                return Int64(try #require(shown["seq"]?.intValue))
            }
            let first = try await reply("First answer")
            try await eventually("the follow-up is pending") { try await context.state.get("fu:\(peer)") != nil }
            let pending = try JSON.decode(PendingFollowup.self, from: Array(try #require(try await context.state.get("fu:\(peer)")).utf8))
            // The follow-up carried the first answer; the second came in meanwhile.
            _ = try await reply("Second answer")
            try await adapter.finishFollowup(peer: peer, pending, emailedUpTo: first, followup, context: context)
            let again = try JSON.decode(PendingFollowup.self, from: Array(try #require(try await context.state.get("fu:\(peer)"),
                                                                                        "still pending, for the second answer").utf8))
            #expect(again.due > pending.due, "waits its own delay")
            // Once a follow-up has carried everything, nothing stays pending.
            let last = try await LogWriter.entries(peer: peer, after: 0, limit: 50, context: context).last?.seq ?? 0
            try await adapter.finishFollowup(peer: peer, again, emailedUpTo: last, followup, context: context)
            #expect(try await context.state.get("fu:\(peer)") == nil)
            await jane.close()
        }
    }

    @Test("the follow-up links back only to pages on the sites allowed to embed the chat")
    func followupLinks() {
        var settings = WebchatChannelAdapter.Settings()
        settings.allowedOrigins = ["https://shop.example.com", "http://localhost:3000"]
        let site = WebchatChannelAdapter(channel: ChannelRef(type: "webchat", id: "site"), settings: settings)
        #expect(site.followupLink("https://shop.example.com/cart?x=1") == "https://shop.example.com/cart?x=1")
        #expect(site.followupLink("HTTPS://SHOP.example.com/") != nil)
        #expect(site.followupLink("http://localhost:3000/help") == "http://localhost:3000/help")
        #expect(site.followupLink("https://evil.example.net/login") == nil)
        #expect(site.followupLink("https://shop.example.com.evil.example.net/") == nil)
        #expect(site.followupLink("javascript:alert(1)") == nil)
        #expect(site.followupLink(nil) == nil)
        settings.allowedOrigins = ["*"]
        #expect(WebchatChannelAdapter(channel: ChannelRef(type: "webchat", id: "any"), settings: settings).followupLink("https://shop.example.com/") == nil)
    }

    @Test("email_followup must name an email channel that can send")
    func configProblems() {
        func problems(_ mailChannel: String) -> [String] {
            let yaml = """
                channels:
                  - { id: site, type: webchat, email_followup: { channel: mail, delay: 2m, colour: red } }
                \(mailChannel)
                """
            let env = ConfigEnvironment(variables: [:], baseDirectory: FileManager.default.temporaryDirectory.path)
            switch Daemon.validate(text: yaml, registry: Self.registry(), environment: env, logger: testLogger) {
            case .success: return []
            case .failure(let p): return p.problems
            }
        }
        let missing = problems("")
        #expect(missing.contains("channels[0].email_followup.channel: no channel with id mail"), "\(missing)")
        #expect(missing.contains { $0.hasPrefix("channels[0].email_followup.colour") }, "\(missing)")
        let cannotSend = problems(#"  - { id: mail, type: email, address: "support@example.test", lmtp: { listen: "127.0.0.1:2424" } }"#)
        #expect(cannotSend.contains("channels[0].email_followup.channel: channel mail (email) can't send on behalf of other channels (it has no smtp settings)"),
                "\(cannotSend)")
        let fine = problems(#"  - { id: mail, type: email, address: "support@example.test", smtp: { host: smtp.example.test } }"#)
        #expect(fine.filter { !$0.contains("colour") }.isEmpty, "\(fine)")
    }
}
