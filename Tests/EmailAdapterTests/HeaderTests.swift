import Foundation
import Testing
@testable import EmailAdapter
@testable import EmailParsing

@Suite("Email headers, addresses, encoded words, parameters")
struct HeaderTests {
    @Test func unfoldsAndKeepsRawBytes() {
        let bytes = mail("Subject: first", " second", "\tthird", "X-Empty:", "Received: from a", "RECEIVED: from b",
                         "message-id: <m1@example.com>", "", "body")
        let (headers, bodyStart) = HeaderParser.parse(bytes)
        #expect(headers["subject"] == "first second\tthird")
        #expect(headers.field("Subject")?.rawValue == Array(" first\r\n second\r\n\tthird".utf8))
        #expect(headers.values("Received") == ["from a", "from b"])
        #expect(headers.fields(named: "received").map(\.name) == ["Received", "RECEIVED"])
        #expect(headers["Message-ID"] == "<m1@example.com>")
        #expect(headers["MESSAGE-ID"] == "<m1@example.com>")
        #expect(headers["X-Empty"] == "")
        #expect(Array(bytes[bodyStart...]) == Array("body".utf8))
    }

    @Test func toleratesLFStrayLinesAndMbox() {
        let bytes = Array("From someone@example.com Tue Mar  5 14:15:00 2024\nTo: a@example.com\nnot a header line\nSubject: ok\n\nBody\n".utf8)
        let (headers, bodyStart) = HeaderParser.parse(bytes)
        #expect(headers.fields.map(\.name) == ["To", "Subject"])
        #expect(String(decoding: bytes[bodyStart...], as: UTF8.self) == "Body\n")
        // A part that starts with content has no header block.
        let (none, start) = HeaderParser.parse(Array("just text\nmore\n".utf8))
        #expect(none.isEmpty && start == 0)
    }

    @Test func addressLists() {
        let list = AddressParser.parse(#""Last, First" <First.Last@Example.COM>, (Support desk) help@example.org, Team: dev@example.net, "G. Hopper" <grace@example.net>;, plain@example.com (Plain Person), <@relay.example:routed@example.com>"#)
        #expect(list.map(\.address) == ["first.last@example.com", "help@example.org", "dev@example.net", "grace@example.net",
                                         "plain@example.com", "routed@example.com"])
        #expect(list.map(\.displayName) == ["Last, First", "Support desk", nil, "G. Hopper", "Plain Person", nil])
        #expect(list.map(\.group) == [nil, nil, "Team", "Team", nil, nil])
        #expect(AddressParser.parse("undisclosed-recipients:;").isEmpty)
    }

    @Test func encodedDisplayNamesAreDecodedAfterSplitting() {
        // The decoded name contains a comma and angle brackets: still one mailbox.
        let list = AddressParser.parse("=?UTF-8?Q?Doe=2C_John_=3Cboss=3E?= <john@example.com>, =?UTF-8?B?7ZmN6ri464+Z?= <hong@example.kr>")
        #expect(list.count == 2)
        #expect(list[0] == EmailAddress(address: "john@example.com", displayName: "Doe, John <boss>"))
        #expect(list[1] == EmailAddress(address: "hong@example.kr", displayName: "홍길동"))
        // Encoded words inside quotes (Outlook does this) are decoded too.
        #expect(AddressParser.first(#""=?utf-8?B?SsO8cmdlbg==?=" <j@example.de>"#)?.displayName == "Jürgen")
    }

    @Test func oddAddressesDoNotBreak() {
        #expect(AddressParser.first(#"<""@example.com>"#)?.isValid == false)
        #expect(AddressParser.first("Name Only")?.isValid == false)
        #expect(AddressParser.first("john.doe @ example.com")?.address == "john.doe@example.com")
        #expect(AddressParser.parse("").isEmpty)
        #expect(AddressParser.parse(",,,;;:<>\"").count <= 2)
        #expect(EmailAddress(address: "a@b.example").isValid)
    }

    @Test func encodedWords() {
        #expect(EncodedWords.decode("=?UTF-8?B?SGVsbG8=?= =?UTF-8?Q?_W=C3=B6rld?=") == "Hello Wörld")
        #expect(EncodedWords.decode("Hello =?utf-8?q?W=C3=B6rld?= !") == "Hello Wörld !")
        // A multibyte character split across two words.
        #expect(EncodedWords.decode("=?UTF-8?B?5pel?=\r\n =?UTF-8?B?5pys?=") == "日本")
        #expect(EncodedWords.decode("=?UTF-8?Q?=E6=97?= =?UTF-8?Q?=A5?=") == "日")
        // Language tag (RFC 2231 §5) and lower-case encoding letters.
        #expect(EncodedWords.decode("=?utf-8*en?q?Hello_there?=") == "Hello there")
        // Words in different charsets next to each other.
        #expect(EncodedWords.decode("=?ISO-8859-1?Q?Gr=FC=DFe?= =?UTF-8?Q?_=E2=9C=93?=") == "Grüße ✓")
        // Malformed words stay as they are.
        #expect(EncodedWords.decode("=?utf-8?X?abc?=") == "=?utf-8?X?abc?=")
        #expect(EncodedWords.decode("=?utf-8?Q?unterminated") == "=?utf-8?Q?unterminated")
        #expect(EncodedWords.decode("price =? 5") == "price =? 5")
    }

    @Test func rfc2231Parameters() {
        let euro = ParameterizedValue(parsing: "attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf; filename=\"fallback.pdf\"")
        #expect(euro.value == "attachment")
        #expect(euro["filename"] == "€ rates.pdf")
        let continued = ParameterizedValue(parsing: "attachment; filename*1=\"name.pdf\"; filename*0=\"long \"")
        #expect(continued["filename"] == "long name.pdf")
        let mixed = ParameterizedValue(parsing: "inline; filename*0*=utf-8'ja'%E8%AB%8B%E6; filename*1*=%B1%82; filename*2=\".txt\"")
        #expect(mixed["filename"] == "請求.txt")
        let quoted = ParameterizedValue(parsing: #"attachment; filename="semi;colon \"q\".txt"; size=10"#)
        #expect(quoted["filename"] == #"semi;colon "q".txt"#)
        #expect(quoted["size"] == "10")
        // An escape split across two sections (not allowed, but seen) still decodes.
        let split = ParameterizedValue(parsing: "attachment; filename*0*=UTF-8''%E6%97; filename*1*=%A5.txt")
        #expect(split["filename"] == "日.txt")
        let encodedWord = ParameterizedValue(parsing: "attachment; filename=\"=?UTF-8?B?5pel5pys?=.pdf\"")
        #expect(encodedWord["filename"] == "日本.pdf")
    }

    @Test func contentTypeDefaults() {
        #expect(ContentType(parsing: nil) == .textPlain)
        #expect(ContentType(parsing: "garbage").mimeType == "text/plain")
        let ct = ContentType(parsing: "Multipart/Mixed; Boundary=\"=_abc/def?x\"")
        #expect(ct.mimeType == "multipart/mixed")
        #expect(ct.boundary == "=_abc/def?x")
        #expect(ContentType(parsing: "text/plain; charset=\"ISO-2022-JP\"").charset == "ISO-2022-JP")
    }

    @Test func messageIDLists() {
        #expect(MessageIDs.parse("<a@x> <b@y>\r\n <c@z> <a@x>") == ["a@x", "b@y", "c@z"])
        #expect(MessageIDs.parse("<a@x> (Jane's message of \"Tue\" <not@this>)") == ["a@x"])
        #expect(MessageIDs.parse("bare@id.example, other@id.example") == ["bare@id.example", "other@id.example"])
        #expect(MessageIDs.parse("").isEmpty)
    }

    @Test func dates() {
        #expect(EmailDate.parse("Wed, 6 Mar 2024 09:30:00 -0500 (EST)")?.rfc3339 == "2024-03-06T14:30:00.000Z")
        #expect(EmailDate.parse("6 Mar 24 09:30 GMT")?.rfc3339 == "2024-03-06T09:30:00.000Z")
        #expect(EmailDate.parse("Tue, 05 Mar 2024 14:15:00 +0900")?.rfc3339 == "2024-03-05T05:15:00.000Z")
        #expect(EmailDate.parse("Tue, 05 Mar 2024 14:15:00")?.rfc3339 == "2024-03-05T14:15:00.000Z")
        #expect(EmailDate.parse("yesterday") == nil)
        #expect(EmailDate.parse("1 Jan 9223372036854775807 00:00 +0000") == nil) // no overflow trap
        #expect(EmailDate.parse("Tue, 45 Foo 2024 99:99:99 +0000") == nil)
    }
}
