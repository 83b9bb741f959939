import Foundation
import GRDB
import SwitchboardCore

/// One inbound event from an adapter, waiting to be committed.
public struct InboundWork: Sendable {
    public var channel: ChannelRef
    public var event: InboundEvent
    public var receivedAt: Timestamp
    public init(channel: ChannelRef, event: InboundEvent, receivedAt: Timestamp = .now()) {
        self.channel = channel; self.event = event; self.receivedAt = receivedAt
    }
}

/// Raw payloads up to this size are embedded in the message; larger ones are referenced
/// (`/v1/messages/{id}/raw`) so events stay within CloudEvents' 64 KiB guidance.
public let rawInlineLimit = 16 * 1024

extension Store {
    /// Commits a batch of inbound events in ONE transaction (group commit: one fsync for many
    /// webhooks), each in its own savepoint so a bad item fails alone. Returns one result per item.
    public func commitInbound(_ batch: [InboundWork], ctx: EventContext) async throws -> [Result<EmitResult, any Error>] {
        // Precompute outside the writer what doesn't need the database: the raw payload's
        // parsed form, reused as the message's inline `raw`.
        let prepared = batch.map { w -> (InboundWork, JSONValue?) in (w, Self.inlineRaw(w.event.raw)) }
        do {
            // The common case: everything commits together, no per-item savepoints.
            return try await acknowledgedWrite { db in
                try prepared.map { .success(try Self.ingest(db, $0.0, inlineRaw: $0.1, ctx: ctx)) }
            }
        } catch where batch.count > 1 {
            // Something failed and rolled the batch back: retry with each item in its own
            // savepoint, so the bad one fails alone and the others still commit.
            return try await acknowledgedWrite { db in
                var results: [Result<EmitResult, any Error>] = []
                results.reserveCapacity(prepared.count)
                for (work, raw) in prepared {
                    var result: Result<EmitResult, any Error> = .success(.duplicate)
                    do {
                        try db.inSavepoint {
                            result = .success(try Self.ingest(db, work, inlineRaw: raw, ctx: ctx))
                            return .commit
                        }
                    } catch {
                        result = .failure(error)
                    }
                    results.append(result)
                }
                return results
            }
        }
    }

    /// The raw payload as JSON, when it is small JSON (else it is referenced, not inlined).
    static func inlineRaw(_ raw: RawPayload?) -> JSONValue? {
        guard let raw, raw.format == "json", raw.bytes.count <= rawInlineLimit else { return nil }
        return raw.parsed ?? (try? JSONValue.parse(Data(raw.bytes)))
    }

    static func ingest(_ db: Database, _ work: InboundWork, inlineRaw: JSONValue?, ctx: EventContext) throws -> EmitResult {
        let ev = work.event
        let now = work.receivedAt.milliseconds
        let channel = work.channel
        // A receipt for a message that isn't ours changes nothing: check before creating any
        // identity or conversation for it (or using up its dedupe key).
        if case .status(let externalID, _, _) = ev.kind, try ourMessage(db, channel: channel, externalID: externalID) == nil {
            return .ignored(reason: "status for unknown message \(externalID)")
        }
        if let key = ev.dedupeKey {
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO dedupe_keys (channel_id, key, created_at) VALUES (?, ?, ?)").execute(arguments: [channel.id, key, now])
            if db.changesCount == 0 { return .duplicate }
        }
        var eventIDs: [String] = []
        let (identity, identityChanged) = try upsertIdentity(db, channel: channel, peer: ev.peer, now: now)
        let (conversation, created) = try findOrCreateConversation(db, channel: channel, identityID: identity.id, thread: ev.thread, now: now)
        if created {
            eventIDs.append(try appendEvent(db, ctx: ctx, type: .conversationCreated, conversationID: conversation.id, channel: channel,
                                            dataJSON: JSON.encode(conversation), now: now))
        }
        if identityChanged {
            eventIDs.append(try appendEvent(db, ctx: ctx, type: .identityUpdated, conversationID: conversation.id, channel: channel,
                                            dataJSON: JSON.encode(identity), now: now))
        }
        var sender = Participant(role: "customer", identityID: identity.id, channelUserID: identity.channelUserID, displayName: identity.displayName)
        if let speaker = ev.sender {
            let (member, _) = try upsertIdentity(db, channel: channel, peer: speaker, now: now)
            sender = Participant(role: "customer", identityID: member.id, channelUserID: member.channelUserID, displayName: member.displayName)
        }
        var messageID: String? = nil

        switch ev.kind {
        case .message(let m):
            let id = ID.make(.message, at: work.receivedAt)
            messageID = id
            var parts = m.parts
            if m.origin == .customer {
                if let interaction = try matchNumberedReply(db, conversationID: conversation.id, parts: parts, now: now) {
                    parts.append(.interaction(interaction))
                }
            }
            var replyTo: MessageRef? = nil
            if let ext = m.replyToExternalID {
                let ours = try String.fetchOne(db.cachedStatement(sql: "SELECT message_id FROM message_external_ids WHERE channel_id = ? AND external_id = ?"), arguments: [channel.id, ext])
                replyTo = MessageRef(messageID: ours, externalID: ext)
            }
            let isEcho = m.origin == .echo
            let raw = ev.raw.map { r in inlineRaw.map { RawRef(format: r.format, inline: $0) } ?? RawRef(format: r.format, ref: "/v1/messages/\(id)/raw", size: r.bytes.count) }
            let message = Message(MessageFields(
                id: id, conversationID: conversation.id, direction: isEcho ? .outbound : .inbound, origin: m.origin, channel: channel,
                sender: isEcho ? Participant(role: "business") : sender, externalID: m.externalID, replyTo: replyTo,
                sentAt: ev.occurredAt, receivedAt: work.receivedAt, parts: parts, textFallback: parts.textFallback,
                channelData: ev.channelData, raw: raw))
            let body = try JSON.encode(message)
            try db.cachedStatement(sql: """
                INSERT INTO messages (id, conversation_id, channel_id, direction, origin, external_id, created_at, body, raw, raw_format)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [id, conversation.id, channel.id, message.direction.rawValue, m.origin.rawValue, m.externalID, now,
                                 body.utf8String, ev.raw.map { Data($0.bytes) }, ev.raw?.format])
            if let ext = m.externalID {
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO message_external_ids (channel_id, external_id, message_id) VALUES (?, ?, ?)").execute(arguments: [channel.id, ext, id])
            }
            if m.origin == .customer {
                try db.cachedStatement(sql: "UPDATE conversations SET last_inbound_at = ?, updated_at = ? WHERE id = ?").execute(arguments: [now, now, conversation.id])
            } else {
                try db.cachedStatement(sql: "UPDATE conversations SET updated_at = ? WHERE id = ?").execute(arguments: [now, conversation.id])
            }
            eventIDs.append(try appendEvent(db, ctx: ctx, type: isEcho ? .messageEcho : .messageReceived, conversationID: conversation.id,
                                            channel: channel, dataJSON: body, now: now))

        case .status(let externalID, let status, let error):
            guard let target = try ourMessage(db, channel: channel, externalID: externalID) else {
                return .ignored(reason: "status for unknown message \(externalID)")
            }
            try db.cachedStatement(sql: "UPDATE messages SET status = ? WHERE id = ?").execute(arguments: [status.rawValue, target.id])
            let data = MessageStatus(MessageStatusFields(
                messageID: target.id, conversationID: target.conversationID, status: status, externalIDs: [externalID], error: error,
                final: status == .read || (status == .failed && !(error?.retryable ?? false)), metadata: target.metadata,
                at: ev.occurredAt ?? work.receivedAt))
            eventIDs.append(try appendEvent(db, ctx: ctx, type: .messageStatus, conversationID: target.conversationID, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))

        case .reaction(let targetExternalID, let emoji, let action):
            let target = try ourMessage(db, channel: channel, externalID: targetExternalID)
            let data = Open(ReactionEventFields(conversationID: conversation.id, targetMessageID: target?.id, targetExternalID: targetExternalID,
                                                emoji: emoji, action: action, sender: sender, at: ev.occurredAt ?? work.receivedAt))
            eventIDs.append(try appendEvent(db, ctx: ctx, type: .messageReaction, conversationID: conversation.id, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))

        case .deleted(let externalID), .updated(let externalID, _):
            let target = try ourMessage(db, channel: channel, externalID: externalID)
            var parts: [Part]? = nil
            if case .updated(_, let p) = ev.kind { parts = p }
            let data = Open(MessageChangeFields(conversationID: conversation.id, messageID: target?.id, externalID: externalID,
                                                parts: parts, textFallback: parts?.textFallback, at: ev.occurredAt ?? work.receivedAt))
            let type: EventType = parts == nil ? .messageDeleted : .messageUpdated
            eventIDs.append(try appendEvent(db, ctx: ctx, type: type, conversationID: conversation.id, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))

        case .read(let upTo):
            let ids = try String.fetchAll(db.cachedStatement(sql: """
                SELECT id FROM messages WHERE conversation_id = ? AND direction = 'outbound' AND created_at <= ?
                AND (status IS NULL OR status != 'read') ORDER BY created_at
                """), arguments: [conversation.id, upTo.milliseconds])
            if !ids.isEmpty {
                try db.execute(sql: "UPDATE messages SET status = 'read' WHERE id IN (\(ids.map { _ in "?" }.joined(separator: ",")))",
                               arguments: StatementArguments(ids))
            }
            let data = Open(ConversationReadFields(conversationID: conversation.id, upTo: upTo, messageIDs: ids))
            eventIDs.append(try appendEvent(db, ctx: ctx, type: .conversationRead, conversationID: conversation.id, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))

        case .typing(let started):
            let data = Open(TypingFields(conversationID: conversation.id, sender: sender))
            eventIDs.append(try appendEvent(db, ctx: ctx, type: started ? .typingStarted : .typingStopped, conversationID: conversation.id,
                                            channel: channel, dataJSON: JSON.encode(data), now: now))

        case .identityUpdated:
            if !identityChanged {
                eventIDs.append(try appendEvent(db, ctx: ctx, type: .identityUpdated, conversationID: conversation.id, channel: channel,
                                                dataJSON: JSON.encode(identity), now: now))
            }

        case .custom(let type, var data):
            data["conversation_id"] = .string(conversation.id)
            eventIDs.append(try appendEvent(db, ctx: ctx, type: type, conversationID: conversation.id, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))
        }
        return .committed(eventIDs: eventIDs, messageID: messageID, conversationID: conversation.id)
    }

    struct OwnMessage { var id: String; var conversationID: String; var metadata: JSONObject? }

    static func ourMessage(_ db: Database, channel: ChannelRef, externalID: String) throws -> OwnMessage? {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT m.id, m.conversation_id, m.body FROM message_external_ids x JOIN messages m ON m.id = x.message_id
            WHERE x.channel_id = ? AND x.external_id = ?
            """), arguments: [channel.id, externalID]) else { return nil }
        let body: String = row["body"]
        let message = try? JSON.decode(Message.self, from: Data(body.utf8))
        return OwnMessage(id: row["id"], conversationID: row["conversation_id"], metadata: message?.metadata)
    }

    /// Creates the identity, or refreshes its display name/profile; reports whether an existing
    /// identity changed (→ `identity.updated`).
    static func upsertIdentity(_ db: Database, channel: ChannelRef, peer: Peer, now: Int64) throws -> (Identity, Bool) {
        if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM identities WHERE channel_id = ? AND channel_user_id = ?"), arguments: [channel.id, peer.channelUserID]) {
            var identity = try identityFrom(row)
            var changed = false
            if let name = peer.displayName, !name.isEmpty, name != identity.displayName { identity.displayName = name; changed = true }
            if let profile = peer.profile {
                let merged = (identity.profile ?? [:]).merging(profile) { _, new in new }
                if merged != (identity.profile ?? [:]) { identity.profile = merged; changed = true }
            }
            if changed {
                identity.updatedAt = Timestamp(milliseconds: now)
                try db.cachedStatement(sql: "UPDATE identities SET display_name = ?, profile = ?, updated_at = ? WHERE id = ?").execute(arguments: [identity.displayName, try identity.profile.map { try JSON.encode($0).utf8String }, now, identity.id])
            }
            return (identity, changed)
        }
        let t = Timestamp(milliseconds: now)
        let identity = Identity(IdentityFields(id: ID.make(.identity, at: t), channel: channel, channelUserID: peer.channelUserID,
                                               displayName: peer.displayName, profile: peer.profile, createdAt: t, updatedAt: t))
        try db.cachedStatement(sql: """
            INSERT INTO identities (id, channel_id, channel_type, channel_user_id, display_name, profile, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [identity.id, channel.id, channel.type, peer.channelUserID, peer.displayName,
                             try peer.profile.map { try JSON.encode($0).utf8String }, now, now])
        return (identity, false)
    }

    static func findOrCreateConversation(_ db: Database, channel: ChannelRef, identityID: String, thread: String, now: Int64) throws -> (Conversation, Bool) {
        if let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM conversations WHERE channel_id = ? AND identity_id = ? AND thread = ?"), arguments: [channel.id, identityID, thread]) {
            return (try conversationFrom(row), false)
        }
        let t = Timestamp(milliseconds: now)
        let conv = Conversation(ConversationFields(id: ID.make(.conversation, at: t), channel: channel, identityID: identityID,
                                                   thread: thread, createdAt: t, updatedAt: t))
        try db.cachedStatement(sql: """
            INSERT INTO conversations (id, channel_id, channel_type, identity_id, thread, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [conv.id, channel.id, channel.type, identityID, thread, now, now])
        return (conv, true)
    }

    static func matchNumberedReply(_ db: Database, conversationID: String, parts: [Part], now: Int64) throws -> Open<InteractionFields>? {
        guard parts.count == 1, case .text(let t) = parts[0] else { return nil }
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT message_id, options FROM numbered_options WHERE conversation_id = ? AND expires_at > ?"), arguments: [conversationID, now]) else { return nil }
        let optionsJSON: String = row["options"]
        guard let options = try? JSON.decode([NumberedOption].self, from: Data(optionsJSON.utf8)),
              let match = Renderer.matchReply(t.text, options: options) else { return nil }
        // One answer per prompt: a second "2" later is ordinary text.
        try db.cachedStatement(sql: "DELETE FROM numbered_options WHERE conversation_id = ?").execute(arguments: [conversationID])
        return Open(InteractionFields(kind: .indexReply, payload: match.payload, title: match.title, index: match.index,
                                      sourceMessageID: row["message_id"]))
    }

    static func identityFrom(_ row: Row) throws -> Identity {
        let profile: String? = row["profile"]
        return Identity(IdentityFields(
            id: row["id"], channel: ChannelRef(type: row["channel_type"], id: row["channel_id"]), channelUserID: row["channel_user_id"],
            displayName: row["display_name"], profile: try profile.map { try JSON.decode(JSONObject.self, from: Data($0.utf8)) },
            createdAt: Timestamp(milliseconds: row["created_at"]), updatedAt: Timestamp(milliseconds: row["updated_at"])))
    }

    static func conversationFrom(_ row: Row) throws -> Conversation {
        let metadata: String? = row["metadata"]
        let lastInbound: Int64? = row["last_inbound_at"]
        return Conversation(ConversationFields(
            id: row["id"], channel: ChannelRef(type: row["channel_type"], id: row["channel_id"]), identityID: row["identity_id"],
            thread: row["thread"], createdAt: Timestamp(milliseconds: row["created_at"]), updatedAt: Timestamp(milliseconds: row["updated_at"]),
            lastInboundAt: lastInbound.map { Timestamp(milliseconds: $0) },
            metadata: try metadata.map { try JSON.decode(JSONObject.self, from: Data($0.utf8)) }))
    }
}
