import Foundation

/// Content-Transfer-Encoding decoders. Both are lenient: they never fail, keep what they cannot
/// interpret, and accept LF or CRLF line ends.
enum TransferEncoding {
    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    /// Quoted-printable (RFC 2045 §6.7): `=XX` in either case, `=` at the end of a line is a soft
    /// break, whitespace at the end of a line is transport padding and dropped. An `=` that starts
    /// no valid escape is kept literally.
    static func quotedPrintable<C: Collection>(_ input: C) -> [UInt8] where C.Element == UInt8, C.Index == Int {
        var out = [UInt8]()
        out.reserveCapacity(input.count)
        var i = input.startIndex
        let end = input.endIndex
        while i < end {
            // Process one line (up to, not including, LF).
            var lineEnd = i
            while lineEnd < end && input[lineEnd] != 0x0A { lineEnd += 1 }
            let hasLF = lineEnd < end
            var contentEnd = lineEnd
            // Trailing whitespace is not part of the data (nor are stray CRs: `\r\r\n` occurs).
            while contentEnd > i && (input[contentEnd - 1] == 0x20 || input[contentEnd - 1] == 0x09 || input[contentEnd - 1] == 0x0D) {
                contentEnd -= 1
            }
            var softBreak = false
            var j = i
            while j < contentEnd {
                let b = input[j]
                if b == UInt8(ascii: "=") {
                    if j + 1 == contentEnd {
                        softBreak = true
                        j += 1
                        continue
                    }
                    if j + 2 < contentEnd, let h = hexValue(input[j + 1]), let l = hexValue(input[j + 2]) {
                        out.append(h << 4 | l)
                        j += 3
                        continue
                    }
                    out.append(b)
                    j += 1
                    continue
                }
                out.append(b)
                j += 1
            }
            if hasLF && !softBreak {
                out.append(0x0D)
                out.append(0x0A)
            }
            i = hasLF ? lineEnd + 1 : lineEnd
        }
        return out
    }

    /// The decoder table for base64: 0–63, 64 for `=`, 255 for anything else (skipped).
    private static let base64Table: [UInt8] = {
        var t = [UInt8](repeating: 255, count: 256)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        // URL-safe variants show up in broken generators; accept them too.
        t[Int(UInt8(ascii: "-"))] = 62
        t[Int(UInt8(ascii: "_"))] = 63
        t[Int(UInt8(ascii: "="))] = 64
        return t
    }()

    /// Base64 that ignores line breaks, whitespace and junk characters, tolerates missing padding,
    /// and stops at the first padding `=`-group only when data after it is not more base64 (some
    /// senders concatenate separately padded chunks).
    static func base64<C: Collection>(_ input: C) -> [UInt8] where C.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(input.count * 3 / 4 + 3)
        var quad: UInt32 = 0
        var n = 0
        for c in input {
            let v = base64Table[Int(c)]
            if v == 255 { continue }
            if v == 64 {
                // Padding: flush what the group holds and start a new group.
                flush(&quad, &n, &out)
                continue
            }
            quad = quad << 6 | UInt32(v)
            n += 1
            if n == 4 {
                out.append(UInt8(truncatingIfNeeded: quad >> 16))
                out.append(UInt8(truncatingIfNeeded: quad >> 8))
                out.append(UInt8(truncatingIfNeeded: quad))
                quad = 0
                n = 0
            }
        }
        flush(&quad, &n, &out)
        return out
    }

    private static func flush(_ quad: inout UInt32, _ n: inout Int, _ out: inout [UInt8]) {
        switch n {
        case 2:
            out.append(UInt8(truncatingIfNeeded: quad >> 4))
        case 3:
            out.append(UInt8(truncatingIfNeeded: quad >> 10))
            out.append(UInt8(truncatingIfNeeded: quad >> 2))
        default:
            break // 0: nothing; 1: six lone bits carry no full byte
        }
        quad = 0
        n = 0
    }

    /// Decodes a part body per its Content-Transfer-Encoding value. Unknown encodings (and
    /// `x-uuencode`, typos) keep the bytes as they are.
    static func decode(_ body: [UInt8], encoding: String) -> [UInt8] {
        switch encoding {
        case "quoted-printable", "quoted_printable", "qp": return quotedPrintable(body)
        case "base64", "base-64": return base64(body)
        default: return body
        }
    }
}

/// Small byte-level helpers shared by the parsers.
enum Bytes {
    static func isWSP(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }

    static func lowercased(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b + 0x20 : b }
}
