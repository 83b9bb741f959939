import Foundation
import GRDB
import SwitchboardCore

/// Everything needed to append events inside a write transaction.
public struct EventContext: Sendable {
    /// CloudEvents `source` (`urn:switchboard:<instance>`).
    public var source: String
    public init(source: String) { self.source = source }
}

extension Store {
    /// What else an event changes on its conversation, in the same statement as the sequence.
    struct Touch {
        /// A customer message: the conversation's `last_inbound_at` (the platforms' reply windows).
        var lastInboundAt: Int64?
        /// Its time by the platform's clock and its external id (`Conversation.lastInbound`):
        /// they move only forward in platform time, so a late redelivery changes nothing.
        var lastInboundSentAt: Int64? = nil
        var lastInboundExternalID: String? = nil
    }

    /// A conversation's last event sequence number as the current transaction left it, when
    /// the caller knows it: ingest reads it along with the conversation's id. The next number
    /// is then written rather than read back with `RETURNING`, which made the update cost about
    /// half again as much (SQLite buffers returned rows in a temporary table).
    final class SequenceCursor {
        var last: Int64?
        init(_ last: Int64?) { self.last = last }
    }

    /// Appends one event to the log, in the caller's transaction; sinks read the log from
    /// their own positions (DeliveryWorker). The CloudEvent is serialized here, once: delivery,
    /// replay and the stream all send these exact bytes, so a signature covers what was stored.
    @discardableResult
    static func appendEvent(_ db: Database, cursor: SequenceCursor? = nil, ctx: EventContext, type: EventType, conversationID: String?,
                            channel: ChannelRef?, dataJSON: Data, now: Int64, touch: Touch? = nil) throws -> String {
        var sequence: Int64? = nil
        if let conversationID {
            if let known = cursor?.last {
                // Guarded by the number it expects: were it stale, nothing changes and the
                // number is read back as below.
                if let touch {
                    try db.cachedStatement(sql: Self.touchWithKnownSequenceSQL)
                        .runDirect(.int(now), touch.lastInboundAt.map { .int($0) } ?? .null, touch.lastInboundSentAt.map { .int($0) } ?? .null,
                                   .text(touch.lastInboundExternalID), .text(conversationID), .int(known))
                } else {
                    try db.cachedStatement(sql: "UPDATE conversations SET last_sequence = ?2 + 1 WHERE id = ?1 AND last_sequence = ?2")
                        .runDirect(.text(conversationID), .int(known))
                }
                if db.changesCount == 1 { sequence = known + 1 }
            }
            if sequence == nil {
                sequence = try nextSequence(db, conversationID: conversationID, now: now, touch: touch)
            }
            cursor?.last = sequence
        }
        let id = ID.make(.event, at: Timestamp(milliseconds: now))
        let body = encodeCloudEvent(id: id, source: ctx.source, type: type, subject: conversationID,
                                    time: Timestamp(milliseconds: now), sequence: sequence, channel: channel?.id, data: dataJSON)
        try db.cachedStatement(sql: "INSERT INTO events (id, type, conversation_id, channel_id, created_at, body) VALUES (?, ?, ?, ?, ?, ?)")
            .runDirect(.text(id), .text(type.rawValue), .text(conversationID), .text(channel?.id), .int(now), .blob(body))
        return id
    }

    /// What a `Touch` sets: ?1 now, ?2 `lastInboundAt`, ?3 `lastInboundSentAt`, ?4
    /// `lastInboundExternalID` (?5 is the conversation). SET expressions all see the row as it
    /// was before the update.
    private static let touchAssignments = """
        updated_at = ?1, last_inbound_at = COALESCE(?2, last_inbound_at),
          last_inbound_external_id = CASE WHEN ?3 >= COALESCE(last_inbound_sent_at, 0) THEN ?4 ELSE last_inbound_external_id END,
          last_inbound_sent_at = CASE WHEN ?3 >= COALESCE(last_inbound_sent_at, 0) THEN ?3 ELSE last_inbound_sent_at END
        """
    /// With the number the cursor expects as ?6.
    private static let touchWithKnownSequenceSQL =
        "UPDATE conversations SET last_sequence = ?6 + 1, \(touchAssignments) WHERE id = ?5 AND last_sequence = ?6"
    private static let touchReturningSequenceSQL =
        "UPDATE conversations SET last_sequence = last_sequence + 1, \(touchAssignments) WHERE id = ?5 RETURNING last_sequence"

    /// Moves the conversation's sequence on by one (and applies `touch`), answering the new number.
    private static func nextSequence(_ db: Database, conversationID: String, now: Int64, touch: Touch?) throws -> Int64? {
        if let touch {
            return try Int64.fetchOne(db.cachedStatement(sql: Self.touchReturningSequenceSQL),
                                      arguments: [now, touch.lastInboundAt, touch.lastInboundSentAt, touch.lastInboundExternalID, conversationID])
        }
        return try Int64.fetchOne(db.cachedStatement(sql: "UPDATE conversations SET last_sequence = last_sequence + 1 WHERE id = ? RETURNING last_sequence"), arguments: [conversationID])
    }

    /// Writes the structured-mode CloudEvent with keys in sorted order and `data` spliced in as
    /// already-encoded JSON (re-encoding the message would double the cost of every event).
    /// Byte by byte, without a String per member: it runs inside the ingest transaction, on the
    /// single writer, for every event.
    static func encodeCloudEvent(id: String, source: String, type: EventType, subject: String?, time: Timestamp,
                                 sequence: Int64?, channel: String?, data: Data) -> Data {
        var w = JSONWriter(capacity: data.count + 400)
        w.raw("{")
        if let channel { w.raw("\"channel\":"); w.string(channel); w.raw(",") }
        w.raw("\"data\":")
        data.withUnsafeBytes { w.raw($0) }
        w.raw(",\"datacontenttype\":\"application/json\",\"id\":")
        w.string(id)
        if let subject { w.raw(",\"partitionkey\":"); w.string(subject) }
        if let sequence {
            // CloudEvent.sequenceString: twenty digits, zero-padded, so that strings sort as numbers.
            w.raw(",\"sequence\":\"")
            w.zeroPadded(sequence, width: 20)
            w.raw("\"")
        }
        w.raw(",\"source\":")
        w.string(source)
        w.raw(",\"specversion\":\"1.0\"")
        if let subject { w.raw(",\"subject\":"); w.string(subject) }
        w.raw(",\"time\":\"")
        time.writeRFC3339(&w)
        w.raw("\",\"type\":")
        w.string(type.cloudEventType)
        w.raw("}")
        return Data(w.bytes)
    }
}
