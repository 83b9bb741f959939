import Foundation
import Testing
@testable import EmailAdapter
@testable import EmailParsing

@Suite("Email MIME structure")
struct MIMETests {
    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
                               0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00] + (0..<200).map { UInt8($0) }
    static let pdf = Array("%PDF-1.4\n% fixture\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".utf8)

    @Test func nestedMultipartWithInlineImageAndAttachments() throws {
        let email = try Fixture.parse("nested")
        // Structure: mixed → (alternative → (plain, related → (html, png)), pdf, jpeg). The
        // boundaries are prefixes of each other, which must not confuse the split.
        #expect(email.root.contentType.mimeType == "multipart/mixed")
        #expect(email.root.children.map(\.contentType.mimeType) == ["multipart/alternative", "application/pdf", "image/jpeg"])
        let alt = email.root.children[0]
        #expect(alt.children.map(\.contentType.mimeType) == ["text/plain", "multipart/related"])
        #expect(alt.children[1].children.map(\.contentType.mimeType) == ["text/html", "image/png"])
        #expect(alt.children[1].children[1].path == "1.2.2")

        #expect(email.text == "Hi team,\n\nThe invoice is attached and the logo is inline.\n\nThanks,\nJane")
        #expect(email.html == #"<html><head><style>p { color: red; }</style></head><body><p>Hi team,</p><p>The invoice is attached and the logo is <b>inline</b>.</p><img src="cid:logo123@example.com" alt="logo"><p>Thanks,<br>Jane</p></body></html>"#)
        #expect(!email.textDerivedFromHTML)

        #expect(email.attachments.map(\.filename) == ["image001.png", "請求書 2024年3月.pdf", "photo.jpg"])
        #expect(email.attachments.map(\.mimeType) == ["image/png", "application/pdf", "image/jpeg"])
        let logo = email.attachments[0]
        #expect(logo.bytes == Self.png)
        #expect(logo.contentID == "logo123@example.com")
        #expect(logo.disposition == nil)
        #expect(logo.isInline)
        let invoice = email.attachments[1]
        #expect(invoice.bytes == Self.pdf)
        #expect(invoice.disposition == "attachment")
        #expect(!invoice.isInline)
        #expect(email.attachments[2].bytes == [0xFF, 0xD8, 0xFF, 0xE0] + Array("JPEGDATA".utf8))
        #expect(!email.attachments[2].isInline)

        // Preamble and epilogue are dropped everywhere.
        let everything = email.text + (email.html ?? "") + email.attachments.map { String(decoding: $0.bytes, as: UTF8.self) }.joined()
        #expect(!everything.contains("multi-part message in MIME format"))
        #expect(!everything.contains("epilogue"))
        #expect(email.warnings.isEmpty)

        #expect(email.from == EmailAddress(address: "jane.doe@example.com", displayName: "Doe, Jane (Sales)"))
        #expect(email.to == [EmailAddress(address: "support@example.com", displayName: "Support")])
        #expect(email.cc.map(\.address) == ["bob@example.org", "carol@example.org"])
        #expect(email.cc.map(\.displayName) == ["Bob", "Carol C."])
        #expect(email.date?.rfc3339 == "2024-03-06T14:30:00.000Z")
        #expect(email.messageID == "nested-1@example.com")
    }

    @Test func htmlOnlyMailGetsDerivedText() throws {
        let email = try Fixture.parse("html-only")
        #expect(email.textDerivedFromHTML)
        #expect(email.text == "Hello there,\n\nYour order & invoice – ready 😀\n\n- Item one\n- Item two\n\nPrice: 5 < 6 > 4 \"ok\" © 2024\nLine two")
        #expect(email.html?.hasPrefix("<!DOCTYPE html>") == true)
        #expect(email.attachments.isEmpty)
    }

    @Test func htmlToText() {
        #expect(HTMLText.toText("<p>One</p><p>Two</p>") == "One\n\nTwo")
        // HTML may leave </head> out: the body starts where <body> does, not at the end of the mail.
        #expect(HTMLText.toText("<html><head><meta charset=utf-8><body><p>My order is broken</p>") == "My order is broken")
        #expect(HTMLText.toText("<head><title>Re: order<body>Thanks") == "Thanks")
        // A missing </title> doesn't swallow the rest; a missing </script> does (it is code).
        #expect(HTMLText.toText("<title>Order<p>Where is it?</p>") == "Order\n\nWhere is it?" || HTMLText.toText("<title>Order<p>Where is it?</p>").hasSuffix("Where is it?"))
        #expect(HTMLText.toText("<p>Hi</p><script>var x = 1;") == "Hi")
        #expect(HTMLText.toText("<div>a</div><div>b</div>c<br>d") == "a\nb\nc\nd")
        #expect(HTMLText.toText("<SCRIPT type='x'>var a = '<p>';</SCRIPT><Style>x{}</Style>ok") == "ok")
        #expect(HTMLText.toText("a   b\n\n c") == "a b c")
        #expect(HTMLText.toText("<pre>  keep\n   this</pre>") == "  keep\n   this")
        #expect(HTMLText.toText("1 < 2 and 3 > 2 &unknown; &#65;&#x42;&#146;") == "1 < 2 and 3 > 2 &unknown; AB’")
        #expect(HTMLText.toText("<a href=\"x\">link</a> <img src=\"cid:x\" alt=\"[logo]\">") == "link [logo]")
        #expect(HTMLText.toText("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>") == "a b\nc")
        #expect(HTMLText.toText("<p>unterminated <b") == "unterminated <b")
    }

    @Test func rfc2231JapaneseFilenames() throws {
        let email = try Fixture.parse("rfc2231-ja")
        #expect(email.subject == "添付ファイル")
        #expect(email.text == "ファイルを送ります。") // the line break before a delimiter is the delimiter's
        #expect(email.attachments.map(\.filename) == ["見積書.xlsx", "納品書_最終版.pdf", "写真.jpg"])
        #expect(email.attachments.allSatisfy { $0.filenameFromMessage })
        #expect(email.attachments.map(\.bytes) == [[0x50, 0x4B, 0x03, 0x04], Array("%PDF".utf8), [0xFF, 0xD8, 0xFF, 0xE0]])
    }

    @Test func winmailDatAndCalendarAreKeptAsFiles() throws {
        let tnef = try Fixture.parse("winmail")
        #expect(tnef.text == "See attached.")
        #expect(tnef.attachments.count == 1)
        let dat = tnef.attachments[0]
        #expect(dat.filename == "winmail.dat")
        #expect(dat.isTNEF)
        #expect(dat.bytes == [0x78, 0x9F, 0x3E, 0x22] + (0..<512).map { UInt8($0 % 256) })

        let cal = try Fixture.parse("calendar")
        #expect(cal.text == "You are invited: Call about the order")
        #expect(cal.html == "<p>You are invited: <b>Call about the order</b></p>")
        #expect(cal.attachments.map(\.filename) == ["invite.ics", "invite.ics"])
        #expect(cal.attachments.allSatisfy { $0.isCalendar })
        #expect(cal.attachments[0].parameters["method"] == "REQUEST")
        #expect(cal.attachments[0].filenameFromMessage == false)
        let ics = String(decoding: cal.attachments[1].bytes, as: UTF8.self)
        #expect(ics.hasPrefix("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"))
        #expect(ics.contains("SUMMARY:Call about the order\r\n"))
        // The inline copy ends where its delimiter's line break begins.
        #expect(String(decoding: cal.attachments[0].bytes, as: UTF8.self) + "\r\n" == ics)
    }

    @Test func malformedMessageKeepsWhatItCan() throws {
        let email = try Fixture.parse("malformed")
        #expect(email.subject == "Broken mail ✓")
        #expect(email.messageID == "malformed@example.org")
        #expect(email.headers.fields.map(\.name) == ["From", "To", "Subject", "Message-ID", "Content-Type"])
        // Bad base64 (junk characters, no padding) still decodes; the missing final boundary
        // ends the last part at EOF; the unknown transfer encoding keeps the bytes.
        #expect(email.text == "Hello world\nSecond text part without a final boundary ✓\n")
        #expect(email.attachments.count == 1)
        #expect(email.attachments[0].filename == "data.bin")
        #expect(email.attachments[0].bytes == Array("begin 644 data.bin".utf8) + [0x00, 0x01, 0x02])
        #expect(email.warnings == ["multipart without its final boundary: the last part runs to the end"])
    }

    @Test func quotedPrintableDetails() throws {
        let email = try Fixture.parse("qp-softbreaks")
        #expect(email.subject == "Quoted printable ✓")
        #expect(email.text == "Hello, this line is long enough that it gets a soft line break in the middle.\nEquals: 1+1=2, café and naïve.\nA literal = sign that starts no escape =ZZ stays.\nLast line")
        #expect(TransferEncoding.quotedPrintable(Array("a=\r\nb=3d=\nc =20\t \r\nend=".utf8)) == Array("ab=c  \r\nend".utf8))
        #expect(TransferEncoding.quotedPrintable(Array("trailing =".utf8)) == Array("trailing ".utf8))
        #expect(TransferEncoding.quotedPrintable(Array("=4".utf8)) == Array("=4".utf8))
    }

    @Test func base64Leniency() {
        #expect(TransferEncoding.base64(Array("SGVs\r\nbG8=".utf8)) == Array("Hello".utf8))
        #expect(TransferEncoding.base64(Array("SGVsbG8".utf8)) == Array("Hello".utf8))
        #expect(TransferEncoding.base64(Array(" S G V s b G 8 g d 2 9 y b G Q = \n".utf8)) == Array("Hello world".utf8))
        #expect(TransferEncoding.base64(Array("SGk=SGk=".utf8)) == Array("HiHi".utf8))
        #expect(TransferEncoding.base64(Array("!!!".utf8)).isEmpty)
        #expect(TransferEncoding.base64(Array("Q".utf8)).isEmpty)
    }

    @Test func sevenBitEightBitBinaryPassThrough() {
        for cte in ["7bit", "8bit", "binary", "x-custom"] {
            let email = EmailParser.parse(mail("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: \(cte)", "",
                                               "caf\u{E9} =41 line"))
            #expect(email.text == "café =41 line", "\(cte)")
        }
    }

    @Test func formatFlowedIsUnwrapped() {
        let email = EmailParser.parse(mail("Content-Type: text/plain; charset=utf-8; format=flowed", "",
                                           "This paragraph was ", "wrapped by the client.", " From stuffed.", "> quoted ", "> line", "-- ", "sig"))
        #expect(email.text == "This paragraph was wrapped by the client.\nFrom stuffed.\n> quoted line\n-- \nsig")
        let delsp = EmailParser.parse(mail("Content-Type: text/plain; format=flowed; delsp=yes", "", "日本語の文章が ", "続きます。"))
        #expect(delsp.text == "日本語の文章が続きます。")
        // Without format=flowed nothing is joined.
        #expect(parseMail("Content-Type: text/plain\r\n\r\nline one \r\nline two").text == "line one \nline two")
    }

    @Test func boundaryEdgeCases() {
        // Quoted boundary with specials, whitespace after delimiters, a longer boundary that
        // shares the prefix, LF-only line ends.
        let s = "Content-Type: multipart/mixed; boundary=\"a b=?/c\"\n\npreamble\n--a b=?/c  \nContent-Type: text/plain\n\none\n--a b=?/cX\nstill one\n--a b=?/c\n\ntwo\n--a b=?/c--\t\nepilogue\n"
        let email = parseMail(s)
        #expect(email.root.children.count == 2)
        #expect(email.text == "one\n--a b=?/cX\nstill one\ntwo")
        #expect(email.warnings.isEmpty)
    }

    @Test func multipartWithoutBoundaryParameterOrLines() {
        // No boundary parameter: the first `--` line names it.
        let sniffed = parseMail("Content-Type: multipart/alternative\r\n\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nsniffed\r\n--xyz--\r\n")
        #expect(sniffed.text == "sniffed")
        // No delimiter at all: the body is kept as text.
        let none = parseMail("Content-Type: multipart/mixed; boundary=nope\r\n\r\njust text\r\n")
        #expect(none.text == "just text\n")
        #expect(none.warnings.count == 1)
    }

    @Test func signedEncryptedReportAndForwardedMessages() {
        let signed = parseMail("""
        Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=s\r
        \r
        --s\r
        Content-Type: text/plain\r
        \r
        signed text\r
        --s\r
        Content-Type: application/pgp-signature\r
        \r
        -----BEGIN PGP SIGNATURE-----\r
        --s--\r
        """)
        #expect(signed.text == "signed text")
        #expect(signed.attachments.map(\.filename) == ["signature.asc"])

        let forwarded = parseMail("""
        Content-Type: multipart/mixed; boundary=f\r
        \r
        --f\r
        Content-Type: text/plain\r
        \r
        FYI\r
        --f\r
        Content-Type: message/rfc822\r
        \r
        Subject: =?UTF-8?Q?Old_thread_=E2=9C=93?=\r
        Message-ID: <old@example.com>\r
        \r
        Inner text must not join the body.\r
        --f--\r
        """)
        #expect(forwarded.text == "FYI")
        #expect(forwarded.attachments.map(\.filename) == ["Old thread ✓.eml"])
        #expect(forwarded.attachments[0].isMessage)
    }

    @Test func textPartsInMixedAreConcatenatedAndNamedTextIsAnAttachment() {
        let email = parseMail("""
        Content-Type: multipart/mixed; boundary=m\r
        \r
        --m\r
        Content-Type: text/plain\r
        \r
        before image\r
        --m\r
        Content-Type: image/gif\r
        Content-Disposition: inline\r
        Content-Transfer-Encoding: base64\r
        \r
        R0lGODlh\r
        --m\r
        Content-Type: text/plain\r
        \r
        after image\r
        --m\r
        Content-Type: text/plain; name="notes.txt"\r
        \r
        attached notes\r
        --m--\r
        """)
        #expect(email.text == "before image\nafter image")
        #expect(email.attachments.map(\.filename) == ["image.gif", "notes.txt"])
        #expect(email.attachments[0].bytes == Array("GIF89a".utf8))
    }

    @Test func cidReferencesMayBePercentEncodedAndCaseDiffer() {
        let email = parseMail("""
        Content-Type: multipart/related; boundary=r\r
        \r
        --r\r
        Content-Type: text/html\r
        \r
        <img src="CID:part1%40example.com"><img src='cid:unused-not-here'>\r
        --r\r
        Content-Type: image/png\r
        Content-ID: <part1@example.com>\r
        \r
        x\r
        --r\r
        Content-Type: image/png\r
        Content-ID: <other@example.com>\r
        Content-Disposition: attachment; filename="other.png"\r
        \r
        y\r
        --r--\r
        """)
        #expect(email.attachments.map(\.isInline) == [true, false])
        #expect(email.attachments.map(\.filename) == ["part1.png", "other.png"])
        #expect(email.text == "")
    }

    @Test func limitsBoundDepthAndPartCount() {
        // 60 levels of nesting: parsed down to the limit, then kept opaque.
        var deep = ""
        for i in 0..<60 { deep += "Content-Type: multipart/mixed; boundary=b\(i)\r\n\r\n--b\(i)\r\n" }
        deep += "Content-Type: text/plain\r\n\r\ndeep text\r\n"
        let email = parseMail(deep)
        #expect(email.warnings.contains { $0.contains("nesting deeper than 20") })
        var depth = 0
        var node = email.root
        while let child = node.children.first { node = child; depth += 1 }
        #expect(depth == 20)

        // 800 parts with a 100-part limit.
        var many = "Content-Type: multipart/mixed; boundary=p\r\n\r\n"
        for i in 0..<800 { many += "--p\r\nContent-Type: application/octet-stream\r\n\r\n\(i)\r\n" }
        many += "--p--\r\n"
        let limited = EmailParser.parse(Array(many.utf8), limits: MIMELimits(maxParts: 100))
        #expect(limited.root.allParts.count == 100)
        #expect(limited.attachments.count == 99)
        #expect(limited.warnings.contains { $0.contains("more than 100 MIME parts") })

        // Bytes beyond the size limit are not parsed.
        let big = Array(("Subject: big\r\n\r\n" + String(repeating: "x", count: 5000)).utf8)
        let cut = EmailParser.parse(big, limits: MIMELimits(maxMessageBytes: 2000))
        #expect(cut.text.count == 2000 - 16)
        #expect(cut.size == big.count)
        #expect(cut.warnings.count == 1)
    }

    @Test func filenamesAreSanitized() {
        #expect(Filenames.sanitize("../../etc/passwd") == "passwd")
        #expect(Filenames.sanitize("C:\\Users\\x\\evil.exe") == "evil.exe")
        #expect(Filenames.sanitize("...hidden") == "hidden")
        #expect(Filenames.sanitize("a\u{0}b\u{7}c.txt") == "abc.txt")
        #expect(Filenames.sanitize(String(repeating: "n", count: 300) + ".pdf").utf8.count == 200)
        #expect(Filenames.sanitize(String(repeating: "n", count: 300) + ".pdf").hasSuffix(".pdf"))
    }

    @Test func missingMessageIDIsSynthesizedStably() {
        let a = parseMail("From: a@example.com\r\n\r\nhello")
        let b = parseMail("From: a@example.com\r\n\r\nhello")
        #expect(a.messageID == nil)
        #expect(a.messageIDOrSynthesized == b.messageIDOrSynthesized)
        #expect(a.messageIDOrSynthesized.hasSuffix("@switchboard.invalid"))
        #expect(parseMail("From: a@example.com\r\n\r\nother").messageIDOrSynthesized != a.messageIDOrSynthesized)
    }
}
