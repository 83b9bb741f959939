import Foundation

/// A JSON text that could not be parsed, with the byte offset where parsing stopped.
public struct JSONSyntaxError: Error, Sendable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// Parses JSON bytes (RFC 8259) straight into `JSONValue`.
///
/// Every webhook body and every stored message goes through here, so it works on the raw bytes
/// in one pass: Foundation's `JSONDecoder` decoding into `JSONValue` has to guess each value's
/// type by trying and failing (three thrown errors for every string), which cost more than the
/// rest of ingest together. Integers that fit in 64 bits stay `.int`; anything with a fraction
/// or exponent, or too large, is `.double`. Depth is bounded so hostile input can't exhaust the
/// stack.
public struct JSONParser {
    public static let maxDepth = 512

    public static func parse(_ bytes: some Collection<UInt8>) throws -> JSONValue {
        if let result = try bytes.withContiguousStorageIfAvailable({ try parse(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return try Array(bytes).withUnsafeBytes { try parse($0) }
    }

    public static func parse(_ data: Data) throws -> JSONValue {
        try data.withUnsafeBytes { try parse($0) }
    }

    public static func parse(_ buffer: UnsafeRawBufferPointer) throws -> JSONValue {
        var p = Cursor(buffer)
        p.skipSpace()
        let value = try p.value(depth: 0)
        p.skipSpace()
        guard p.atEnd else { throw p.error("unexpected data after the value") }
        return value
    }

    struct Cursor {
        let b: UnsafeRawBufferPointer
        var i = 0
        init(_ b: UnsafeRawBufferPointer) { self.b = b }

        var atEnd: Bool { i >= b.count }

        func error(_ reason: String) -> JSONSyntaxError { JSONSyntaxError(offset: i, reason: reason) }

        mutating func skipSpace() {
            while i < b.count {
                switch b[i] {
                case 0x20, 0x0A, 0x0D, 0x09: i += 1
                default: return
                }
            }
        }

        mutating func expect(_ literal: StaticString, _ value: JSONValue) throws -> JSONValue {
            let n = literal.utf8CodeUnitCount
            guard i + n <= b.count else { throw error("truncated literal") }
            let lit = literal.utf8Start
            for k in 0..<n where b[i + k] != lit[k] { throw error("invalid literal") }
            i += n
            return value
        }

        mutating func value(depth: Int) throws -> JSONValue {
            guard i < b.count else { throw error("unexpected end of input") }
            switch b[i] {
            case UInt8(ascii: "{"):
                guard depth < JSONParser.maxDepth else { throw error("nested too deeply") }
                return .object(try object(depth: depth + 1))
            case UInt8(ascii: "["):
                guard depth < JSONParser.maxDepth else { throw error("nested too deeply") }
                return .array(try array(depth: depth + 1))
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw error("unexpected character")
            }
        }

        mutating func object(depth: Int) throws -> JSONObject {
            i += 1  // {
            var out: JSONObject = [:]
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return out }
            while true {
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                let key = try string()
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw error("expected ':'") }
                i += 1
                skipSpace()
                // Duplicate names: the last one wins, as in most parsers (RFC 8259 leaves it open).
                out[key] = try value(depth: depth)
                skipSpace()
                guard i < b.count else { throw error("unterminated object") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; return out }
                throw error("expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws -> [JSONValue] {
            i += 1  // [
            var out: [JSONValue] = []
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return out }
            while true {
                skipSpace()
                out.append(try value(depth: depth))
                skipSpace()
                guard i < b.count else { throw error("unterminated array") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "]") { i += 1; return out }
                throw error("expected ',' or ']'")
            }
        }

        mutating func string() throws -> String {
            i += 1  // opening quote
            let start = i
            // Fast path: no escapes — the bytes are the string (validated as UTF-8).
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") {
                    let s = try utf8(start, i)
                    i += 1
                    return s
                }
                if c == UInt8(ascii: "\\") { break }
                if c < 0x20 { throw error("control character in string") }
                i += 1
            }
            guard i < b.count else { throw error("unterminated string") }
            var bytes = [UInt8](UnsafeRawBufferPointer(rebasing: b[start..<i]))
            while i < b.count {
                let c = b[i]
                switch c {
                case UInt8(ascii: "\""):
                    i += 1
                    guard let s = String(validating: bytes, as: UTF8.self) else { throw error("invalid UTF-8 in string") }
                    return s
                case UInt8(ascii: "\\"):
                    i += 1
                    guard i < b.count else { throw error("unterminated escape") }
                    let e = b[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""): bytes.append(0x22)
                    case UInt8(ascii: "\\"): bytes.append(0x5C)
                    case UInt8(ascii: "/"): bytes.append(0x2F)
                    case UInt8(ascii: "b"): bytes.append(0x08)
                    case UInt8(ascii: "f"): bytes.append(0x0C)
                    case UInt8(ascii: "n"): bytes.append(0x0A)
                    case UInt8(ascii: "r"): bytes.append(0x0D)
                    case UInt8(ascii: "t"): bytes.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar) {
                            // A high surrogate must be followed by an escaped low surrogate.
                            guard i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                                throw error("unpaired surrogate")
                            }
                            i += 2
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00..<0xE000).contains(scalar) {
                            throw error("unpaired surrogate")
                        }
                        guard let u = Unicode.Scalar(scalar) else { throw error("invalid escape") }
                        bytes.append(contentsOf: UTF8.encode(u)!)
                    default:
                        throw error("invalid escape")
                    }
                default:
                    if c < 0x20 { throw error("control character in string") }
                    bytes.append(c)
                    i += 1
                }
            }
            throw error("unterminated string")
        }

        func utf8(_ from: Int, _ to: Int) throws -> String {
            let bytes = UnsafeRawBufferPointer(rebasing: b[from..<to]).bindMemory(to: UInt8.self)
            // ASCII is by far the most common case: decoding it is exact, and this call is
            // specialised, where `String(validating:)` instantiates generic metadata per call.
            if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
            guard let s = String(validating: bytes, as: UTF8.self) else {
                throw JSONSyntaxError(offset: from, reason: "invalid UTF-8 in string")
            }
            return s
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= b.count else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = b[i]
                let d: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw error("invalid \\u escape")
                }
                v = v << 4 | d
                i += 1
            }
            return v
        }

        mutating func number() throws -> JSONValue {
            let start = i
            var negative = false
            if b[i] == UInt8(ascii: "-") { negative = true; i += 1 }
            guard i < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) else { throw error("invalid number") }
            var magnitude: UInt64 = 0
            var overflow = false
            if b[i] == UInt8(ascii: "0") {
                i += 1
                if i < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) { throw error("leading zero in number") }
            } else {
                while i < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) {
                    let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                    let (m2, o2) = m1.addingReportingOverflow(UInt64(b[i] - UInt8(ascii: "0")))
                    overflow = overflow || o1 || o2
                    magnitude = m2
                    i += 1
                }
            }
            var isInteger = true
            if i < b.count, b[i] == UInt8(ascii: ".") {
                isInteger = false
                i += 1
                guard i < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) else { throw error("invalid fraction") }
                while i < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) { i += 1 }
            }
            if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
                isInteger = false
                i += 1
                if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
                guard i < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) else { throw error("invalid exponent") }
                while i < b.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) { i += 1 }
            }
            if isInteger && !overflow {
                if negative {
                    if magnitude <= UInt64(Int64.max) { return .int(-Int64(magnitude)) }
                    if magnitude == UInt64(Int64.max) + 1 { return .int(Int64.min) }
                } else if magnitude <= UInt64(Int64.max) {
                    return .int(Int64(magnitude))
                }
            }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            guard let d = Double(text), d.isFinite else { throw JSONSyntaxError(offset: start, reason: "number out of range") }
            return .double(d)
        }
    }
}
