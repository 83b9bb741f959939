import Crypto
import Foundation
import SwitchboardDelivery
import Testing

/// `KeyedHMAC`: the keyed state made once and copied per use gives exactly HMAC-SHA256 of the
/// key, however often and from however many tasks it is used, and never prints.
@Suite struct KeyedHMACTests {
    @Test func equalsAFreshHMACForEveryUseAndTask() async {
        for keyLength in [0, 16, 64, 65, 200] {
            let key = (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let keyed = KeyedHMAC(key: key)
            await withTaskGroup(of: Bool.self) { group in
                for task in 0..<8 {
                    group.addTask {
                        (0..<50).allSatisfy { i in
                            let prefix = Array("evt_\(task).\(i).".utf8)
                            let body = Data((0..<(i * 37)).map { UInt8(truncatingIfNeeded: $0 ^ task) })
                            let expected = Array(HMAC<SHA256>.authenticationCode(for: prefix + Array(body), using: SymmetricKey(data: key)))
                            return keyed.code(prefix: prefix, body) == expected && keyed.isValid(expected, prefix: prefix, for: body)
                                && !keyed.isValid(expected, prefix: prefix, for: body + [1]) && !keyed.isValid(Array(expected.dropLast()), prefix: prefix, for: body)
                        }
                    }
                }
                for await ok in group { #expect(ok, "key of \(keyLength) bytes") }
            }
        }
    }

    @Test func neverPrints() {
        let keyed = KeyedHMAC(key: Array("a-secret-that-must-not-print".utf8))
        var dumped = ""
        dump(keyed, to: &dumped)
        for text in ["\(keyed)", String(reflecting: keyed), dumped] {
            #expect(text.contains("<redacted>") || !text.contains("HMAC"), "\(text)")
            #expect(!text.contains("secret"))
            #expect(!text.contains("Digest"))
        }
    }
}
