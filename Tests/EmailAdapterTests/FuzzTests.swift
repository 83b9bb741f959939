import Foundation
import Testing
@testable import EmailAdapter
@testable import EmailParsing
@testable import SwitchboardCore

/// Deterministic fuzzing: thousands of mutated and truncated fixture messages go through the
/// whole inbound path (parse, classify, strip, convert). Nothing may trap, and the output must
/// stay within the limits. (A libFuzzer target is separate work.)
@Suite("Email parser robustness")
struct FuzzTests {
    static let limits = MIMELimits(maxDepth: 8, maxParts: 64, maxMessageBytes: 256 * 1024)
    static let codec = ThreadCodec(secret: Array("fuzz".utf8), domain: "example.com")

    /// Fragments that tend to hit edge cases when spliced in.
    static let tokens: [[UInt8]] = [
        "\r\n", "\n", "\r\n\r\n", "--", "--\r\n", "=?", "?=", "=?utf-8?B?", "=?iso-2022-jp?Q?=1B$B", "\u{1B}$B", "\u{1B}(I",
        "Content-Type: multipart/mixed; boundary=\"x\"\r\n", "\r\n--x\r\n", "\r\n--x--\r\n", "Content-Transfer-Encoding: base64\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n", "=\r\n", "=F", "<", ">", "\"", "(", ")", ",", ";", ":", "*0*=",
        "filename*=utf-8''%", "charset=ks_c_5601-1987", "&#x", "&", "<p>", "<style>", "cid:", "\0", "\u{FF}",
        "\r\n> ", "On x wrote:", "-----Original Message-----", "From: a@b\r\nSent: x\r\n",
    ].map { Array($0.utf8) }

    static func mutate(_ input: [UInt8], rng: inout XorShift) -> [UInt8] {
        var b = input
        let ops = Int.random(in: 1...6, using: &rng)
        for _ in 0..<ops {
            let pos = b.isEmpty ? 0 : Int.random(in: 0..<b.count, using: &rng)
            switch Int.random(in: 0..<8, using: &rng) {
            case 0: if !b.isEmpty { b[pos] = UInt8.random(in: 0...255, using: &rng) }
            case 1: b.insert(contentsOf: tokens[Int.random(in: 0..<tokens.count, using: &rng)], at: pos)
            case 2: b.removeSubrange(pos..<min(b.count, pos + Int.random(in: 1...64, using: &rng)))
            case 3: b = Array(b.prefix(pos))
            case 4:
                let len = min(b.count - pos, Int.random(in: 1...200, using: &rng))
                if len > 0 { b.insert(contentsOf: b[pos..<(pos + len)], at: Int.random(in: 0...b.count, using: &rng)) }
            case 5: if !b.isEmpty { b[pos] = [0x0A, 0x0D, 0x20, 0x2D, 0x3D, 0x3F, 0x22, 0x3C][Int.random(in: 0..<8, using: &rng)] }
            case 6: b.insert(contentsOf: (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0x80...0xFF, using: &rng) }, at: pos)
            default: b = b.filter { $0 != 0x0D } // CRLF → LF
            }
        }
        return b
    }

    /// Runs everything a message goes through and checks invariants.
    static func exercise(_ bytes: [UInt8]) {
        let email = EmailParser.parse(bytes, limits: limits)
        #expect(email.root.allParts.count <= limits.maxParts)
        #expect(email.attachments.count < limits.maxParts)
        #expect(email.size == bytes.count)
        #expect(!email.messageIDOrSynthesized.isEmpty)
        #expect(email.attachments.allSatisfy { !$0.filename.isEmpty && !$0.filename.contains("/") })
        let stripped = QuoteStripper.strip(email.text)
        #expect(stripped.fullText.count <= email.text.count + 1)
        let classification = EmailClassifier.classify(email, ownAddresses: ["support@example.com"], codec: codec)
        let inbound = EmailInbound(email: email, raw: bytes, classification: classification)
        #expect(inbound.parts.count == inbound.pendingMedia.count + (inbound.parts.first?.type == "text" ? 1 : 0))
        #expect(!JSON.string(inbound.parts).isEmpty)
        #expect(!JSON.string(inbound.channelData).isEmpty)
        _ = email.html.map(HTMLText.toText)
        _ = email.headers.fields.map { $0.decodedValue() }
    }

    @Test func mutatedFixturesNeverTrap() throws {
        var rng = XorShift(seed: 0x5EED_0F_E3A1)
        var runs = 0
        for name in Fixture.all {
            let original = try Fixture.bytes(name)
            for _ in 0..<120 {
                Self.exercise(Self.mutate(original, rng: &rng))
                runs += 1
            }
        }
        #expect(runs >= 3000)
    }

    @Test func everyTruncationOfTheNestedFixture() throws {
        let original = try Fixture.bytes("nested")
        for n in stride(from: 0, through: original.count, by: 3) {
            Self.exercise(Array(original.prefix(n)))
        }
    }

    @Test func pathologicalInputs() {
        // Deep comment nesting, endless encoded words, huge header counts, all byte values,
        // boundaries everywhere, and a depth bomb.
        Self.exercise(Array(("From: " + String(repeating: "(", count: 20_000) + "a@b\r\n\r\n").utf8))
        Self.exercise(Array(("Subject: " + String(repeating: "=?utf-8?B?4pyT?= ", count: 5_000) + "\r\n\r\n").utf8))
        Self.exercise(Array((String(repeating: "X-H: v\r\n", count: 5_000) + "\r\nbody").utf8))
        Self.exercise((0..<4096).map { UInt8($0 % 256) })
        Self.exercise(Array(("Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n" + String(repeating: "--\r\n", count: 2_000)).utf8))
        var bomb = ""
        for _ in 0..<2_000 { bomb += "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n" }
        Self.exercise(Array(bomb.utf8))
        Self.exercise(Array(("Content-Type: text/html\r\n\r\n" + String(repeating: "<div><p>&#x1F600;&amp", count: 3_000)).utf8))
        Self.exercise(Array(("Content-Type: text/plain; charset=iso-2022-jp\r\n\r\n" + String(repeating: "\u{1B}$B\u{1B}(I\u{0E}", count: 1_000)).utf8))
        let huge = EmailParser.parse(Array(repeating: 0x41, count: 300 * 1024), limits: Self.limits)
        #expect(huge.warnings.count == 1)
    }
}
