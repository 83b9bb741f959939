import Foundation
import Testing
@testable import SwitchboardCore

/// The project's own JSON parser, streaming encoder and tree decoder, checked against
/// Foundation's JSONSerialization as an independent implementation.
@Suite("JSON coding")
struct JSONCodingTests {
    /// Foundation's JSONDecoder reading of the same text (guessing each value's type, as the
    /// project's JSONValue decoding used to), with every number as a Double for comparison.
    struct FoundationValue: Decodable {
        var value: JSONValue
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { value = .null }
            else if let b = try? c.decode(Bool.self) { value = .bool(b) }
            else if let d = try? c.decode(Double.self) { value = .double(d) }
            else if let s = try? c.decode(String.self) { value = .string(s) }
            else if let a = try? c.decode([FoundationValue].self) { value = .array(a.map(\.value)) }
            else { value = .object(try c.decode([String: FoundationValue].self).mapValues(\.value)) }
        }
    }
    static func oracle(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(FoundationValue.self, from: Data(text.utf8)).value
    }
    static func numbersAsDoubles(_ v: JSONValue) -> JSONValue {
        switch v {
        case .int(let i): return .double(Double(i))
        case .array(let a): return .array(a.map(numbersAsDoubles))
        case .object(let o): return .object(o.mapValues(numbersAsDoubles))
        default: return v
        }
    }

    static let valid: [String] = [
        #"{}"#, #"[]"#, #"null"#, #"true"#, #"false"#, #"0"#, #"-0"#, #"42"#, #"-17"#, #"9223372036854775807"#,
        #"-9223372036854775808"#, #"1.5"#, #"-2.25e3"#, #"1E2"#, #"6.02e23"#, #"0.000001"#,
        #"  { "a" : [ 1 , 2 , { "b" : null } ] , "c" : "d" }  "#,
        #""plain""#, #""esc \" \\ \/ \b \f \n \r \t""#, #""\u00e9\u4e2d\ud83d\ude00""#, #""é中😀""#,
        #"{"text":"Hello","nested":{"deep":[[[]]],"empty":{}},"n":[1,2.5,-3,true,false,null]}"#,
    ]

    @Test("parses like Foundation", arguments: valid)
    func parsesLikeFoundation(_ text: String) throws {
        let ours = try JSONParser.parse(Array(text.utf8))
        #expect(Self.numbersAsDoubles(ours) == (try Self.oracle(text)))
    }

    @Test func integersStayIntegersAndBigOnesBecomeDoubles() throws {
        #expect(try JSONParser.parse(Array("12345678901".utf8)) == .int(12_345_678_901))
        #expect(try JSONParser.parse(Array("18446744073709551616".utf8)) == .double(18446744073709551616))
        #expect(try JSONParser.parse(Array("2.0".utf8)) == .double(2))
    }

    static let invalid: [String] = [
        "", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "[1 2]", "01", "1.", ".5", "1e", "-", "+1", "tru", "nul",
        "\"unterminated", "\"bad \\x escape\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\u12G4\"", "\"ctl \u{01}\"",
        "{} extra", "[1] [2]", "{1:2}", "NaN", "Infinity",
    ]

    @Test("rejects invalid JSON", arguments: invalid)
    func rejects(_ text: String) {
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(Array(text.utf8)) }
    }

    @Test func rejectsInvalidUTF8AndDeepNesting() {
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse([0x22, 0xC3, 0x28, 0x22]) }
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(Array(deep.utf8)) }
        let ok = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        #expect(throws: Never.self) { try JSONParser.parse(Array(ok.utf8)) }
    }

    @Test func writerEscapesAndFoundationReadsItBack() throws {
        let tricky = "quote \" backslash \\ slash / newline \n tab \t bell \u{07} nul \u{0} é 中 😀"
        let value: JSONValue = ["s": .string(tricky), "b": ["x": 1, "a": [true, .null, 2.5, -7]], "k\"ey": "v"]
        let bytes = try JSON.bytes(value)
        let text = String(decoding: bytes, as: UTF8.self)
        // Sorted members, slashes unescaped, control characters escaped.
        #expect(text.hasPrefix(#"{"b":{"a":[true,null,2.5,-7],"x":1},"k\"ey":"v","s":"quote \" backslash \\ slash / newline \n tab \t bell \u0007 nul \u0000 é 中 😀"}"#))
        #expect(try Self.oracle(text) == Self.numbersAsDoubles(value))
        #expect(try JSONParser.parse(bytes) == value)
    }

    @Test func nonFiniteNumbersAreRefused() {
        #expect(throws: EncodingError.self) { try JSON.bytes(JSONValue.double(.nan)) }
        #expect(throws: EncodingError.self) { try JSON.bytes(["x": Double.infinity]) }
    }

    struct Inner: Codable, Equatable { var name: String; var tags: [String]; var score: Double? }
    struct Outer: Codable, Equatable {
        var id: Int64
        var flag: Bool
        var inner: Inner
        var list: [Inner]
        var map: [String: Int]
        var optional: String?
        var any: JSONValue
        var url: URL
    }

    static let sample = Outer(id: -5, flag: true, inner: Inner(name: "n/\"q\"", tags: ["a", "b"], score: 0.25),
                              list: [Inner(name: "x", tags: [], score: nil)], map: ["one": 1], optional: nil,
                              any: ["k": [1, "two"]], url: URL(string: "https://example.com/a?b=c")!)

    @Test func codableRoundTripAgreesWithFoundation() throws {
        let ours = try JSON.encode(Self.sample)
        // Foundation decodes what we wrote, and we decode what Foundation wrote.
        #expect(try JSONDecoder().decode(Outer.self, from: ours) == Self.sample)
        let theirs = try JSONEncoder().encode(Self.sample)
        #expect(try JSON.decode(Outer.self, from: theirs) == Self.sample)
        // Members sorted by name at every level; nil optionals omitted.
        let text = String(decoding: ours, as: UTF8.self)
        #expect(text == #"{"any":{"k":[1,"two"]},"flag":true,"id":-5,"inner":{"name":"n/\"q\"","score":0.25,"tags":["a","b"]},"list":[{"name":"x","tags":[]}],"map":{"one":1},"url":"https://example.com/a?b=c"}"#)
        // Byte-identical to Foundation's sorted-keys output.
        let foundation = JSONEncoder()
        foundation.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(text == String(decoding: try foundation.encode(Self.sample), as: UTF8.self))
    }

    @Test func decodingErrorsNameThePath() throws {
        let bad = #"{"id":1,"flag":true,"inner":{"name":"n","tags":["a",2]},"list":[],"map":{},"any":null,"url":"https://x"}"#
        do {
            _ = try JSON.decode(Outer.self, from: Data(bad.utf8))
            Issue.record("decoded invalid input")
        } catch let DecodingError.typeMismatch(_, ctx) {
            #expect(ctx.codingPath.map(\.stringValue) == ["inner", "tags", "Index 1"] || ctx.codingPath.map(\.stringValue) == ["inner", "tags", "1"])
        }
        let missing = #"{"id":1}"#
        #expect(throws: DecodingError.self) { try JSON.decode(Outer.self, from: Data(missing.utf8)) }
        let fraction = #"{"id":1.5,"flag":true,"inner":{"name":"n","tags":[]},"list":[],"map":{},"any":null,"url":"https://x"}"#
        #expect(throws: DecodingError.self) { try JSON.decode(Outer.self, from: Data(fraction.utf8)) }
    }

    @Test func unknownMembersOfOpenTypesSurviveBothWays() throws {
        let text = #"{"type":"text","text":"hi","future_field":{"z":1,"a":[true]},"another":"x"}"#
        let part = try JSON.decode(Part.self, from: Data(text.utf8))
        let again = try JSONParser.parse(JSON.bytes(part))
        #expect(again == (try JSONParser.parse(Array(text.utf8))))
    }
}
