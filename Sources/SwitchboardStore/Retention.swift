import Foundation
import GRDB
import ServiceLifecycle
import SwitchboardCore

extension Store {
    /// What one `prune` removed.
    public struct Pruned: Sendable, Equatable {
        public var events: Int
        public var dedupeKeys: Int
        public init(events: Int = 0, dedupeKeys: Int = 0) { self.events = events; self.dedupeKeys = dedupeKeys }
    }

    /// Removes events created before `eventsBefore` and dedupe keys created before
    /// `dedupeBefore` (ms; nil keeps them), so the database stops growing with traffic.
    ///
    /// An event stays, however old, while a helpdesk still has to get it (at or after a sink's
    /// position) or while the outbox holds it (waiting for a retry, or parked and recoverable).
    /// Messages, conversations and identities are the history the API serves and are kept.
    ///
    /// Works in batches of `batch` rows, one short write transaction each, so ingest never
    /// waits long behind it; dedupe keys are looked up in a read first (their table has no
    /// index by age, and a read does not hold the writer).
    public func prune(eventsBefore: Int64?, dedupeBefore: Int64?, batch: Int = 2000) async throws -> Pruned {
        var pruned = Pruned()
        if let cutoff = eventsBefore {
            // Rows of helpdesks no longer configured are never delivered (one added back starts
            // afresh) and would keep their events for ever.
            try await pool.write { db in
                try db.execute(sql: "DELETE FROM outbox WHERE sink NOT IN (SELECT sink FROM sink_positions)")
            }
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let n = try await pool.write { db -> Int in
                    // Every sink is past this event, or there are no sinks (then only the
                    // replay API reads the log).
                    let bound = try Int64.fetchOne(db, sql: "SELECT MIN(event_seq) FROM sink_positions")
                        ?? Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0
                    let doomed = try Row.fetchAll(db, sql: """
                        SELECT seq, id FROM events e WHERE seq <= ? AND created_at < ?
                          AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_seq = e.seq)
                        ORDER BY seq LIMIT ?
                        """, arguments: [bound, cutoff, batch])
                    guard let last = doomed.last else { return 0 }
                    let seqs: [Int64] = doomed.map { $0["seq"] }
                    try db.execute(sql: "DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?))",
                                   arguments: [String(decoding: try JSON.bytes(seqs), as: UTF8.self)])
                    // How far the log was pruned: a replay cursor before this has lost events.
                    try db.execute(sql: """
                        INSERT INTO log_pruned (id, through_seq, through_id) VALUES (1, ?, ?)
                        ON CONFLICT(id) DO UPDATE SET through_seq = MAX(through_seq, excluded.through_seq),
                          through_id = CASE WHEN excluded.through_seq > through_seq THEN excluded.through_id ELSE through_id END
                        """, arguments: [last["seq"] as Int64, last["id"] as String])
                    return doomed.count
                }
                pruned.events += n
                if n < batch { break }
            }
        }
        if let cutoff = dedupeBefore {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let keys = try await pool.read { db in
                    try Row.fetchAll(db, sql: "SELECT channel_id, key FROM dedupe_keys WHERE created_at < ? LIMIT ?", arguments: [cutoff, batch])
                        .map { (channel: $0["channel_id"] as String, key: $0["key"] as String) }
                }
                if keys.isEmpty { break }
                try await pool.write { db in
                    for k in keys {
                        try db.cachedStatement(sql: "DELETE FROM dedupe_keys WHERE channel_id = ? AND key = ? AND created_at < ?")
                            .execute(arguments: [k.channel, k.key, cutoff])
                    }
                }
                pruned.dedupeKeys += keys.count
                if keys.count < batch { break }
            }
        }
        return pruned
    }

    /// Whether a replay after this event (`after=`) would miss pruned events: the event was
    /// pruned itself (an id the log lacks, at or before the last one pruned: ids sort by time),
    /// or events after it were (events held by the outbox survive pruning, so a cursor can
    /// still exist below the gap).
    public func replayLostEvents(after id: String, seq: Int64?) async throws -> Bool {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT through_seq, through_id FROM log_pruned WHERE id = 1") else { return false }
            if let seq { return seq < (row["through_seq"] as Int64) }
            return id <= (row["through_id"] as String)
        }
    }
}
