import Foundation

/// A point in time with millisecond precision, encoded as RFC 3339 UTC with milliseconds and `Z`
/// (`2025-05-01T10:15:30.123Z`) — the one time format of the public contract.
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// Milliseconds since the Unix epoch.
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    public init(_ date: Date) { self.milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
    public static func now() -> Timestamp { Timestamp(Date()) }

    public var date: Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }
    public func adding(seconds: Double) -> Timestamp { Timestamp(milliseconds: milliseconds + Int64(seconds * 1000)) }
    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.milliseconds < b.milliseconds }

    public var description: String { rfc3339 }

    /// Formats without DateFormatter: this runs for every stored event, and the civil-date
    /// arithmetic below is both faster and free of locale surprises.
    public var rfc3339: String {
        var w = JSONWriter(capacity: 24)
        writeRFC3339(&w)
        return String(decoding: w.bytes, as: UTF8.self)
    }

    /// `rfc3339`'s text, written into `w` without a String in between (years before 1 are
    /// written as 0000; nothing stores them).
    public func writeRFC3339(_ w: inout JSONWriter) {
        let ms = ((milliseconds % 1000) + 1000) % 1000
        let secs = (milliseconds - ms) / 1000
        let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
        let secOfDay = secs - days * 86400
        let (y, m, d) = Timestamp.civil(fromDays: days)
        w.zeroPadded(y, width: 4); w.raw(UInt8(ascii: "-"))
        w.zeroPadded(m, width: 2); w.raw(UInt8(ascii: "-"))
        w.zeroPadded(d, width: 2); w.raw(UInt8(ascii: "T"))
        w.zeroPadded(secOfDay / 3600, width: 2); w.raw(UInt8(ascii: ":"))
        w.zeroPadded(secOfDay % 3600 / 60, width: 2); w.raw(UInt8(ascii: ":"))
        w.zeroPadded(secOfDay % 60, width: 2); w.raw(UInt8(ascii: "."))
        w.zeroPadded(ms, width: 3); w.raw(UInt8(ascii: "Z"))
    }

    /// Parses RFC 3339 (any fraction length, `Z` or a numeric offset).
    public init?(rfc3339 s: String) {
        let u = Array(s.utf8)
        guard u.count >= 20 else { return nil }
        func num(_ a: Int, _ b: Int) -> Int64? {
            var v: Int64 = 0
            for i in a..<b {
                guard u[i] >= 48 && u[i] <= 57 else { return nil }
                v = v * 10 + Int64(u[i] - 48)
            }
            return v
        }
        guard let y = num(0, 4), u[4] == 45, let mo = num(5, 7), u[7] == 45, let d = num(8, 10),
              u[10] == 84 || u[10] == 116 || u[10] == 32,
              let h = num(11, 13), u[13] == 58, let mi = num(14, 16), u[16] == 58, let se = num(17, 19)
        else { return nil }
        var i = 19
        var ms: Int64 = 0
        if i < u.count && u[i] == 46 {
            i += 1
            var digits = 0
            while i < u.count && u[i] >= 48 && u[i] <= 57 {
                if digits < 3 { ms = ms * 10 + Int64(u[i] - 48) }
                digits += 1; i += 1
            }
            guard digits > 0 else { return nil }
            if digits < 3 { for _ in digits..<3 { ms *= 10 } }
        }
        guard i < u.count else { return nil }
        var offset: Int64 = 0
        if u[i] == 90 || u[i] == 122 {
            i += 1
        } else if u[i] == 43 || u[i] == 45, i + 6 <= u.count, let oh = num(i + 1, i + 3), u[i + 3] == 58, let om = num(i + 4, i + 6) {
            offset = (oh * 60 + om) * 60 * (u[i] == 43 ? 1 : -1)
            i += 6
        } else { return nil }
        guard i == u.count, (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        let days = Timestamp.days(fromCivil: y, mo, d)
        self.milliseconds = ((days * 86400 + h * 3600 + mi * 60 + se) - offset) * 1000 + ms
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let t = Timestamp(rfc3339: s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected an RFC 3339 time, got \(s)")
        }
        self = t
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rfc3339)
    }

    // Howard Hinnant's days-from-civil algorithms.
    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
