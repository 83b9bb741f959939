import Foundation
import Testing
@testable import EmailAdapter
@testable import EmailParsing

@Suite("Email quoted-history stripping")
struct QuoteTests {
    struct Case: Sendable, CustomStringConvertible {
        var fixture: String
        var text: String
        var marker: String
        var quotedStart: String
        var description: String { fixture }
    }

    static let cases: [Case] = [
        Case(fixture: "reply-gmail-en", text: "Yes, please send a replacement.\n\nThanks!", marker: "on_wrote",
             quotedStart: "On Tue, Mar 5, 2024 at 2:15 PM Support Team <\nsupport@example.com> wrote:"),
        Case(fixture: "reply-outlook-en", text: "The serial number is SN-4471.\n\nRegards,\nMax", marker: "outlook_header",
             quotedStart: "________________________________\nFrom: Support Team <support@example.com>"),
        Case(fixture: "reply-gmail-ko", text: "네, 교환으로 부탁드립니다.", marker: "on_wrote",
             quotedStart: "2024년 3월 5일 (화) 오후 2:15, 고객지원 <support@example.com>님이 작성:"),
        Case(fixture: "reply-outlook-ko", text: "사진을 첨부했습니다.", marker: "original_message",
             quotedStart: "-----원본 메시지-----\n보낸 사람: \"고객지원\" <support@example.com>"),
        Case(fixture: "reply-gmail-ja", text: "交換でお願いします。", marker: "on_wrote",
             quotedStart: "2024年3月5日(火) 14:15 サポート <support@example.com>:"),
        Case(fixture: "reply-outlook-ja", text: "写真を添付しました。\nよろしくお願いいたします。", marker: "original_message",
             quotedStart: "-----Original Message-----\nFrom: サポート <support@example.com>"),
        Case(fixture: "reply-thunderbird-ja", text: "承知しました。", marker: "on_wrote",
             quotedStart: "2024/03/05 14:15 に サポート さんは書きました:\n> 明日発送いたします。"),
    ]

    @Test("reply fixture is stripped", arguments: cases)
    func fixtureReply(_ c: Case) throws {
        let email = try Fixture.parse(c.fixture)
        let r = QuoteStripper.strip(email.text)
        #expect(r.text == c.text)
        #expect(r.marker == c.marker)
        #expect(r.quoted?.hasPrefix(c.quotedStart) == true, "quoted: \(r.quoted ?? "nil")")
        // The full body is kept whole.
        #expect(r.fullText == email.text.trimmingCharacters(in: .newlines))
        #expect(r.fullText.hasPrefix(c.text))
    }

    @Test func subjectsOfReplyFixtures() throws {
        #expect(try Fixture.parse("reply-outlook-ko").subject == "RE: 파손 문의")
        #expect(try Fixture.parse("reply-gmail-ja").subject == "Re: 破損について")
        #expect(try Fixture.parse("reply-gmail-ko").subject == "Re: 파손 문의")
    }

    @Test func japaneseNoMessageAttribution() {
        let r = QuoteStripper.strip("了解です。\n\n2024/03/05 14:15、サポート <support@example.com> のメッセージ:\n\n> 発送しました。\n")
        #expect(r.text == "了解です。")
        #expect(r.quoted == "2024/03/05 14:15、サポート <support@example.com> のメッセージ:\n\n> 発送しました。")
        let outlookJa = QuoteStripper.strip("確認します。\n\n-----元のメッセージ-----\n差出人: サポート\n送信日時: 2024年3月5日\n件名: 発送\n\n本文\n")
        #expect(outlookJa.text == "確認します。")
        #expect(outlookJa.marker == "original_message")
        let headerOnly = QuoteStripper.strip("はい。\n\n差出人: サポート <support@example.com>\n送信日時: 2024年3月5日 14:15\n宛先: customer@example.org\n件名: 発送\n\n本文\n")
        #expect(headerOnly.text == "はい。")
        #expect(headerOnly.marker == "outlook_header")
        let koHeader = QuoteStripper.strip("네.\n\n보낸 사람: 고객지원 <support@example.com>\n보낸 날짜: 2024년 3월 5일 화요일 오후 2:15\n받는 사람: me\n\n본문")
        #expect(koHeader.text == "네.")
    }

    @Test func attributionWrappedOverThreeLines() {
        let r = QuoteStripper.strip("Fine.\n\nOn Tuesday, March 5, 2024,\nSupport Team of Example Inc.\n<support@example.com> wrote:\n> old\n")
        #expect(r.text == "Fine.")
        #expect(r.marker == "on_wrote")
    }

    @Test func trailingQuoteBlockWithoutAttribution() {
        let r = QuoteStripper.strip("Thanks, that works.\n\n> Try restarting it.\n>\n> Support\n")
        #expect(r.text == "Thanks, that works.")
        #expect(r.marker == "quote_block")
        #expect(r.quoted == "> Try restarting it.\n>\n> Support")
    }

    @Test func inlineAnswersAreKept() {
        // Quoted lines in the middle followed by the customer's own text: nothing is cut.
        let body = "> Which model?\nModel X2\n> Which colour?\nBlue\n"
        let r = QuoteStripper.strip(body)
        #expect(r.text == "> Which model?\nModel X2\n> Which colour?\nBlue")
        #expect(!r.stripped)
    }

    @Test func inlineAnswersBelowAnAttributionAreKept() {
        let body = "See answers below.\n\nOn Tue, 5 Mar 2024, Support <support@example.com> wrote:\n> Order number?\n12345\n> Address?\n10 Main St\n"
        let r = QuoteStripper.strip(body)
        #expect(!r.stripped)
        #expect(r.text.hasSuffix("> Address?\n10 Main St"))
        // Only quoted lines below it: cut as before.
        #expect(QuoteStripper.strip("Fine.\n\nOn Tue, 5 Mar 2024, Support <support@example.com> wrote:\n> Order number?\n>\n> Thanks\n").text == "Fine.")
    }

    @Test func headerLikeLinesInTheCustomersTextAreNotAHeaderBlock() {
        let flight = QuoteStripper.strip("Flight details\nFrom: Berlin\nTo: Paris\nDate: 5 May\n\nCan I change it?\n")
        #expect(!flight.stripped)
        #expect(flight.text.hasSuffix("Can I change it?"))
        #expect(!QuoteStripper.strip("Route\nFrom: Berlin\nTo: Paris\n").stripped)
        let forwarded = QuoteStripper.strip("FYI\n\nFrom: Shop\nSent: Monday\nSubject: Your order\n\nOld text\n")
        #expect(forwarded.text == "FYI" && forwarded.marker == "outlook_header")
    }

    @Test func nothingAboveTheQuoteKeepsTheFullText() {
        let body = "-----Original Message-----\nFrom: a@example.com\nSent: today\n\nForwarded content\n"
        let r = QuoteStripper.strip(body)
        #expect(r.text == "-----Original Message-----\nFrom: a@example.com\nSent: today\n\nForwarded content")
        #expect(!r.stripped)
    }

    @Test func ordinarySentencesAreNotMarkers() {
        let body = "My colleague wrote:\nthe device is broken.\nFrom: the warehouse we heard nothing.\nCRLF\r\nline"
        let r = QuoteStripper.strip(body)
        #expect(!r.stripped)
        #expect(r.text == "My colleague wrote:\nthe device is broken.\nFrom: the warehouse we heard nothing.\nCRLF\nline")
    }
}
