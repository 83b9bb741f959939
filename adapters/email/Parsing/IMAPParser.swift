import Foundation

/// One value in an IMAP response.
public indirect enum IMAPValue: Sendable, Hashable {
    case atom(String)
    case number(Int64)
    case string([UInt8])      // quoted string or literal
    case list([IMAPValue])
    case nilValue

    public var text: String? {
        switch self {
        case .atom(let s): return s
        case .number(let n): return String(n)
        case .string(let b): return String(decoding: b, as: UTF8.self)
        default: return nil
        }
    }
    public var bytes: [UInt8]? { if case .string(let b) = self { return b }; return nil }
    public var number: Int64? {
        switch self {
        case .number(let n): return n
        case .atom(let s): return Int64(s)
        default: return nil
        }
    }
}

/// One server response.
public enum IMAPResponse: Sendable, Hashable {
    /// `tag OK|NO|BAD text`.
    case tagged(tag: String, status: String, text: String)
    /// `* OK|NO|BAD|BYE|PREAUTH [code] text`.
    case status(status: String, text: String)
    /// `* …` data (`* 3 EXISTS`, `* SEARCH 1 2`, `* 1 FETCH (…)`, `* CAPABILITY …`).
    case data([IMAPValue])
    /// `+ text`.
    case continuation(String)
}

/// A byte-based IMAP response parser: literals `{n}` (and `{n+}`, `~{n}`) are read by count,
/// so message bytes may contain anything (CRLF, `)`, NUL, 8-bit). Never uses line splitting over
/// a whole response.
public enum IMAPParser {
    public enum Failure: Error, Sendable, Hashable { case malformed(String) }

    /// Parses one response at the start of `buf`; nil when more bytes are needed.
    public static func parse(_ buf: [UInt8]) throws -> (IMAPResponse, consumed: Int)? {
        guard let lineEnd = crlf(buf, from: 0) else { return nil }
        if buf.first == 43 { // "+"
            let text = String(decoding: buf[min(2, lineEnd)..<lineEnd], as: UTF8.self)
            return (.continuation(text), lineEnd + 2)
        }
        guard let sp = buf[..<lineEnd].firstIndex(of: 32) else {
            throw Failure.malformed(String(decoding: buf[..<lineEnd].prefix(80), as: UTF8.self))
        }
        let tag = String(decoding: buf[..<sp], as: UTF8.self)
        let restStart = sp + 1
        let (word, wordEnd) = atomAt(buf, restStart, lineEnd)
        let upper = word.uppercased()
        if ["OK", "NO", "BAD", "BYE", "PREAUTH"].contains(upper) {
            let text = wordEnd < lineEnd ? String(decoding: buf[(wordEnd + 1)..<lineEnd], as: UTF8.self) : ""
            if tag == "*" { return (.status(status: upper, text: text), lineEnd + 2) }
            return (.tagged(tag: tag, status: upper, text: text), lineEnd + 2)
        }
        guard tag == "*" else { throw Failure.malformed("unexpected tagged data \(tag)") }
        var i = restStart
        var stack: [[IMAPValue]] = [[]]
        while true {
            guard i < buf.count else { return nil }
            let b = buf[i]
            switch b {
            case 32: i += 1
            case 13:
                guard i + 1 < buf.count else { return nil }
                guard buf[i + 1] == 10 else { throw Failure.malformed("CR without LF") }
                guard stack.count == 1 else { throw Failure.malformed("unbalanced parentheses") }
                return (.data(stack[0]), i + 2)
            case 40: stack.append([]); i += 1
            case 41:
                guard stack.count > 1 else { throw Failure.malformed("unexpected )") }
                let l = stack.removeLast()
                stack[stack.count - 1].append(.list(l)); i += 1
            case 34:
                var s: [UInt8] = []
                var j = i + 1
                while true {
                    guard j < buf.count else { return nil }
                    let c = buf[j]
                    if c == 92, j + 1 < buf.count { s.append(buf[j + 1]); j += 2; continue }
                    if c == 92 { return nil }
                    if c == 34 { break }
                    if c == 13 || c == 10 { throw Failure.malformed("line break in a quoted string") }
                    s.append(c); j += 1
                }
                stack[stack.count - 1].append(.string(s)); i = j + 1
            case 123, 126:
                if b == 126 && !(i + 1 < buf.count && buf[i + 1] == 123) {
                    let (a, end) = atomAt(buf, i, buf.count)
                    if end == buf.count { return nil }
                    stack[stack.count - 1].append(.atom(a)); i = end
                    continue
                }
                var j = b == 126 ? i + 2 : i + 1
                var n = 0
                var digits = 0
                while j < buf.count, buf[j] >= 48 && buf[j] <= 57 {
                    n = n * 10 + Int(buf[j] - 48); digits += 1; j += 1
                    guard n < 1 << 31 else { throw Failure.malformed("literal too large") }
                }
                if j < buf.count && buf[j] == 43 { j += 1 }
                guard j + 2 < buf.count else { return nil }
                guard digits > 0, buf[j] == 125, buf[j + 1] == 13, buf[j + 2] == 10 else { throw Failure.malformed("bad literal") }
                let start = j + 3
                guard start + n <= buf.count else { return nil }
                stack[stack.count - 1].append(.string(Array(buf[start..<(start + n)])))
                i = start + n
            default:
                let (a, end) = atomAt(buf, i, buf.count)
                guard end > i else { throw Failure.malformed("unexpected byte \(b)") }
                if end == buf.count { return nil }
                if a.uppercased() == "NIL" { stack[stack.count - 1].append(.nilValue) }
                else if let n = Int64(a), a.first?.isNumber == true { stack[stack.count - 1].append(.number(n)) }
                else { stack[stack.count - 1].append(.atom(a)) }
                i = end
            }
        }
    }

    static func crlf(_ buf: [UInt8], from: Int) -> Int? {
        var i = from
        while i + 1 < buf.count {
            if buf[i] == 13 && buf[i + 1] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// An atom (anything up to space, parentheses, quote, brace or CR/LF; brackets are kept so
    /// `BODY[]` is one atom).
    static func atomAt(_ buf: [UInt8], _ from: Int, _ limit: Int) -> (String, Int) {
        var j = from
        while j < limit {
            let c = buf[j]
            if c == 32 || c == 40 || c == 41 || c == 34 || c == 123 || c == 13 || c == 10 { break }
            j += 1
        }
        return (String(decoding: buf[from..<j], as: UTF8.self), j)
    }

    /// A string argument: quoted when plain ASCII, else a non-synchronizing literal marker is not
    /// used — the caller sends a synchronizing literal.
    public static func quoted(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// A mailbox name as IMAP4rev1 sends it: modified UTF-7 (RFC 3501 §5.1.3), quoted. ASCII
    /// stays as it is ("&" becomes "&-"); anything else is "&" + modified base64 of its UTF-16
    /// + "-" (`Traité` → `Trait&AOk-`). Sent as plain UTF-8, a non-ASCII name is refused or names
    /// another folder.
    public static func mailbox(_ name: String) -> String { quoted(modifiedUTF7(name)) }

    public static func modifiedUTF7(_ name: String) -> String {
        var out = ""
        var pending: [UInt16] = []
        func flush() {
            guard !pending.isEmpty else { return }
            var bytes: [UInt8] = []
            for u in pending { bytes += [UInt8(u >> 8), UInt8(u & 0xFF)] }
            let b64 = Data(bytes).base64EncodedString().replacingOccurrences(of: "/", with: ",").replacingOccurrences(of: "=", with: "")
            out += "&" + b64 + "-"
            pending = []
        }
        for scalar in name.unicodeScalars {
            if scalar.value >= 0x20 && scalar.value <= 0x7E {
                flush()
                out += scalar == "&" ? "&-" : String(scalar)
            } else {
                pending += Array(String(scalar).utf16)
            }
        }
        flush()
        return out
    }
}
