import Foundation

/// One header field as it appeared: the name as written, the raw bytes after the colon (folding
/// and 8-bit bytes kept), and the unfolded value.
public struct HeaderField: Sendable, Hashable {
    public var name: String
    /// The bytes after the colon up to the end of the field, folding line breaks included.
    public var rawValue: [UInt8]

    public init(name: String, rawValue: [UInt8]) {
        self.name = name
        self.rawValue = rawValue
    }

    /// The unfolded value bytes (line breaks of folding removed, surrounding whitespace trimmed).
    public var unfoldedBytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(rawValue.count)
        for b in rawValue where b != 0x0D && b != 0x0A { out.append(b) }
        var s = 0, e = out.count
        while s < e && Bytes.isWSP(out[s]) { s += 1 }
        while e > s && Bytes.isWSP(out[e - 1]) { e -= 1 }
        return Array(out[s..<e])
    }

    /// The unfolded value as text. Raw 8-bit bytes (common in CJK and SMTPUTF8 mail) are read as
    /// UTF-8 when valid, else in `fallbackCharset` (the message's body charset), else windows-1252.
    /// RFC 2047 encoded words are left as they are: structured fields must be parsed first.
    public func value(fallbackCharset: String? = nil) -> String {
        HeaderField.text(unfoldedBytes, fallbackCharset: fallbackCharset)
    }

    public var value: String { value() }

    /// The value with RFC 2047 encoded words decoded (for unstructured fields such as Subject).
    public func decodedValue(fallbackCharset: String? = nil) -> String {
        EncodedWords.decode(value(fallbackCharset: fallbackCharset))
    }

    static func text(_ bytes: [UInt8], fallbackCharset: String?) -> String {
        if bytes.allSatisfy({ $0 < 0x80 }) && !bytes.contains(0x1B) { return String(decoding: bytes, as: UTF8.self) }
        if let s = Charset.strictUTF8(bytes) { return s }
        if let fallbackCharset, !fallbackCharset.isEmpty { return Charset.decode(bytes, label: fallbackCharset) }
        return Charset.fallback(bytes)
    }
}

/// The header fields of a message or part, in order, duplicates kept; names compare
/// case-insensitively.
public struct EmailHeaders: Sendable, Hashable, Sequence {
    public var fields: [HeaderField]

    public init(_ fields: [HeaderField] = []) { self.fields = fields }

    public func makeIterator() -> IndexingIterator<[HeaderField]> { fields.makeIterator() }
    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    /// The first field with this name.
    public func field(_ name: String) -> HeaderField? {
        let n = name.lowercased()
        return fields.first { $0.name.lowercased() == n }
    }

    /// Every field with this name, in order.
    public func fields(named name: String) -> [HeaderField] {
        let n = name.lowercased()
        return fields.filter { $0.name.lowercased() == n }
    }

    /// The first value with this name (unfolded, not RFC 2047-decoded).
    public subscript(name: String) -> String? { field(name)?.value }

    /// Every value with this name, in order.
    public func values(_ name: String) -> [String] { fields(named: name).map(\.value) }

    public func contains(_ name: String) -> Bool { field(name) != nil }
}

/// Splits a header block off a message or part body.
enum HeaderParser {
    static let maxFields = 2000

    /// Parses the header block of `bytes[start..<end]`. Returns the fields and the offset where
    /// the body begins (after the blank line), or `end` when there is none.
    ///
    /// Accepts CRLF and bare LF, unfolds continuation lines (kept in `rawValue`), skips an mbox
    /// `From ` line, tolerates lines without a colon in the middle of the block (skipped), and
    /// treats a first line that is no header at all as the start of the body.
    static func parse(_ bytes: [UInt8], start: Int = 0, end: Int? = nil) -> (EmailHeaders, bodyStart: Int) {
        let end = min(end ?? bytes.count, bytes.count)
        var fields: [HeaderField] = []
        var i = max(0, start)
        var first = true
        while i < end {
            // Find the end of this physical line.
            var lineEnd = i
            while lineEnd < end && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            let next = lineEnd < end ? lineEnd + 1 : end
            var contentEnd = lineEnd
            if contentEnd > i && bytes[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            if contentEnd == i {
                // The blank line: the body follows.
                return (EmailHeaders(fields), next)
            }
            if Bytes.isWSP(bytes[i]) {
                if var last = fields.popLast() {
                    // A continuation line: folded into the previous field, line break kept raw.
                    last.rawValue.append(contentsOf: [0x0D, 0x0A])
                    last.rawValue.append(contentsOf: bytes[i..<contentEnd])
                    fields.append(last)
                } else if first {
                    // Leading whitespace before any field: no header block.
                    return (EmailHeaders(), start)
                }
                i = next
                first = false
                continue
            }
            if first && contentEnd - i >= 5 && bytes[i..<(i + 5)].elementsEqual("From ".utf8) {
                // mbox separator line.
                i = next
                first = false
                continue
            }
            var colon = i
            while colon < contentEnd && bytes[colon] != UInt8(ascii: ":") { colon += 1 }
            let nameBytes = bytes[i..<colon]
            let validName = colon < contentEnd && !nameBytes.isEmpty
                && nameBytes.allSatisfy { ($0 > 0x20 && $0 < 0x7F) || $0 == 0x20 || $0 == 0x09 }
            if !validName {
                if first && fields.isEmpty {
                    // Not a header block at all: everything is body.
                    return (EmailHeaders(), start)
                }
                // A stray line inside the block: skip it.
                i = next
                continue
            }
            first = false
            let name = String(decoding: nameBytes, as: UTF8.self).trimmingSpaces()
            if fields.count < maxFields {
                fields.append(HeaderField(name: name, rawValue: Array(bytes[(colon + 1)..<contentEnd])))
            }
            i = next
        }
        return (EmailHeaders(fields), end)
    }
}

/// RFC 2047 encoded words (`=?charset?B|Q?text?=`).
public enum EncodedWords {
    private enum Segment {
        case text(String)
        case word(charset: String, bytes: [UInt8])
    }

    /// Decodes every encoded word in `s`. Whitespace between adjacent encoded words is dropped,
    /// and adjacent words in the same charset are joined as bytes before charset conversion, so a
    /// multibyte character split across two words (and ISO-2022-JP words that each shift back to
    /// ASCII) decode correctly. Malformed words stay as they are.
    public static func decode(_ s: String) -> String {
        guard s.contains("=?") else { return s }
        let u = Array(s.utf8)
        var segments: [Segment] = []
        var textStart = 0
        var i = 0
        while i + 1 < u.count {
            if u[i] == UInt8(ascii: "="), u[i + 1] == UInt8(ascii: "?"), let (word, next) = parseWord(u, at: i) {
                if textStart < i { segments.append(.text(String(decoding: u[textStart..<i], as: UTF8.self))) }
                segments.append(word)
                i = next
                textStart = next
                continue
            }
            i += 1
        }
        if textStart < u.count { segments.append(.text(String(decoding: u[textStart...], as: UTF8.self))) }

        // Drop whitespace-only text between two words, then merge same-charset neighbours.
        var merged: [Segment] = []
        var k = 0
        while k < segments.count {
            let seg = segments[k]
            if case .text(let t) = seg, k > 0, k + 1 < segments.count,
               t.allSatisfy(\.isWhitespace),
               case .word = segments[k - 1], case .word = segments[k + 1] {
                k += 1
                continue
            }
            if case .word(let cs, let bytes) = seg, case .word(let prevCS, let prevBytes)? = merged.last,
               canonicalCharset(cs) == canonicalCharset(prevCS) {
                merged[merged.count - 1] = .word(charset: prevCS, bytes: prevBytes + bytes)
            } else {
                merged.append(seg)
            }
            k += 1
        }
        var out = ""
        for seg in merged {
            switch seg {
            case .text(let t): out += t
            case .word(let cs, let bytes): out += Charset.decode(bytes, label: cs)
            }
        }
        return out
    }

    private static func canonicalCharset(_ cs: String) -> String {
        var l = cs.lowercased()
        if let star = l.firstIndex(of: "*") { l = String(l[..<star]) }
        return l
    }

    /// Parses one encoded word at `i` (which holds `=?`). Returns the word and the offset after `?=`.
    private static func parseWord(_ u: [UInt8], at i: Int) -> (Segment, Int)? {
        var j = i + 2
        let csStart = j
        while j < u.count && u[j] != UInt8(ascii: "?") {
            if u[j] == 0x20 || u[j] == 0x09 || j - csStart > 60 { return nil }
            j += 1
        }
        guard j + 2 < u.count, j > csStart else { return nil }
        let charset = String(decoding: u[csStart..<j], as: UTF8.self)
        let enc = Bytes.lowercased(u[j + 1])
        guard enc == UInt8(ascii: "b") || enc == UInt8(ascii: "q"), u[j + 2] == UInt8(ascii: "?") else { return nil }
        let textStart = j + 3
        var k = textStart
        // The encoded text ends at the next `?=`; it never contains whitespace in valid mail, but
        // some senders put spaces in Q words, so only a line break ends the search early.
        while k + 1 < u.count {
            if u[k] == UInt8(ascii: "?") && u[k + 1] == UInt8(ascii: "=") { break }
            if u[k] == 0x0A || u[k] == 0x0D { return nil }
            k += 1
        }
        guard k + 1 < u.count else { return nil }
        let text = u[textStart..<k]
        let bytes: [UInt8]
        if enc == UInt8(ascii: "b") {
            bytes = TransferEncoding.base64(text)
        } else {
            bytes = decodeQ(text)
        }
        return (.word(charset: charset, bytes: bytes), k + 2)
    }

    static func decodeQ(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(text.count)
        var i = text.startIndex
        while i < text.endIndex {
            let b = text[i]
            if b == UInt8(ascii: "_") {
                out.append(0x20)
            } else if b == UInt8(ascii: "="), i + 2 < text.endIndex,
                      let h = TransferEncoding.hexValue(text[i + 1]), let l = TransferEncoding.hexValue(text[i + 2]) {
                out.append(h << 4 | l)
                i += 3
                continue
            } else {
                out.append(b)
            }
            i += 1
        }
        return out
    }
}
