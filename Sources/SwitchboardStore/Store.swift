import CSQLiteWALBuffer
import Foundation
import GRDB
import SwitchboardCore
import Synchronization

/// Persistence for everything Switchboard promises not to lose: conversations, identities,
/// messages with their raw payloads, the event log, each helpdesk's position in it and its
/// outbox of retries, the outbound send queue, dedupe keys, media and adapter state.
///
/// SQLite in WAL mode through GRDB. Nothing an acknowledged event needs lives only in memory,
/// and work is claimed with leases rather than held in process state, so a second instance on a
/// shared database (PostgreSQL, later) sees the same state.
public final class Store: Sendable {
    public let pool: DatabasePool
    public let path: String
    public let durability: Durability
    /// False while no numbered prompt (the text fallback's "reply with a number") has ever been
    /// stored in this database: then no customer reply can answer one, and ingest skips the
    /// lookup. Set, inside the sending transaction, before the first is written; never unset.
    let numberedPromptsMayExist = Atomic<Bool>(true)

    public enum Durability: String, Sendable {
        /// fsync on every commit: an acknowledged event survives power loss.
        case full
        /// fsync at checkpoints: survives a process crash, may lose the last commits on power loss.
        case normal
    }

    public init(path: String, durability: Durability = .full) throws {
        self.path = path
        // Before the first connection opens: write-ahead-log frames gathered into one write per
        // commit (CSQLiteWALBuffer). Failing that, SQLite's own VFS serves, only slower.
        _ = switchboard_wal_buffer_install()
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            if db.configuration.readonly {
                try db.execute(sql: "PRAGMA cache_size = -\(Self.readerCacheKiB)")
            } else {
                // The writer touches a few random index pages per event (dedupe keys, external
                // ids, per-conversation indexes); keeping them cached saves a read each.
                try db.execute(sql: "PRAGMA cache_size = -\(Self.writerCacheKiB)")
                // Checkpoints normally run beside the writer (WALCheckpointer), not in the commit
                // that crosses the threshold, which would stall every webhook waiting on it. This
                // higher threshold is only the writer's own safety net if they fall behind.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = \(Self.writerCheckpointPages)")
                try db.execute(sql: "PRAGMA journal_size_limit = \(Self.walSizeLimit)")
            }
        }
        pool = try DatabasePool(path: path, configuration: config)
        self.durability = durability
        try Self.migrator.migrate(pool)
        let prompts = try pool.read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM numbered_options)") ?? true }
        numberedPromptsMayExist.store(prompts, ordering: .relaxed)
        try pool.write { db in
            // Sends claimed with a lease: an SQLite file has one daemon, so any lease in it belonged
            // to a previous run that died (SIGKILL, power loss); waiting for it to expire would only
            // delay the send. (A shared PostgreSQL database would record the lease holder instead
            // and release only the leases of instances that stopped heartbeating.) The outbox
            // takes no leases (see dueOutbox).
            try db.execute(sql: "UPDATE send_queue SET lease_until = 0 WHERE lease_until > 0")
        }
    }

    static let readerCacheKiB = 8 * 1024
    static let writerCacheKiB = 32 * 1024
    static let writerCheckpointPages = 16_000
    static let walSizeLimit = 64 * 1024 * 1024

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE identities (
                    id TEXT PRIMARY KEY,
                    channel_id TEXT NOT NULL,
                    channel_type TEXT NOT NULL,
                    channel_user_id TEXT NOT NULL,
                    display_name TEXT,
                    profile TEXT,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    UNIQUE (channel_id, channel_user_id)
                );
                CREATE TABLE conversations (
                    id TEXT PRIMARY KEY,
                    channel_id TEXT NOT NULL,
                    channel_type TEXT NOT NULL,
                    identity_id TEXT NOT NULL REFERENCES identities(id),
                    thread TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    last_inbound_at INTEGER,
                    last_sequence INTEGER NOT NULL DEFAULT 0,
                    metadata TEXT,
                    UNIQUE (channel_id, identity_id, thread)
                );
                CREATE INDEX conversations_updated ON conversations(updated_at);
                CREATE TABLE messages (
                    id TEXT PRIMARY KEY,
                    conversation_id TEXT NOT NULL REFERENCES conversations(id),
                    channel_id TEXT NOT NULL,
                    direction TEXT NOT NULL,
                    origin TEXT NOT NULL,
                    external_id TEXT,
                    created_at INTEGER NOT NULL,
                    status TEXT,
                    body TEXT NOT NULL,
                    raw BLOB,
                    raw_format TEXT
                );
                CREATE INDEX messages_conversation ON messages(conversation_id, created_at);
                CREATE TABLE message_external_ids (
                    channel_id TEXT NOT NULL,
                    external_id TEXT NOT NULL,
                    message_id TEXT NOT NULL REFERENCES messages(id),
                    PRIMARY KEY (channel_id, external_id)
                ) WITHOUT ROWID;
                CREATE TABLE events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    type TEXT NOT NULL,
                    conversation_id TEXT,
                    channel_id TEXT,
                    created_at INTEGER NOT NULL,
                    body BLOB NOT NULL
                );
                CREATE TABLE outbox (
                    sink TEXT NOT NULL,
                    event_seq INTEGER NOT NULL REFERENCES events(seq),
                    conversation_id TEXT NOT NULL,
                    state TEXT NOT NULL DEFAULT 'pending',
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at INTEGER NOT NULL,
                    lease_until INTEGER NOT NULL DEFAULT 0,
                    last_error TEXT,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (sink, event_seq)
                ) WITHOUT ROWID;
                CREATE INDEX outbox_due ON outbox(sink, state, next_attempt_at);
                CREATE INDEX outbox_conversation ON outbox(sink, conversation_id, state, event_seq);
                CREATE TABLE sinks (
                    name TEXT PRIMARY KEY,
                    disabled_at INTEGER,
                    disabled_reason TEXT
                );
                CREATE TABLE send_queue (
                    message_id TEXT PRIMARY KEY REFERENCES messages(id),
                    conversation_id TEXT NOT NULL,
                    channel_id TEXT NOT NULL,
                    state TEXT NOT NULL DEFAULT 'pending',
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at INTEGER NOT NULL,
                    lease_until INTEGER NOT NULL DEFAULT 0,
                    rendered TEXT NOT NULL,
                    last_error TEXT,
                    created_at INTEGER NOT NULL
                );
                CREATE INDEX send_queue_due ON send_queue(channel_id, state, next_attempt_at);
                CREATE INDEX send_queue_conversation ON send_queue(conversation_id, state, created_at);
                CREATE TABLE idempotency_keys (
                    scope TEXT NOT NULL,
                    key TEXT NOT NULL,
                    request_hash TEXT NOT NULL,
                    message_id TEXT NOT NULL,
                    response TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (scope, key)
                ) WITHOUT ROWID;
                CREATE TABLE dedupe_keys (
                    channel_id TEXT NOT NULL,
                    key TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (channel_id, key)
                ) WITHOUT ROWID;
                CREATE TABLE media (
                    id TEXT PRIMARY KEY,
                    sha256 TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    mime_type TEXT NOT NULL,
                    filename TEXT,
                    created_at INTEGER NOT NULL
                );
                CREATE INDEX media_sha ON media(sha256);
                CREATE TABLE adapter_state (
                    channel_id TEXT NOT NULL,
                    key TEXT NOT NULL,
                    value TEXT NOT NULL,
                    updated_at INTEGER NOT NULL,
                    PRIMARY KEY (channel_id, key)
                ) WITHOUT ROWID;
                CREATE TABLE numbered_options (
                    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id),
                    message_id TEXT NOT NULL,
                    options TEXT NOT NULL,
                    expires_at INTEGER NOT NULL
                );
                """)
        }
        // A send through another channel (`AdapterContext.relay`) names its recipient here
        // instead of taking the conversation's identity.
        m.registerMigration("v2-relay-recipient") { db in
            try db.execute(sql: "ALTER TABLE send_queue ADD COLUMN recipient TEXT")
        }
        // Delivery reads the event log from each sink's position instead of writing an outbox
        // row per event and sink (and deleting it after delivery): the healthy path writes one
        // position per batch. The outbox keeps only the exceptions — events waiting for a
        // retry, parked, or held behind those in their conversation. Rows already in the outbox
        // stay valid as exceptions; a sink's position starts at the end of the log
        // (`prepareSinkPositions`), since every event before it has its outbox row.
        m.registerMigration("v3-sink-positions") { db in
            try db.execute(sql: """
                CREATE TABLE sink_positions (
                    sink TEXT PRIMARY KEY,
                    event_seq INTEGER NOT NULL
                ) WITHOUT ROWID
                """)
        }
        // Retention (`prune`): how far the log was pruned, so a replay cursor into the gap is
        // told so; and outbox rows by event, for pruning to skip the events they hold.
        m.registerMigration("v4-log-pruned") { db in
            try db.execute(sql: """
                CREATE TABLE log_pruned (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    through_seq INTEGER NOT NULL,
                    through_id TEXT NOT NULL
                );
                CREATE INDEX outbox_event ON outbox(event_seq);
                """)
        }
        // Other ids a channel names a customer by (`Peer.aliases`: WhatsApp's business-scoped
        // user id beside the phone number). An id names at most one identity per channel.
        m.registerMigration("v5-identity-aliases") { db in
            try db.execute(sql: """
                CREATE TABLE identity_aliases (
                    channel_id TEXT NOT NULL,
                    alias TEXT NOT NULL,
                    identity_id TEXT NOT NULL REFERENCES identities(id),
                    PRIMARY KEY (channel_id, alias)
                ) WITHOUT ROWID;
                CREATE INDEX identity_aliases_identity ON identity_aliases(identity_id);
                """)
        }
        // The customer's latest message by the platform's clock, and its id, kept on the
        // conversation row the message already updates (`Touch`): WhatsApp's 24-hour window and
        // mark-as-read read them. An adapter_state row per conversation did this before, one
        // more randomly placed page for the single ingest writer per message.
        m.registerMigration("v6-last-inbound-sent") { db in
            try db.execute(sql: """
                ALTER TABLE conversations ADD COLUMN last_inbound_sent_at INTEGER;
                ALTER TABLE conversations ADD COLUMN last_inbound_external_id TEXT;
                """)
        }
        return m
    }

    /// A write transaction whose commit is an acknowledgement to someone (a platform's webhook,
    /// the helpdesk's 202): with `durability: full` it is fsynced before returning. GRDB runs
    /// WAL databases at `synchronous = NORMAL` (no fsync per commit), which is right for the
    /// bookkeeping writes — a lost "delivered" mark only means a redelivery — so FULL is set for
    /// just these transactions; their fsync also covers every earlier commit in the WAL.
    public func acknowledgedWrite<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        guard durability == .full else { return try await pool.write(body) }
        return try await pool.writeWithoutTransaction { db in try Self.durableTransaction(db, body) }
    }

    /// `acknowledgedWrite` for a caller on its own thread (the ingest writer), which may block:
    /// the transaction runs on the calling thread, without a hop to GRDB's writer queue and
    /// back. Never call it from a task.
    public func acknowledgedWriteBlocking<T>(_ body: (Database) throws -> T) throws -> T {
        guard durability == .full else { return try pool.write(body) }
        return try pool.writeWithoutTransaction { db in try Self.durableTransaction(db, body) }
    }

    private static func durableTransaction<T>(_ db: Database, _ body: (Database) throws -> T) throws -> T {
        try db.execute(sql: "PRAGMA synchronous = FULL")
        defer { try? db.execute(sql: "PRAGMA synchronous = NORMAL") }
        var result: T?
        try db.inTransaction {
            result = try body(db)
            return .commit
        }
        return result!
    }

    /// Time source, overridable so retry schedules can be tested without waiting.
    public static func nowMS() -> Int64 { Timestamp.now().milliseconds }
}

/// Errors the store reports to API callers.
public enum StoreError: Error, Equatable, Sendable {
    case notFound(String)
    case conflict(String)
    case invalid(String)
}

extension Data {
    var utf8String: String { String(decoding: self, as: UTF8.self) }
}
