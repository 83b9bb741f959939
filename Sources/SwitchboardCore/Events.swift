import Foundation

/// Event types (`switchboard.<type>` in the CloudEvent). Open: unknown types pass through.
public struct EventType: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let messageReceived: EventType = "message.received"
    public static let messageEcho: EventType = "message.echo"
    public static let messageStatus: EventType = "message.status"
    public static let messageReaction: EventType = "message.reaction"
    public static let messageUpdated: EventType = "message.updated"
    public static let messageDeleted: EventType = "message.deleted"
    public static let conversationCreated: EventType = "conversation.created"
    public static let conversationRead: EventType = "conversation.read"
    public static let typingStarted: EventType = "typing.started"
    public static let typingStopped: EventType = "typing.stopped"
    public static let identityUpdated: EventType = "identity.updated"
    public static let channelStatus: EventType = "channel.status"

    public static let all: [EventType] = [
        .messageReceived, .messageEcho, .messageStatus, .messageReaction, .messageUpdated, .messageDeleted,
        .conversationCreated, .conversationRead, .typingStarted, .typingStopped, .identityUpdated, .channelStatus,
    ]

    /// The CloudEvents `type` attribute.
    public var cloudEventType: String { "switchboard." + rawValue }

    /// The types the bundled adapters add within the built-in families (documented in their
    /// READMEs). ContractTests keeps this list in step with what adapters/ emits.
    public static let adapterTypes: Set<EventType> = [
        "conversation.referred", "conversation.opted_in", "conversation.handover", // Messenger, Instagram
        "conversation.welcome_requested", // WhatsApp
        "conversation.followed", "conversation.unfollowed", "conversation.joined", "conversation.left",
        "conversation.member_joined", "conversation.member_left", // LINE
    ]

    /// Every type a filter may name exactly.
    public static let known: Set<EventType> = Set(all).union(adapterTypes)

    /// The families of the built-in types (`message`, `conversation`, …).
    public static let families: Set<String> = Set(all.map { String($0.rawValue.prefix { $0 != "." }) })

    /// Whether `pattern` can match anything: `*`, a known family (`message.*`), or a known type
    /// (`message.status`, or an adapter's `conversation.referred`). A typo (`mesage.*`,
    /// `message.recieved`) cannot, and is better refused than silently matching nothing.
    public static func isValidPattern(_ pattern: String) -> Bool {
        if pattern == "*" { return true }
        if pattern.hasSuffix(".*") { return families.contains(String(pattern.dropLast(2))) }
        return known.contains(EventType(rawValue: pattern))
    }

    /// Matches a sink's `events:` filter entry: exact (`message.status`), a family
    /// (`message.*`) or everything (`*`).
    public func matches(_ pattern: String) -> Bool {
        if pattern == "*" { return true }
        if pattern.hasSuffix(".*") { return rawValue.hasPrefix(pattern.dropLast()) }
        return pattern == rawValue
    }
}

public struct DeliveryStatus: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let accepted: DeliveryStatus = "accepted"
    public static let sent: DeliveryStatus = "sent"
    public static let delivered: DeliveryStatus = "delivered"
    public static let read: DeliveryStatus = "read"
    public static let failed: DeliveryStatus = "failed"

    /// The progress order accepted < sent < delivered < read; nil for `failed` and for
    /// statuses this version doesn't know.
    var progress: Int? {
        switch self {
        case .accepted: return 0
        case .sent: return 1
        case .delivered: return 2
        case .read: return 3
        default: return nil
        }
    }

    /// Whether a receipt with this status, for a message at `current`, would tell the helpdesk
    /// nothing new or take it back: the same status again (Meta's own `sent` after ours, a
    /// second part's `delivered`), a lower step of the progress order (`delivered` after
    /// `read`), anything after `failed` (terminal: a helpdesk was told `final`), or `failed`
    /// after `read`. Platforms deliver receipts out of order, so status only moves forward.
    /// A status this version does not know counts as a step back only when it repeats or follows
    /// `failed`.
    public func isRegression(after current: DeliveryStatus) -> Bool {
        if current == .failed || self == current { return true }
        if self == .failed { return current == .read }
        guard let new = progress, let old = current.progress else { return false }
        return new < old
    }
}

public struct StatusErrorFields: KnownFields {
    /// Our stable code (`rate_limited`, `window_closed`, `invalid_recipient`, `channel_error`, …).
    public var code: String
    /// The platform's own code (Graph `131047`, SMTP `550`), when there is one.
    public var channelCode: String?
    public var message: String
    public var retryable: Bool
    public enum CodingKeys: String, CodingKey, CaseIterable { case code, message, retryable, channelCode = "channel_code" }
    public typealias Keys = CodingKeys
}
public typealias StatusError = Open<StatusErrorFields>
extension Open where Fields == StatusErrorFields {
    public init(code: String, channelCode: String? = nil, message: String, retryable: Bool) {
        self.init(StatusErrorFields(code: code, channelCode: channelCode, message: message, retryable: retryable))
    }
}

/// `message.status`: the delivery progress of one of our outbound messages (or a customer's
/// read of it). `metadata` is the helpdesk's, echoed from the send request.
public struct MessageStatusFields: KnownFields {
    public var messageID: String
    public var conversationID: String
    public var status: DeliveryStatus
    public var externalIDs: [String]?
    public var error: StatusError?
    /// No further status will follow (read, or a permanent failure).
    public var final: Bool
    public var attempt: Int?
    public var metadata: JSONObject?
    public var at: Timestamp
    public init(messageID: String, conversationID: String, status: DeliveryStatus, externalIDs: [String]? = nil,
                error: StatusError? = nil, final: Bool = false, attempt: Int? = nil, metadata: JSONObject? = nil, at: Timestamp) {
        self.messageID = messageID; self.conversationID = conversationID; self.status = status; self.externalIDs = externalIDs
        self.error = error; self.final = final; self.attempt = attempt; self.metadata = metadata; self.at = at
    }
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case status, error, final, attempt, metadata, at
        case messageID = "message_id", conversationID = "conversation_id", externalIDs = "external_ids"
    }
    public typealias Keys = CodingKeys
}
public typealias MessageStatus = Open<MessageStatusFields>

/// `message.reaction`.
public struct ReactionEventFields: KnownFields {
    public var conversationID: String
    public var targetMessageID: String?
    public var targetExternalID: String?
    public var emoji: String
    public var action: String
    public var sender: Participant?
    public var at: Timestamp
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case emoji, action, sender, at
        case conversationID = "conversation_id", targetMessageID = "target_message_id", targetExternalID = "target_external_id"
    }
    public typealias Keys = CodingKeys
    public init(conversationID: String, targetMessageID: String?, targetExternalID: String?, emoji: String, action: String,
                sender: Participant?, at: Timestamp) {
        self.conversationID = conversationID; self.targetMessageID = targetMessageID; self.targetExternalID = targetExternalID
        self.emoji = emoji; self.action = action; self.sender = sender; self.at = at
    }
}

/// `message.deleted` (unsend) and `message.updated` (edit).
public struct MessageChangeFields: KnownFields {
    public var conversationID: String
    public var messageID: String?
    public var externalID: String?
    public var parts: [Part]?
    public var textFallback: String?
    public var at: Timestamp
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case parts, at
        case conversationID = "conversation_id", messageID = "message_id", externalID = "external_id", textFallback = "text_fallback"
    }
    public typealias Keys = CodingKeys
    public init(conversationID: String, messageID: String?, externalID: String?, parts: [Part]? = nil, textFallback: String? = nil, at: Timestamp) {
        self.conversationID = conversationID; self.messageID = messageID; self.externalID = externalID
        self.parts = parts; self.textFallback = textFallback; self.at = at
    }
}

/// `conversation.read`: the customer has read our messages up to `up_to`.
public struct ConversationReadFields: KnownFields {
    public var conversationID: String
    public var upTo: Timestamp
    public var messageIDs: [String]?
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case conversationID = "conversation_id", upTo = "up_to", messageIDs = "message_ids"
    }
    public typealias Keys = CodingKeys
    public init(conversationID: String, upTo: Timestamp, messageIDs: [String]? = nil) {
        self.conversationID = conversationID; self.upTo = upTo; self.messageIDs = messageIDs
    }
}

/// `typing.started` / `typing.stopped`.
public struct TypingFields: KnownFields {
    public var conversationID: String
    public var sender: Participant?
    public enum CodingKeys: String, CodingKey, CaseIterable { case sender, conversationID = "conversation_id" }
    public typealias Keys = CodingKeys
    public init(conversationID: String, sender: Participant?) { self.conversationID = conversationID; self.sender = sender }
}

/// The state of a channel, as shown in `GET /v1/channels` and `channel.status` events.
public struct ChannelState: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let starting: ChannelState = "starting"
    public static let connected: ChannelState = "connected"
    public static let degraded: ChannelState = "degraded"
    public static let authExpired: ChannelState = "auth_expired"
    public static let disabled: ChannelState = "disabled"
    public static let stopped: ChannelState = "stopped"
}

/// `channel.status`.
public struct ChannelStatusFields: KnownFields {
    public var channel: ChannelRef
    public var state: ChannelState
    public var detail: String?
    public var at: Timestamp
    public enum CodingKeys: String, CodingKey, CaseIterable { case channel, state, detail, at }
    public typealias Keys = CodingKeys
    public init(channel: ChannelRef, state: ChannelState, detail: String?, at: Timestamp) {
        self.channel = channel; self.state = state; self.detail = detail; self.at = at
    }
}

/// The envelope every event travels in: a CloudEvents 1.0 structured-mode JSON object, with the
/// extensions `sequence` (per conversation, zero-padded to 20 digits so it sorts as a string),
/// `partitionkey` (the conversation id) and `channel` (the channel id).
public struct CloudEventFields: KnownFields {
    public var specversion: String
    public var id: String
    public var source: String
    public var type: String
    public var subject: String?
    public var time: Timestamp
    public var datacontenttype: String?
    public var sequence: String?
    public var partitionkey: String?
    public var channel: String?
    public var data: JSONValue?
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case specversion, id, source, type, subject, time, datacontenttype, sequence, partitionkey, channel, data
    }
    public typealias Keys = CodingKeys
    public init(id: String, source: String, type: String, subject: String?, time: Timestamp, sequence: String?,
                partitionkey: String?, channel: String?, data: JSONValue?) {
        self.specversion = "1.0"; self.id = id; self.source = source; self.type = type; self.subject = subject
        self.time = time; self.datacontenttype = "application/json"; self.sequence = sequence
        self.partitionkey = partitionkey; self.channel = channel; self.data = data
    }
}
public typealias CloudEvent = Open<CloudEventFields>

extension CloudEvent {
    /// The event type without the `switchboard.` prefix.
    public var eventType: EventType {
        let t = fields.type
        return EventType(rawValue: t.hasPrefix("switchboard.") ? String(t.dropFirst("switchboard.".count)) : t)
    }

    public static func sequenceString(_ n: Int64) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 20 - s.count)) + s
    }
}
