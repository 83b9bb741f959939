import Foundation
import Testing
@testable import SwitchboardCore

@Suite("Timestamp: RFC 3339 UTC with milliseconds")
struct TimestampTests {
    /// (text, milliseconds since the epoch), checked against Python's datetime.
    static let known: [(String, Int64)] = [
        ("1970-01-01T00:00:00.000Z", 0),
        ("2025-05-01T10:15:30.123Z", 1_746_094_530_123),
        ("2000-02-29T23:59:59.999Z", 951_868_799_999),
        ("2024-02-29T12:00:00.000Z", 1_709_208_000_000),
        ("2100-03-01T00:00:00.000Z", 4_107_542_400_000),
        ("1969-12-31T23:59:59.999Z", -1),
        ("1969-07-20T20:17:40.000Z", -14_182_940_000),
        ("1900-01-01T00:00:00.000Z", -2_208_988_800_000),
        ("1600-02-29T00:00:00.000Z", -11_670_998_400_000),
        ("0001-01-01T00:00:00.000Z", -62_135_596_800_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ]

    @Test func formatsAndParsesKnownInstants() {
        for (text, ms) in Self.known {
            #expect(Timestamp(milliseconds: ms).rfc3339 == text)
            #expect(Timestamp(rfc3339: text)?.milliseconds == ms, "\(text)")
        }
    }

    @Test func formatIsAlwaysThreeFractionDigitsAndZ() {
        let pattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let ms = Int64.random(in: -2_208_988_800_000...4_102_444_800_000, using: &rng)
            let text = Timestamp(milliseconds: ms).rfc3339
            #expect(text.wholeMatch(of: pattern) != nil, "\(text)")
            #expect(Timestamp(rfc3339: text)?.milliseconds == ms, "\(text)")
        }
        #expect(Timestamp(milliseconds: 1_746_094_530_000).rfc3339 == "2025-05-01T10:15:30.000Z")
        #expect(Timestamp(milliseconds: 1_746_094_530_005).rfc3339 == "2025-05-01T10:15:30.005Z")
    }

    @Test func agreesWithTheGregorianCalendar() throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try #require(TimeZone(identifier: "UTC"))
        var rng = SystemRandomNumberGenerator()
        // 1601…2399: Foundation's Gregorian calendar switches to Julian before 1582.
        for _ in 0..<500 {
            let seconds = Int64.random(in: -11_644_473_600...13_569_465_600, using: &rng)
            let date = Date(timeIntervalSince1970: TimeInterval(seconds))
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            let expected = String(format: "%04d-%02d-%02dT%02d:%02d:%02d.000Z", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
            #expect(Timestamp(milliseconds: seconds * 1000).rfc3339 == expected)
        }
    }

    @Test func parsesOffsets() {
        let utc = Timestamp(rfc3339: "2025-05-01T10:15:30.123Z")
        #expect(utc != nil)
        #expect(Timestamp(rfc3339: "2025-05-01T12:15:30.123+02:00") == utc)
        #expect(Timestamp(rfc3339: "2025-05-01T04:45:30.123-05:30") == utc)
        #expect(Timestamp(rfc3339: "2025-05-01T10:15:30.123+00:00") == utc)
        #expect(Timestamp(rfc3339: "2025-05-01T10:15:30.123-00:00") == utc)
        // An offset that crosses midnight, a month and a year.
        #expect(Timestamp(rfc3339: "2025-01-01T01:00:00+09:00")?.rfc3339 == "2024-12-31T16:00:00.000Z")
        #expect(Timestamp(rfc3339: "2024-02-28T20:00:00-05:00")?.rfc3339 == "2024-02-29T01:00:00.000Z")
        // Lower-case separators and a space instead of `T` (allowed by RFC 3339 §5.6's note).
        #expect(Timestamp(rfc3339: "2025-05-01t10:15:30.123z") == utc)
        #expect(Timestamp(rfc3339: "2025-05-01 10:15:30.123Z") == utc)
    }

    @Test func parsesFractionsOfOneToThreeDigits() {
        #expect(Timestamp(rfc3339: "2025-05-01T10:15:30Z")?.rfc3339 == "2025-05-01T10:15:30.000Z")
        #expect(Timestamp(rfc3339: "2025-05-01T10:15:30.1Z")?.rfc3339 == "2025-05-01T10:15:30.100Z")
        #expect(Timestamp(rfc3339: "2025-05-01T10:15:30.12Z")?.rfc3339 == "2025-05-01T10:15:30.120Z")
        #expect(Timestamp(rfc3339: "2025-05-01T10:15:30.123Z")?.rfc3339 == "2025-05-01T10:15:30.123Z")
        #expect(Timestamp(rfc3339: "2025-05-01T10:15:30.5+01:00")?.rfc3339 == "2025-05-01T09:15:30.500Z")
        // Before 1970 the fraction still counts forward from the second.
        #expect(Timestamp(rfc3339: "1969-12-31T23:59:59.5Z")?.milliseconds == -500)
    }

    @Test func parsesFractionsOfFourToNineDigits() {
        // Regression: more than 3 fraction digits used to trap.
        let cases = [
            ("2025-05-01T10:15:30.1234Z", "2025-05-01T10:15:30.123Z"),
            ("2025-05-01T10:15:30.12345Z", "2025-05-01T10:15:30.123Z"),
            ("2025-05-01T10:15:30.123456Z", "2025-05-01T10:15:30.123Z"),
            ("2025-05-01T10:15:30.1234567Z", "2025-05-01T10:15:30.123Z"),
            ("2025-05-01T10:15:30.99999999Z", "2025-05-01T10:15:30.999Z"),
            ("2025-05-01T12:15:30.123456789+02:00", "2025-05-01T10:15:30.123Z"),
        ]
        for (input, expected) in cases {
            #expect(Timestamp(rfc3339: input)?.rfc3339 == expected, "\(input)")
        }
    }

    @Test func leapYears() {
        #expect(Timestamp(rfc3339: "2024-02-29T00:00:00Z") != nil)
        #expect(Timestamp(rfc3339: "2000-02-29T00:00:00Z") != nil)
        // The day before 1 March is 29 February only in leap years (÷4, not ÷100 unless ÷400).
        for (year, leap) in [(2023, false), (2024, true), (1900, false), (2000, true), (2100, false), (1600, true), (1968, true)] {
            let march = Timestamp(rfc3339: String(format: "%04d-03-01T00:00:00.000Z", year))!
            let before = Timestamp(milliseconds: march.milliseconds - 86_400_000).rfc3339
            #expect(before == String(format: "%04d-02-%02dT00:00:00.000Z", year, leap ? 29 : 28))
        }
        // A whole leap year is 366 days.
        let a = Timestamp(rfc3339: "2024-01-01T00:00:00Z")!, b = Timestamp(rfc3339: "2025-01-01T00:00:00Z")!
        #expect(b.milliseconds - a.milliseconds == 366 * 86_400_000)
    }

    @Test func datesBefore1970() {
        #expect(Timestamp(milliseconds: -1).rfc3339 == "1969-12-31T23:59:59.999Z")
        #expect(Timestamp(milliseconds: -1000).rfc3339 == "1969-12-31T23:59:59.000Z")
        #expect(Timestamp(milliseconds: -1001).rfc3339 == "1969-12-31T23:59:58.999Z")
        #expect(Timestamp(milliseconds: -86_400_000).rfc3339 == "1969-12-31T00:00:00.000Z")
        #expect(Timestamp(rfc3339: "1955-11-05T06:00:00.000-08:00")?.rfc3339 == "1955-11-05T14:00:00.000Z")
        #expect(Timestamp(rfc3339: "1900-03-01T00:00:00Z")!.milliseconds - Timestamp(rfc3339: "1900-02-28T00:00:00Z")!.milliseconds == 86_400_000)
    }

    @Test(arguments: [
        "", "2025-05-01", "2025-05-01T10:15:30", "2025-05-01T10:15:30.123", "2025-05-01T10:15:30.Z",
        "2025-13-01T10:15:30Z", "2025-00-10T10:15:30Z", "2025-05-32T10:15:30Z", "2025-05-01T24:00:00Z",
        "2025-05-01T10:60:00Z", "2025-05-01T10:15:30+0200", "2025-05-01T10:15:30+02", "2025-05-01T10:15:30.123ZZ",
        "25-05-01T10:15:30.123Z", "2025/05/01T10:15:30Z", "2025-05-01T10:15:30.123 Z", "not a timestamp at all",
    ])
    func rejectsMalformed(_ text: String) {
        #expect(Timestamp(rfc3339: text) == nil)
    }

    @Test func codable() throws {
        let t = Timestamp(milliseconds: 1_746_094_530_123)
        #expect(JSON.string(t) == #""2025-05-01T10:15:30.123Z""#)
        #expect(try JSON.decode(Timestamp.self, from: Data(#""2025-05-01T12:15:30.123+02:00""#.utf8)) == t)
        #expect(throws: DecodingError.self) { try JSON.decode(Timestamp.self, from: Data(#""yesterday""#.utf8)) }
        #expect(throws: DecodingError.self) { try JSON.decode(Timestamp.self, from: Data("1746094530123".utf8)) }
    }

    @Test func dateConversionAndOrdering() {
        #expect(Timestamp(Date(timeIntervalSince1970: 1.2345)).milliseconds == 1234)
        #expect(Timestamp(Date(timeIntervalSince1970: -0.0005)).milliseconds == -1) // rounds down, not toward zero
        #expect(Timestamp(milliseconds: 1_746_094_530_123).date.timeIntervalSince1970 == 1_746_094_530.123)
        #expect(Timestamp(milliseconds: 1) < Timestamp(milliseconds: 2))
        #expect(Timestamp(milliseconds: 1000).adding(seconds: 1.5).milliseconds == 2500)
        let now = Timestamp.now()
        #expect(abs(now.milliseconds - Int64(Date().timeIntervalSince1970 * 1000)) < 5000)
        #expect(now.description == now.rfc3339)
    }
}
