import Foundation
import GRDB

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
            while true {
                let n = try await pool.write { db -> Int in
                    // Every sink is past this event, or there are no sinks (then only the
                    // replay API reads the log).
                    let bound = try Int64.fetchOne(db, sql: "SELECT MIN(event_seq) FROM sink_positions")
                        ?? Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0
                    try db.execute(sql: """
                        DELETE FROM events WHERE seq IN (
                            SELECT seq FROM events WHERE seq <= ? AND created_at < ?
                              AND seq NOT IN (SELECT event_seq FROM outbox)
                            ORDER BY seq LIMIT ?)
                        """, arguments: [bound, cutoff, batch])
                    return db.changesCount
                }
                pruned.events += n
                if n < batch { break }
            }
        }
        if let cutoff = dedupeBefore {
            while true {
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

    /// Whether an event id the log does not have is one that was pruned: older than the
    /// oldest event kept, after pruning removed some. Sequence numbers start at 1 and are
    /// never reused (AUTOINCREMENT), so a first event above 1, or an empty log that had
    /// events, means events were removed. (Event ids sort by time.)
    public func wasPruned(eventID id: String) async throws -> Bool {
        try await pool.read { db in
            if let first = try Row.fetchOne(db, sql: "SELECT id, seq FROM events ORDER BY seq LIMIT 1") {
                return (first["seq"] as Int64) > 1 && id < (first["id"] as String)
            }
            return (try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'events'") ?? 0) > 0
        }
    }
}
