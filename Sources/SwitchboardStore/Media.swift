import Crypto
import Foundation
import GRDB
import NIOPosix
import SwitchboardCore

/// Content-addressed media files under `media.path` (`ab/abcdef…`): the same bytes are stored
/// once however often they arrive; each upload still gets its own `med_…` id with its own name
/// and type. Files are written to a temporary name and renamed, so a crash never leaves a
/// half-written file under a content address.
public final class FileMediaStore: MediaStore {
    public let root: String
    public let maxBytes: Int64
    let store: Store

    public init(root: String, maxBytes: Int64, store: Store) throws {
        self.root = root
        self.maxBytes = maxBytes
        self.store = store
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func path(for sha: String) -> String { "\(root)/\(sha.prefix(2))/\(sha)" }

    public func put(_ bytes: [UInt8], mimeType: String, filename: String?) async throws -> StoredMedia {
        guard Int64(bytes.count) <= maxBytes else { throw MediaTooLarge(limit: maxBytes) }
        // Hashing and writing take a while for a big file, and callers may run on an event
        // loop (the public listener's connections do): both happen on NIO's thread pool.
        let root = self.root
        let sha = try await NIOThreadPool.singleton.runIfActive { [self] () throws -> String in
            let sha = Hex.encode(SHA256.hash(data: bytes))
            let target = path(for: sha)
            if !FileManager.default.fileExists(atPath: target) {
                try FileManager.default.createDirectory(atPath: "\(root)/\(sha.prefix(2))", withIntermediateDirectories: true)
                let tmp = target + ".tmp-\(UUID().uuidString)"
                guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else {
                    throw StoreError.invalid("cannot write media file under \(root)")
                }
                if rename(tmp, target) != 0 { unlink(tmp); throw StoreError.invalid("cannot store media file under \(root)") }
            }
            return sha
        }
        let media = StoredMedia(id: ID.make(.media), sha256: sha, size: Int64(bytes.count), mimeType: mimeType, filename: filename)
        try await store.pool.write { db in
            try db.execute(sql: "INSERT INTO media (id, sha256, size, mime_type, filename, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [media.id, sha, media.size, mimeType, filename, Store.nowMS()])
        }
        return media
    }

    public func get(_ id: String) async throws -> (StoredMedia, [UInt8])? {
        guard let media = try await info(id) else { return nil }
        let file = path(for: media.sha256)
        let bytes = try await NIOThreadPool.singleton.runIfActive { FileManager.default.contents(atPath: file).map { Array($0) } }
        return bytes.map { (media, $0) }
    }

    public func info(_ id: String) async throws -> StoredMedia? {
        try await store.pool.read { db in
            guard let r = try Row.fetchOne(db, sql: "SELECT * FROM media WHERE id = ?", arguments: [id]) else { return nil }
            return StoredMedia(id: r["id"], sha256: r["sha256"], size: r["size"], mimeType: r["mime_type"], filename: r["filename"])
        }
    }
}

/// The per-adapter key-value store for cursors.
public struct StoreAdapterState: AdapterStateStore {
    let store: Store
    let channelID: String
    public init(store: Store, channelID: String) { self.store = store; self.channelID = channelID }

    public func get(_ key: String) async throws -> String? {
        try await store.pool.read { db in
            try String.fetchOne(db, sql: "SELECT value FROM adapter_state WHERE channel_id = ? AND key = ?", arguments: [channelID, key])
        }
    }

    public func entries(prefix: String) async throws -> [(key: String, value: String)] {
        try await store.pool.read { db in
            if let upper = Self.upperBound(prefix) {
                // A range on the primary key: only the matching rows are read.
                return try Row.fetchAll(db, sql: Self.rangeSQL, arguments: [channelID, prefix, upper]).map { ($0["key"], $0["value"]) }
            }
            return try Row.fetchAll(db, sql: "SELECT key, value FROM adapter_state WHERE channel_id = ? AND substr(key, 1, ?) = ? ORDER BY key",
                                    arguments: [channelID, prefix.utf8.count, prefix]).map { ($0["key"], $0["value"]) }
        }
    }

    public func entries(prefix: String, after: String?, last limit: Int) async throws -> [(key: String, value: String)] {
        guard let upper = Self.upperBound(prefix) else {
            return Self.last(limit, of: try await entries(prefix: prefix), after: after)
        }
        let lower = after.map { max($0, prefix) } ?? prefix
        let inclusive = after == nil || lower != after
        return try await store.pool.read { db in
            try Row.fetchAll(db, sql: Self.lastSQL(inclusive: inclusive), arguments: [channelID, lower, upper, max(0, limit)])
                .map { ($0["key"], $0["value"]) }.reversed()
        }
    }

    static let rangeSQL = "SELECT key, value FROM adapter_state WHERE channel_id = ? AND key >= ? AND key < ? ORDER BY key"
    static func lastSQL(inclusive: Bool) -> String {
        "SELECT key, value FROM adapter_state WHERE channel_id = ? AND key \(inclusive ? ">=" : ">") ? AND key < ? ORDER BY key DESC LIMIT ?"
    }

    /// The smallest string greater than every string starting with `prefix` (keys compare
    /// bytewise): the prefix with its last character's successor. nil for an empty prefix or
    /// one ending in U+10FFFF.
    static func upperBound(_ prefix: String) -> String? {
        guard let last = prefix.unicodeScalars.last, last.value < 0x10FFFF else { return nil }
        var next = last.value + 1
        if (0xD800...0xDFFF).contains(next) { next = 0xE000 }
        guard let scalar = Unicode.Scalar(next) else { return nil }
        var scalars = prefix.unicodeScalars
        scalars.removeLast()
        scalars.append(scalar)
        return String(scalars)
    }

    /// In one write transaction: the single writer makes the read and the write one step.
    public func update(_ key: String, _ transform: @escaping @Sendable (String?) -> String?) async throws {
        try await store.pool.write { [channelID] db in
            let current = try String.fetchOne(db, sql: "SELECT value FROM adapter_state WHERE channel_id = ? AND key = ?", arguments: [channelID, key])
            try Self.write(db, channelID: channelID, key: key, value: transform(current))
        }
    }

    public func set(_ key: String, _ value: String?) async throws {
        try await store.pool.write { [channelID] db in try Self.write(db, channelID: channelID, key: key, value: value) }
    }

    static func write(_ db: Database, channelID: String, key: String, value: String?) throws {
        if let value {
            try db.execute(sql: """
                INSERT INTO adapter_state (channel_id, key, value, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(channel_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                """, arguments: [channelID, key, value, Store.nowMS()])
        } else {
            try db.execute(sql: "DELETE FROM adapter_state WHERE channel_id = ? AND key = ?", arguments: [channelID, key])
        }
    }
}

/// Signed, expiring links to stored media on the public listener (`/media/{id}?exp=…&sig=…`),
/// for platforms that fetch media themselves (LINE, Messenger by URL) and can't send our API
/// token. The key lives in the database, so links stay valid across restarts.
public struct MediaURLSigner: Sendable {
    let key: [UInt8]
    public init(key: [UInt8]) { self.key = key }

    public func signature(mediaID: String, expires: Int64) -> String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: Array("\(mediaID).\(expires)".utf8), using: SymmetricKey(data: key)))
    }

    public func url(base: String, mediaID: String, validFor seconds: Double, now: Int64 = Store.nowMS() / 1000) -> String {
        let exp = now + Int64(seconds)
        return "\(base)/media/\(mediaID)?exp=\(exp)&sig=\(signature(mediaID: mediaID, expires: exp))"
    }

    public func verify(mediaID: String, expires: Int64, signature sig: String, now: Int64 = Store.nowMS() / 1000) -> Bool {
        guard expires >= now else { return false }
        return constantTimeEqual(Array(signature(mediaID: mediaID, expires: expires).utf8), Array(sig.lowercased().utf8))
    }
}

extension Store {
    /// A random per-installation secret, created on first use and kept in the database.
    public func installationSecret(_ name: String) throws -> [UInt8] {
        try pool.write { db in
            if let hex = try String.fetchOne(db, sql: "SELECT value FROM adapter_state WHERE channel_id = '_switchboard' AND key = ?", arguments: [name]),
               let key = Hex.decode(hex) {
                return key
            }
            let bytes = (0..<32).map { _ in UInt8.random(in: 0...255) }
            try db.execute(sql: "INSERT INTO adapter_state (channel_id, key, value, updated_at) VALUES ('_switchboard', ?, ?, ?)",
                           arguments: [name, Hex.encode(bytes), Store.nowMS()])
            return bytes
        }
    }
}
