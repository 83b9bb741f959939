import Foundation
import Synchronization
import Testing
@testable import EmailAdapter
@testable import EmailParsing
@testable import SwitchboardCore

/// The .eml corpus in Fixtures/ (written by Fixtures/make_fixtures.py with Python's codecs).
enum Fixture {
    static func bytes(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "eml", subdirectory: "Fixtures"),
                               "fixture \(name).eml is missing")
        return Array(try Data(contentsOf: url))
    }

    static func parse(_ name: String) throws -> ParsedEmail { EmailParser.parse(try bytes(name)) }

    static var all: [String] {
        let dir = Bundle.module.url(forResource: "Fixtures", withExtension: nil)
        let files = dir.flatMap { try? FileManager.default.contentsOfDirectory(atPath: $0.path) } ?? []
        return files.filter { $0.hasSuffix(".eml") }.map { String($0.dropLast(4)) }.sorted()
    }
}

/// Builds a message from lines joined with CRLF.
func mail(_ lines: String...) -> [UInt8] {
    Array(lines.joined(separator: "\r\n").utf8)
}

func parseMail(_ s: String) -> ParsedEmail { EmailParser.parse(Array(s.utf8)) }

/// An in-memory media store with a configurable limit.
final class MemoryMediaStore: MediaStore {
    let maxBytes: Int64
    private let stored = Mutex<[String: (StoredMedia, [UInt8])]>([:])
    init(maxBytes: Int64) { self.maxBytes = maxBytes }

    func put(_ bytes: [UInt8], mimeType: String, filename: String?) async throws -> StoredMedia {
        if Int64(bytes.count) > maxBytes { throw MediaTooLarge(limit: maxBytes) }
        let id = "med_\(stored.withLock { $0.count + 1 })"
        let media = StoredMedia(id: id, sha256: Hex.encode(Array(bytes.prefix(4))), size: Int64(bytes.count), mimeType: mimeType, filename: filename)
        stored.withLock { $0[id] = (media, bytes) }
        return media
    }

    func get(_ id: String) async throws -> (StoredMedia, [UInt8])? { stored.withLock { $0[id] } }
    var count: Int { stored.withLock { $0.count } }
}

/// A small deterministic PRNG (xorshift64*) so the fuzz test is reproducible.
struct XorShift: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}
