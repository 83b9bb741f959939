import Crypto
import Foundation

/// Standard Webhooks signing (https://www.standardwebhooks.com): HMAC-SHA256 over
/// `{webhook-id}.{webhook-timestamp}.{body}`, sent as `v1,<base64>`. Several secrets (during a
/// rotation) give several space-separated signatures, so receivers accept either key.
public struct WebhookSigner: Sendable {
    /// Raw key bytes (SymmetricKey is not Sendable; a key is made per use, which is cheap).
    let keyBytes: [[UInt8]]
    var keys: [SymmetricKey] { keyBytes.map { SymmetricKey(data: $0) } }

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
        self.keyBytes = keys
    }

    public func signature(id: String, timestamp: Int64, body: Data) -> String {
        var content = Data("\(id).\(timestamp).".utf8)
        content.append(body)
        return keys.map { key in
            "v1," + Data(HMAC<SHA256>.authenticationCode(for: content, using: key)).base64EncodedString()
        }.joined(separator: " ")
    }

    /// Verifies a `webhook-signature` header (used by our tests and by `switchboard tail`-style
    /// tools): any listed v1 signature made with any of our keys, timestamp within tolerance.
    public func verify(id: String, timestamp: Int64, body: Data, header: String, now: Int64, tolerance: Int64 = 300) -> Bool {
        guard abs(now - timestamp) <= tolerance else { return false }
        var content = Data("\(id).\(timestamp).".utf8)
        content.append(body)
        for candidate in header.split(separator: " ") where candidate.hasPrefix("v1,") {
            guard let sig = Data(base64Encoded: String(candidate.dropFirst(3))) else { continue }
            for key in keys where HMAC<SHA256>.isValidAuthenticationCode(sig, authenticating: content, using: key) {
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
