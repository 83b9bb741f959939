import Crypto
import Foundation
import SwitchboardCore

/// HMAC-SHA256 under one key, with the key's two padded blocks hashed once. Every webhook in
/// and every event out is signed or checked with a key fixed by the config; keying a fresh HMAC
/// each time was a measurable share of a request's CPU. Each use copies the keyed state:
/// swift-crypto's hash states are copy-on-write (a copy that is updated makes its own context
/// first) and this one is never updated in place, so concurrent copies share it safely.
public struct KeyedHMAC: @unchecked Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let keyed: HMAC<SHA256>
    public init(key: [UInt8]) { keyed = HMAC<SHA256>(key: SymmetricKey(data: key)) }
    // The keyed state stands for the key itself: it never prints, whatever holds it.
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: []) }

    /// The MAC of `prefix` followed by `data` (no concatenated copy made).
    public func code(prefix: [UInt8] = [], _ data: some DataProtocol) -> [UInt8] {
        var mac = keyed
        if !prefix.isEmpty { mac.update(data: prefix) }
        mac.update(data: data)
        return Array(mac.finalize())
    }

    /// Whether `mac` is the MAC of `prefix` + `data`, compared in constant time.
    public func isValid(_ mac: [UInt8], prefix: [UInt8] = [], for data: some DataProtocol) -> Bool {
        mac.count == SHA256.byteCount && constantTimeEqual(mac, code(prefix: prefix, data))
    }
}

/// Standard Webhooks signing (https://www.standardwebhooks.com): HMAC-SHA256 over
/// `{webhook-id}.{webhook-timestamp}.{body}`, sent as `v1,<base64>`. Several secrets (during a
/// rotation) give several space-separated signatures, so receivers accept either key.
public struct WebhookSigner: Sendable {
    let keys: [KeyedHMAC]

    public enum SecretError: Error, CustomStringConvertible {
        case malformed
        public var description: String { "a webhook secret must be whsec_ followed by base64 (24 to 64 random bytes)" }
    }

    /// Parses one or more whitespace-separated `whsec_<base64>` secrets.
    public init(secrets: String) throws {
        var keys: [[UInt8]] = []
        for s in secrets.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "," }) {
            guard s.hasPrefix("whsec_"), let bytes = Data(base64Encoded: String(s.dropFirst(6))), (24...64).contains(bytes.count) else {
                throw SecretError.malformed
            }
            keys.append(Array(bytes))
        }
        guard !keys.isEmpty else { throw SecretError.malformed }
        self.keys = keys.map(KeyedHMAC.init(key:))
    }

    public func signature(id: String, timestamp: Int64, body: Data) -> String {
        let prefix = Array("\(id).\(timestamp).".utf8)
        return keys.map { key in
            "v1," + Data(key.code(prefix: prefix, body)).base64EncodedString()
        }.joined(separator: " ")
    }

    /// Verifies a `webhook-signature` header (used by our tests and by `switchboard tail`-style
    /// tools): any listed v1 signature made with any of our keys, timestamp within tolerance.
    public func verify(id: String, timestamp: Int64, body: Data, header: String, now: Int64, tolerance: Int64 = 300) -> Bool {
        guard abs(now - timestamp) <= tolerance else { return false }
        let prefix = Array("\(id).\(timestamp).".utf8)
        for candidate in header.split(separator: " ") where candidate.hasPrefix("v1,") {
            guard let sig = Data(base64Encoded: String(candidate.dropFirst(3))) else { continue }
            for key in keys where key.isValid(Array(sig), prefix: prefix, for: body) {
                return true
            }
        }
        return false
    }

    /// A new random secret in the `whsec_` form.
    public static func generateSecret() -> String {
        "whsec_" + Data(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }).base64EncodedString()
    }
}
