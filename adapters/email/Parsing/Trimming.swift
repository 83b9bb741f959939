/// Whitespace trimming without Foundation: on Linux `trimmingCharacters(in:)` goes through
/// NSString and took about 30% of the MIME benchmark's time (header values and every body line
/// are trimmed). Same character classes as Foundation's `.whitespaces` (space separators and
/// tab) and `.whitespacesAndNewlines` (those plus line and paragraph separators, CR, LF, VT, FF,
/// NEL).
extension StringProtocol {
    /// Like `trimmingCharacters(in: .whitespaces)`.
    func trimmingSpaces() -> String { trimming(where: Self.isSpace) }

    /// Like `trimmingCharacters(in: .whitespacesAndNewlines)`.
    func trimmingWhitespace() -> String { trimming { Self.isSpace($0) || Self.isNewline($0) } }

    private func trimming(where matches: (Unicode.Scalar) -> Bool) -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !matches($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !matches($0) })!
        if first == scalars.startIndex && scalars.index(after: last) == scalars.endIndex { return String(self) }
        return String(self[first..<scalars.index(after: last)])
    }

    private static func isSpace(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return s == " " || s == "\t" }
        return s.properties.generalCategory == .spaceSeparator
    }

    private static func isNewline(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x0A...0x0D, 0x85, 0x2028, 0x2029: return true
        default: return false
        }
    }
}

extension StringProtocol {
    /// Every occurrence of `target` replaced, comparing UTF-8 bytes — Foundation's
    /// `replacingOccurrences(of:with:)` goes through NSString on Linux and was a fifth of the MIME
    /// benchmark's time. Byte comparison also means a CRLF pair is found even though Swift
    /// treats "\r\n" as one Character.
    func replacingAll(_ target: String, with replacement: String) -> String {
        let needle = Array(target.utf8)
        guard let head = needle.first else { return String(self) }
        let bytes = Array(utf8)
        guard bytes.contains(head) else { return String(self) }
        let insert = Array(replacement.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0, changed = false
        while i < bytes.count {
            if bytes[i] == head, i + needle.count <= bytes.count, bytes[i..<(i + needle.count)].elementsEqual(needle) {
                out.append(contentsOf: insert)
                i += needle.count
                changed = true
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return changed ? String(decoding: out, as: UTF8.self) : String(self)
    }
}
