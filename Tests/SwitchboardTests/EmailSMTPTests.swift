import Foundation
import Testing
@testable import EmailAdapter
import EmailParsing
@testable import SwitchboardCore
@testable import SwitchboardRuntime

/// Runs `body` with an aiosmtpd sink, a helpdesk and a daemon whose email channel sends through
/// the sink (plain text, AUTH as agent/secret) and listens for LMTP on a Unix socket.
func withEmailSMTP<T: Sendable>(_ body: (TestDaemon, TestHelpdesk, String, SMTPSink) async throws -> T) async throws -> T {
    let sinkDir = TempDir()
    let sink = try await SMTPSink.start(in: sinkDir)
    do {
        let r = try await withEmailDaemon(extra: """
            smtp: { host: 127.0.0.1, port: \(sink.port), tls: none, username: agent, password: secret, timeout: 10s }
            """) { d, helpdesk, socket in try await body(d, helpdesk, socket, sink) }
        await sink.stop(); sinkDir.remove()
        return r
    } catch {
        await sink.stop(); sinkDir.remove()
        throw error
    }
}

@Suite("Email SMTP sending", .serialized)
struct EmailSMTPTests {
    @Test("a helpdesk reply goes out by SMTP threaded to the customer's mail, and the customer's answer lands in the same conversation")
    func replyRoundTrip() async throws {
        try await withEmailSMTP { d, helpdesk, socket, sink in
            let customerID = "cust.\(UUID().uuidString.prefix(8).lowercased())@example.org"
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                            message: EmailFixture.message(subject: "Order 42 is late", messageID: "<\(customerID)>",
                                                                          headers: ["References: <older@example.org>"],
                                                                          body: "Where is my order?\n"), dir: d.dir)
            try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            let conv = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.data?["conversation_id"]?.stringValue)

            let sent = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: """
                {"parts":[{"type":"text","format":"markdown","text":"Hi **Jane**, it ships today.\\n\\nTrack it: https://example.test/t/42"}]}
                """)
            #expect(sent.status == 202, "\(String(decoding: sent.body, as: UTF8.self))")
            let ourID = try #require(sent.json?["id"]?.stringValue)
            try await eventually(timeout: 15, "the sink got the mail") { sink.messages.count == 1 }
            let got = sink.messages[0]
            #expect(got.mailFrom == "support@example.test")
            #expect(got.rcptTos == ["jane@example.org"])
            #expect(got.login == "agent")
            #expect(got.mailOptions.contains { $0.hasPrefix("SIZE=") })

            // The message as the customer's mail client sees it, read back with our own parser.
            let mail = EmailParser.parse(Array(got.content.utf8))
            let codec = EmailFixture.codec
            #expect(mail.from == EmailAddress(address: "support@example.test", displayName: "Example Support"))
            #expect(mail.to.map(\.address) == ["jane@example.org"])
            #expect(mail.subject == "Re: Order 42 is late")
            #expect(mail.inReplyTo == [customerID])
            #expect(mail.references == ["older@example.org", customerID])
            let messageID = try #require(mail.messageID)
            #expect(codec.conversationID(fromMessageID: messageID) == conv)
            #expect(mail.replyTo.count == 1)
            #expect(codec.conversationID(fromPlusAddress: mail.replyTo[0].address, base: "support@example.test") == conv)
            #expect(mail.headers["MIME-Version"] == "1.0")
            #expect(mail.headers["Auto-Submitted"] == nil)
            #expect(mail.headers["Content-Type"]?.hasPrefix("multipart/alternative;") == true)
            #expect(mail.text == "Hi Jane, it ships today.\n\nTrack it: https://example.test/t/42")
            let html = try #require(mail.html)
            #expect(html.contains("<p>Hi <strong>Jane</strong>, it ships today.</p>"))
            #expect(html.contains("<p>Track it: <a href=\"https://example.test/t/42\">https://example.test/t/42</a></p>"))
            // 7-bit on the wire, lines within the limit.
            #expect(got.content.utf8.allSatisfy { $0 < 0x80 })
            #expect(got.content.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 998 })
            let bodyLines = got.content.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n").components(separatedBy: "\r\n")
            #expect(bodyLines.allSatisfy { $0.utf8.count <= 76 }, "\(bodyLines.filter { $0.utf8.count > 76 })")

            // Sent: the status carries our Message-ID as the external id.
            try await eventually("message.status sent") {
                helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == ourID
                    && $0.data?["status"]?.stringValue == "sent" }
            }
            let status = try #require(helpdesk.events.first { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "sent" })
            #expect(status.data?["external_ids"] == .array([.string(messageID)]))

            // The customer answers from a client that quotes; a different subject doesn't matter.
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                            message: EmailFixture.message(subject: "Re: Re: Order 42 is late (thanks)", messageID: "<answer.\(UUID().uuidString.prefix(6))@example.org>",
                                                                          headers: ["In-Reply-To: <\(messageID)>", "References: <older@example.org> <\(customerID)> <\(messageID)>"],
                                                                          body: "Great, thanks!\n\nOn Sun, 22 Nov 2026, Example Support wrote:\n> Hi Jane, it ships today.\n"), dir: d.dir)
            try await eventually("the answer") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2 }
            let answer = try #require(helpdesk.events.filter { $0.type == "switchboard.message.received" }.last?.data)
            #expect(answer["conversation_id"]?.stringValue == conv)
            #expect(answer["parts"]?.element(0)?["text"]?.stringValue == "Great, thanks!")
            #expect(answer["reply_to"]?["message_id"]?.stringValue == ourID)
            #expect(answer["channel_data"]?["email"]?["matched_conversation"]?.stringValue == conv)

            // An answer sent to the Reply-To plus address without any headers (a forwarder dropped them) lands there too.
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: [mail.replyTo[0].address],
                                            message: EmailFixture.message(to: mail.replyTo[0].address, subject: "one more thing",
                                                                          body: "Also, the colour.\n"), dir: d.dir)
            try await eventually("the plus-address mail") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 3 }
            #expect(helpdesk.events.filter { $0.type == "switchboard.message.received" }.last?.data?["conversation_id"]?.stringValue == conv)

            // A forged plus token does not.
            let forged = mail.replyTo[0].address.replacingOccurrences(of: "-", with: "-x")
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: [forged],
                                            message: EmailFixture.message(to: forged, subject: "forged", body: "Forged.\n"), dir: d.dir)
            try await eventually("the forged mail") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 4 }
            #expect(helpdesk.events.filter { $0.type == "switchboard.message.received" }.last?.data?["conversation_id"]?.stringValue != conv)

            // The second reply answers the customer's latest mail, not the first.
            _ = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"Blue."}]}"#)
            try await eventually(timeout: 15, "second mail") { sink.messages.count == 2 }
            let second = EmailParser.parse(Array(sink.messages[1].content.utf8))
            #expect(second.subject == "Re: one more thing")
            #expect(second.inReplyTo.count == 1)
            #expect(second.inReplyTo.first?.hasSuffix("@example.org") == true)
            #expect(second.messageID != messageID)
        }
    }

    /// Jane writes in over LMTP and the helpdesk answers: our message id and the mail's Message-ID.
    static func answerJane(_ d: TestDaemon, _ helpdesk: TestHelpdesk, _ socket: String, _ sink: SMTPSink) async throws -> (String, String) {
        _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                        message: EmailFixture.message(body: "Hello?\n"), dir: d.dir)
        try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
        let conv = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.data?["conversation_id"]?.stringValue)
        let sent = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"Hello Jane."}]}"#)
        let ourID = try #require(sent.json?["id"]?.stringValue)
        try await eventually(timeout: 15, "sent") { sink.messages.count == 1 }
        return (ourID, try #require(EmailParser.parse(Array(sink.messages[0].content.utf8)).messageID))
    }

    @Test("a bounce of our mail marks that message failed and is stored as a system message")
    func bounce() async throws {
        try await withEmailSMTP { d, helpdesk, socket, sink in
            let (ourID, ourMessageID) = try await Self.answerJane(d, helpdesk, socket, sink)
            try await eventually("status sent") {
                helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "sent" }
            }

            func dsn(recipient: String, action: String, status: String) -> String {
                """
                From: MAILER-DAEMON@mx.example.test (Mail Delivery System)
                To: support@example.test
                Subject: Undelivered Mail Returned to Sender
                Message-ID: <dsn.\(UUID().uuidString.prefix(6))@mx.example.test>
                Auto-Submitted: auto-replied
                MIME-Version: 1.0
                Content-Type: multipart/report; report-type=delivery-status; boundary="B"

                --B
                Content-Type: text/plain

                I'm sorry to have to inform you that your message could not be delivered.
                --B
                Content-Type: message/delivery-status

                Reporting-MTA: dns; mx.example.test

                Final-Recipient: rfc822; \(recipient)
                Action: \(action)
                Status: \(status)
                Diagnostic-Code: smtp; 550 5.1.1 <\(recipient)>: Recipient address rejected

                --B
                Content-Type: text/rfc822-headers

                From: Example Support <support@example.test>
                To: jane@example.org
                Message-ID: <\(ourMessageID)>
                Subject: Re: Order 42 is late

                --B--

                """
            }
            // A copy's address failing, or a report that the mail was delivered or relayed,
            // doesn't fail the message: the customer has it. Each report is still stored.
            for report in [dsn(recipient: "kim@example.org", action: "failed", status: "5.1.1"),
                           dsn(recipient: "jane@example.org", action: "relayed", status: "2.0.0")] {
                let r = EmailFixture.replies(try await EmailFixture.lmtp(socket, from: "", to: ["support@example.test"], message: report, dir: d.dir))
                #expect(r.contains { $0.hasPrefix("250 2.0.0 <support@example.test> Stored") }, "\(r)")
            }
            try await eventually("both reports stored") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 3 }
            #expect(!helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "failed" })
            let dsn = dsn(recipient: "jane@example.org", action: "failed", status: "5.1.1")
            let replies = EmailFixture.replies(try await EmailFixture.lmtp(socket, from: "", to: ["support@example.test"], message: dsn, dir: d.dir))
            #expect(replies.contains { $0.hasPrefix("250 2.0.0 <support@example.test> Stored") }, "\(replies)")
            try await eventually("message.status failed") {
                helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "failed" }
            }
            let failed = try #require(helpdesk.events.first { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "failed" }?.data)
            #expect(failed["message_id"]?.stringValue == ourID)
            #expect(failed["error"]?["code"]?.stringValue == "invalid_recipient")
            #expect(failed["error"]?["channel_code"]?.stringValue == "5.1.1")
            #expect(failed["error"]?["retryable"] == .bool(false))
            try await eventually("the bounce stored") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 4 }
            let stored = try #require(helpdesk.events.filter { $0.type == "switchboard.message.received" }.last?.data)
            #expect(stored["origin"]?.stringValue == "system")
            #expect(stored["channel_data"]?["email"]?["classification"]?.stringValue == "bounce")
        }
    }

    @Test("a read receipt (MDN, displayed) for our mail is message.status read; one for a deletion is only stored")
    func readReceipt() async throws {
        try await withEmailSMTP { d, helpdesk, socket, sink in
            let (ourID, ourMessageID) = try await Self.answerJane(d, helpdesk, socket, sink)
            func mdn(_ disposition: String) -> String {
                """
                From: Jane <jane@example.org>
                To: support@example.test
                Subject: Read: Hello
                Message-ID: <mdn.\(UUID().uuidString.prefix(6))@example.org>
                MIME-Version: 1.0
                Content-Type: multipart/report; report-type=disposition-notification; boundary="M"

                --M
                Content-Type: text/plain

                Your message was displayed.
                --M
                Content-Type: message/disposition-notification

                Reporting-UA: example.org; Mail
                Final-Recipient: rfc822; jane@example.org
                Original-Message-ID: <\(ourMessageID)>
                Disposition: manual-action/MDN-sent-manually; \(disposition)

                --M--

                """
            }
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"], message: mdn("deleted"), dir: d.dir)
            try await eventually("the deletion notice stored") { helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2 }
            #expect(!helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"] == "read" })
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"], message: mdn("displayed"), dir: d.dir)
            try await eventually("message.status read") {
                helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"] == "read" && $0.data?["message_id"]?.stringValue == ourID }
            }
            let receipt = try #require(helpdesk.events.filter { $0.type == "switchboard.message.received" }.last?.data)
            #expect(receipt["origin"] == "system" && receipt["channel_data"]?["email"]?["classification"] == "auto_reply")
        }
    }

    @Test("overrides.email cc and bcc: Cc in the header and the envelope, Bcc in the envelope only; a refused copy doesn't fail the message, a refused customer stops it before DATA; bad addresses are 422")
    func copies() async throws {
        try await withEmailSMTP { d, helpdesk, socket, sink in
            _ = try await EmailFixture.lmtp(socket, from: "Jane Doe <jane@example.org>", to: ["support@example.test"],
                                            message: EmailFixture.message(subject: "Invoice", messageID: "<inv.\(UUID().uuidString.prefix(8))@example.org>",
                                                                          body: "Please send it to accounting too.\n"), dir: d.dir)
            try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            let conv = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.data?["conversation_id"]?.stringValue)
            func reply(_ email: String) async throws -> TestDaemon.HTTPResult {
                try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"Attached."}],"overrides":{"email":\#(email)}}"#)
            }

            // Refused before anything is queued.
            for bad in [#"{"cc":["not an address"]}"#, #"{"bcc":[42]}"#, #"{"cc":"kim@example.org, nobody"}"#,
                        "{\"cc\":[" + (1...51).map { "\"c\($0)@example.org\"" }.joined(separator: ",") + "]}", #""just text""#,
                        // Only RFC 3834's keywords: a free string could carry a line break and headers.
                        #"{"auto_submitted":"auto-replied\r\nReply-To: evil@attacker.example"}"#, #"{"auto_submitted":"yes please"}"#] {
                let r = try await reply(bad)
                #expect(r.status == 422 && r.json?["code"] == "invalid_request", "\(bad): \(String(decoding: r.body, as: UTF8.self))")
            }
            #expect(try await d.runtime.store.counts().messages == 1, "nothing queued")

            let sent = try await reply(#"""
                {"cc":["Kim Lee <kim@example.org>",{"address":"perm.copy@example.org","name":"Gone"}],"bcc":"audit@example.org, JANE@example.org"}
                """#)
            #expect(sent.status == 202, "\(String(decoding: sent.body, as: UTF8.self))")
            let id = try #require(sent.json?["id"]?.stringValue)
            try await eventually(timeout: 15, "the mail") { sink.messages.count == 1 }
            // The customer first; each copy once (Jane is the customer already); the refused copy left out.
            #expect(sink.messages[0].rcptTos == ["jane@example.org", "kim@example.org", "audit@example.org"])
            let mail = EmailParser.parse(Array(sink.messages[0].content.utf8))
            #expect(mail.to.map(\.address) == ["jane@example.org"])
            #expect(mail.cc == [EmailAddress(address: "kim@example.org", displayName: "Kim Lee"), EmailAddress(address: "perm.copy@example.org", displayName: "Gone")])
            #expect(mail.headers["Bcc"] == nil && !sink.messages[0].content.contains("audit@"), "Bcc is never written into the message")
            try await eventually("sent") {
                helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id && $0.data?["status"] == "sent" }
            }
            let stored = try await d.api("GET", "/v1/messages/\(id)")
            let email = stored.json?["channel_data"]?["email"]
            #expect(email?["cc"] == ["kim@example.org", "perm.copy@example.org"])
            #expect(email?["bcc"] == ["audit@example.org", "jane@example.org"])
            #expect(email?["refused_recipients"]?["perm.copy@example.org"]?.stringValue?.hasPrefix("550") == true, "\(String(describing: email))")

            // The customer's address refused: the copies get nothing either (a retry would send them twice).
            let opened = try await d.api("POST", "/v1/conversations", json: """
                {"channel_id":"mail","address":"perm.customer@example.org","message":{"parts":[{"type":"text","text":"Hello"}],
                 "overrides":{"email":{"subject":"Hello","cc":["kim@example.org"]}}}}
                """)
            #expect(opened.status == 201 || opened.status == 202, "\(String(decoding: opened.body, as: UTF8.self))")
            try await eventually(timeout: 15, "failed") {
                helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"] == "failed" }
            }
            let failed = try #require(helpdesk.events.first { $0.type == "switchboard.message.status" && $0.data?["status"] == "failed" }?.data)
            #expect(failed["error"]?["code"] == "invalid_recipient")
            try await Task.sleep(for: .milliseconds(200))
            #expect(sink.messages.count == 1, "no copy went out without the customer")
        }
    }

    @Test("a conversation started by the helpdesk gets a first mail with the subject and Auto-Submitted from overrides.email; SMTP 5xx fails it for good")
    func proactiveAndFailures() async throws {
        try await withEmailSMTP { d, helpdesk, socket, sink in
            let opened = try await d.api("POST", "/v1/conversations", json: """
                {"channel_id":"mail","address":"Kim Lee <kim@example.org>","message":{"parts":[{"type":"text","text":"Your invoice is ready."}],
                 "overrides":{"email":{"subject":"Your invoice","auto_submitted":"auto-generated"}}}}
                """)
            #expect(opened.status == 201 || opened.status == 202, "\(String(decoding: opened.body, as: UTF8.self))")
            try await eventually(timeout: 15, "first mail") { sink.messages.count == 1 }
            let first = EmailParser.parse(Array(sink.messages[0].content.utf8))
            #expect(first.subject == "Your invoice")
            #expect(first.to == [EmailAddress(address: "kim@example.org", displayName: "Kim Lee")])
            #expect(first.inReplyTo == [])
            #expect(first.headers["Auto-Submitted"] == "auto-generated")
            #expect(first.headers["X-Auto-Response-Suppress"] == "All")
            #expect(first.headers["Content-Type"]?.hasPrefix("multipart/alternative") == true)
            // The next mail of that conversation, the customer not having written, threads under ours.
            let conv = try #require(opened.json?["conversation"]?["id"]?.stringValue,
                                    "\(String(decoding: opened.body, as: UTF8.self))")
            _ = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"A reminder."}]}"#)
            try await eventually(timeout: 15, "second mail") { sink.messages.count == 2 }
            let second = EmailParser.parse(Array(sink.messages[1].content.utf8))
            #expect(second.inReplyTo == [try #require(first.messageID)])
            #expect(second.references == [try #require(first.messageID)])
            #expect(second.subject == "Re: Your invoice")

            let perm = try await d.api("POST", "/v1/conversations", json: """
                {"channel_id":"mail","address":"perm@example.org","message":{"parts":[{"type":"text","text":"Hello"}]}}
                """)
            #expect(perm.status == 201 || perm.status == 202)
            try await eventually(timeout: 15, "permanent failure") {
                helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "failed" }
            }
            let failed = try #require(helpdesk.events.first { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "failed" }?.data)
            #expect(failed["error"]?["code"]?.stringValue == "invalid_recipient")
            #expect(failed["error"]?["channel_code"]?.stringValue == "550 5.1.1")
            #expect(failed["error"]?["retryable"] == .bool(false))
            #expect(sink.messages.count == 2)
        }
    }

    @Test("SMTP errors are classified: 4xx retryable, 5xx permanent, no server retryable")
    func classification() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let sink = try await SMTPSink.start(in: dir)
        do { try await classify(sink) } catch { await sink.stop(); throw error }
        await sink.stop()
    }

    func classify(_ sink: SMTPSink) async throws {
        let client = SMTPClient(config: SMTPClientConfig(host: "127.0.0.1", port: sink.port, tls: .none, username: "agent", password: "secret",
                                                         timeout: .seconds(10)))
        let msg = Array("From: <support@example.test>\r\nTo: <a@example.org>\r\nSubject: x\r\n\r\n.leading dot\r\nend\r\n".utf8)
        do {
            _ = try await client.send(from: "support@example.test", to: ["temp@example.org"], message: msg)
            Issue.record("expected a failure")
        } catch let e as SMTPError {
            #expect(e.code == 450 && e.stage == "RCPT TO")
            let s = EmailChannelAdapter.classify(e)
            #expect(s.retryable && s.code == "channel_error" && s.channelCode == "450 4.2.1")
        }
        do {
            _ = try await client.send(from: "support@example.test", to: ["perm@example.org"], message: msg)
            Issue.record("expected a failure")
        } catch let e as SMTPError {
            let s = EmailChannelAdapter.classify(e)
            #expect(!s.retryable && s.code == "invalid_recipient")
        }
        // Enhanced statuses give the codes a bounce with the same status gets.
        func code(_ reply: Int, _ enhanced: String?, at stage: String) -> String {
            EmailChannelAdapter.classify(SMTPError(code: reply, enhanced: enhanced, message: "refused", stage: stage)).code
        }
        #expect(code(552, "5.2.2", at: "RCPT TO") == "recipient_unavailable" && code(550, "5.1.1", at: "RCPT TO") == "invalid_recipient")
        #expect(code(552, "5.3.4", at: "DATA") == "too_large" && code(554, "5.7.1", at: "DATA") == "rejected")
        #expect(code(550, nil, at: "RCPT TO") == "invalid_recipient" && code(552, nil, at: "DATA") == "too_large")
        // One refused recipient doesn't stop the others; dot-stuffing round-trips.
        let report = try await client.send(from: "support@example.test", to: ["perm@example.org", "ok@example.org"], message: msg)
        #expect(report.accepted == ["ok@example.org"])
        #expect(report.rejected.keys.sorted() == ["perm@example.org"])
        #expect(report.response.hasPrefix("250 2.0.0 Ok: queued as Q"))
        #expect(sink.messages.last?.content == String(decoding: msg, as: UTF8.self))
        // Wrong password: 535, permanent, marks the channel auth_expired.
        let bad = SMTPClient(config: SMTPClientConfig(host: "127.0.0.1", port: sink.port, tls: .none, username: "agent", password: "wrong",
                                                      timeout: .seconds(10)))
        do {
            _ = try await bad.send(from: "support@example.test", to: ["ok@example.org"], message: msg)
            Issue.record("expected a failure")
        } catch let e as SMTPError {
            #expect(e.stage == "AUTH" && e.code == 535)
            #expect(EmailChannelAdapter.classify(e).channelState == .authExpired)
        }
        // STARTTLS required but not offered: refused before anything is sent.
        let tls = SMTPClient(config: SMTPClientConfig(host: "127.0.0.1", port: sink.port, tls: .starttls, timeout: .seconds(10)))
        do {
            _ = try await tls.send(from: "support@example.test", to: ["ok@example.org"], message: msg)
            Issue.record("expected a failure")
        } catch let e as SMTPError {
            #expect(e.stage == "STARTTLS")
        }
        // Nothing listening.
        let closed = SMTPClient(config: SMTPClientConfig(host: "127.0.0.1", port: 1, tls: .none, timeout: .seconds(5)))
        do {
            _ = try await closed.send(from: "support@example.test", to: ["ok@example.org"], message: msg)
            Issue.record("expected a failure")
        } catch let e as SMTPError {
            #expect(EmailChannelAdapter.classify(e).retryable)
        }
        #expect(sink.messages.count == 1)
    }

    @Test("STARTTLS: the client upgrades (checking the certificate against ca_file) before AUTH; plain text to a TLS-only server is refused")
    func startTLS() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let pem = try await makeTestCertificate(in: dir)
        let sink = try await SMTPSink.start(in: dir, tls: pem)
        do { try await startTLS(sink, ca: pem.cert) } catch { await sink.stop(); throw error }
        await sink.stop()
    }

    func startTLS(_ sink: SMTPSink, ca: String) async throws {
        let msg = Array("From: <support@example.test>\r\nTo: <a@example.org>\r\nSubject: tls\r\n\r\nover TLS\r\n".utf8)
        let client = SMTPClient(config: SMTPClientConfig(host: "localhost", port: sink.port, tls: .starttls, username: "agent", password: "secret",
                                                         caFile: ca, timeout: .seconds(10)))
        let report = try await client.send(from: "support@example.test", to: ["ok@example.org"], message: msg)
        #expect(report.accepted == ["ok@example.org"])
        #expect(sink.messages.count == 1)
        #expect(sink.messages.first?.login == "agent")
        #expect(sink.messages.first?.content == String(decoding: msg, as: UTF8.self))

        // The certificate is checked: without the CA it is refused (a connection-level, retryable error).
        let untrusted = SMTPClient(config: SMTPClientConfig(host: "localhost", port: sink.port, tls: .starttls, username: "agent", password: "secret",
                                                            timeout: .seconds(10)))
        do {
            _ = try await untrusted.send(from: "support@example.test", to: ["ok@example.org"], message: msg)
            Issue.record("expected a failure")
        } catch let e as SMTPError {
            #expect(e.stage == "TLS", "\(e)")
            #expect(EmailChannelAdapter.classify(e).retryable)
        }
        // Plain text where the server requires STARTTLS: 530 at AUTH/MAIL, nothing sent.
        let plain = SMTPClient(config: SMTPClientConfig(host: "127.0.0.1", port: sink.port, tls: .none, timeout: .seconds(10)))
        do {
            _ = try await plain.send(from: "support@example.test", to: ["ok@example.org"], message: msg)
            Issue.record("expected a failure")
        } catch let e as SMTPError {
            #expect(e.code == 530, "\(e)")
        }
        #expect(sink.messages.count == 1)
    }

    @Test("XOAUTH2: the token file is read at each send; a refused token ends the exchange and is an auth failure")
    func xoauth2() async throws {
        #expect(EmailAdapter.xoauth2(user: "a@b.c", token: "t") == Data("user=a@b.c\u{1}auth=Bearer t\u{1}\u{1}".utf8).base64EncodedString())
        let dir = TempDir()
        defer { dir.remove() }
        let sink = try await SMTPSink.start(in: dir)
        do {
            let tokenFile = dir.file("token")
            try "token-123\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let client = SMTPClient(config: SMTPClientConfig(host: "127.0.0.1", port: sink.port, tls: .none, username: "agent",
                                                             oauthTokenFile: tokenFile, timeout: .seconds(10)))
            let msg = Array("From: <support@example.test>\r\nTo: <a@example.org>\r\nSubject: oauth\r\n\r\nhi\r\n".utf8)
            _ = try await client.send(from: "support@example.test", to: ["ok@example.org"], message: msg)
            #expect(sink.messages.first?.login == "agent")
            // The operator's refresh job replaced the token with a bad one.
            try "expired\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            do {
                _ = try await client.send(from: "support@example.test", to: ["ok@example.org"], message: msg)
                Issue.record("expected a failure")
            } catch let e as SMTPError {
                #expect(e.stage == "AUTH", "\(e)")
                #expect(EmailChannelAdapter.classify(e).channelState == .authExpired)
            }
            #expect(sink.messages.count == 1)
        } catch { await sink.stop(); throw error }
        await sink.stop()
    }

    @Test("nothing a helpdesk sends can write header text: line breaks in values are flattened, a media type must be type/subtype")
    func noHeaderInjection() {
        var mail = OutboundEmail(from: EmailAddress(address: "support@example.test"), to: [EmailAddress(address: "jane@example.org")],
                                 subject: "Hi", messageID: "m1@example.test", text: "Body")
        mail.autoSubmitted = "auto-replied\r\nBcc: evil@attacker.example"
        mail.attachments = [OutboundAttachment(bytes: [1, 2, 3], mimeType: "text/plain\r\nX-Evil: 1", filename: "a.txt"),
                            OutboundAttachment(bytes: [4], mimeType: "image/PNG", filename: "b.png")]
        let text = String(decoding: MIMEBuilder.build(mail), as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        #expect(!lines.contains { $0.hasPrefix("Bcc:") || $0.hasPrefix("X-Evil:") }, "\(text)")
        #expect(text.contains("Content-Type: application/octet-stream;") && text.contains("Content-Type: image/png;"))
        #expect(MIMEBuilder.contentType("application/vnd.ms-excel") == "application/vnd.ms-excel")
        #expect(MIMEBuilder.contentType("text/plain; charset=x") == "application/octet-stream")
        #expect(MIMEBuilder.contentType("nonsense") == "application/octet-stream")
        // A body line starting with "From " is encoded, so no mbox-minded relay turns it into ">From ".
        #expect(MIMEBuilder.quotedPrintable("Hi\nFrom here on, fine\n.\n").hasPrefix("Hi\r\n=46rom here on, fine\r\n=2E"))
    }

    @Test("media parts go out as attachments (multipart/mixed, base64, RFC 2231 filename); rich parts arrive as text")
    func attachments() async throws {
        try await withEmailSMTP { d, helpdesk, socket, sink in
            _ = try await EmailFixture.lmtp(socket, from: "jane@example.org", to: ["support@example.test"],
                                            message: EmailFixture.message(body: "Send me the invoice.\n"), dir: d.dir)
            try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
            let conv = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.data?["conversation_id"]?.stringValue)
            let pdf: [UInt8] = Array("%PDF-1.4\n".utf8) + (0..<3000).map { UInt8($0 % 251) }
            let up = try await http("POST", d.apiBase + "/v1/media?filename=\("請求書 2026.pdf".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)",
                                    body: pdf, headers: ["authorization": "Bearer \(TestDaemon.token)", "content-type": "application/pdf"])
            #expect(up.status == 201)
            let mediaID = try #require(up.json?["id"]?.stringValue)
            let sent = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: """
                {"parts":[{"type":"text","text":"Here it is."},{"type":"media","kind":"file","media_id":"\(mediaID)","caption":"Invoice"},
                          {"type":"buttons","text":"Was this helpful?","actions":[{"type":"reply","title":"Yes","payload":"y"},{"type":"reply","title":"No","payload":"n"}]}]}
                """)
            #expect(sent.status == 202, "\(String(decoding: sent.body, as: UTF8.self))")
            try await eventually(timeout: 15, "the mail") { sink.messages.count == 1 }
            let content = sink.messages[0].content
            let mail = EmailParser.parse(Array(content.utf8))
            #expect(mail.headers["Content-Type"]?.hasPrefix("multipart/mixed;") == true)
            #expect(mail.attachments.count == 1)
            #expect(mail.attachments.first?.bytes == pdf)
            #expect(mail.attachments.first?.mimeType == "application/pdf")
            #expect(mail.attachments.first?.filename == "請求書 2026.pdf")
            #expect(content.contains("filename*=utf-8''%E8%AB%8B%E6%B1%82%E6%9B%B8%202026.pdf"))
            #expect(mail.text.hasPrefix("Here it is.\n\nInvoice\n\nWas this helpful?"), "\(mail.text)")
            #expect(mail.text.contains("Yes") && mail.text.contains("No"))
            #expect(mail.html?.contains("<p>Here it is.</p>") == true)
            #expect(content.utf8.allSatisfy { $0 < 0x80 })
        }
    }
}
