import Foundation
import Testing
@testable import EmailAdapter
@testable import EmailParsing
@testable import SwitchboardCore

@Suite("Email to common-format parts")
struct ConversionTests {
    /// A report naming several failed recipients lists them all, the customer among them even
    /// after a Cc, and as the original recipient when the final one was a forward.
    @Test func everyFailedRecipientOfAReportIsKept() {
        let dsn = """
            From: MAILER-DAEMON@mx.example\r
            Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r
            \r
            --B\r
            Content-Type: message/delivery-status\r
            \r
            Reporting-MTA: dns; mx.example\r
            \r
            Final-Recipient: rfc822; kim@example.org\r
            Action: failed\r
            Status: 5.1.1\r
            \r
            Final-Recipient: rfc822; jane.forward@elsewhere.example\r
            Original-Recipient: rfc822; jane@example.org\r
            Action: failed\r
            Status: 5.2.2\r
            \r
            Final-Recipient: rfc822; ok@example.org\r
            Action: delivered\r
            Status: 2.0.0\r
            \r
            --B--\r

            """
        let report = EmailClassifier.bounceReport(EmailParser.parse(Array(dsn.utf8)))
        #expect(report.failedRecipients == ["kim@example.org", "jane.forward@elsewhere.example", "jane@example.org"])
    }

    /// Answers go where the customer asked: a contact form's mail names the visitor in
    /// Reply-To; a Google Group rewrites a member's From to the group's address (ours) and is
    /// not our own mail coming back.
    @Test func theCustomerIsReplyToFirst() {
        func mail(_ headers: String) -> EmailInbound {
            EmailInbound(parsing: Array((headers + "Subject: Hi\r\nMessage-ID: <rt.\(UUID().uuidString)@example.org>\r\n\r\nMy order?\r\n").utf8),
                         ownAddresses: ["support@example.com"])
        }
        let form = mail("From: Shop forms <forms@shop.example>\r\nReply-To: Jane Doe <jane@example.org>\r\nTo: support@example.com\r\n")
        #expect(form.classification == .customer)
        #expect(form.peer == Peer(channelUserID: "jane@example.org", displayName: "Jane Doe"))
        let group = mail("From: 'Jane Doe' via Support <support@example.com>\r\nReply-To: jane@example.org\r\nTo: support@example.com\r\n")
        #expect(group.classification == .customer)
        #expect(group.peer == Peer(channelUserID: "jane@example.org", displayName: nil))
        // Our own address with no one else named: our own mail, as before.
        let own = mail("From: Support <support@example.com>\r\nTo: jane@example.org\r\n")
        #expect(own.classification.name == "own_message")
        // Our own mail coming back through a relay that rewrote its Message-ID: its Reply-To is
        // our plus address, which is no customer.
        let echo = mail("From: Support <support@example.com>\r\nReply-To: <support+conv_01ABC-tag1@example.com>\r\nTo: jane@example.org\r\n")
        #expect(echo.classification.name == "own_message")
        #expect(EmailClassifier.isOwn("Support+x@Example.com", ["support@example.com"]) && !EmailClassifier.isOwn("supporter@example.com", ["support@example.com"]))
        // Reply-To naming the sender again changes nothing.
        let same = mail("From: Jane <jane@example.org>\r\nReply-To: jane@example.org\r\n")
        #expect(same.peer == Peer(channelUserID: "jane@example.org", displayName: "Jane"))
    }

    @Test func replyBecomesStrippedTextWithFullTextKept() throws {
        let inbound = EmailInbound(parsing: try Fixture.bytes("reply-gmail-en"), ownAddresses: ["support@example.com"],
                                   envelope: (from: "customer@example.org", to: ["support@example.com"]))
        #expect(inbound.classification == .customer)
        #expect(inbound.peer == Peer(channelUserID: "customer@example.org", displayName: "Customer"))
        #expect(inbound.externalID == "reply-gmail-en@example.org")
        #expect(inbound.replyToExternalID == "orig-reply-gmail-en@example.com")
        #expect(inbound.parts.count == 1)
        guard case .text(let t) = inbound.parts[0] else { Issue.record("not text"); return }
        #expect(t.text == "Yes, please send a replacement.\n\nThanks!")
        #expect(t.format == .plain)
        let full = try #require(t.extra["full_text"]?.stringValue)
        #expect(full.hasPrefix("Yes, please send a replacement.\n\nThanks!\n\nOn Tue, Mar 5, 2024"))
        #expect(full.hasSuffix("> Support"))

        let email = try #require(inbound.channelData["email"]?.objectValue)
        #expect(email["subject"] == "Re: Broken device")
        #expect(email["message_id"] == "reply-gmail-en@example.org")
        #expect(email["in_reply_to"] == ["orig-reply-gmail-en@example.com"])
        #expect(email["references"] == ["root-reply-gmail-en@example.com", "orig-reply-gmail-en@example.com"])
        #expect(email["to"] == [["address": "support@example.com"]])
        #expect(email["from"] == ["address": "customer@example.org", "name": "Customer"])
        #expect(email["quote_marker"] == "on_wrote")
        #expect(email["quoted_text"]?.stringValue?.hasPrefix("On Tue, Mar 5") == true)
        #expect(email["classification"] == "customer")
        #expect(email["envelope"] == ["mail_from": "customer@example.org", "rcpt_to": ["support@example.com"]])

        let event = inbound.inboundEvent(thread: "root-reply-gmail-en@example.com")
        guard case .message(let m) = event.kind else { Issue.record("not a message"); return }
        #expect(m.origin == .customer)
        #expect(m.externalID == "reply-gmail-en@example.org")
        #expect(event.dedupeKey == "reply-gmail-en@example.org")
        #expect(event.thread == "root-reply-gmail-en@example.com")
        #expect(event.raw?.format == "rfc822")
        #expect(event.raw?.bytes == (try Fixture.bytes("reply-gmail-en")))
        #expect(event.occurredAt == nil)
        // A text part's JSON carries full_text beside text.
        let json = JSON.string(inbound.parts[0])
        #expect(json.contains("\"full_text\":"))
        #expect(json.contains("\"type\":\"text\""))
    }

    @Test func attachmentsBecomeMediaPartsAndGoToTheStore() async throws {
        let inbound = EmailInbound(parsing: try Fixture.bytes("nested"))
        #expect(inbound.parts.map(\.type) == ["text", "media", "media", "media"])
        guard case .media(let logo) = inbound.parts[1], case .media(let pdf) = inbound.parts[2] else { Issue.record("parts"); return }
        #expect(logo.kind == .image)
        #expect(logo.filename == "image001.png")
        #expect(logo.mimeType == "image/png")
        #expect(logo.size == 229)
        #expect(logo.sha256?.count == 64)
        #expect(logo.extra["content_id"] == "logo123@example.com")
        #expect(logo.extra["inline"] == true)
        #expect(logo.mediaID == nil)
        #expect(pdf.kind == .file)
        #expect(pdf.filename == "請求書 2024年3月.pdf")
        #expect(pdf.extra["disposition"] == "attachment")
        #expect(pdf.extra["inline"] == nil)
        let email = try #require(inbound.channelData["email"]?.objectValue)
        #expect(email["content_ids"] == ["logo123@example.com": 1])
        #expect(email["html"]?.stringValue?.contains("cid:logo123@example.com") == true)
        #expect(inbound.pendingMedia.map(\.partIndex) == [1, 2, 3])
        #expect(inbound.pendingMedia[1].bytes == MIMETests.pdf)

        // The logo (229 bytes) is over the limit; the pdf and the jpeg are stored.
        let store = MemoryMediaStore(maxBytes: 150)
        let stored = try await inbound.storeMedia(in: store)
        #expect(store.count == 2)
        #expect(stored.pendingMedia.isEmpty)
        guard case .media(let l2) = stored.parts[1], case .media(let p2) = stored.parts[2], case .media(let j2) = stored.parts[3] else {
            Issue.record("parts"); return
        }
        #expect(l2.unavailable == "too_large")
        #expect(l2.mediaID == nil)
        #expect(p2.mediaID == "med_1")
        #expect(j2.mediaID == "med_2")
        #expect(p2.size == Int64(MIMETests.pdf.count))
        let (meta, bytes) = try #require(try await store.get("med_1"))
        #expect(bytes == MIMETests.pdf)
        #expect(meta.filename == "請求書 2024年3月.pdf")
        #expect(meta.mimeType == "application/pdf")
    }

    @Test func machineMailIsASystemMessageWithItsReason() throws {
        let dsn = EmailInbound(parsing: try Fixture.bytes("dsn-bounce"))
        guard case .message(let m) = dsn.inboundEvent(thread: "*").kind else { Issue.record("kind"); return }
        #expect(m.origin == .system)
        let email = try #require(dsn.channelData["email"]?.objectValue)
        #expect(email["classification"] == "bounce")
        #expect(email["classification_reason"] == "multipart/report; report-type=delivery-status")
        #expect(email["bounce"] == ["original_message_id": "sb.conv_01hxyz.abc.def@example.com", "status": "5.1.1", "action": "failed",
                                    "recipient": "nobody@example.org", "diagnostic": "550 5.1.1 <nobody@example.org>: User unknown"])
        #expect(dsn.parts.map(\.type) == ["text", "media", "media"])

        // The bounce becomes a failed status for the message it returns.
        let status = try #require(dsn.bounceStatusEvent())
        guard case .status(let externalID, let delivery, let error) = status.kind else { Issue.record("kind"); return }
        #expect(externalID == "sb.conv_01hxyz.abc.def@example.com")
        #expect(delivery == .failed)
        #expect(error == StatusError(code: "invalid_recipient", channelCode: "5.1.1", message: "550 5.1.1 <nobody@example.org>: User unknown", retryable: false))
        #expect(status.peer.channelUserID == "nobody@example.org")
        #expect(status.dedupeKey == "bounce:20240305141600.ABC123@mx.example.com")
        // Delays and reports without an original give no status.
        let delayed = EmailInbound(email: dsn.email, raw: [], classification: .bounce(BounceReport(originalMessageID: "x@y", action: "delayed"), reason: "r"))
        #expect(delayed.bounceStatusEvent() == nil)
        #expect(EmailInbound(email: dsn.email, raw: [], classification: .bounce(BounceReport(), reason: "r")).bounceStatusEvent() == nil)
        #expect(EmailInbound(email: dsn.email, raw: [], classification: .customer).bounceStatusEvent() == nil)
        // Other statuses get the codes the other channels use for the same outcome.
        func code(_ status: String) -> String? {
            let bounce = EmailInbound(email: dsn.email, raw: [], classification: .bounce(BounceReport(originalMessageID: "x@y", status: status, action: "failed"), reason: "r"))
            guard case .status(_, _, let error)? = bounce.bounceStatusEvent()?.kind else { return nil }
            return error?.code
        }
        #expect(code("5.1.10") == "invalid_recipient" && code("5.2.2") == "recipient_unavailable" && code("5.2.1") == "recipient_unavailable")
        #expect(code("5.3.4") == "too_large" && code("5.2.3") == "too_large" && code("5.7.1") == "rejected")

        let ooo = EmailInbound(parsing: try Fixture.bytes("auto-reply"))
        #expect(ooo.classification == .autoReply(reason: "Auto-Submitted: auto-replied"))
        guard case .message(let m2) = ooo.inboundEvent(thread: "*").kind else { Issue.record("kind"); return }
        #expect(m2.origin == .system)
    }

    @Test func htmlOnlyAndCalendarAndDate() throws {
        let html = EmailInbound(parsing: try Fixture.bytes("html-only"))
        guard case .text(let t) = html.parts[0] else { Issue.record("text"); return }
        #expect(t.text.hasPrefix("Hello there,\n\nYour order & invoice"))
        #expect(t.extra["full_text"] == nil)
        #expect(html.channelData["email"]?["text_from_html"] == true)

        let cal = EmailInbound(parsing: try Fixture.bytes("calendar"))
        guard case .media(let ics) = cal.parts[1] else { Issue.record("media"); return }
        #expect(ics.extra["calendar_method"] == "REQUEST")
        #expect(ics.filename == "invite.ics")

        let jp = EmailInbound(parsing: try Fixture.bytes("jp-iso2022"))
        #expect(jp.occurredAt?.rfc3339 == "2024-03-05T05:15:00.000Z")
        #expect(jp.peer == Peer(channelUserID: "taro.yamada@example.jp", displayName: "山田 太郎"))
        #expect(jp.channelData["email"]?["subject"] == "【至急】注文番号1234の件について")
    }

    @Test func messagesWithoutFromOrBodyStillConvert() {
        let bare = EmailInbound(parsing: Array("Return-Path: <bounce@example.net>\r\n\r\n".utf8))
        #expect(bare.peer.channelUserID == "bounce@example.net")
        #expect(bare.parts.map(\.type) == ["text"])
        #expect(bare.externalID.hasSuffix("@switchboard.invalid"))
        let empty = EmailInbound(parsing: [])
        #expect(empty.peer.channelUserID == "")
        #expect(empty.parts.count == 1)
    }
}
