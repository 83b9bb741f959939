import Foundation
import Testing
@testable import EmailAdapter
@testable import EmailParsing

@Suite("Email loop and noise guard")
struct ClassificationTests {
    static let codec = ThreadCodec(secret: Array("classification-secret".utf8), domain: "example.com")

    @Test func fixtures() throws {
        #expect(EmailClassifier.classify(try Fixture.parse("auto-reply")) == .autoReply(reason: "Auto-Submitted: auto-replied"))
        #expect(EmailClassifier.classify(try Fixture.parse("ooo-exchange"))
            == .autoReply(reason: "Exchange out-of-office (X-Auto-Response-Suppress with X-MS-Exchange-Inbox-Rules-Loop)"))
        #expect(EmailClassifier.classify(try Fixture.parse("x-autoreply")) == .autoReply(reason: "X-Autoreply header"))
        #expect(EmailClassifier.classify(try Fixture.parse("bulk-list")) == .bulk(reason: "Precedence: list"))
        #expect(EmailClassifier.classify(try Fixture.parse("bulk-precedence")) == .bulk(reason: "Precedence: bulk"))
        for customer in ["nested", "reply-gmail-en", "jp-iso2022", "html-only", "winmail"] {
            #expect(EmailClassifier.classify(try Fixture.parse(customer)) == .customer, "\(customer)")
        }
    }

    @Test func deliveryStatusNotification() throws {
        let email = try Fixture.parse("dsn-bounce")
        let c = EmailClassifier.classify(email, ownAddresses: ["support@example.com"], codec: Self.codec)
        let expected = BounceReport(originalMessageID: "sb.conv_01hxyz.abc.def@example.com", status: "5.1.1", action: "failed",
                                    recipient: "nobody@example.org", diagnostic: "550 5.1.1 <nobody@example.org>: User unknown",
                                    reportingMTA: "mx.example.com")
        var withFailed = expected
        withFailed.failedRecipients = ["nobody@example.org"]
        #expect(c == .bounce(withFailed, reason: "multipart/report; report-type=delivery-status"))
        #expect(expected.isPermanent)
        #expect(!expected.isDelay)
        #expect(email.from == EmailAddress(address: "mailer-daemon@mx.example.com", displayName: "Mail Delivery System"))
        #expect(email.returnPath?.address == "")
    }

    @Test func headerRules() {
        func classify(_ headers: String...) -> EmailClassification {
            EmailClassifier.classify(parseMail((["From: Customer <c@example.org>"] + headers).joined(separator: "\r\n") + "\r\n\r\nhi"),
                                     ownAddresses: ["Support@Example.com"], codec: Self.codec)
        }
        #expect(classify() == .customer)
        #expect(classify("Auto-Submitted: no") == .customer)
        #expect(classify("Auto-Submitted: auto-generated") == .autoReply(reason: "Auto-Submitted: auto-generated"))
        #expect(classify("Auto-Submitted: Auto-Notified; x=y") == .autoReply(reason: "Auto-Submitted: auto-notified"))
        #expect(classify("X-Autoreply: no") == .customer)
        #expect(classify("X-Autorespond: vacation") == .autoReply(reason: "X-Autorespond header"))
        #expect(classify("X-Loop: helpdesk") == .autoReply(reason: "X-Loop header"))
        #expect(classify("Precedence: junk") == .bulk(reason: "Precedence: junk"))
        #expect(classify("Precedence: first-class") == .customer)
        #expect(classify("List-Id: <x.lists.example.org>") == .bulk(reason: "List-Id header"))
        #expect(classify("Return-Path: <>") == .bounce(BounceReport(), reason: "empty return path (<>)"))
        #expect(classify("Return-Path: <c@example.org>") == .customer)
        var gone = BounceReport(recipient: "gone@example.net")
        gone.failedRecipients = ["gone@example.net"]
        #expect(classify("X-Failed-Recipients: gone@example.net") == .bounce(gone, reason: "X-Failed-Recipients header"))
        #expect(classify("Content-Type: multipart/report; report-type=disposition-notification; boundary=x")
            == .autoReply(reason: "read receipt (multipart/report; report-type=disposition-notification)"))
    }

    @Test func daemonSendersAndOwnMail() {
        let daemon = EmailClassifier.classify(parseMail("From: Postmaster <POSTMASTER@mx.example.net>\r\nSubject: failure\r\n\r\nMessage-ID: <sb.x@example.com>\r\n"))
        #expect(daemon == .bounce(BounceReport(originalMessageID: "sb.x@example.com"), reason: "sender is postmaster"))

        let ownID = Self.codec.makeMessageID(conversationID: "conv_01HXYZABCDEFGHJKMNPQRSTVWX")
        let own = EmailClassifier.classify(parseMail("From: someone@example.org\r\nMessage-ID: <\(ownID)>\r\n\r\nx"), codec: Self.codec)
        #expect(own == .ownMessage(reason: "Message-ID is one of ours"))
        let forged = EmailClassifier.classify(parseMail("From: someone@example.org\r\nMessage-ID: <sb.conv_01hxyz.aaaa.bbbb@example.com>\r\n\r\nx"), codec: Self.codec)
        #expect(forged == .customer)
        let fromUs = EmailClassifier.classify(parseMail("From: Support <support@EXAMPLE.com>\r\n\r\nx"), ownAddresses: ["support@example.com"])
        #expect(fromUs == .ownMessage(reason: "From is our own address support@example.com"))
        #expect(fromUs.isAutomatic)
        #expect(!EmailClassification.customer.isAutomatic)
    }
}
