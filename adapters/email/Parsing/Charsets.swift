import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns bytes in a declared (or undeclared, or wrong) charset into a String, never failing.
///
/// Labels are first mapped through an alias table that follows the WHATWG Encoding Standard where
/// mail in the wild needs it (`ks_c_5601-1987` and `euc-kr` → CP949, `gb2312` → GB18030,
/// `iso-8859-1` → windows-1252, `shift_jis` → CP932 …), then decoded with glibc iconv. Invalid
/// byte sequences become U+FFFD and decoding goes on; an unknown label falls back to UTF-8 when
/// the bytes are valid UTF-8, else windows-1252, so a body is never lost.
public enum Charset {
    /// What a label resolves to.
    enum Decoder: Equatable {
        case utf8
        case ascii
        case windows1252
        /// ISO-2022-JP with the Microsoft (CP50220) extensions: transcoded to CP932 first.
        case iso2022jp
        case iconv(String)
    }

    /// The canonical decoder for a charset label, `nil` when the label is unknown.
    static func decoder(forLabel raw: String) -> Decoder? {
        var label = raw.trimmingWhitespace().lowercased()
        if label.hasPrefix("\""), label.hasSuffix("\""), label.count >= 2 { label = String(label.dropFirst().dropLast()) }
        // RFC 2231 language suffix (`utf-8*en`) never belongs to the charset.
        if let star = label.firstIndex(of: "*") { label = String(label[..<star]) }
        label = label.trimmingSpaces()
        switch label {
        case "utf-8", "utf8", "unicode-1-1-utf-8", "utf8mb4", "x-unicode20utf8", "unicode20utf8":
            return .utf8
        case "us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us", "csascii", "iso-ir-6", "646":
            return .ascii
        case "iso-8859-1", "iso8859-1", "iso_8859-1", "iso88591", "latin1", "latin-1", "l1", "cp819", "ibm819",
             "windows-1252", "cp1252", "x-cp1252", "1252", "cp-1252", "win-1252", "iso-ir-100", "csisolatin1":
            return .windows1252
        case "shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "windows-31j", "cp932", "ms932",
             "x-ms-cp932", "shift_jis-2004":
            return .iconv("CP932")
        case "euc-jp", "eucjp", "x-euc-jp", "cseucpkdfmtjapanese", "euc-jp-ms", "eucjp-ms", "eucjp-win":
            return .iconv("EUC-JP-MS")
        case "iso-2022-jp", "csiso2022jp", "iso-2022-jp-ms", "cp50220", "cp50221", "cp50222", "iso-2022-jp-1",
             "iso-2022-jp-2", "iso-2022-jp-3", "iso-2022-jp-2004", "jis", "x-jis":
            return .iso2022jp
        case "euc-kr", "euckr", "ks_c_5601-1987", "ks_c_5601-1989", "ks_c_5601", "ksc5601", "ksc_5601", "cp949",
             "windows-949", "ms949", "x-windows-949", "uhc", "korean", "csksc56011987", "iso-ir-149", "cseuckr":
            return .iconv("CP949")
        case "iso-2022-kr", "csiso2022kr":
            return .iconv("ISO-2022-KR")
        case "gb2312", "gbk", "x-gbk", "cp936", "ms936", "windows-936", "gb_2312-80", "gb_2312", "chinese", "csgb2312",
             "euc-cn", "x-euc-cn", "euccn", "gb18030", "iso-ir-58", "csiso58gb231280", "hz-gb-2312-gbk":
            return .iconv("GB18030")
        case "big5", "big-5", "big5-hkscs", "cn-big5", "x-x-big5", "csbig5", "x-big5", "big5hkscs", "cp950", "windows-950":
            return .iconv("BIG5-HKSCS")
        case "iso-8859-9", "iso8859-9", "latin5", "windows-1254", "cp1254":
            return .iconv("WINDOWS-1254")
        case "iso-8859-11", "tis-620", "windows-874", "cp874":
            return .iconv("CP874")
        case "koi8-r", "koi8r", "cskoi8r":
            return .iconv("KOI8-R")
        case "koi8-u", "koi8-ru":
            return .iconv("KOI8-U")
        case "utf-16", "utf-16le", "utf-16be", "utf-7", "utf-32", "utf-32le", "utf-32be":
            return .iconv(label.uppercased())
        default:
            break
        }
        // windows-125x / cp125x / x-cp125x
        for prefix in ["windows-", "x-cp", "cp", "win-"] where label.hasPrefix(prefix) {
            let rest = label.dropFirst(prefix.count)
            if rest.count == 4, rest.hasPrefix("125"), let d = rest.last, ("0"..."8").contains(d) {
                return .iconv("WINDOWS-" + rest)
            }
        }
        // iso-8859-N, iso8859-N, iso_8859-N[:year], latinN
        for prefix in ["iso-8859-", "iso8859-", "iso_8859-", "iso8859_", "iso-8859_"] where label.hasPrefix(prefix) {
            var rest = String(label.dropFirst(prefix.count))
            if let colon = rest.firstIndex(of: ":") { rest = String(rest[..<colon]) }
            if let n = Int(rest), (2...16).contains(n), n != 12 { return .iconv("ISO-8859-\(n)") }
        }
        let latin: [String: Int] = ["latin2": 2, "l2": 2, "latin3": 3, "latin4": 4, "latin6": 10, "latin7": 13, "latin8": 14,
                                    "latin9": 15, "latin-9": 15, "l9": 15, "latin10": 16]
        if let n = latin[label] { return .iconv("ISO-8859-\(n)") }
        return nil
    }

    /// Decodes `bytes` declared as `label` (nil when undeclared) into a String. Never fails.
    public static func decode(_ bytes: [UInt8], label: String?) -> String {
        if bytes.isEmpty { return "" }
        let declared = label.flatMap { $0.isEmpty ? nil : decoder(forLabel: $0) }
        let sevenBit = bytes.allSatisfy { $0 < 0x80 }
        switch declared {
        case .utf8?:
            return lossyUTF8(bytes)
        case .windows1252?:
            if sevenBit { return ascii(bytes) }
            return windows1252(bytes)
        case .iso2022jp?:
            if !hasEscape(bytes) && !bytes.contains(0x0E) { return sevenBit ? ascii(bytes) : fallback(bytes) }
            return iso2022jp(bytes)
        case .iconv(let name)?:
            if sevenBit, !isStatefulSevenBit(name), !hasEscape(bytes) { return ascii(bytes) }
            if let s = iconvDecode(bytes, from: name) { return s }
            return fallback(bytes)
        case .ascii?, nil:
            if let label, !label.isEmpty, declared == nil, let s = iconvDecode(bytes, from: label.uppercased(), onlyIfClean: true) {
                // A label we have no alias for but iconv knows (and that decodes cleanly).
                return s
            }
            return fallback(bytes)
        }
    }

    /// For undeclared or unknown charsets: ISO-2022-JP when its escapes are present (it is 7-bit and
    /// would otherwise pass as ASCII garbage), UTF-8 when valid, else windows-1252.
    static func fallback(_ bytes: [UInt8]) -> String {
        if looksLikeISO2022JP(bytes) { return iso2022jp(bytes) }
        if let s = strictUTF8(bytes) { return s }
        return windows1252(bytes)
    }

    static func isStatefulSevenBit(_ iconvName: String) -> Bool {
        iconvName.hasPrefix("ISO-2022") || iconvName.hasPrefix("UTF-7") || iconvName.hasPrefix("UTF-16") || iconvName.hasPrefix("UTF-32")
    }

    static func hasEscape(_ bytes: [UInt8]) -> Bool { bytes.contains(0x1B) }

    /// `ESC $ B`, `ESC $ @`, `ESC ( J`, `ESC ( I`, `ESC $ ( D`: the ISO-2022-JP shifts.
    static func looksLikeISO2022JP(_ bytes: [UInt8]) -> Bool {
        var i = 0
        while i + 2 < bytes.count {
            if bytes[i] == 0x1B {
                let a = bytes[i + 1], b = bytes[i + 2]
                if a == 0x24, b == 0x42 || b == 0x40 || b == 0x28 { return true }
                if a == 0x28, b == 0x4A || b == 0x49 { return true }
            }
            i += 1
        }
        return false
    }

    /// ISO-2022-JP as mail clients really send it: JIS X 0208 (`ESC $ B`, `ESC $ @`) including
    /// the NEC row 13 (①, ㈱) and NEC-selected IBM extensions of CP50220 that glibc's ISO-2022-JP
    /// rejects, JIS X 0201 Roman (`ESC ( J`) and half-width katakana (`ESC ( I`, or SO/SI). Each
    /// double-byte pair is mapped to its Shift_JIS position and the result decoded as CP932. Other
    /// designations (JIS X 0212/0213, ISO-2022-JP-2's GB/KSC sets) are left to glibc.
    static func iso2022jp(_ bytes: [UInt8]) -> String {
        enum Mode { case ascii, kanji, kana }
        var sjis = [UInt8]()
        sjis.reserveCapacity(bytes.count)
        var mode = Mode.ascii
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x1B {
                guard i + 2 < bytes.count else { i += 1; continue }
                let a = bytes[i + 1], c = bytes[i + 2]
                if a == 0x24 && (c == 0x42 || c == 0x40) { mode = .kanji; i += 3; continue }
                if a == 0x28 && (c == 0x42 || c == 0x4A) { mode = .ascii; i += 3; continue }
                if a == 0x28 && c == 0x49 { mode = .kana; i += 3; continue }
                // A set we do not transcode: glibc gets the whole text.
                return iconvDecode(bytes, from: "ISO-2022-JP-3") ?? iconvDecode(bytes, from: "ISO-2022-JP-2") ?? fallback(bytes)
            }
            if b == 0x0E { mode = .kana; i += 1; continue }
            if b == 0x0F { mode = .ascii; i += 1; continue }
            if b == 0x0A || b == 0x0D {
                // Line ends reset to ASCII in practice (RFC 1468 requires it).
                sjis.append(b)
                if mode == .kana { mode = .ascii }
                i += 1
                continue
            }
            switch mode {
            case .ascii:
                sjis.append(b)
                i += 1
            case .kana:
                if b >= 0x21 && b <= 0x5F { sjis.append(b + 0x80) } else { sjis.append(b) }
                i += 1
            case .kanji:
                guard i + 1 < bytes.count else { sjis.append(0x3F); i += 1; continue }
                let j1 = bytes[i], j2 = bytes[i + 1]
                guard (0x21...0x7E).contains(j1), (0x21...0x7E).contains(j2) else {
                    sjis.append(b)
                    i += 1
                    continue
                }
                var s1 = (UInt16(j1) + 1) / 2 + 0x70
                if s1 >= 0xA0 { s1 += 0x40 }
                var s2: UInt16
                if j1 & 1 == 1 {
                    s2 = UInt16(j2) + 0x1F
                    if s2 >= 0x7F { s2 += 1 }
                } else {
                    s2 = UInt16(j2) + 0x7E
                }
                sjis.append(UInt8(truncatingIfNeeded: s1))
                sjis.append(UInt8(truncatingIfNeeded: s2))
                i += 2
            }
        }
        return iconvDecode(sjis, from: "CP932") ?? lossyUTF8(sjis)
    }

    static func ascii(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    static func strictUTF8(_ bytes: [UInt8]) -> String? {
        // String(validating:) rejects invalid sequences instead of repairing them.
        String(validating: bytes, as: UTF8.self)
    }

    static func lossyUTF8(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// windows-1252 as WHATWG defines it: a superset of ISO-8859-1 where 0x80–0x9F are the
    /// typographic characters, and the five unassigned bytes map to the C1 controls.
    static func windows1252(_ bytes: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.reserveCapacity(bytes.count)
        for b in bytes {
            if b >= 0x80 && b < 0xA0, let u = Unicode.Scalar(cp1252High[Int(b - 0x80)]) {
                scalars.append(u)
            } else {
                scalars.append(Unicode.Scalar(b))
            }
        }
        return String(scalars)
    }

    private static let cp1252High: [UInt32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
        0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ]

    /// Converts with glibc iconv to UTF-8. Returns nil only when iconv does not know `charset` (or,
    /// with `onlyIfClean`, when any byte was invalid). Invalid sequences (EILSEQ) become U+FFFD and
    /// conversion continues after the offending byte; a truncated sequence at the end (EINVAL)
    /// becomes one U+FFFD; a full output buffer (E2BIG) is grown.
    static func iconvDecode(_ input: [UInt8], from charset: String, onlyIfClean: Bool = false) -> String? {
        if input.isEmpty { return "" }
        guard let cd = openIconv(from: charset) else { return nil }
        defer { iconv_close(cd) }
        var out = [UInt8](repeating: 0, count: max(64, input.count * 2))
        var produced = 0
        var hadErrors = false
        let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
        var inBytes = input.map { CChar(bitPattern: $0) }
        let total = inBytes.count

        func ensureRoom(_ n: Int) {
            if out.count - produced < n { out.append(contentsOf: repeatElement(0, count: max(n, out.count))) }
        }

        var consumed = 0
        inBytes.withUnsafeMutableBufferPointer { inBuf in
            guard let inBase = inBuf.baseAddress else { return }
            while consumed < total {
                var inPtr: UnsafeMutablePointer<CChar>? = inBase + consumed
                var inLeft = total - consumed
                ensureRoom(16)
                let (result, err, wrote): (Int, Int32, Int) = out.withUnsafeMutableBufferPointer { outBuf in
                    let start = UnsafeMutableRawPointer(outBuf.baseAddress!).assumingMemoryBound(to: CChar.self) + produced
                    var outPtr: UnsafeMutablePointer<CChar>? = start
                    var outLeft = outBuf.count - produced
                    errno = 0
                    let r = iconv(cd, &inPtr, &inLeft, &outPtr, &outLeft)
                    let e = errno
                    return (r, e, outBuf.count - produced - outLeft)
                }
                produced += wrote
                consumed = total - inLeft
                if result != -1 { break }
                switch err {
                case E2BIG:
                    out.append(contentsOf: repeatElement(0, count: out.count))
                case EINVAL:
                    // Incomplete multibyte sequence at the end of the input.
                    hadErrors = true
                    ensureRoom(3)
                    for b in replacement { out[produced] = b; produced += 1 }
                    consumed = total
                default:
                    // EILSEQ (or anything unexpected): substitute and skip one byte.
                    hadErrors = true
                    ensureRoom(3)
                    for b in replacement { out[produced] = b; produced += 1 }
                    consumed += 1
                }
            }
        }
        // Flush any shift state (stateful encodings such as ISO-2022-JP).
        ensureRoom(32)
        out.withUnsafeMutableBufferPointer { outBuf in
            let start = UnsafeMutableRawPointer(outBuf.baseAddress!).assumingMemoryBound(to: CChar.self) + produced
            var outPtr: UnsafeMutablePointer<CChar>? = start
            var outLeft = outBuf.count - produced
            _ = iconv(cd, nil, nil, &outPtr, &outLeft)
            produced = outBuf.count - outLeft
        }
        if onlyIfClean && hadErrors { return nil }
        return String(decoding: out[0..<produced], as: UTF8.self)
    }

    private static func openIconv(from charset: String) -> iconv_t? {
        let cd = iconv_open("UTF-8", charset)
        if cd == iconv_t(bitPattern: -1) { return nil }
        pinModule(charset)
        return cd
    }

    /// glibc loads a charset's gconv module (dlopen) at `iconv_open` and unloads it at the last
    /// `iconv_close`, which cost about 10% of the MIME benchmark's time. One descriptor per
    /// charset, opened once and never closed, keeps the module loaded. The descriptors stay
    /// referenced here (so LeakSanitizer sees them as reachable, not leaked). Bounded, since
    /// labels come from mail.
    private struct PinnedDescriptors: @unchecked Sendable {   // iconv_t is a raw pointer; only touched under the mutex
        var byCharset: [String: iconv_t] = [:]
    }
    private static let pinned = Mutex(PinnedDescriptors())
    private static func pinModule(_ charset: String) {
        pinned.withLock { pinned in
            guard pinned.byCharset.count < 64, pinned.byCharset[charset] == nil else { return }
            let cd = iconv_open("UTF-8", charset)
            if cd != iconv_t(bitPattern: -1) { pinned.byCharset[charset] = cd }
        }
    }

    /// Whether iconv on this system can decode `label` (after aliasing); used by tests and diagnostics.
    static func isSupported(_ label: String) -> Bool {
        switch decoder(forLabel: label) {
        case .utf8?, .ascii?, .windows1252?, .iso2022jp?: return true
        case .iconv(let name)?:
            guard let cd = openIconv(from: name) else { return false }
            iconv_close(cd)
            return true
        case nil: return false
        }
    }
}
