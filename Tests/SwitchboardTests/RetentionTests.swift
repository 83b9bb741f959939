import Foundation
import GRDB
import Testing
import Logging
@testable import SwitchboardCore
@testable import SwitchboardRuntime
@testable import SwitchboardStore

/// The store stops growing with traffic: old events every helpdesk has, and old dedupe keys,
/// are pruned; nothing a helpdesk still needs is.
@Suite struct RetentionTests {
    let ctx = EventContext(source: "urn:switchboard:test")
    let channel = ChannelRef(type: "recording", id: "rec")

    /// A message whose external id is `text`, keyed by that id (WhatsApp's way) unless `key` is given (LINE's way).
    func work(_ text: String, from user: String, at ms: Int64, key: String? = nil) -> InboundWork {
        InboundWork(channel: channel, event: InboundEvent(.message(InboundMessage(externalID: text, parts: [.text(text)])),
                                                         peer: Peer(channelUserID: user), dedupeKey: key ?? text),
                    receivedAt: Timestamp(milliseconds: ms))
    }

    func seqs(_ store: Store) async throws -> [Int64] {
        try await store.pool.read { db in try Int64.fetchAll(db, sql: "SELECT seq FROM events ORDER BY seq") }
    }

    @Test func oldEventsEveryHelpdeskHasArePrunedAndNothingElse() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        let day: Int64 = 86_400_000
        let now = Store.nowMS()
        // Old: conversation.created (1) and three messages (2, 3, 4); new: one message (5).
        for (i, text) in ["old a", "old b", "old c"].enumerated() {
            _ = try await store.commitInbound([work(text, from: "u1", at: now - 40 * day + Int64(i))], ctx: ctx)
        }
        _ = try await store.commitInbound([work("new", from: "u1", at: now)], ctx: ctx)
        #expect(try await seqs(store) == [1, 2, 3, 4, 5])
        // Helpdesk a has everything; b is still at 3 (4 and 5 to come); event 2 waits in a's
        // outbox, parked and recoverable.
        try store.prepareSinkPositions(["a", "b"])
        try await store.pool.write { db in
            try db.execute(sql: "UPDATE sink_positions SET event_seq = 3 WHERE sink = 'b'")
            try db.execute(sql: """
                INSERT INTO outbox (sink, event_seq, conversation_id, state, attempts, next_attempt_at, created_at)
                SELECT 'a', seq, conversation_id, 'failed', 20, 0, created_at FROM events WHERE seq = 2
                """)
        }
        let ids = try await store.pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM events ORDER BY seq") }
        let pruned = try await store.prune(eventsBefore: now - 30 * day, dedupeBefore: nil, batch: 1)
        #expect(pruned == Store.Pruned(events: 2, dedupeKeys: 0))
        #expect(try await seqs(store) == [2, 4, 5])
        // A replay after event 2 (kept for the outbox) or 3 (pruned) would miss 3; after 4, nothing.
        #expect(try await store.replayLostEvents(after: ids[1], seq: 2))
        #expect(try await store.replayLostEvents(after: ids[2], seq: nil))
        #expect(try await !store.replayLostEvents(after: ids[3], seq: 4))
        // Messages are history, not log: all four are still there.
        #expect(try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM messages") } == 4)
        // The parked event can still be recovered and delivered.
        #expect(try await store.recoverSink("a") == 1)
        // Pruning moved nothing a position counts on.
        #expect(try await store.sinkStats("b").pending == 2)
    }

    @Test func oldDedupeKeysArePrunedSoTheIdIsAcceptedAgain() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        let day: Int64 = 86_400_000
        let now = Store.nowMS()
        _ = try await store.commitInbound([work("m-old", from: "u1", at: now - 20 * day, key: "evt:old")], ctx: ctx)
        _ = try await store.commitInbound([work("m-new", from: "u1", at: now, key: "evt:new")], ctx: ctx)
        let again = try await store.commitInbound([work("m-new", from: "u1", at: now, key: "evt:new")], ctx: ctx)
        guard case .success(.duplicate) = again.first else { Issue.record("\(again)"); return }
        let pruned = try await store.prune(eventsBefore: nil, dedupeBefore: now - 14 * day, batch: 1)
        #expect(pruned == Store.Pruned(events: 0, dedupeKeys: 1))
        let old = try await store.commitInbound([work("m-old", from: "u1", at: now, key: "evt:old")], ctx: ctx)
        guard case .success(.committed) = old.first else { Issue.record("a key past retention is forgotten: \(old)"); return }
        let recent = try await store.commitInbound([work("m-new", from: "u1", at: now, key: "evt:new")], ctx: ctx)
        guard case .success(.duplicate) = recent.first else { Issue.record("a recent key is kept: \(recent)"); return }
    }

    /// A message keyed by its own platform id is its own dedupe record: no key row is written
    /// for it, and pruning keys never lets its redelivery in, however late.
    @Test func aMessageKeyedByItsIDIsRememberedByTheMessage() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        let day: Int64 = 86_400_000
        let now = Store.nowMS()
        _ = try await store.commitInbound([work("wamid.old", from: "u1", at: now - 20 * day)], ctx: ctx)
        // In one batch too: the second of two identical messages is the duplicate.
        let batch = try await store.commitInbound([work("wamid.new", from: "u2", at: now), work("wamid.new", from: "u2", at: now)], ctx: ctx)
        guard case .success(.committed) = batch.first, case .success(.duplicate) = batch.last else { Issue.record("\(batch)"); return }
        #expect(try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM dedupe_keys") } == 0)
        #expect(try await store.prune(eventsBefore: nil, dedupeBefore: now, batch: 1) == Store.Pruned())
        for id in ["wamid.old", "wamid.new"] {
            let late = try await store.commitInbound([work(id, from: "u1", at: now)], ctx: ctx)
            guard case .success(.duplicate) = late.first else { Issue.record("\(id) stored again: \(late)"); return }
        }
        #expect(try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM messages") } == 2)
    }

    /// A replay cursor older than what the log keeps is told so (410), not "unknown" (404).
    @Test func anExpiredReplayCursorIsGone() async throws {
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("channels: [ { id: \(channel), type: recording } ]")
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("first", from: "u1")
        let first = try #require(try await d.api("GET", "/v1/events?after=0").json?["events"]?.arrayValue?.first?["id"]?.stringValue)
        _ = try await d.context(channel).customerSays("second", from: "u1")
        // Everything up to the second message's event goes (no helpdesk holds it back).
        let cutoff = try await d.runtime.store.pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(created_at) FROM events") }! + 1
        try await d.runtime.store.pool.write { db in
            try db.execute(sql: "UPDATE events SET created_at = created_at - 1 WHERE seq < (SELECT MAX(seq) FROM events)")
        }
        _ = try await d.runtime.store.prune(eventsBefore: cutoff - 1, dedupeBefore: nil)
        let r = try await d.api("GET", "/v1/events?after=\(first)")
        #expect(r.status == 410)
        #expect(r.json?["code"]?.stringValue == "cursor_expired")
        #expect(try await d.api("GET", "/v1/events?after=evt_ZZZZZZZZZZZZZZZZZZZZZZZZZZ").status == 404)
        #expect(try await d.api("GET", "/v1/events?after=0").json?["events"]?.arrayValue?.count == 1)
        // Even once the log is empty, a cursor into it has expired rather than never existed.
        _ = try await d.runtime.store.prune(eventsBefore: Store.nowMS() + 1000, dedupeBefore: nil)
        #expect(try await d.api("GET", "/v1/events?after=\(first)").status == 410)
    }

    /// The daemon's hourly job runs with the configured (here default) retention.
    @Test func theDaemonsJobUsesTheConfiguredRetention() async throws {
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("channels: [ { id: \(channel), type: recording } ]")
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("hello", from: "u1")
        let day: Int64 = 86_400_000
        // 29 days on: the events are within the default 30 days; dedupe keys are kept for
        // ever by default.
        #expect(await d.runtime.retention.pruneOnce(now: Store.nowMS() + 29 * day) == Store.Pruned())
        // 31 days on: the two events go.
        let later = await d.runtime.retention.pruneOnce(now: Store.nowMS() + 31 * day)
        #expect(later == Store.Pruned(events: 2, dedupeKeys: 0))
        #expect(try await d.runtime.store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM messages") } == 1)
    }

    @Test func retentionSettingsAreChecked() {
        let p = ConfigTests.problems("storage: { event_retention: 10m, dedupe_retention: 2h }")
        #expect(p.contains { $0.hasPrefix("storage.event_retention: at least 1h") })
        #expect(p.contains { $0.hasPrefix("storage.dedupe_retention: at least 1d") })
        #expect(ConfigTests.problems("storage: { event_retention: 0, dedupe_retention: 0 }").isEmpty)
        #expect(ConfigTests.problems("storage: { event_retention: 90d, dedupe_retention: 7d }").isEmpty)
    }
}
