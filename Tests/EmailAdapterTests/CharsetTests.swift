import Foundation
import Testing
@testable import EmailAdapter
@testable import EmailParsing

/// Every charset fixture decodes to the exact text Python encoded (see Fixtures/make_fixtures.py).
@Suite("Email charsets")
struct CharsetTests {
    struct Case: Sendable, CustomStringConvertible {
        var fixture: String
        var subject: String
        var text: String
        var fromName: String?
        var description: String { fixture }
    }

    static let cases: [Case] = [
        Case(fixture: "jp-iso2022", subject: "【至急】注文番号1234の件について",
             text: "山田様\n\nいつもお世話になっております。\n注文した商品がまだ届いていません。\n①の件、㈱髙島屋より連絡済みです。\nｶﾀｶﾅもOK\n",
             fromName: "山田 太郎"),
        Case(fixture: "jp-sjis", subject: "見積もりのお願い", text: "お見積もりをお願いします。\n型番：ＡＢ－１２３\n数量：①１０個\n", fromName: "佐藤"),
        Case(fixture: "jp-eucjp", subject: "返品について", text: "こんにちは。\n返品の手続きについて教えてください。\n"),
        Case(fixture: "ko-euckr", subject: "배송 문의", text: "안녕하세요.\n배송 문의드립니다. 똠방각하\n", fromName: "김민수"),
        Case(fixture: "ko-ksc5601", subject: "환불 요청", text: "환불을 요청합니다.\n주문번호: 5678\n", fromName: "Lee"),
        Case(fixture: "zh-gb2312", subject: "订单查询", text: "您好，我的订单还没有到。喆\n"),
        Case(fixture: "zh-big5", subject: "退貨", text: "您好，請問退貨流程。\n"),
        Case(fixture: "win1252", subject: "Invoice – “March”", text: "We’re sorry – the “Premium” plan costs €30…\n", fromName: "Patrick O’Neill"),
        Case(fixture: "latin1", subject: "Grüße", text: "Grüße aus München – “Danke”\n", fromName: "Jürgen Müller"),
        Case(fixture: "latin2", subject: "Zażółć gęślą jaźń", text: "Dzień dobry, proszę o fakturę.\n"),
        Case(fixture: "latin15", subject: "Prix : 25 €", text: "Le prix est de 25 €, chef-d'œuvre de Šárka.\n"),
    ]

    @Test("fixture decodes exactly", arguments: cases)
    func fixtureDecodes(_ c: Case) throws {
        let email = try Fixture.parse(c.fixture)
        #expect(email.subject == c.subject)
        #expect(email.text == c.text)
        if let name = c.fromName { #expect(email.from?.displayName == name) }
        #expect(email.warnings.isEmpty)
    }

    @Test func aliasTableMapsOutlookAndLegacyLabels() {
        #expect(Charset.decoder(forLabel: "ks_c_5601-1987") == .iconv("CP949"))
        #expect(Charset.decoder(forLabel: "EUC-KR") == .iconv("CP949"))
        #expect(Charset.decoder(forLabel: "\"gb2312\"") == .iconv("GB18030"))
        #expect(Charset.decoder(forLabel: "GBK") == .iconv("GB18030"))
        #expect(Charset.decoder(forLabel: "big5") == .iconv("BIG5-HKSCS"))
        #expect(Charset.decoder(forLabel: "Shift_JIS") == .iconv("CP932"))
        #expect(Charset.decoder(forLabel: "iso-2022-jp") == .iso2022jp)
        #expect(Charset.decoder(forLabel: "EUC-JP") == .iconv("EUC-JP-MS"))
        #expect(Charset.decoder(forLabel: "iso-8859-1") == .windows1252)
        #expect(Charset.decoder(forLabel: "1252") == .windows1252)
        #expect(Charset.decoder(forLabel: "windows-1251") == .iconv("WINDOWS-1251"))
        #expect(Charset.decoder(forLabel: "ISO_8859-2:1987") == .iconv("ISO-8859-2"))
        #expect(Charset.decoder(forLabel: "utf-8*en") == .utf8)
        #expect(Charset.decoder(forLabel: "x-made-up") == nil)
        for label in ["ks_c_5601-1987", "euc-kr", "gb2312", "big5", "shift_jis", "euc-jp", "iso-2022-jp", "iso-8859-15",
                      "windows-1250", "windows-1251", "windows-1256", "koi8-r", "utf-16"] {
            #expect(Charset.isSupported(label), "iconv on this system must decode \(label)")
        }
    }

    @Test func euckrLabelDecodesCP949OnlyCharacters() {
        // 똠 (0x8C63) exists only in CP949; glibc's EUC-KR would turn it into U+008C.
        #expect(Charset.decode([0x8C, 0x63], label: "euc-kr") == "똠")
    }

    @Test func gb2312LabelDecodesGBKAndGB18030() {
        // 喆 is GBK-only; the 4-byte GB18030 sequence 0x81308130 is U+0080.
        #expect(Charset.decode([0x86, 0xB4], label: "gb2312") == "喆")
        #expect(Charset.decode([0x81, 0x30, 0x81, 0x30], label: "gb2312") == "\u{80}")
    }

    @Test func iconvSubstitutesInvalidSequencesAndContinues() {
        // 가 0xFF 나 in CP949: the invalid byte becomes U+FFFD and decoding goes on (EILSEQ).
        #expect(Charset.decode([0xB0, 0xA1, 0xFF, 0xB3, 0xAA], label: "ks_c_5601-1987") == "가\u{FFFD}나")
        // A truncated double-byte character at the end (EINVAL).
        #expect(Charset.decode([0xB0, 0xA1, 0xB0], label: "euc-kr") == "가\u{FFFD}")
        #expect(Charset.iconvDecode([0xB0, 0xA1, 0xFF], from: "CP949", onlyIfClean: true) == nil)
    }

    @Test func iconvGrowsItsOutputBuffer() {
        // Half-width katakana: 1 byte in CP932, 3 bytes in UTF-8, so the first buffer (2× input) overflows (E2BIG).
        let input = [UInt8](repeating: 0xB1, count: 5000)
        let s = Charset.decode(input, label: "shift_jis")
        #expect(s == String(repeating: "ｱ", count: 5000))
        #expect(s.utf8.count == 15000)
    }

    @Test func unknownAndMissingCharsetsFallBack() {
        let utf8 = Array("naïve ✓".utf8)
        #expect(Charset.decode(utf8, label: "x-unknown-charset") == "naïve ✓")
        #expect(Charset.decode(utf8, label: nil) == "naïve ✓")
        // Not UTF-8: windows-1252, never dropped.
        #expect(Charset.decode([0x93, 0x68, 0x69, 0x94, 0xE9], label: "x-unknown-charset") == "“hi”é")
        #expect(Charset.decode([0x93, 0x68, 0x69, 0x94], label: "us-ascii") == "“hi”")
        #expect(Charset.decode([0x63, 0x61, 0x66, 0xC3, 0xA9], label: "us-ascii") == "café")
        // Declared UTF-8 but broken: lossy, not lost.
        #expect(Charset.decode([0x61, 0xFF, 0x62], label: "utf-8") == "a\u{FFFD}b")
    }

    @Test func undeclaredISO2022JPIsDetectedByItsEscapes() throws {
        // All 7-bit, so it would pass as ASCII escape garbage (Zammad #6144).
        let jis: [UInt8] = [0x1B, 0x24, 0x42, 0x46, 0x7C, 0x4B, 0x5C, 0x38, 0x6C, 0x1B, 0x28, 0x42]
        #expect(Charset.decode(jis, label: nil) == "日本語")
        #expect(Charset.decode(jis, label: "us-ascii") == "日本語")
        let email = parseMail("From: a@example.jp\r\nSubject: x\r\n\r\n" + String(decoding: jis, as: UTF8.self) + "\r\n")
        #expect(email.text == "日本語\n")
    }

    @Test func iso2022jpExtensionsAndKana() {
        // NEC row 13 (①) and NEC-selected IBM extension (髙) under ESC $ B, as CP50220 writes them.
        #expect(Charset.decode([0x1B, 0x24, 0x42, 0x2D, 0x21, 0x7C, 0x62, 0x1B, 0x28, 0x42], label: "ISO-2022-JP") == "①髙")
        // Half-width katakana via ESC ( I and via SO/SI.
        #expect(Charset.decode([0x1B, 0x28, 0x49, 0x36, 0x40, 0x1B, 0x28, 0x42], label: "iso-2022-jp") == "ｶﾀ")
        #expect(Charset.decode([0x0E, 0x36, 0x40, 0x0F, 0x41], label: "iso-2022-jp") == "ｶﾀA")
    }

    @Test func rawEightBitHeadersUseTheBodyCharset() {
        var bytes = Array("From: a@example.jp\r\nSubject: ".utf8)
        bytes += [0x8C, 0xA9, 0x90, 0xCF] // 見積 in Shift_JIS, unencoded in the header
        bytes += Array("\r\nContent-Type: text/plain; charset=shift_jis\r\n\r\nbody\r\n".utf8)
        #expect(EmailParser.parse(bytes).subject == "見積")
        // Raw UTF-8 (SMTPUTF8 mail) is taken as is.
        #expect(parseMail("Subject: Grüße ✓\r\n\r\nx").subject == "Grüße ✓")
    }
}
