/// Lower-case hexadecimal, for digests, signatures and keys kept as text.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of an even-length hex string (either case), or nil if it isn't one.
    /// Inlinable so that callers in other modules get a copy specialized for their string type
    /// (a webhook signature is decoded per request; the generic version cost more than the HMAC).
    @inlinable
    public static func decode<S: StringProtocol>(_ s: S) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count / 2)
        var high: UInt8? = nil
        for c in s.utf8 {
            let v: UInt8
            switch c {
            case 48...57: v = c - 48
            case 97...102: v = c - 87
            case 65...70: v = c - 55
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return high == nil ? out : nil
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs, for header values on the hot path: Foundation's
    /// `trimmingCharacters(in:)` goes through NSString on Linux and cost more than the HMAC it
    /// guarded.
    public var trimmingSpacesAndTabs: Substring {
        let isBlank = { (c: UInt8) in c == 0x20 || c == 0x09 }
        guard let first = utf8.firstIndex(where: { !isBlank($0) }) else { return self[endIndex...] }
        let last = utf8.lastIndex(where: { !isBlank($0) })!
        return self[first...last]
    }
}

extension String {
    /// See `Substring.trimmingSpacesAndTabs`.
    public var trimmingSpacesAndTabs: Substring { self[...].trimmingSpacesAndTabs }
}
