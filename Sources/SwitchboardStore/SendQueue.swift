import Crypto
import Foundation
import GRDB
import SwitchboardCore

/// A send request accepted from the helpdesk.
public struct OutboundRequest: Sendable {
    public var conversation: Conversation
    public var parts: [Part]
    public var rendered: RenderedMessage
    public var metadata: JSONObject?
    public var replyTo: MessageRef?
    public var sender: Participant?
    /// (scope, key, request hash): the same key with the same request returns the first answer.
    public var idempotency: (scope: String, key: String, requestHash: String)?
    public init(conversation: Conversation, parts: [Part], rendered: RenderedMessage, metadata: JSONObject?, replyTo: MessageRef?,
                sender: Participant?, idempotency: (scope: String, key: String, requestHash: String)?) {
        self.conversation = conversation; self.parts = parts; self.rendered = rendered; self.metadata = metadata
        self.replyTo = replyTo; self.sender = sender; self.idempotency = idempotency
    }
}

/// The answer to a send request (202), stored with the idempotency key.
public struct SendAccepted: Codable, Sendable, Hashable {
    public struct Render: Codable, Sendable, Hashable {
        public var channel: String
        public var degradations: [Degradation]
    }
    public var id: String
    public var conversationID: String
    public var status: String
    public var render: Render
    enum CodingKeys: String, CodingKey { case id, status, render, conversationID = "conversation_id" }
}

/// A claimed send, with everything the adapter needs.
public struct SendJob: Sendable {
    public var message: Message
    public var rendered: RenderedMessage
    public var conversation: Conversation
    public var recipient: Identity
    public var attempts: Int
    public var replyToExternalID: String?
}

/// The recipient of a relayed send (`send_queue.recipient`).
struct RelayRecipient: Codable, Sendable {
    var channelUserID: String
    var displayName: String?
    enum CodingKeys: String, CodingKey { case channelUserID = "channel_user_id", displayName = "display_name" }
}

public enum IdempotencyError: Error, Sendable { case keyReusedWithDifferentRequest }

public func sha256Hex(_ data: Data) -> String { Hex.encode(SHA256.hash(data: data)) }

extension Store {
    /// Looks up an earlier answer for this idempotency key.
    public func idempotentAnswer(scope: String, key: String, requestHash: String) async throws -> SendAccepted? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT request_hash, response FROM idempotency_keys WHERE scope = ? AND key = ?",
                                             arguments: [scope, key]) else { return nil }
            guard (row["request_hash"] as String) == requestHash else { throw IdempotencyError.keyReusedWithDifferentRequest }
            let response: String = row["response"]
            return try JSON.decode(SendAccepted.self, from: Data(response.utf8))
        }
    }

    /// A reaction names the message reacted to by our id; the platform needs its own. Looked up
    /// when the reply is queued, and again when it is claimed (the target, one of our own
    /// replies, may have been sent only in between).
    static func withReactionTargets(_ db: Database, _ parts: [Part], conversationID: String) throws -> [Part] {
        try parts.map { part in
            guard case .reaction(var r) = part, r.targetExternalID == nil, let target = r.targetMessageID else { return part }
            r.targetExternalID = try externalID(db, messageID: target, conversationID: conversationID)
            return .reaction(r)
        }
    }

    /// The platform's id of a message of this conversation: a customer's as it arrived, ours as
    /// the platform returned it when sent (one of them, for a message sent in several parts).
    static func externalID(_ db: Database, messageID: String, conversationID: String) throws -> String? {
        try String.fetchOne(db, sql: """
            SELECT COALESCE(m.external_id, (SELECT MIN(x.external_id) FROM message_external_ids x WHERE x.message_id = m.id))
            FROM messages m WHERE m.id = ? AND m.conversation_id = ?
            """, arguments: [messageID, conversationID])
    }

    /// Stores the outbound message and queues it for sending, in one transaction. With an
    /// idempotency key already used, returns the first answer and queues nothing.
    public func enqueueOutbound(_ req: OutboundRequest, now: Int64 = Store.nowMS()) async throws -> SendAccepted {
        try await acknowledgedWrite { db in
            if let idem = req.idempotency,
               let row = try Row.fetchOne(db, sql: "SELECT request_hash, response FROM idempotency_keys WHERE scope = ? AND key = ?",
                                          arguments: [idem.scope, idem.key]) {
                guard (row["request_hash"] as String) == idem.requestHash else { throw IdempotencyError.keyReusedWithDifferentRequest }
                return try JSON.decode(SendAccepted.self, from: Data((row["response"] as String).utf8))
            }
            let t = Timestamp(milliseconds: now)
            let conv = req.conversation
            let id = ID.make(.message, at: t)
            var replyTo = req.replyTo
            if let mid = replyTo?.messageID, replyTo?.externalID == nil {
                replyTo?.externalID = try String.fetchOne(db, sql: "SELECT external_id FROM messages WHERE id = ? AND conversation_id = ?",
                                                          arguments: [mid, conv.id])
            }
            var rendered = req.rendered
            rendered.parts = try Self.withReactionTargets(db, rendered.parts, conversationID: conv.id)
            let message = Message(MessageFields(
                id: id, conversationID: conv.id, direction: .outbound, origin: .helpdesk, channel: conv.channel,
                sender: req.sender ?? Participant(role: "agent"), replyTo: replyTo, receivedAt: t, parts: req.parts,
                textFallback: req.rendered.textFallback, metadata: req.metadata))
            try db.execute(sql: """
                INSERT INTO messages (id, conversation_id, channel_id, direction, origin, created_at, status, body)
                VALUES (?, ?, ?, 'outbound', 'helpdesk', ?, 'accepted', ?)
                """, arguments: [id, conv.id, conv.channel.id, now, try JSON.encode(message).utf8String])
            try db.execute(sql: """
                INSERT INTO send_queue (message_id, conversation_id, channel_id, next_attempt_at, rendered, created_at) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [id, conv.id, conv.channel.id, now, try JSON.encode(rendered).utf8String, now])
            try db.execute(sql: "UPDATE conversations SET updated_at = ? WHERE id = ?", arguments: [now, conv.id])
            if !req.rendered.numberedOptions.isEmpty {
                // Before the insert and inside this transaction: an ingest transaction after it
                // (the writer runs one at a time) looks for a match.
                self.numberedPromptsMayExist.store(true, ordering: .relaxed)
                // The newest numbered prompt is the one a bare number answers; it expires after a day.
                try db.execute(sql: """
                    INSERT INTO numbered_options (conversation_id, message_id, options, expires_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT(conversation_id) DO UPDATE SET message_id = excluded.message_id, options = excluded.options,
                      expires_at = excluded.expires_at
                    """, arguments: [conv.id, id, try JSON.encode(req.rendered.numberedOptions).utf8String, now + 86_400_000])
            }
            let accepted = SendAccepted(id: id, conversationID: conv.id, status: "accepted",
                                        render: .init(channel: conv.channel.type, degradations: req.rendered.degradations))
            if let idem = req.idempotency {
                try db.execute(sql: """
                    INSERT INTO idempotency_keys (scope, key, request_hash, message_id, response, created_at) VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [idem.scope, idem.key, idem.requestHash, id, try JSON.encode(accepted).utf8String, now])
            }
            return accepted
        }
    }

    /// Stores a message of `conversation` that goes out through another channel (`via`) to
    /// `recipient`, and queues it on that channel, in one transaction. The same idempotency key
    /// again returns the first message's id and queues nothing.
    public func enqueueRelay(conversation conv: Conversation, via channel: ChannelRef, recipient: Peer, parts: [Part],
                             rendered: RenderedMessage, metadata: JSONObject?, idempotencyKey: String,
                             now: Int64 = Store.nowMS()) async throws -> String {
        try await acknowledgedWrite { db in
            let scope = "relay:\(conv.channel.id)"
            if let earlier = try String.fetchOne(db, sql: "SELECT message_id FROM idempotency_keys WHERE scope = ? AND key = ?",
                                                 arguments: [scope, idempotencyKey]) {
                return earlier
            }
            let t = Timestamp(milliseconds: now)
            let id = ID.make(.message, at: t)
            let message = Message(MessageFields(
                id: id, conversationID: conv.id, direction: .outbound, origin: .system, channel: channel,
                sender: Participant(role: "system"), receivedAt: t, parts: parts, textFallback: rendered.textFallback, metadata: metadata))
            try db.execute(sql: """
                INSERT INTO messages (id, conversation_id, channel_id, direction, origin, created_at, status, body)
                VALUES (?, ?, ?, 'outbound', 'system', ?, 'accepted', ?)
                """, arguments: [id, conv.id, channel.id, now, try JSON.encode(message).utf8String])
            let to = RelayRecipient(channelUserID: recipient.channelUserID, displayName: recipient.displayName)
            try db.execute(sql: """
                INSERT INTO send_queue (message_id, conversation_id, channel_id, next_attempt_at, rendered, created_at, recipient)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [id, conv.id, channel.id, now, try JSON.encode(rendered).utf8String, now, try JSON.encode(to).utf8String])
            try db.execute(sql: """
                INSERT INTO idempotency_keys (scope, key, request_hash, message_id, response, created_at) VALUES (?, ?, '', ?, '{}', ?)
                """, arguments: [scope, idempotencyKey, id, now])
            return id
        }
    }

    /// Claims due sends for one channel: the oldest unsent message of each conversation only,
    /// so replies go out in the order the helpdesk wrote them: by message id, a ULID made inside
    /// the queueing transaction and monotonic within the process, so it follows commit order
    /// even when the wall clock steps back (`created_at` would not). Per channel: a relayed email
    /// follow-up waiting for a down SMTP server doesn't hold up the web chat's own replies.
    public func claimSends(channelID: String, limit: Int, leaseMS: Int64, now: Int64 = Store.nowMS()) async throws -> [SendJob] {
        try await pool.write { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT q.message_id, q.attempts, q.rendered, q.recipient AS relay_recipient, m.body AS message_body, c.*,
                       i.id AS i_id, i.channel_user_id AS i_cuid, i.display_name AS i_name, i.profile AS i_profile,
                       i.created_at AS i_created, i.updated_at AS i_updated
                FROM send_queue q JOIN messages m ON m.id = q.message_id JOIN conversations c ON c.id = q.conversation_id
                JOIN identities i ON i.id = c.identity_id
                WHERE q.channel_id = ?1 AND q.state = 'pending' AND q.next_attempt_at <= ?2 AND q.lease_until <= ?2
                  AND NOT EXISTS (SELECT 1 FROM send_queue p WHERE p.conversation_id = q.conversation_id AND p.state = 'pending'
                                  AND p.channel_id = q.channel_id
                                  AND p.message_id < q.message_id)
                ORDER BY q.message_id LIMIT ?3
                """, arguments: [channelID, now, limit])
            var jobs: [SendJob] = []
            for r in rows {
                let messageID: String = r["message_id"]
                try db.execute(sql: "UPDATE send_queue SET lease_until = ? WHERE message_id = ?", arguments: [now + leaseMS, messageID])
                let message = try JSON.decode(Message.self, from: Data((r["message_body"] as String).utf8))
                let conversation = try Self.conversationFrom(r)
                let profile: String? = r["i_profile"]
                var recipient = Identity(IdentityFields(
                    id: r["i_id"], channel: conversation.channel, channelUserID: r["i_cuid"], displayName: r["i_name"],
                    profile: try profile.map { try JSON.decode(JSONObject.self, from: Data($0.utf8)) },
                    createdAt: Timestamp(milliseconds: r["i_created"]), updatedAt: Timestamp(milliseconds: r["i_updated"])))
                if let relayed: String = r["relay_recipient"] {
                    // Sent through another channel: the address given there, for the same person.
                    let to = try JSON.decode(RelayRecipient.self, from: Data(relayed.utf8))
                    recipient.channel = message.channel
                    recipient.channelUserID = to.channelUserID
                    recipient.displayName = to.displayName ?? recipient.displayName
                }
                var rendered = try JSON.decode(RenderedMessage.self, from: Data((r["rendered"] as String).utf8))
                rendered.parts = try Self.withReactionTargets(db, rendered.parts, conversationID: conversation.id)
                // Quoting one of our own replies sent after this one was queued: its id is known now.
                var quoted = message.replyTo?.externalID
                if quoted == nil, let target = message.replyTo?.messageID {
                    quoted = try Self.externalID(db, messageID: target, conversationID: conversation.id)
                }
                jobs.append(SendJob(message: message, rendered: rendered, conversation: conversation, recipient: recipient,
                                    attempts: r["attempts"], replyToExternalID: quoted))
            }
            return jobs
        }
    }

    /// Records a successful send: the channel's ids, and a `message.status` sent event.
    public func completeSend(_ job: SendJob, result: SendResult, ctx: EventContext, now: Int64 = Store.nowMS()) async throws {
        try await pool.write { db in
            let m = job.message
            try db.execute(sql: "DELETE FROM send_queue WHERE message_id = ?", arguments: [m.id])
            var updated = m
            updated.externalID = result.externalIDs.first
            if let cd = result.channelData { updated.channelData = (updated.channelData ?? [:]).merging(cd) { _, n in n } }
            // A receipt can beat the end of the send (a split message's first part is sent or
            // delivered while the rest goes out): then the helpdesk has that status already, and
            // `sent` would repeat it or take it back.
            let current = try String.fetchOne(db, sql: "SELECT status FROM messages WHERE id = ?", arguments: [m.id]).map(DeliveryStatus.init(rawValue:))
            let overtaken = current.map { DeliveryStatus.sent.isRegression(after: $0) } ?? false
            try db.execute(sql: "UPDATE messages SET status = ?, external_id = ?, body = ? WHERE id = ?",
                           arguments: [overtaken ? current?.rawValue : "sent", updated.externalID, try JSON.encode(updated).utf8String, m.id])
            for ext in result.externalIDs {
                try db.execute(sql: "INSERT OR IGNORE INTO message_external_ids (channel_id, external_id, message_id) VALUES (?, ?, ?)",
                               arguments: [m.channel.id, ext, m.id])
            }
            if overtaken { return }
            let status = MessageStatus(MessageStatusFields(
                messageID: m.id, conversationID: m.conversationID, status: .sent, externalIDs: result.externalIDs,
                attempt: job.attempts + 1, metadata: m.metadata, at: Timestamp(milliseconds: now)))
            try Self.appendEvent(db, ctx: ctx, type: .messageStatus, conversationID: m.conversationID, channel: m.channel,
                                 dataJSON: JSON.encode(status), now: now)
        }
    }

    public func retrySend(_ job: SendJob, nextAttemptAt: Int64, error: SendError) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                UPDATE send_queue SET attempts = attempts + 1, next_attempt_at = ?, lease_until = 0, last_error = ? WHERE message_id = ?
                """, arguments: [nextAttemptAt, error.description, job.message.id])
        }
    }

    /// A permanent failure (or retries exhausted): `message.status` failed, final.
    public func failSend(_ job: SendJob, error: SendError, ctx: EventContext, now: Int64 = Store.nowMS()) async throws {
        try await pool.write { db in
            let m = job.message
            try db.execute(sql: "DELETE FROM send_queue WHERE message_id = ?", arguments: [m.id])
            try db.execute(sql: "UPDATE messages SET status = 'failed' WHERE id = ?", arguments: [m.id])
            let status = MessageStatus(MessageStatusFields(
                messageID: m.id, conversationID: m.conversationID, status: .failed, error: error.statusError, final: true,
                attempt: job.attempts + 1, metadata: m.metadata, at: Timestamp(milliseconds: now)))
            try Self.appendEvent(db, ctx: ctx, type: .messageStatus, conversationID: m.conversationID, channel: m.channel,
                                 dataJSON: JSON.encode(status), now: now)
        }
    }

    public func releaseSend(_ messageID: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE send_queue SET lease_until = 0 WHERE message_id = ?", arguments: [messageID])
        }
    }

    public func nextSendDue(channelID: String) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT MIN(MAX(next_attempt_at, lease_until)) FROM send_queue WHERE channel_id = ? AND state = 'pending'",
                               arguments: [channelID])
        }
    }

    /// Appends a standalone event (channel.status) outside any inbound batch.
    public func appendStandaloneEvent(type: EventType, conversationID: String?, channel: ChannelRef?, data: Data, ctx: EventContext) async throws -> String {
        try await pool.write { db in
            try Self.appendEvent(db, ctx: ctx, type: type, conversationID: conversationID, channel: channel, dataJSON: data, now: Store.nowMS())
        }
    }
}
