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
        try await commitInbound(batch.map { PreparedInbound($0) }, ctx: ctx)
    }

    /// Commits events prepared by their callers (see `PreparedInbound`).
    public func commitInbound(_ batch: [PreparedInbound], ctx: EventContext) async throws -> [Result<EmitResult, any Error>] {
        do {
            // The common case: everything commits together, no per-item savepoints.
            return try await acknowledgedWrite { db in try Self.ingestAll(db, batch, ctx: ctx, prompts: self.numberedPromptsMayExist.load(ordering: .relaxed)) }
        } catch where batch.count > 1 {
            return try await acknowledgedWrite { db in Self.ingestEach(db, batch, ctx: ctx, prompts: self.numberedPromptsMayExist.load(ordering: .relaxed)) }
        }
    }

    /// `commitInbound` on the calling thread, for the ingest writer's own thread (see
    /// `acknowledgedWriteBlocking`).
    public func commitInboundBlocking(_ batch: [PreparedInbound], ctx: EventContext) throws -> [Result<EmitResult, any Error>] {
        do {
            return try acknowledgedWriteBlocking { db in try Self.ingestAll(db, batch, ctx: ctx, prompts: self.numberedPromptsMayExist.load(ordering: .relaxed)) }
        } catch where batch.count > 1 {
            return try acknowledgedWriteBlocking { db in Self.ingestEach(db, batch, ctx: ctx, prompts: self.numberedPromptsMayExist.load(ordering: .relaxed)) }
        }
    }

    private static func ingestAll(_ db: Database, _ batch: [PreparedInbound], ctx: EventContext, prompts: Bool) throws -> [Result<EmitResult, any Error>] {
        try batch.map { .success(try ingest(db, $0.work, prepared: $0.body, ctx: ctx, prompts: prompts)) }
    }

    /// After a batch failed and rolled back: each item in its own savepoint, so the bad one
    /// fails alone and the others still commit.
    private static func ingestEach(_ db: Database, _ batch: [PreparedInbound], ctx: EventContext, prompts: Bool) -> [Result<EmitResult, any Error>] {
        var results: [Result<EmitResult, any Error>] = []
        results.reserveCapacity(batch.count)
        for item in batch {
            var result: Result<EmitResult, any Error> = .success(.duplicate)
            do {
                try db.inSavepoint {
                    result = .success(try ingest(db, item.work, prepared: item.body, ctx: ctx, prompts: prompts))
                    return .commit
                }
            } catch {
                result = .failure(error)
            }
            results.append(result)
        }
        return results
    }

    /// An inbound event with the work that needs no database already done. Make it in the
    /// caller's task (the webhook handler), so many are prepared in parallel while the single
    /// writer commits the previous batch.
    public struct PreparedInbound: Sendable {
        public let work: InboundWork
        let body: PreparedBody
        public init(_ work: InboundWork) { self.work = work; self.body = PreparedBody(work) }
    }

    /// What can be worked out before the write transaction, so the single writer does as little
    /// as possible per event (it is the ingest bottleneck: every webhook waits for it).
    ///
    /// For an ordinary message that is the whole stored body: it is encoded here with
    /// placeholder conversation and identity ids — per-process random strings of the same
    /// length as real ids, so no input can contain them — and the writer only copies the real
    /// ids over them. Anything decided inside the transaction that changes the body (a numbered
    /// reply matched, a stored display name, a quoted message to look up) takes the slow path
    /// and encodes there.
    ///
    /// The message id is a placeholder too: it is made inside the transaction, so message ids
    /// follow commit order (ULIDs are monotonic within the process). Made when the webhook
    /// arrived, an id could sort before one committed earlier, and a client paging messages
    /// with `after=` the later one would never see it.
    struct PreparedBody: Sendable {
        var inlineRaw: JSONValue?
        var senderName: String?
        var body: [UInt8]?
        var conversationAt: Int?
        var identityAt: Int?
        /// Where the message id goes: its `id`, and a raw payload's `/v1/messages/{id}/raw`.
        var messageAt: [Int] = []

        static let conversationPlaceholder = placeholder(.conversation)
        static let identityPlaceholder = placeholder(.identity)
        static let messagePlaceholder = placeholder(.message)
        /// What every placeholder has after its prefix (see `placeholder`).
        static let placeholderMarker: [UInt8] = Array(("_" + String(repeating: "Z", count: 10)).utf8)
        /// Each placeholder, the length of its prefix, and which one it is.
        static let placeholderCandidates: [(placeholder: [UInt8], prefix: Int, kind: Int)] = [
            (Array(conversationPlaceholder.utf8), IDKind.conversation.rawValue.utf8.count, 0),
            (Array(messagePlaceholder.utf8), IDKind.message.rawValue.utf8.count, 1),
            (Array(identityPlaceholder.utf8), IDKind.identity.rawValue.utf8.count, 2),
        ]

        /// An id's prefix, ten "Z"s where a real id's time goes (a time far beyond any clock's)
        /// and sixteen random characters: as long as a real id, and found only where put.
        static func placeholder(_ kind: IDKind) -> String {
            let alphabet = Array("123456789ABCDEFGHJKMNPQRSTVWXYZ")
            return kind.rawValue + "_" + String(repeating: "Z", count: 10) + String((0..<16).map { _ in alphabet.randomElement()! })
        }

        init(_ work: InboundWork) {
            inlineRaw = Store.inlineRaw(work.event.raw)
            guard case .message(let m) = work.event.kind, work.event.sender == nil, m.replyToExternalID == nil else { return }
            let isEcho = m.origin == .echo
            guard isEcho || !(work.event.peer.displayName ?? "").isEmpty else { return }
            let id = Self.messagePlaceholder
            senderName = isEcho ? nil : work.event.peer.displayName
            let sender = Participant(role: "customer", identityID: Self.identityPlaceholder, channelUserID: work.event.peer.channelUserID,
                                     displayName: work.event.peer.displayName)
            let message = Store.message(id: id, work: work, m: m, conversationID: Self.conversationPlaceholder, sender: sender,
                                        replyTo: nil, parts: m.parts, inlineRaw: inlineRaw)
            guard let bytes = try? JSON.bytes(message) else { return }
            let found = Self.placeholderOffsets(in: bytes)
            guard found.conversation.count == 1, !found.message.isEmpty else { return }
            if isEcho {
                guard found.identity.isEmpty else { return }
            } else {
                guard found.identity.count == 1 else { return }
                identityAt = found.identity[0]
            }
            conversationAt = found.conversation[0]
            messageAt = found.message
            body = bytes
        }

        /// Where each placeholder occurs in `bytes`, in one pass. The three share a marker, the
        /// "_ZZZZZZZZZZ" after their prefixes, and only where it occurs is a whole placeholder
        /// compared. (Three naive scans of the body, one per placeholder, were a few per cent of
        /// a webhook's CPU.)
        static func placeholderOffsets(in bytes: [UInt8]) -> (conversation: [Int], message: [Int], identity: [Int]) {
            var found: (conversation: [Int], message: [Int], identity: [Int]) = ([], [], [])
            let candidates = Self.placeholderCandidates, marker = Self.placeholderMarker
            bytes.withUnsafeBufferPointer { b in
                guard let base = b.baseAddress else { return }
                let n = b.count
                var from = 0
                // memchr jumps from one "_" to the next with vector instructions (a JSON message
                // has a dozen or so); a byte loop looking for them cost more than the rest.
                while from < n, let hit = memchr(base + from, Int32(UInt8(ascii: "_")), n - from) {
                    let i = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                    var next = i + 1
                    guard i + marker.count <= n,
                          marker.withUnsafeBufferPointer({ memcmp($0.baseAddress!, base + i, $0.count) == 0 }) else {
                        from = next
                        continue
                    }
                    for c in candidates {
                        let start = i - c.prefix
                        guard start >= 0, start + c.placeholder.count <= n else { continue }
                        if c.placeholder.withUnsafeBufferPointer({ p in memcmp(p.baseAddress!, base + start, p.count) == 0 }) {
                            switch c.kind {
                            case 0: found.conversation.append(start)
                            case 1: found.message.append(start)
                            default: found.identity.append(start)
                            }
                            next = start + c.placeholder.count
                            break
                        }
                    }
                    from = next
                }
            }
            return found
        }

        /// The prepared body with the real ids copied in, or nil when there is none (or an id
        /// has an unexpected length).
        func filled(messageID: String, conversationID: String, identityID: String?) -> [UInt8]? {
            guard var out = body, let c = conversationAt else { return nil }
            let conv = Array(conversationID.utf8)
            guard conv.count == Self.conversationPlaceholder.utf8.count else { return nil }
            out.replaceSubrange(c..<(c + conv.count), with: conv)
            let msg = Array(messageID.utf8)
            guard msg.count == Self.messagePlaceholder.utf8.count else { return nil }
            for m in messageAt { out.replaceSubrange(m..<(m + msg.count), with: msg) }
            if let i = identityAt {
                guard let identityID else { return nil }
                let ident = Array(identityID.utf8)
                guard ident.count == Self.identityPlaceholder.utf8.count else { return nil }
                out.replaceSubrange(i..<(i + ident.count), with: ident)
            } else if identityID != nil {
                return nil
            }
            return out
        }
    }

    /// The raw payload as JSON, when it is small JSON (else it is referenced, not inlined).
    static func inlineRaw(_ raw: RawPayload?) -> JSONValue? {
        guard let raw, raw.format == "json", raw.bytes.count <= rawInlineLimit else { return nil }
        return raw.parsed ?? (try? JSONValue.parse(Data(raw.bytes)))
    }

    /// The dedupe key of a customer's message keyed by its own id when that id is already one
    /// of our messages' (see `ingest`).
    static let inboundKeyPrefix = "inbound:"

    /// `prompts`: whether a numbered prompt may be stored (`numberedPromptsMayExist`).
    static func ingest(_ db: Database, _ work: InboundWork, prepared: PreparedBody, ctx: EventContext, prompts: Bool = true) throws -> EmitResult {
        let inlineRaw = prepared.inlineRaw
        let ev = work.event
        let now = work.receivedAt.milliseconds
        let channel = work.channel
        // A receipt is about our message and goes to its conversation. It creates no identity
        // or conversation: the platform may name the recipient otherwise than we addressed
        // them (WhatsApp's `recipient_id` for a number typed without Brazil's ninth digit), and
        // a receipt for a message that isn't ours changes nothing (nor uses up a dedupe key).
        var receiptFor: OwnMessage? = nil
        if case .status(let externalID, _, _) = ev.kind {
            guard let target = try ourMessage(db, channel: channel, externalID: externalID, hint: ev.ourMessageID) else {
                return .ignored(reason: "status for unknown message \(externalID)")
            }
            receiptFor = target
        }
        if case .message(let m) = ev.kind, let externalID = m.externalID, ev.dedupeKey == externalID {
            // A message keyed by its own platform id is its own dedupe record: the (channel,
            // external id) row stored with it. A key row beside it would be one more randomly
            // placed B-tree page written per message by the single ingest writer (~5 % of
            // WhatsApp ingest), and messages are kept for ever, so no key retention applies.
            if let direction = try db.cachedStatement(sql: """
                SELECT m.direction FROM message_external_ids e JOIN messages m ON m.id = e.message_id WHERE e.channel_id = ? AND e.external_id = ?
                """).firstRowDirect(.text(channel.id), .text(externalID), read: { $0.text(0) }) {
                // A customer's message whose id is that of one of ours (a channel whose ids the
                // integrator numbers per direction) is not a repeat of it: it is stored, with a
                // key row of its own standing for it from then on.
                guard m.origin == .customer, direction == Direction.outbound.rawValue else { return .duplicate }
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO dedupe_keys (channel_id, key, created_at) VALUES (?, ?, ?)")
                    .execute(arguments: [channel.id, Self.inboundKeyPrefix + externalID, now])
                if db.changesCount == 0 { return .duplicate }
            }
        } else if let key = ev.dedupeKey {
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO dedupe_keys (channel_id, key, created_at) VALUES (?, ?, ?)").execute(arguments: [channel.id, key, now])
            if db.changesCount == 0 { return .duplicate }
        }
        if let target = receiptFor, case .status(let externalID, let status, let error) = ev.kind {
            return try receipt(db, work, target: target, externalID: externalID, status: status, error: error, ctx: ctx)
        }
        var eventIDs: [String] = []
        // A change to a stored message (an edit, a deletion, media fetched after the commit)
        // goes to that message's conversation and leaves identities alone: the peer the adapter
        // noted when the message came may since have moved to other ids, and looking them up
        // again would make an identity of a number that is no longer the customer's.
        var changed: (Identity, Conversation)? = nil
        if ev.conversationID == nil, ev.sender == nil {
            switch ev.kind {
            case .updated(let externalID, _), .deleted(let externalID):
                if let target = try ourMessage(db, channel: channel, externalID: externalID),
                   let c = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM conversations WHERE id = ?"), arguments: [target.conversationID]).map(conversationFrom),
                   let i = try db.cachedStatement(sql: "SELECT * FROM identities WHERE id = ?").firstRowDirect(.text(c.identityID), read: identityFrom) {
                    changed = (i, c)
                }
            default: break
            }
        }
        let (identity, identityChanged) = try changed.map { ($0.0, false) } ?? upsertIdentity(db, channel: channel, peer: ev.peer, now: now)
        let conversationID: String
        var createdConversation: Conversation? = nil
        let cursor = SequenceCursor(nil)
        if let c = changed?.1 {
            conversationID = c.id
        } else if let c = try ev.conversationID.flatMap({ try existingConversation(db, id: $0, via: channel) }) {
            conversationID = c.id
        } else {
            (conversationID, cursor.last, createdConversation) = try conversationIDFindingOrCreating(db, channel: channel, identityID: identity.id,
                                                                                                    thread: ev.thread, now: now)
        }
        if let createdConversation {
            eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: .conversationCreated, conversationID: conversationID, channel: channel,
                                            dataJSON: JSON.encode(createdConversation), now: now))
        }
        if identityChanged {
            eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: .identityUpdated, conversationID: conversationID, channel: channel,
                                            dataJSON: JSON.encode(identity), now: now))
        }
        var sender = Participant(role: "customer", identityID: identity.id, channelUserID: identity.channelUserID, displayName: identity.displayName)
        // A group's speaker is an identity of their own: a new name or profile of theirs is
        // announced like the conversation's.
        var member: (identity: Identity, changed: Bool)? = nil
        if let speaker = ev.sender {
            let (m, changed) = try upsertIdentity(db, channel: channel, peer: speaker, now: now)
            member = (m, changed)
            sender = Participant(role: "customer", identityID: m.id, channelUserID: m.channelUserID, displayName: m.displayName)
            if changed {
                eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: .identityUpdated, conversationID: conversationID, channel: channel,
                                                dataJSON: JSON.encode(m), now: now))
            }
        }
        var messageID: String? = nil

        switch ev.kind {
        case .message(let m):
            var parts = m.parts
            var interaction: Open<InteractionFields>? = nil
            if m.origin == .customer && prompts {
                interaction = try matchNumberedReply(db, conversationID: conversationID, parts: parts, now: now)
                if let interaction { parts.append(.interaction(interaction)) }
            }
            let id = ID.make(.message, at: work.receivedAt)
            messageID = id
            let isEcho = m.origin == .echo
            // The body encoded before the transaction, with our ids filled in, when nothing
            // decided inside it changes the message (see PreparedBody).
            var body: [UInt8]
            // (The prepared body names the peer's own id: an identity found by an alias has another.)
            if interaction == nil, isEcho || (sender.displayName == prepared.senderName && sender.channelUserID == ev.peer.channelUserID),
               let filled = prepared.filled(messageID: id, conversationID: conversationID, identityID: isEcho ? nil : sender.identityID) {
                body = filled
            } else {
                var replyTo: MessageRef? = nil
                if let ext = m.replyToExternalID {
                    let ours = try String.fetchOne(db.cachedStatement(sql: "SELECT message_id FROM message_external_ids WHERE channel_id = ? AND external_id = ?"), arguments: [channel.id, ext])
                    replyTo = MessageRef(messageID: ours, externalID: ext)
                }
                body = try JSON.bytes(Self.message(id: id, work: work, m: m, conversationID: conversationID, sender: sender,
                                                   replyTo: replyTo, parts: parts, inlineRaw: inlineRaw))
            }
            try db.cachedStatement(sql: """
                INSERT INTO messages (id, conversation_id, channel_id, direction, origin, external_id, created_at, body, raw, raw_format)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).runDirect(.text(id), .text(conversationID), .text(channel.id),
                               .text(isEcho ? Direction.outbound.rawValue : Direction.inbound.rawValue), .text(m.origin.rawValue),
                               .text(m.externalID), .int(now), .utf8(body), ev.raw.map { .blob(Data($0.bytes)) } ?? .null, .text(ev.raw?.format))
            if let ext = m.externalID {
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO message_external_ids (channel_id, external_id, message_id) VALUES (?, ?, ?)")
                    .runDirect(.text(channel.id), .text(ext), .text(id))
            }
            eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: isEcho ? .messageEcho : .messageReceived, conversationID: conversationID,
                                            channel: channel, dataJSON: Data(body), now: now,
                                            touch: m.origin == .customer
                                                ? .init(lastInboundAt: now, lastInboundSentAt: (ev.occurredAt ?? work.receivedAt).milliseconds,
                                                        lastInboundExternalID: m.externalID)
                                                : .init(lastInboundAt: nil)))

        case .status:
            // Handled above, before any identity or conversation is looked up.
            break

        case .reaction(let targetExternalID, let emoji, let action):
            let target = try ourMessage(db, channel: channel, externalID: targetExternalID)
            let data = Open(ReactionEventFields(conversationID: conversationID, targetMessageID: target?.id, targetExternalID: targetExternalID,
                                                emoji: emoji, action: action, sender: sender, at: ev.occurredAt ?? work.receivedAt))
            eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: .messageReaction, conversationID: conversationID, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))

        case .deleted(let externalID), .updated(let externalID, _):
            let target = try ourMessage(db, channel: channel, externalID: externalID)
            var parts: [Part]? = nil
            if case .updated(_, let p) = ev.kind { parts = p }
            // The stored message shows its latest content (an edit; media fetched after the
            // commit, announced `pending`): reading it later gives what the events said.
            if let parts, let id = target?.id,
               let body = try String.fetchOne(db.cachedStatement(sql: "SELECT body FROM messages WHERE id = ?"), arguments: [id]),
               var message = try? JSON.decode(Message.self, from: Data(body.utf8)) {
                message.parts = parts
                message.textFallback = parts.textFallback
                try db.cachedStatement(sql: "UPDATE messages SET body = ? WHERE id = ?").execute(arguments: [try JSON.encode(message).utf8String, id])
            }
            let data = Open(MessageChangeFields(conversationID: conversationID, messageID: target?.id, externalID: externalID,
                                                parts: parts, textFallback: parts?.textFallback, at: ev.occurredAt ?? work.receivedAt))
            let type: EventType = parts == nil ? .messageDeleted : .messageUpdated
            eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: type, conversationID: conversationID, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))

        case .read(let upTo):
            let ids = try String.fetchAll(db.cachedStatement(sql: """
                SELECT id FROM messages WHERE conversation_id = ? AND channel_id = ? AND direction = 'outbound' AND created_at <= ?
                AND (status IS NULL OR status != 'read') ORDER BY created_at
                """), arguments: [conversationID, channel.id, upTo.milliseconds])
            // Only messages that get no receipts of their own (echoes) are marked here. The status
            // of a message we sent is what its `message.status` events told the helpdesk, and the
            // channel's receipt for it (which follows) moves it forward once.
            if !ids.isEmpty {
                try db.execute(sql: "UPDATE messages SET status = 'read' WHERE origin NOT IN ('helpdesk', 'system') AND id IN (\(ids.map { _ in "?" }.joined(separator: ",")))",
                               arguments: StatementArguments(ids))
            }
            let data = Open(ConversationReadFields(conversationID: conversationID, upTo: upTo, messageIDs: ids))
            eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: .conversationRead, conversationID: conversationID, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))

        case .typing(let started):
            let data = Open(TypingFields(conversationID: conversationID, sender: sender))
            eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: started ? .typingStarted : .typingStopped, conversationID: conversationID,
                                            channel: channel, dataJSON: JSON.encode(data), now: now))

        case .identityUpdated:
            // About the speaker when there is one (a group member's profile), else the peer.
            if let member {
                if !member.changed {
                    eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: .identityUpdated, conversationID: conversationID, channel: channel,
                                                    dataJSON: JSON.encode(member.identity), now: now))
                }
            } else if !identityChanged {
                eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: .identityUpdated, conversationID: conversationID, channel: channel,
                                                dataJSON: JSON.encode(identity), now: now))
            }

        case .custom(let type, var data):
            data["conversation_id"] = .string(conversationID)
            eventIDs.append(try appendEvent(db, cursor: cursor, ctx: ctx, type: type, conversationID: conversationID, channel: channel,
                                            dataJSON: JSON.encode(data), now: now))
        }
        try applyStateUpdates(db, ev.stateUpdates, channel: channel, conversationID: conversationID, now: now)
        return .committed(eventIDs: eventIDs, messageID: messageID, conversationID: conversationID)
    }

    /// The adapter state changes that ride along with an event (see `InboundEvent.stateUpdates`).
    static func applyStateUpdates(_ db: Database, _ updates: [StateUpdate], channel: ChannelRef, conversationID: String, now: Int64) throws {
        for u in updates {
            let key = fillingConversationID(u.key, conversationID)
            guard let value = u.valueIsConversationID ? conversationID : u.value else {
                try db.cachedStatement(sql: "DELETE FROM adapter_state WHERE channel_id = ? AND key = ?").execute(arguments: [channel.id, key])
                continue
            }
            if let version = u.version {
                // The version is kept as updated_at; an older version leaves the row alone.
                try db.cachedStatement(sql: """
                    INSERT INTO adapter_state (channel_id, key, value, updated_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT(channel_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                    WHERE excluded.updated_at >= adapter_state.updated_at
                    """).execute(arguments: [channel.id, key, value, version])
            } else {
                try db.cachedStatement(sql: """
                    INSERT INTO adapter_state (channel_id, key, value, updated_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT(channel_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                    """).execute(arguments: [channel.id, key, value, now])
            }
        }
    }

    /// `key` with every `StateUpdate.conversationIDPlaceholder` replaced by the conversation's
    /// id. By hand on the UTF-8 bytes: Foundation's `replacingOccurrences` cost half of what a
    /// WhatsApp message's window-state upsert cost the single writer.
    static func fillingConversationID(_ key: String, _ conversationID: String) -> String {
        let placeholder = StateUpdate.conversationIDPlaceholder.utf8
        let open = placeholder.first!
        let bytes = Array(key.utf8)
        guard bytes.contains(open) else { return key }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + conversationID.utf8.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == open, bytes[i...].starts(with: placeholder) {
                out.append(contentsOf: conversationID.utf8)
                i += placeholder.count
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A receipt for our message `target`: its status, unless it would go backwards.
    static func receipt(_ db: Database, _ work: InboundWork, target: OwnMessage, externalID: String, status: DeliveryStatus,
                        error: StatusError?, ctx: EventContext) throws -> EmitResult {
        // Platforms deliver receipts out of order (WhatsApp's `delivered` can come after its
        // `read`): a status never goes back, so the helpdesk never shows read → delivered.
        if let current = target.status, status.isRegression(after: current) {
            return .ignored(reason: "status \(status.rawValue) after \(current.rawValue) for \(externalID)")
        }
        try db.cachedStatement(sql: "UPDATE messages SET status = ? WHERE id = ?").execute(arguments: [status.rawValue, target.id])
        let data = MessageStatus(MessageStatusFields(
            messageID: target.id, conversationID: target.conversationID, status: status, externalIDs: [externalID], error: error,
            // Nothing follows `read` or `failed` (a status only moves forward). A retryable
            // failure means the helpdesk may send again, as a new message.
            final: status == .read || status == .failed, metadata: target.metadata,
            at: work.event.occurredAt ?? work.receivedAt))
        let id = try appendEvent(db, ctx: ctx, type: .messageStatus, conversationID: target.conversationID, channel: work.channel,
                                 dataJSON: JSON.encode(data), now: work.receivedAt.milliseconds)
        try applyStateUpdates(db, work.event.stateUpdates, channel: work.channel, conversationID: target.conversationID,
                              now: work.receivedAt.milliseconds)
        return .committed(eventIDs: [id], messageID: nil, conversationID: target.conversationID)
    }

    /// The message an inbound `.message` event becomes, as stored and delivered.
    static func message(id: String, work: InboundWork, m: InboundMessage, conversationID: String, sender: Participant,
                        replyTo: MessageRef?, parts: [Part], inlineRaw: JSONValue?) -> Message {
        let ev = work.event
        let isEcho = m.origin == .echo
        let raw = ev.raw.map { r in inlineRaw.map { RawRef(format: r.format, inline: $0) } ?? RawRef(format: r.format, ref: "/v1/messages/\(id)/raw", size: r.bytes.count) }
        return Message(MessageFields(
            id: id, conversationID: conversationID, direction: isEcho ? .outbound : .inbound, origin: m.origin, channel: work.channel,
            sender: isEcho ? Participant(role: "business") : sender, externalID: m.externalID, replyTo: replyTo,
            sentAt: ev.occurredAt, receivedAt: work.receivedAt, parts: parts, textFallback: parts.textFallback,
            channelData: ev.channelData, raw: raw))
    }

    struct OwnMessage { var id: String; var conversationID: String; var metadata: JSONObject?; var status: DeliveryStatus? }

    /// Our message with this external id on this channel. `hint`: our message id as the
    /// platform echoed it back (`InboundEvent.ourMessageID`), used when the external id is not
    /// known yet — only for an outbound message we send on this channel, whose external id is
    /// then recorded.
    static func ourMessage(_ db: Database, channel: ChannelRef, externalID: String, hint: String? = nil) throws -> OwnMessage? {
        var found = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT m.id, m.conversation_id, m.body, m.status FROM message_external_ids x JOIN messages m ON m.id = x.message_id
            WHERE x.channel_id = ? AND x.external_id = ?
            """), arguments: [channel.id, externalID])
        if found == nil, let hint, !externalID.isEmpty {
            found = try Row.fetchOne(db.cachedStatement(sql: """
                SELECT id, conversation_id, body, status FROM messages
                WHERE id = ? AND channel_id = ? AND direction = 'outbound' AND origin IN ('helpdesk', 'system')
                """), arguments: [hint, channel.id])
            if let row = found {
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO message_external_ids (channel_id, external_id, message_id) VALUES (?, ?, ?)")
                    .execute(arguments: [channel.id, externalID, row["id"] as String])
            }
        }
        guard let row = found else { return nil }
        let body: String = row["body"]
        let message = try? JSON.decode(Message.self, from: Data(body.utf8))
        let status: String? = row["status"]
        return OwnMessage(id: row["id"], conversationID: row["conversation_id"], metadata: message?.metadata,
                          status: status.map(DeliveryStatus.init(rawValue:)))
    }

    /// Creates the identity, or refreshes its display name/profile; reports whether an existing
    /// identity changed (→ `identity.updated`). `keepKnownName`: the peer's name only fills an
    /// empty one (a helpdesk's name for a customer the channel already named).
    ///
    /// The identity is the one any of the peer's ids names (`channelUserID`, then `aliases`,
    /// each as an identity's key and then as an alias), so a customer keeps one identity
    /// whichever of their ids a webhook carries; ids not yet recorded become aliases. A peer
    /// that has `movedTo` replaces its identity's key and aliases with those ids.
    static func upsertIdentity(_ db: Database, channel: ChannelRef, peer: Peer, now: Int64, keepKnownName: Bool = false) throws -> (Identity, Bool) {
        let keys = [peer.channelUserID] + peer.aliases
        if var identity = try findIdentity(db, channel: channel, keys: keys)
            ?? peer.movedTo.flatMap({ try findIdentity(db, channel: channel, keys: [$0.channelUserID] + $0.aliases) }) {
            var changed = false
            var rekeyed = false
            var moveRefused = false
            if let moved = peer.movedTo {
                let holder = try identityID(db, channel: channel, key: moved.channelUserID)
                if let holder, holder != identity.id {
                    // The new ids already have an identity of their own (a message from them
                    // came before the notice). The identities stay apart, but this one gives up
                    // its old ids all the same — they are no longer the customer's — and keeps
                    // a key that names nobody (`moved:<identity id>`): its conversation stays,
                    // replies in it fail, and the old number, given to someone else, opens a
                    // new conversation rather than this one.
                    try db.cachedStatement(sql: "DELETE FROM identity_aliases WHERE identity_id = ?").execute(arguments: [identity.id])
                    identity.channelUserID = IdentityFields.movedKeyPrefix + identity.id
                    try db.cachedStatement(sql: "UPDATE identities SET channel_user_id = ? WHERE id = ?").execute(arguments: [identity.channelUserID, identity.id])
                    changed = true; rekeyed = true; moveRefused = true
                } else {
                    try db.cachedStatement(sql: "DELETE FROM identity_aliases WHERE identity_id = ?").execute(arguments: [identity.id])
                    if moved.channelUserID != identity.channelUserID {
                        identity.channelUserID = moved.channelUserID
                        changed = true
                        // Written now: the aliases below must see the new key taken.
                        try db.cachedStatement(sql: "UPDATE identities SET channel_user_id = ? WHERE id = ?").execute(arguments: [moved.channelUserID, identity.id])
                    }
                    for alias in moved.aliases where alias != moved.channelUserID {
                        try recordAlias(db, channel: channel, alias: alias, identityID: identity.id)
                    }
                    rekeyed = true
                }
            }
            if !rekeyed {
                for key in keys where key != identity.channelUserID {
                    try recordAlias(db, channel: channel, alias: key, identityID: identity.id)
                }
            }
        if let name = peer.displayName, !name.isEmpty, name != identity.displayName,
               !keepKnownName || (identity.displayName ?? "").isEmpty {
                identity.displayName = name; changed = true
            }
            // A refused move's profile names the ids another identity has: not this one's.
            if let profile = peer.profile, !moveRefused {
                let merged = (identity.profile ?? [:]).merging(profile) { _, new in new }
                if merged != (identity.profile ?? [:]) { identity.profile = merged; changed = true }
            }
            if changed {
                identity.updatedAt = Timestamp(milliseconds: now)
                try db.cachedStatement(sql: "UPDATE identities SET channel_user_id = ?, display_name = ?, profile = ?, updated_at = ? WHERE id = ?").execute(arguments: [identity.channelUserID, identity.displayName, try identity.profile.map { try JSON.encode($0).utf8String }, now, identity.id])
            }
            return (identity, changed)
        }
        // A customer first met in a notice of their new ids is keyed by those; their old ids are
        // not recorded (they no longer name them).
        let key = peer.movedTo?.channelUserID ?? peer.channelUserID
        let t = Timestamp(milliseconds: now)
        let identity = Identity(IdentityFields(id: ID.make(.identity, at: t), channel: channel, channelUserID: key,
                                               displayName: peer.displayName, profile: peer.profile, createdAt: t, updatedAt: t))
        try db.cachedStatement(sql: """
            INSERT INTO identities (id, channel_id, channel_type, channel_user_id, display_name, profile, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [identity.id, channel.id, channel.type, key, peer.displayName,
                             try peer.profile.map { try JSON.encode($0).utf8String }, now, now])
        for alias in peer.movedTo?.aliases ?? peer.aliases where alias != key {
            try recordAlias(db, channel: channel, alias: alias, identityID: identity.id)
        }
        return (identity, false)
    }

    /// The identity one of `keys` names: as an identity's own key first (in order), then as an alias.
    static func findIdentity(_ db: Database, channel: ChannelRef, keys: [String]) throws -> Identity? {
        // Read straight from the statement's row (see `firstRowDirect`): this runs for nearly
        // every inbound event, on the writer.
        for key in keys {
            if let identity = try db.cachedStatement(sql: """
                SELECT id, channel_id, channel_type, channel_user_id, display_name, profile, created_at, updated_at
                FROM identities WHERE channel_id = ? AND channel_user_id = ?
                """).firstRowDirect(.text(channel.id), .text(key), read: identityFrom) {
                return identity
            }
        }
        for key in keys {
            if let identity = try db.cachedStatement(sql: """
                SELECT i.id, i.channel_id, i.channel_type, i.channel_user_id, i.display_name, i.profile, i.created_at, i.updated_at
                FROM identity_aliases a JOIN identities i ON i.id = a.identity_id WHERE a.channel_id = ? AND a.alias = ?
                """).firstRowDirect(.text(channel.id), .text(key), read: identityFrom) {
                return identity
            }
        }
        return nil
    }

    /// The id of the identity `key` names on the channel, as its key or as an alias.
    static func identityID(_ db: Database, channel: ChannelRef, key: String) throws -> String? {
        if let id = try String.fetchOne(db.cachedStatement(sql: "SELECT id FROM identities WHERE channel_id = ? AND channel_user_id = ?"), arguments: [channel.id, key]) {
            return id
        }
        return try String.fetchOne(db.cachedStatement(sql: "SELECT identity_id FROM identity_aliases WHERE channel_id = ? AND alias = ?"), arguments: [channel.id, key])
    }

    /// Records `alias` for the identity unless it already names one (this or another). The
    /// alias table is asked first: on every later message the alias is already there.
    static func recordAlias(_ db: Database, channel: ChannelRef, alias: String, identityID id: String) throws {
        if try db.cachedStatement(sql: "SELECT 1 FROM identity_aliases WHERE channel_id = ? AND alias = ?").firstRowDirect(.text(channel.id), .text(alias), read: { _ in true }) != nil
            || db.cachedStatement(sql: "SELECT 1 FROM identities WHERE channel_id = ? AND channel_user_id = ?").firstRowDirect(.text(channel.id), .text(alias), read: { _ in true }) != nil {
            return
        }
        try db.cachedStatement(sql: "INSERT INTO identity_aliases (channel_id, alias, identity_id) VALUES (?, ?, ?)").execute(arguments: [channel.id, alias, id])
    }

    /// The conversation an adapter named (`InboundEvent.conversationID`): its own, or another
    /// channel's that this channel has sent a message in (a relayed follow-up) — an adapter can't
    /// file events in conversations it has nothing to do with.
    static func existingConversation(_ db: Database, id: String, via channel: ChannelRef) throws -> Conversation? {
        guard let conversation = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM conversations WHERE id = ?"), arguments: [id]).map(conversationFrom)
        else { return nil }
        if conversation.channel.id == channel.id { return conversation }
        let linked = try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = ? AND channel_id = ?)"),
                                       arguments: [id, channel.id]) ?? false
        return linked ? conversation : nil
    }

    /// `findOrCreateConversation` for ingest, which needs no more of an existing conversation
    /// than its id and last sequence number: those alone are read, not the whole row (the
    /// common case, on the writer).
    static func conversationIDFindingOrCreating(_ db: Database, channel: ChannelRef, identityID: String, thread: String,
                                                now: Int64) throws -> (id: String, lastSequence: Int64?, created: Conversation?) {
        if let (id, last) = try db.cachedStatement(sql: "SELECT id, last_sequence FROM conversations WHERE channel_id = ? AND identity_id = ? AND thread = ?")
            .firstRowDirect(.text(channel.id), .text(identityID), .text(thread), read: { row in (row.text(0) ?? "", row.int(1)) }) {
            return (id, last, nil)
        }
        let (conversation, created) = try findOrCreateConversation(db, channel: channel, identityID: identityID, thread: thread, now: now)
        // A conversation made here starts at 0 (the column's default); one found after all is read.
        return (conversation.id, created ? 0 : nil, created ? conversation : nil)
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

    /// An identity from a row of its columns in table order: `SELECT *`, or the list
    /// `findIdentity` names. Read by position straight from the statement (`firstRowDirect`):
    /// this runs for nearly every inbound event, on the writer. Columns added later come after
    /// these.
    static func identityFrom(_ row: DirectRow) throws -> Identity {
        let profile = row.text(5)
        return Identity(IdentityFields(
            id: row.text(0) ?? "", channel: ChannelRef(type: row.text(2) ?? "", id: row.text(1) ?? ""), channelUserID: row.text(3) ?? "",
            displayName: row.text(4), profile: try profile.map { try JSON.decode(JSONObject.self, from: Data($0.utf8)) },
            createdAt: Timestamp(milliseconds: row.int(6)), updatedAt: Timestamp(milliseconds: row.int(7))))
    }

    static func conversationFrom(_ row: Row) throws -> Conversation {
        let metadata: String? = row["metadata"]
        let lastInbound: Int64? = row["last_inbound_at"]
        var fields = ConversationFields(
            id: row["id"], channel: ChannelRef(type: row["channel_type"], id: row["channel_id"]), identityID: row["identity_id"],
            thread: row["thread"], createdAt: Timestamp(milliseconds: row["created_at"]), updatedAt: Timestamp(milliseconds: row["updated_at"]),
            lastInboundAt: lastInbound.map { Timestamp(milliseconds: $0) },
            metadata: try metadata.map { try JSON.decode(JSONObject.self, from: Data($0.utf8)) })
        let sentAt: Int64? = row["last_inbound_sent_at"]
        fields.lastInbound = sentAt.map { ConversationFields.LastInbound(sentAt: Timestamp(milliseconds: $0), externalID: row["last_inbound_external_id"]) }
        return Conversation(fields)
    }
}
