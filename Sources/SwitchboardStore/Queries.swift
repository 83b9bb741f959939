import Foundation
import GRDB
import SwitchboardCore

/// One row of the event log.
public struct StoredEvent: Sendable, Hashable {
    public var seq: Int64
    public var id: String
    public var type: String
    public var body: Data
}

extension Store {
    public func conversation(_ id: String) async throws -> Conversation? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM conversations WHERE id = ?", arguments: [id]).map(Self.conversationFrom)
        }
    }

    public func identity(_ id: String) async throws -> Identity? {
        try await pool.read { db in
            try db.cachedStatement(sql: "SELECT * FROM identities WHERE id = ?").firstRowDirect(.text(id), read: Self.identityFrom)
        }
    }

    /// Conversations, newest activity first, paged by an opaque cursor (`updated_at:id`).
    public func conversations(channelID: String?, limit: Int, cursor: String?) async throws -> ([Conversation], String?) {
        try await pool.read { db in
            var sql = "SELECT * FROM conversations WHERE 1=1"
            var args: [any DatabaseValueConvertible] = []
            if let channelID { sql += " AND channel_id = ?"; args.append(channelID) }
            if let cursor, let colon = cursor.firstIndex(of: ":"), let t = Int64(cursor[..<colon]) {
                sql += " AND (updated_at < ? OR (updated_at = ? AND id < ?))"
                args += [t, t, String(cursor[cursor.index(after: colon)...])]
            }
            sql += " ORDER BY updated_at DESC, id DESC LIMIT ?"
            args.append(limit + 1)
            var convs = try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map(Self.conversationFrom)
            var next: String? = nil
            if convs.count > limit {
                convs.removeLast()
                if let last = convs.last { next = "\(last.updatedAt.milliseconds):\(last.id)" }
            }
            return (convs, next)
        }
    }

    /// A conversation's messages in order, after an optional message id.
    public func messages(conversationID: String, after: String?, limit: Int) async throws -> [Message] {
        try await pool.read { db in
            var sql = "SELECT body FROM messages WHERE conversation_id = ?"
            var args: [any DatabaseValueConvertible] = [conversationID]
            if let after { sql += " AND id > ?"; args.append(after) }
            sql += " ORDER BY id LIMIT ?"
            args.append(limit)
            return try String.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map { try JSON.decode(Message.self, from: Data($0.utf8)) }
        }
    }

    public func message(_ id: String) async throws -> Message? {
        try await pool.read { db in
            try String.fetchOne(db, sql: "SELECT body FROM messages WHERE id = ?", arguments: [id]).map { try JSON.decode(Message.self, from: Data($0.utf8)) }
        }
    }

    public func rawPayload(messageID: String) async throws -> RawPayload? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT raw, raw_format FROM messages WHERE id = ?", arguments: [messageID]),
                  let raw: Data = row["raw"] else { return nil }
            return RawPayload(format: row["raw_format"] ?? "json", bytes: Array(raw))
        }
    }

    /// The log position of an event id (nil when unknown).
    public func eventSeq(of id: String) async throws -> Int64? {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT seq FROM events WHERE id = ?", arguments: [id]) }
    }

    /// Events after a log position, in commit order.
    public func events(afterSeq: Int64, limit: Int, types: [String]? = nil) async throws -> [StoredEvent] {
        try await pool.read { db in
            var sql = "SELECT seq, id, type, body FROM events WHERE seq > ?"
            var args: [any DatabaseValueConvertible] = [afterSeq]
            if let types, !types.isEmpty {
                let exact = types.filter { !$0.hasSuffix("*") }
                let prefixes = types.filter { $0.hasSuffix(".*") }.map { String($0.dropLast()) }
                if !types.contains("*") {
                    var ors: [String] = []
                    if !exact.isEmpty { ors.append("type IN (\(exact.map { _ in "?" }.joined(separator: ",")))"); args += exact }
                    for p in prefixes { ors.append("type LIKE ?"); args.append(p + "%") }
                    sql += " AND (" + ors.joined(separator: " OR ") + ")"
                }
            }
            sql += " ORDER BY seq LIMIT ?"
            args.append(limit)
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map {
                StoredEvent(seq: $0["seq"], id: $0["id"], type: $0["type"], body: $0["body"])
            }
        }
    }

    public func lastEventSeq() async throws -> Int64 {
        try await pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") ?? 0 }
    }

    public func counts() async throws -> (conversations: Int, messages: Int, sendQueue: Int) {
        try await pool.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM conversations") ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM messages") ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM send_queue WHERE state = 'pending'") ?? 0)
        }
    }

    /// Creates (or finds) the conversation for a proactive start (`POST /v1/conversations`).
    /// The name given there is for a new customer: one the channel already knows by name keeps
    /// it. Anything the address adds to a known identity (a profile key) is announced with
    /// `identity.updated`, as an inbound change would be.
    public func openConversation(channel: ChannelRef, peer: Peer, thread: String, ctx: EventContext) async throws -> (Conversation, Bool) {
        try await pool.write { db in
            let now = Store.nowMS()
            let (identity, changed) = try Self.upsertIdentity(db, channel: channel, peer: peer, now: now, keepKnownName: true)
            let (conv, created) = try Self.findOrCreateConversation(db, channel: channel, identityID: identity.id, thread: thread, now: now)
            if created {
                try Self.appendEvent(db, ctx: ctx, type: .conversationCreated, conversationID: conv.id, channel: channel,
                                     dataJSON: JSON.encode(conv), now: now)
            }
            if changed {
                try Self.appendEvent(db, ctx: ctx, type: .identityUpdated, conversationID: conv.id, channel: channel,
                                     dataJSON: JSON.encode(identity), now: now)
            }
            return (conv, created)
        }
    }

    /// Liveness probe for the watchdog: one trivial read.
    public func ping() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }
}
