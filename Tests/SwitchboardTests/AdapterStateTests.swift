import Foundation
import GRDB
import Testing
@testable import SwitchboardStore

@Suite struct AdapterStateTests {
    @Test("prefix reads are primary-key ranges: only the prefix's rows, in key order, from a position, the newest N")
    func prefixRanges() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        let state = StoreAdapterState(store: store, channelID: "site")
        let other = StoreAdapterState(store: store, channelID: "other")
        for i in 1...30 { try await state.set("log:v_a:" + String(format: "%012d", i), "a\(i)") }
        for i in 1...5 { try await state.set("log:v_b:" + String(format: "%012d", i), "b\(i)") }
        try await state.set("log:v_a", "no colon: not in the prefix")
        try await state.set("log:v_a;", "the next character: not in the prefix")
        try await other.set("log:v_a:000000000001", "another channel")

        let all = try await state.entries(prefix: "log:v_a:")
        #expect(all.map(\.value) == (1...30).map { "a\($0)" })
        let after = try await state.entries(prefix: "log:v_a:", after: "log:v_a:" + String(format: "%012d", 25), last: 100)
        #expect(after.map(\.value) == ["a26", "a27", "a28", "a29", "a30"])
        let newest = try await state.entries(prefix: "log:v_a:", after: "log:v_a:" + String(format: "%012d", 0), last: 3)
        #expect(newest.map(\.value) == ["a28", "a29", "a30"])
        #expect(try await state.entries(prefix: "log:v_a:", after: nil, last: 2).map(\.value) == ["a29", "a30"])
        // A position before the prefix starts at the prefix.
        #expect(try await state.entries(prefix: "log:v_b:", after: "log:v_a:zzz", last: 10).map(\.value) == (1...5).map { "b\($0)" })
        #expect(try await state.entries(prefix: "fu:", after: nil, last: 10).isEmpty)
        #expect(try await state.entries(prefix: "lo").count == 37)
        #expect(StoreAdapterState.upperBound("log:v_a:") == "log:v_a;")
        #expect(StoreAdapterState.upperBound("") == nil)

        // The plan searches the primary key instead of scanning the channel's rows.
        let queries: [(String, StatementArguments)] = [
            (StoreAdapterState.rangeSQL, ["site", "log:v_a:", "log:v_a;"]),
            (StoreAdapterState.lastSQL(inclusive: false), ["site", "log:v_a:", "log:v_a;", 10]),
            (StoreAdapterState.lastSQL(inclusive: true), ["site", "log:v_a:", "log:v_a;", 10]),
        ]
        for (sql, arguments) in queries {
            let plan = try await store.pool.read { db in
                try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments).map { $0["detail"] as String }
            }
            #expect(plan.count == 1 && plan[0].hasPrefix("SEARCH adapter_state USING PRIMARY KEY (channel_id=? AND key>"), "\(sql): \(plan)")
        }
    }
}

/// `update` reads and rewrites a value in one step: concurrent updates of one key keep every
/// change (a get-then-set loses some).
@Suite struct AdapterStateUpdateTests {
    @Test func concurrentUpdatesLoseNothing() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        let state = StoreAdapterState(store: store, channelID: "c")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<40 {
                group.addTask { try await state.update("book") { ($0 ?? "") + "\(i)," } }
            }
            try await group.waitForAll()
        }
        let items = try #require(try await state.get("book")).split(separator: ",")
        #expect(Set(items).count == 40, "\(items.count) of 40 updates kept")
        try await state.update("book") { _ in nil }
        #expect(try await state.get("book") == nil)
    }
}
