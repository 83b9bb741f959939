import Foundation
import GRDB
import SwitchboardCore

/// One event due for delivery to one sink.
public struct OutboxItem: Sendable, Hashable {
    public var sink: String
    public var eventSeq: Int64
    public var eventID: String
    public var eventType: String
    public var conversationID: String
    /// Attempts made before this one.
    public var attempts: Int
    public var body: Data
    public var createdAt: Int64
}

public struct SinkStats: Codable, Sendable, Hashable {
    public var pending: Int
    public var failed: Int
    public var disabledAt: Timestamp?
    public var disabledReason: String?
    public var oldestPendingAt: Timestamp?
    enum CodingKeys: String, CodingKey {
        case pending, failed, disabledAt = "disabled_at", disabledReason = "disabled_reason", oldestPendingAt = "oldest_pending_at"
    }
}

extension Store {
    /// Up to `limit` due events for `sink`, at most one per conversation and only the oldest
    /// undelivered one of each — so a conversation's events arrive in order while other
    /// conversations proceed.
    ///
    /// A plain read, not a write: with WAL it never waits behind ingest commits, which keeps it
    /// off the latency path. It needs no lease because one SQLite file has one daemon, and its
    /// worker keeps the events it has under way (until their outcomes are stored) out of later
    /// reads. (A shared PostgreSQL store would claim with `FOR UPDATE SKIP LOCKED` instead.)
    ///
    /// `excluding`: events the caller already has under way. They are still pending, so they
    /// still hold back their conversations' later events; they are only left out of the answer.
    static func dueOutbox(_ db: Database, sink: String, limit: Int, now: Int64, excluding: Set<Int64>) throws -> [OutboxItem] {
        let excluded = "[" + excluding.map(String.init).joined(separator: ",") + "]"
        return try Row.fetchAll(db.cachedStatement(sql: """
            SELECT o.event_seq, o.conversation_id, o.attempts, o.created_at, e.id, e.type, e.body
            FROM outbox o JOIN events e ON e.seq = o.event_seq
            WHERE o.sink = ?1 AND o.state = 'pending' AND o.next_attempt_at <= ?2
              AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.sink = o.sink AND p.conversation_id = o.conversation_id
                              AND p.state = 'pending' AND p.event_seq < o.event_seq)
              AND o.event_seq NOT IN (SELECT value FROM json_each(?4))
            ORDER BY o.event_seq LIMIT ?3
            """), arguments: [sink, now, limit, excluded]).map { r in
            OutboxItem(sink: sink, eventSeq: r["event_seq"], eventID: r["id"], eventType: r["type"], conversationID: r["conversation_id"],
                       attempts: r["attempts"], body: r["body"], createdAt: r["created_at"])
        }
    }

    /// What a delivery worker needs to know before each batch, read in one go.
    public struct DeliveryPoll: Sendable {
        /// The sink was disabled (410) and waits for `recoverSink`.
        public var disabled: Bool
        /// Due outbox rows, as `dueOutbox` returns them (empty while disabled).
        public var due: [OutboxItem]
        /// With nothing due: when the earliest row waiting for a retry becomes due, or nil
        /// when none is waiting.
        public var nextDue: Int64?
        /// Events of the log after the asked-for position, in log order (none while disabled).
        public var log: [OutboxItem]
        /// Conversations with a pending outbox row (when asked for): their new events must
        /// queue behind it.
        public var blocked: Set<String>?
    }

    /// `isSinkDisabled`, `dueOutbox`, `nextOutboxDue`, the next events of the log and the
    /// conversations held in the outbox, in one read: the worker polls once per batch, and at a
    /// trickle of events a batch is one event.
    ///
    /// The read runs on the calling thread (GRDB's blocking read), not on a reader queue: it is
    /// a few index lookups that never wait for the writer (WAL), and the hop to the queue and
    /// back cost more than the read.
    public func pollDelivery(sink: String, limit: Int, excluding: Set<Int64> = [], logAfter: Int64, logLimit: Int,
                             blocked: Bool, now: Int64 = Store.nowMS()) throws -> DeliveryPoll {
        try pool.read { db in
            if try Int64.fetchOne(db.cachedStatement(sql: "SELECT disabled_at FROM sinks WHERE name = ?"), arguments: [sink]) != nil {
                return DeliveryPoll(disabled: true, due: [], nextDue: nil, log: [], blocked: nil)
            }
            let due = limit > 0 ? try Self.dueOutbox(db, sink: sink, limit: limit, now: now, excluding: excluding) : []
            // Rows due already but held back (behind an event under way) need no timer: the
            // outcome of what holds them back wakes the worker.
            let next = due.isEmpty ? try Self.nextOutboxDue(db, sink: sink, after: now) : nil
            let log = logLimit > 0 ? try Self.logEvents(db, sink: sink, after: logAfter, limit: logLimit) : []
            let held = blocked ? Set(try String.fetchAll(db.cachedStatement(sql: """
                SELECT DISTINCT conversation_id FROM outbox WHERE sink = ? AND state = 'pending'
                """), arguments: [sink])) : nil
            return DeliveryPoll(disabled: false, due: due, nextDue: next, log: log, blocked: held)
        }
    }

    /// Up to `limit` events of the log after `seq`, in order, as items for `sink`.
    static func logEvents(_ db: Database, sink: String, after seq: Int64, limit: Int) throws -> [OutboxItem] {
        // Read by position straight from the statement (`allRowsDirect`): every delivered
        // event passes here, and GRDB's rows looked each column up by its lower-cased name.
        try db.cachedStatement(sql: """
            SELECT seq, id, type, conversation_id, created_at, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?
            """).allRowsDirect(.int(seq), .int(Int64(limit))) { r in
            OutboxItem(sink: sink, eventSeq: r.int(0), eventID: r.text(1) ?? "", eventType: r.text(2) ?? "", conversationID: r.text(3) ?? "",
                       attempts: 0, body: r.blob(5), createdAt: r.int(4))
        }
    }

    /// Where a sink's delivery stands in the event log: every event up to this `seq` was
    /// delivered, passed over (not subscribed) or moved to the outbox. A sink seen for the
    /// first time starts at the end of the log, as a new subscriber: it gets what is committed
    /// from then on.
    public func sinkPosition(_ sink: String) throws -> Int64 {
        try pool.write { db in
            try Self.startPosition(db, sink)
            return try Int64.fetchOne(db, sql: "SELECT event_seq FROM sink_positions WHERE sink = ?", arguments: [sink]) ?? 0
        }
    }

    /// Gives every configured sink a position (new ones at the end of the log) and forgets
    /// those of sinks no longer configured, so one added again later starts afresh, as it did
    /// when every event got outbox rows for the sinks configured at the time. Run when a
    /// configuration is applied, before ingest commits events the new sinks should get.
    public func prepareSinkPositions(_ sinks: [String]) throws {
        try pool.write { db in
            for sink in sinks { try Self.startPosition(db, sink) }
            let keep = String(decoding: try JSON.bytes(sinks), as: UTF8.self)
            try db.execute(sql: "DELETE FROM sink_positions WHERE sink NOT IN (SELECT value FROM json_each(?))", arguments: [keep])
        }
    }

    private static func startPosition(_ db: Database, _ sink: String) throws {
        try db.execute(sql: """
            INSERT OR IGNORE INTO sink_positions (sink, event_seq)
            SELECT ?, COALESCE(MAX(seq), (SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) FROM events
            """, arguments: [sink])
    }

    /// What happened to one delivered (or not) event.
    public enum Outcome: Sendable {
        case delivered
        case retry(at: Int64, error: String)
        /// Parked after the last attempt: stays as `failed` (recoverable) and no longer holds
        /// back its conversation.
        case failed(error: String)
    }

    /// An event read from the log that goes into the outbox instead of being settled by its
    /// first attempt.
    public struct Deferred: Sendable {
        public enum Kind: Sendable {
            /// Queued behind an earlier event of its conversation that waits in the outbox (or
            /// was refused with 410): due at once, delivered after that one.
            case held
            /// Its first attempt failed; retried at `at`.
            case retry(at: Int64, error: String)
            /// Its first attempt failed and no retry is left: parked, recoverable.
            case failed(error: String)
        }
        public var item: OutboxItem
        public var kind: Kind
        public init(item: OutboxItem, kind: Kind) { self.item = item; self.kind = kind }
    }

    /// Records a whole batch in one transaction: outcomes of outbox rows, log events moved to
    /// the outbox, and the sink's new position in the log.
    public func record(sink: String, outcomes: [(eventSeq: Int64, outcome: Outcome)], deferred: [Deferred] = [],
                       position: Int64? = nil, now: Int64 = Store.nowMS()) async throws {
        guard !outcomes.isEmpty || !deferred.isEmpty || position != nil else { return }
        try await pool.write { db in
            // Rows first: an event moved to the outbox while in flight may have its outcome in
            // the same batch.
            for d in deferred {
                let row: (state: String, attempts: Int, next: Int64, error: String?)
                switch d.kind {
                case .held: row = ("pending", 0, now, nil)
                case .retry(let at, let error): row = ("pending", 1, at, error)
                case .failed(let error): row = ("failed", 1, now, error)
                }
                // `created_at` is the event's: retry schedules and `oldest_pending_at` count
                // from when the event happened.
                try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO outbox (sink, event_seq, conversation_id, state, attempts, next_attempt_at, last_error, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(arguments: [sink, d.item.eventSeq, d.item.conversationID, row.state, row.attempts, row.next, row.error,
                                             d.item.createdAt])
            }
            for (seq, outcome) in outcomes {
                switch outcome {
                case .delivered:
                    try db.cachedStatement(sql: "DELETE FROM outbox WHERE sink = ? AND event_seq = ?").execute(arguments: [sink, seq])
                case .retry(let at, let error):
                    try db.cachedStatement(sql: """
                        UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE sink = ? AND event_seq = ?
                        """).execute(arguments: [at, error, sink, seq])
                case .failed(let error):
                    try db.cachedStatement(sql: """
                        UPDATE outbox SET attempts = attempts + 1, state = 'failed', last_error = ? WHERE sink = ? AND event_seq = ?
                        """).execute(arguments: [error, sink, seq])
                }
            }
            if let position {
                try db.cachedStatement(sql: "UPDATE sink_positions SET event_seq = MAX(event_seq, ?) WHERE sink = ?")
                    .execute(arguments: [position, sink])
            }
        }
    }

    public func disableSink(_ name: String, reason: String, now: Int64 = Store.nowMS()) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO sinks (name, disabled_at, disabled_reason) VALUES (?, ?, ?)
                ON CONFLICT(name) DO UPDATE SET disabled_at = excluded.disabled_at, disabled_reason = excluded.disabled_reason
                """, arguments: [name, now, reason])
        }
    }

    public func isSinkDisabled(_ name: String) async throws -> Bool {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT disabled_at FROM sinks WHERE name = ?", arguments: [name]) != nil
        }
    }

    /// Re-enables a sink and puts its parked events (optionally only those since a time) back
    /// in the queue. Returns how many events were re-queued.
    public func recoverSink(_ name: String, since: Int64? = nil, now: Int64 = Store.nowMS()) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: "UPDATE sinks SET disabled_at = NULL, disabled_reason = NULL WHERE name = ?", arguments: [name])
            try db.execute(sql: """
                UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?
                WHERE sink = ? AND state = 'failed' AND created_at >= ?
                """, arguments: [now, name, since ?? 0])
            return db.changesCount
        }
    }

    public func sinkStats(_ name: String) async throws -> SinkStats {
        try await pool.read { db in
            let held = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox WHERE sink = ? AND state = 'pending'", arguments: [name]) ?? 0
            let failed = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox WHERE sink = ? AND state = 'failed'", arguments: [name]) ?? 0
            var oldest = try Int64.fetchOne(db, sql: "SELECT MIN(created_at) FROM outbox WHERE sink = ? AND state = 'pending'", arguments: [name])
            // Events after the sink's position are pending too. They are counted as a difference
            // of sequence numbers (the log has no gaps: AUTOINCREMENT reuses a rolled-back
            // number), so a long backlog costs nothing to count; events the sink is not
            // subscribed to count until its worker passes over them, which it does on reading.
            var unread = 0
            if let position = try Int64.fetchOne(db, sql: "SELECT event_seq FROM sink_positions WHERE sink = ?", arguments: [name]) {
                let last = try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0
                // Events past the position that already have an outbox row are counted there.
                let rowsAhead = try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox WHERE sink = ? AND event_seq > ?",
                                                   arguments: [name, position]) ?? 0
                unread = Int(max(0, last - position - rowsAhead))
                if unread > 0, let first = try Int64.fetchOne(db, sql: "SELECT created_at FROM events WHERE seq > ? ORDER BY seq LIMIT 1",
                                                              arguments: [position]) {
                    oldest = min(oldest ?? first, first)
                }
            }
            let pending = held + unread
            let row = try Row.fetchOne(db, sql: "SELECT disabled_at, disabled_reason FROM sinks WHERE name = ?", arguments: [name])
            let disabledAt: Int64? = row?["disabled_at"]
            return SinkStats(pending: pending, failed: failed, disabledAt: disabledAt.map { Timestamp(milliseconds: $0) },
                             disabledReason: row?["disabled_reason"], oldestPendingAt: oldest.map { Timestamp(milliseconds: $0) })
        }
    }

    /// The earliest time after `after` at which a pending row of this sink becomes due (for the
    /// worker's sleep).
    static func nextOutboxDue(_ db: Database, sink: String, after: Int64) throws -> Int64? {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT MIN(next_attempt_at) FROM outbox WHERE sink = ? AND state = 'pending' AND next_attempt_at > ?"),
                           arguments: [sink, after])
    }
}
