import CSQLiteWALBuffer
import Foundation
import GRDB
import Testing
@testable import SwitchboardStore

/// The VFS that gathers each commit's write-ahead-log frames into one write (CSQLiteWALBuffer):
/// what SQLite wrote must read back, at once and from any connection, exactly as without it.
@Suite struct WALWriteBufferTests {
    static func database(_ dir: URL, synchronous: String, cacheKiB: Int = 2000) throws -> DatabaseQueue {
        #expect(switchboard_wal_buffer_install() == 0)
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            try db.execute(sql: "PRAGMA cache_size = -\(cacheKiB)")
        }
        let queue = try DatabaseQueue(path: dir.appendingPathComponent("t.sqlite").path, configuration: config)
        try queue.writeWithoutTransaction { db in _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL") }
        return queue
    }

    static func blob(_ i: Int, size: Int) -> Data {
        // Incompressible-looking, different for every row, and cheap (xorshift).
        var x = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 | 1
        return Data((0..<size).map { _ in x ^= x << 13; x ^= x >> 7; x ^= x << 17; return UInt8(truncatingIfNeeded: x) })
    }

    /// With no fsync at all (`synchronous = OFF`), only the commit's last frame writes the
    /// gathered frames out; another connection must read every commit right after it returns.
    @Test func everyCommitIsReadableByAnotherConnectionAtOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sb-wal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = try Self.database(dir, synchronous: "OFF")
        let reader = try DatabaseQueue(path: dir.appendingPathComponent("t.sqlite").path)
        try writer.write { db in try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)") }
        let writeOutsBefore = try writer.read { db in switchboard_wal_buffer_write_outs(db.sqliteConnection) }
        #expect(writeOutsBefore >= 1)
        for i in 1...150 {
            let v = Self.blob(i, size: 1500 + 97 * (i % 40))
            try writer.write { db in
                try db.execute(sql: "INSERT INTO t (id, v) VALUES (?, ?)", arguments: [i, v])
                try db.execute(sql: "INSERT INTO t (id, v) VALUES (?, ?)", arguments: [10_000 + i, v])
            }
            let read = try reader.read { db -> (Int, Data?) in
                (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") ?? 0, try Data.fetchOne(db, sql: "SELECT v FROM t WHERE id = ?", arguments: [i]))
            }
            #expect(read.0 == 2 * i)
            #expect(read.1 == v)
        }
        // Gathered: one write-out per commit (a checkpoint's restart of the log may add one), not
        // one or two per frame (each commit has several).
        let writeOuts = try writer.read { db in switchboard_wal_buffer_write_outs(db.sqliteConnection) } - writeOutsBefore
        #expect((150...155).contains(writeOuts), "\(writeOuts) write-outs for 150 commits")
        let integrity = try reader.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") }
        #expect(integrity == "ok")
    }

    /// A transaction larger than the page cache spills frames before it commits and reads them
    /// back, one commit's frames outgrow a single write call, and then what the VFS gathers in
    /// memory: all must come out whole, through a checkpoint and a reopen.
    @Test func largeTransactionsSpillAndComeBackWhole() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sb-wal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var expected: [Int: Data] = [:]
        do {
            let writer = try Self.database(dir, synchronous: "NORMAL", cacheKiB: 64)
            try writer.write { db in try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)") }
            // The last round's transaction (about 10 MB) outgrows what one commit gathers in memory.
            for round in 0..<3 {
                try writer.write { db in
                    for i in 0..<(round == 2 ? 3000 : 400) {
                        let id = round * 1000 + i
                        let v = Self.blob(id, size: 3000 + i)
                        expected[id] = v
                        try db.execute(sql: "INSERT INTO t (id, v) VALUES (?, ?)", arguments: [id, v])
                        // Rewrites pages already spilled to the log in this transaction.
                        if i % 50 == 49 { try db.execute(sql: "UPDATE t SET v = v WHERE id = ?", arguments: [round * 1000]) }
                    }
                }
                let reader = try DatabaseQueue(path: dir.appendingPathComponent("t.sqlite").path)
                let count = try reader.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") }
                #expect(count == expected.count)
                try reader.close()
            }
            try writer.writeWithoutTransaction { db in _ = try db.checkpoint(.passive) }
            try writer.close()
        }
        let reopened = try DatabaseQueue(path: dir.appendingPathComponent("t.sqlite").path)
        try reopened.read { db in
            let integrity = try String.fetchOne(db, sql: "PRAGMA integrity_check")
            #expect(integrity == "ok")
            for (id, v) in expected {
                let stored = try Data.fetchOne(db, sql: "SELECT v FROM t WHERE id = ?", arguments: [id])
                #expect(stored == v)
            }
        }
    }
}

/// `Statement.runDirect`, the ingest writer's binding through the SQLite C API: every kind of
/// value stored as GRDB would store it (an empty string or blob is not NULL), SQLite's errors
/// come back as GRDB's, and `firstRowDirect` / `allRowsDirect` read rows back by position.
@Suite struct DirectStatementTests {
    @Test func valuesAreStoredAsBoundAndErrorsSurface() throws {
        let db = try DatabaseQueue()
        try db.write { db in
            try db.execute(sql: "CREATE TABLE t (k TEXT PRIMARY KEY, s TEXT, u TEXT, b BLOB, i INTEGER)")
            let insert = try db.cachedStatement(sql: "INSERT INTO t (k, s, u, b, i) VALUES (?, ?, ?, ?, ?)")
            try insert.runDirect(.text("a"), .text("é ☃"), .utf8(Array("{\"x\":1}".utf8)), .blob(Data([0, 1, 2])), .int(-7))
            try insert.runDirect(.text("b"), .text(""), .utf8([]), .blob(Data()), .null)
            try insert.runDirect(.text("c"), .text(nil as String?), .null, .null, .int(Int64.max))
            #expect(db.changesCount == 1)
            let rows = try Row.fetchAll(db, sql: "SELECT k, s, u, b, i, typeof(s), typeof(u), typeof(b) FROM t ORDER BY k")
            #expect(rows[0]["s"] as String? == "é ☃")
            #expect(rows[0]["u"] as String? == "{\"x\":1}")
            #expect(rows[0]["b"] as Data? == Data([0, 1, 2]))
            #expect(rows[0]["i"] as Int64? == -7)
            #expect(rows[1][5] as String == "text")
            #expect(rows[1][6] as String == "text")
            #expect(rows[1][7] as String == "blob")
            #expect(rows[1]["s"] as String? == "")
            #expect(rows[2][5] as String == "null")
            #expect(rows[2]["i"] as Int64? == Int64.max)
            do {
                try insert.runDirect(.text("a"), .null, .null, .null, .null)
                Issue.record("a duplicate key was accepted")
            } catch let error as DatabaseError {
                #expect(error.resultCode == .SQLITE_CONSTRAINT)
            }
            // The statement is usable again after the failure.
            try insert.runDirect(.text("d"), .null, .null, .null, .null)
            #expect(try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") == 4)
            let query = try db.cachedStatement(sql: "SELECT s, i FROM t WHERE k = ?")
            #expect(try query.firstRowDirect(.text("a"), read: { [$0.text(0), String($0.int(1))] }) == ["é ☃", "-7"])
            #expect(try query.firstRowDirect(.text("c"), read: { $0.text(0) }) == .some(nil))
            #expect(try query.firstRowDirect(.text("zz"), read: { $0.text(0) }) == nil)
            let all = try db.cachedStatement(sql: "SELECT k, b FROM t WHERE k >= ? ORDER BY k")
            let read = try all.allRowsDirect(.text("a")) { ($0.text(0) ?? "?", $0.blob(1)) }
            #expect(read.map(\.0) == ["a", "b", "c", "d"])
            #expect(read.map(\.1) == [Data([0, 1, 2]), Data(), Data(), Data()])
            #expect(try all.allRowsDirect(.text("zz")) { $0.text(0) }.isEmpty)
            // Bound afresh each time: a second run answers the same.
            #expect(try all.allRowsDirect(.text("c")) { $0.text(0) } == ["c", "d"])
        }
    }
}
