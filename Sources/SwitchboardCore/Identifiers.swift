import Foundation
import Synchronization

/// Prefixed, sortable identifiers (`msg_01JD3ZB7K8…`): a ULID behind a type prefix. ULIDs sort by
/// creation time, contain no `.` (safe inside Standard Webhooks' signed content) and are unique
/// across instances without coordination.
public enum IDKind: String, Sendable, CaseIterable {
    case message = "msg"
    case conversation = "conv"
    case event = "evt"
    case identity = "ident"
    case media = "med"
}

public enum ID {
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
    /// Last (milliseconds, random) pair, so ids made within one millisecond still sort in
    /// creation order (the ULID monotonic rule).
    private static let state = Mutex<(Int64, UInt64, UInt16)>((0, 0, 0))

    public static func make(_ kind: IDKind, at time: Timestamp = .now()) -> String {
        kind.rawValue + "_" + ulid(milliseconds: time.milliseconds)
    }

    public static func ulid(milliseconds: Int64) -> String {
        let (ms, hi, lo): (Int64, UInt64, UInt16) = state.withLock { s in
            if milliseconds <= s.0 {
                // Same (or earlier, clock stepped back) millisecond: increment the random part.
                var (hi, lo) = (s.1, s.2)
                lo &+= 1
                if lo == 0 { hi &+= 1 }
                s = (s.0, hi, lo)
                return s
            }
            s = (milliseconds, UInt64.random(in: 0...UInt64.max) & 0xFFFF_FFFF_FFFF_FF, UInt16.random(in: 0...UInt16.max))
            return s
        }
        // 48-bit time + 80-bit random = 128 bits -> 26 Crockford base32 characters.
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: UInt64(ms) >> (8 * (5 - i))) }
        for i in 0..<8 { bytes[6 + i] = UInt8(truncatingIfNeeded: hi >> (8 * (7 - i))) }
        bytes[14] = UInt8(lo >> 8); bytes[15] = UInt8(lo & 0xFF)
        var out = [UInt8](repeating: 0, count: 26)
        // Encode 130 bits (2 leading zero bits) 5 bits at a time.
        var acc: UInt32 = 0
        var bits = 2 // the two leading pad bits
        var o = 0
        for b in bytes {
            acc = (acc << 8) | UInt32(b)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out[o] = alphabet[Int((acc >> UInt32(bits)) & 31)]
                o += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// True when `s` looks like an id of the given kind (prefix + 26 base32 characters).
    public static func isValid(_ s: String, kind: IDKind) -> Bool {
        let prefix = kind.rawValue + "_"
        guard s.hasPrefix(prefix), s.utf8.count == prefix.utf8.count + 26 else { return false }
        return s.utf8.dropFirst(prefix.utf8.count).allSatisfy { alphabet.contains($0) }
    }
}
