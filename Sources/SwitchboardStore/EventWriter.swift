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

    /// Appends one event to the log, in the caller's transaction; sinks read the log from
    /// their own positions (DeliveryWorker). The CloudEvent is serialized here, once: delivery,
    /// replay and the stream all send these exact bytes, so a signature covers what was stored.
    @discardableResult
    static func appendEvent(_ db: Database, ctx: EventContext, type: EventType, conversationID: String?,
                            channel: ChannelRef?, dataJSON: Data, now: Int64, touch: Touch? = nil) throws -> String {
        var sequence: Int64? = nil
        if let conversationID {
            if let touch {
                // (SET expressions all see the row as it was before the update.)
                sequence = try Int64.fetchOne(db.cachedStatement(sql: """
                    UPDATE conversations SET last_sequence = last_sequence + 1, updated_at = ?1, last_inbound_at = COALESCE(?2, last_inbound_at),
                      last_inbound_external_id = CASE WHEN ?3 >= COALESCE(last_inbound_sent_at, 0) THEN ?4 ELSE last_inbound_external_id END,
                      last_inbound_sent_at = CASE WHEN ?3 >= COALESCE(last_inbound_sent_at, 0) THEN ?3 ELSE last_inbound_sent_at END
                    WHERE id = ?5 RETURNING last_sequence
                    """), arguments: [now, touch.lastInboundAt, touch.lastInboundSentAt, touch.lastInboundExternalID, conversationID])
            } else {
                sequence = try Int64.fetchOne(db.cachedStatement(sql: "UPDATE conversations SET last_sequence = last_sequence + 1 WHERE id = ? RETURNING last_sequence"), arguments: [conversationID])
            }
        }
        let id = ID.make(.event, at: Timestamp(milliseconds: now))
        let body = encodeCloudEvent(id: id, source: ctx.source, type: type, subject: conversationID,
                                    time: Timestamp(milliseconds: now), sequence: sequence, channel: channel?.id, data: dataJSON)
        try db.cachedStatement(sql: "INSERT INTO events (id, type, conversation_id, channel_id, created_at, body) VALUES (?, ?, ?, ?, ?, ?)").execute(arguments: [id, type.rawValue, conversationID, channel?.id, now, body])
        return id
    }

    /// Writes the structured-mode CloudEvent with keys in sorted order and `data` spliced in as
    /// already-encoded JSON (re-encoding the message would double the cost of every event).
    static func encodeCloudEvent(id: String, source: String, type: EventType, subject: String?, time: Timestamp,
                                 sequence: Int64?, channel: String?, data: Data) -> Data {
        var out = Data()
        out.reserveCapacity(data.count + 400)
        out.append(contentsOf: Array("{".utf8))
        var first = true
        func key(_ k: String) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            out.append(contentsOf: Array("\"\(k)\":".utf8))
        }
        func str(_ k: String, _ v: String?) {
            guard let v else { return }
            key(k)
            out.append(contentsOf: jsonString(v))
        }
        str("channel", channel)
        key("data"); out.append(data)
        str("datacontenttype", "application/json")
        str("id", id)
        str("partitionkey", subject)
        str("sequence", sequence.map { CloudEvent.sequenceString($0) })
        str("source", source)
        str("specversion", "1.0")
        str("subject", subject)
        str("time", time.rfc3339)
        str("type", type.cloudEventType)
        out.append(UInt8(ascii: "}"))
        return out
    }

    static func jsonString(_ s: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        out.reserveCapacity(s.utf8.count + 2)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [92, 34]
            case UInt8(ascii: "\\"): out += [92, 92]
            case 0x0A: out += [92, UInt8(ascii: "n")]
            case 0x0D: out += [92, UInt8(ascii: "r")]
            case 0x09: out += [92, UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }
}
