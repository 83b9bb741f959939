import Foundation
import Logging

// The contract between the runtime and a channel adapter. An adapter translates between one
// platform and the common format and calls the platform's API; everything else — storage,
// dedupe, retries, delivery, metrics, supervision — is the runtime's, done once for all.

/// The customer (or group) on the channel, as the adapter knows them.
public struct Peer: Sendable, Hashable {
    /// The id a new identity is keyed by and that replies are addressed to.
    public var channelUserID: String
    public var displayName: String?
    public var profile: JSONObject?
    /// Other ids the channel also names this customer by (WhatsApp: the business-scoped user id
    /// beside the phone number). Any of them finds the customer's identity, so a customer who
    /// later arrives under only one of them keeps their conversation; each is remembered for
    /// that identity. An id already naming another identity is left with it.
    public var aliases: [String]
    /// The channel says this customer now goes by other ids (WhatsApp: a changed phone number,
    /// which also brings a new business-scoped id). The identity found by `channelUserID` or an
    /// alias is re-keyed to them and keeps its conversations; the old ids no longer find it — a
    /// recycled number must not open the previous owner's history. When the new key already
    /// names another identity, the two stay apart: this one still gives up its old ids (its key
    /// becomes `IdentityFields.movedKeyPrefix` + its id) and `profile` is not applied.
    public var movedTo: IDs?
    /// A key and its aliases.
    public struct IDs: Sendable, Hashable {
        public var channelUserID: String
        public var aliases: [String]
        public init(channelUserID: String, aliases: [String] = []) { self.channelUserID = channelUserID; self.aliases = aliases }
    }
    public init(channelUserID: String, displayName: String? = nil, profile: JSONObject? = nil, aliases: [String] = [], movedTo: IDs? = nil) {
        self.channelUserID = channelUserID; self.displayName = displayName; self.profile = profile
        self.aliases = aliases; self.movedTo = movedTo
    }
}

/// The channel's original bytes, kept with the message (`GET /v1/messages/{id}/raw`).
public struct RawPayload: Sendable, Hashable {
    public var format: String
    public var bytes: [UInt8]
    /// The bytes already parsed as JSON, when the adapter parsed them anyway (saves a second parse).
    public var parsed: JSONValue?
    public init(format: String, bytes: [UInt8], parsed: JSONValue? = nil) { self.format = format; self.bytes = bytes; self.parsed = parsed }
    public static func json(_ data: Data) -> RawPayload { RawPayload(format: "json", bytes: Array(data)) }
}

public struct InboundMessage: Sendable, Hashable {
    /// `.customer` for a customer's message, `.echo` for one the business sent elsewhere.
    public var origin: Origin
    public var externalID: String?
    public var parts: [Part]
    public var replyToExternalID: String?
    public init(origin: Origin = .customer, externalID: String?, parts: [Part], replyToExternalID: String? = nil) {
        self.origin = origin; self.externalID = externalID; self.parts = parts; self.replyToExternalID = replyToExternalID
    }
}

/// What an adapter hands the runtime. The runtime resolves identity and conversation, assigns
/// ids and per-conversation sequence numbers, and commits the message and its events in one
/// transaction.
public struct InboundEvent: Sendable {
    public enum Kind: Sendable {
        case message(InboundMessage)
        /// A delivery receipt for one of our messages, by the channel's id for it.
        case status(externalID: String, status: DeliveryStatus, error: StatusError?)
        case reaction(targetExternalID: String, emoji: String, action: String)
        case deleted(externalID: String)
        case updated(externalID: String, parts: [Part])
        /// The customer read everything we sent up to this time (Messenger watermark).
        case read(upTo: Timestamp)
        case typing(started: Bool)
        case identityUpdated
        /// Any other event type (LINE follow/join…), with its data.
        case custom(EventType, JSONObject)
    }

    public var kind: Kind
    /// The conversation's counterpart: the customer, or the group/room for group threads.
    public var peer: Peer
    /// Who spoke, when not the peer (a member of a LINE group).
    public var sender: Peer?
    public var thread: String
    /// The channel's own id for this event; a second emit with the same key is a duplicate.
    /// For a message, make it the message's `externalID` itself when that id alone identifies
    /// it (a wamid, a mid, a Message-ID): the stored message is then the dedupe record, no key
    /// row is written beside it, and it is remembered as long as the message is kept (for ever),
    /// whatever `storage.dedupe_retention` says. Any other key is kept in a key table.
    public var dedupeKey: String?
    public var occurredAt: Timestamp?
    public var raw: RawPayload?
    public var channelData: JSONObject?
    /// Adapter state to change in the same transaction as the event, and only if the event is
    /// stored (not for a duplicate): a cursor, a reply token, the time that opens a reply
    /// window. Webhooks stay one group-committed write each instead of one plus a state write.
    public var stateUpdates: [StateUpdate] = []
    /// Files the event in this existing conversation instead of the peer's own one on this
    /// channel. The conversation may belong to another channel: a customer's email answer to a
    /// web chat's email follow-up continues the web conversation. The adapter sets it only after
    /// proving the link (the email channel's HMAC-tagged address and the recipient's address); an
    /// unknown id falls back to the peer's own conversation.
    public var conversationID: String? = nil
    /// For a `.status`: our message id, when the platform echoes back what we attached to the
    /// send (WhatsApp's `biz_opaque_callback_data`). A receipt can arrive before the send that
    /// produced its external id is recorded (the first part of a message still being sent);
    /// the runtime then finds the message by this id, on this channel, and learns the
    /// external id from the receipt.
    public var ourMessageID: String? = nil

    public init(_ kind: Kind, peer: Peer, sender: Peer? = nil, thread: String = "*", dedupeKey: String? = nil,
                occurredAt: Timestamp? = nil, raw: RawPayload? = nil, channelData: JSONObject? = nil) {
        self.kind = kind; self.peer = peer; self.sender = sender; self.thread = thread; self.dedupeKey = dedupeKey
        self.occurredAt = occurredAt; self.raw = raw; self.channelData = channelData
    }
}

public enum EmitResult: Sendable, Equatable {
    /// Committed: the events are durable and will be delivered.
    case committed(eventIDs: [String], messageID: String?, conversationID: String?)
    /// The dedupe key was seen before; nothing was stored.
    case duplicate
    /// The event referred to something we don't know (a status for a message not ours); it was
    /// logged and not stored.
    case ignored(reason: String)
}

/// A webhook request routed to an adapter by `/webhooks/{channel id}`: the raw body bytes
/// (signatures are checked on them, never on a re-encoding).
public struct WebhookRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    /// Header names lower-cased.
    public var headers: [String: String]
    public var body: [UInt8]
    public var remoteAddress: String?
    public init(method: String, path: String, query: [String: String], headers: [String: String], body: [UInt8], remoteAddress: String? = nil) {
        self.method = method; self.path = path; self.query = query; self.headers = headers; self.body = body; self.remoteAddress = remoteAddress
    }
    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

public struct WebhookResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
    public init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.status = status; self.headers = headers; self.body = body
    }
    public static func text(_ status: Int, _ s: String) -> WebhookResponse {
        WebhookResponse(status: status, headers: ["content-type": "text/plain; charset=utf-8"], body: Array(s.utf8))
    }
    public static let ok = WebhookResponse.text(200, "ok")
    public static let notFound = WebhookResponse.text(404, "not found")
    public static let unauthorized = WebhookResponse.text(401, "invalid signature")
}

/// A message ready to go out: the stored message, its rendering for this channel and whom it is for.
public struct OutboundMessage: Sendable {
    public var message: Message
    public var rendered: RenderedMessage
    public var conversation: Conversation
    /// The conversation's counterpart (recipient).
    public var recipient: Identity
    /// The channel's id of the message this one answers, when there is one.
    public var replyToExternalID: String?
    /// 1 for the first try.
    public var attempt: Int
    /// Stable across retries of this message; adapters pass it to platforms that dedupe sends.
    public var idempotencyKey: String { message.id }
    public init(message: Message, rendered: RenderedMessage, conversation: Conversation, recipient: Identity,
                replyToExternalID: String?, attempt: Int) {
        self.message = message; self.rendered = rendered; self.conversation = conversation; self.recipient = recipient
        self.replyToExternalID = replyToExternalID; self.attempt = attempt
    }
}

public struct SendResult: Sendable, Hashable {
    public var externalIDs: [String]
    public var channelData: JSONObject?
    public init(externalIDs: [String], channelData: JSONObject? = nil) { self.externalIDs = externalIDs; self.channelData = channelData }
}

/// A failed send, classified by the adapter: the runtime retries `retryable` ones with backoff
/// (honouring `retryAfter`) and reports the rest as failed at once.
public struct SendError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: String
    public var channelCode: String?
    public var message: String
    public var retryable: Bool
    public var retryAfter: Double?
    /// A channel-wide consequence (an expired token turns the channel `auth_expired`).
    public var channelState: ChannelState?
    public init(code: String, channelCode: String? = nil, message: String, retryable: Bool,
                retryAfter: Double? = nil, channelState: ChannelState? = nil) {
        self.code = code; self.channelCode = channelCode; self.message = message; self.retryable = retryable
        self.retryAfter = retryAfter; self.channelState = channelState
    }
    public var description: String { "\(code)\(channelCode.map { " (\($0))" } ?? ""): \(message)" }
    public var statusError: StatusError { StatusError(code: code, channelCode: channelCode, message: message, retryable: retryable) }
}

/// Refusal of a send request before anything is queued (HTTP 4xx with this code).
public struct SendRejection: Error, Sendable, Hashable {
    public var code: String
    public var status: Int
    public var detail: String
    public init(code: String, status: Int = 422, detail: String) { self.code = code; self.status = status; self.detail = detail }
}

public enum ActivityKind: String, Codable, Sendable, CaseIterable {
    case typingStart = "typing_start"
    case typingStop = "typing_stop"
    case markRead = "mark_read"
}

/// The key-value store an adapter keeps its cursors in (IMAP UIDs, tokens' expiry…).
public protocol AdapterStateStore: Sendable {
    func get(_ key: String) async throws -> String?
    func set(_ key: String, _ value: String?) async throws
    /// Every entry whose key starts with `prefix` (work an adapter must resume after a restart).
    func entries(prefix: String) async throws -> [(key: String, value: String)]
    /// The newest `limit` entries (by key) whose key starts with `prefix` and sorts after
    /// `after`, oldest first: a log kept under zero-padded sequence numbers, read from a
    /// position without loading the rest.
    func entries(prefix: String, after: String?, last limit: Int) async throws -> [(key: String, value: String)]
    /// Reads and rewrites one value at once: `transform` gets the current value (nil when
    /// absent) and returns the new one (nil deletes). Two tasks updating the same key never
    /// lose each other's change, as a `get` then `set` can.
    func update(_ key: String, _ transform: @escaping @Sendable (String?) -> String?) async throws
}

extension AdapterStateStore {
    /// Not atomic: for stores with a single user of each key. The runtime's store overrides it.
    public func update(_ key: String, _ transform: @escaping @Sendable (String?) -> String?) async throws {
        try await set(key, transform(try await get(key)))
    }

    public func entries(prefix: String, after: String?, last limit: Int) async throws -> [(key: String, value: String)] {
        Self.last(limit, of: try await entries(prefix: prefix), after: after)
    }

    /// The newest `limit` of `rows` (sorted by key) whose key sorts after `after`.
    public static func last(_ limit: Int, of rows: [(key: String, value: String)], after: String?) -> [(key: String, value: String)] {
        Array(rows.filter { after == nil || $0.key > after! }.suffix(max(0, limit)))
    }
}

public struct StoredMedia: Codable, Sendable, Hashable {
    public var id: String
    public var sha256: String
    public var size: Int64
    public var mimeType: String
    public var filename: String?
    public init(id: String, sha256: String, size: Int64, mimeType: String, filename: String?) {
        self.id = id; self.sha256 = sha256; self.size = size; self.mimeType = mimeType; self.filename = filename
    }
    enum CodingKeys: String, CodingKey { case id, sha256, size, filename, mimeType = "mime_type" }
}

public struct MediaTooLarge: Error, Sendable { public var limit: Int64; public init(limit: Int64) { self.limit = limit } }

/// Content-addressed media storage with a size limit.
public protocol MediaStore: Sendable {
    var maxBytes: Int64 { get }
    func put(_ bytes: [UInt8], mimeType: String, filename: String?) async throws -> StoredMedia
    func get(_ id: String) async throws -> (StoredMedia, [UInt8])?
}

/// A change to the adapter's state store committed with an event (`InboundEvent.stateUpdates`).
public struct StateUpdate: Sendable, Hashable {
    /// The placeholder replaced in `key` by the id of the event's conversation (which is only
    /// known inside the transaction), e.g. `last_inbound:{conversation_id}`.
    public static let conversationIDPlaceholder = "{conversation_id}"
    public var key: String
    /// nil deletes the key.
    public var value: String?
    /// With a version (e.g. the platform's timestamp in ms) the value is written only if the
    /// stored one has no higher version: deliveries out of order never move it backwards.
    /// Compare versioned writes of a key only with versioned writes of the same key.
    public var version: Int64?
    /// The value is the event's conversation id (only known inside the transaction).
    public var valueIsConversationID = false
    public init(key: String, value: String?, version: Int64? = nil) { self.key = key; self.value = value; self.version = version }
    /// Maps `key` to the id of the event's conversation (e.g. a message id → its conversation).
    public static func conversationID(under key: String) -> StateUpdate {
        var u = StateUpdate(key: key, value: "")
        u.valueIsConversationID = true
        return u
    }
}

/// A message sent through another channel for one of this channel's conversations: the web
/// chat's email follow-up goes out through an email channel to the address the visitor gave.
/// The runtime stores it in the conversation (origin `system`, the target channel's ref) and
/// queues it on the target channel's send worker, with its retries; the helpdesk sees its
/// `message.status` events like any other message's.
public struct RelayRequest: Sendable {
    public var conversationID: String
    /// The channel to send through.
    public var channelID: String
    /// The recipient's address on that channel.
    public var recipient: Peer
    public var parts: [Part]
    public var metadata: JSONObject?
    /// The same key twice queues one message (a crash between the relay and the adapter's own
    /// bookkeeping must not send a second email).
    public var idempotencyKey: String
    public init(conversationID: String, channelID: String, recipient: Peer, parts: [Part], metadata: JSONObject?, idempotencyKey: String) {
        self.conversationID = conversationID; self.channelID = channelID; self.recipient = recipient; self.parts = parts
        self.metadata = metadata; self.idempotencyKey = idempotencyKey
    }
}

/// A refused relay: the target channel is missing or can't send to addresses.
public struct RelayError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A channel another channel's config names as a relay target, checked when the config is
/// loaded so `check-config` reports a wrong id under the key that names it.
public struct RelayTarget: Sendable, Hashable {
    public var channelID: String
    /// The naming key's path inside the channel's config, e.g. `["email_followup", "channel"]`.
    public var configKey: [String]
    public init(channelID: String, configKey: [String]) { self.channelID = channelID; self.configKey = configKey }
}

/// What the runtime gives each adapter.
public protocol AdapterContext: Sendable {
    var channel: ChannelRef { get }
    var logger: Logger { get }
    /// The daemon's public base URL (`server.public_url`), for links platforms fetch from us.
    var publicURL: String { get }
    var state: any AdapterStateStore { get }
    var media: any MediaStore { get }
    /// Stores the event durably and returns only after the commit; duplicates (same dedupe key)
    /// return `.duplicate` without storing anything. Acknowledge the platform only after this.
    func emit(_ event: InboundEvent) async throws -> EmitResult
    /// Publishes the channel's health (`channel.status` event, `GET /v1/channels`).
    func reportStatus(_ state: ChannelState, detail: String?) async
    /// Counts a rejected webhook signature (metric + log line naming the channel).
    func signatureFailed(reason: String)
    /// A public, signed link to a stored media file that expires after `seconds`, for platforms
    /// that download media from a URL themselves.
    func publicMediaURL(_ mediaID: String, validFor seconds: Double) -> String
    /// Stores and queues a message of one of this channel's conversations for sending through
    /// another channel (see `RelayRequest`); returns the stored message's id. Throws
    /// `RelayError` when the target can't take it.
    func relay(_ request: RelayRequest) async throws -> String
    /// The other running channels of `type`, with their contexts. A Meta app calls ONE webhook
    /// URL for all its phone numbers or Pages: the channel whose URL was called hands what it
    /// verified for another account to the channel configured for that account.
    func channels(ofType type: String) -> [ChannelHandle]
}

/// A running channel as another channel sees it (`AdapterContext.channels(ofType:)`).
public struct ChannelHandle: Sendable {
    public var adapter: any ChannelAdapter
    public var context: any AdapterContext
    public init(adapter: any ChannelAdapter, context: any AdapterContext) { self.adapter = adapter; self.context = context }
}

/// One configured channel.
public protocol ChannelAdapter: Sendable {
    var channel: ChannelRef { get }
    var capabilities: ChannelCapabilities { get }

    /// The long-lived loop (IMAP IDLE, polling). Returns when the task is cancelled. Webhook-only
    /// adapters can keep the default, which just waits.
    func run(context: any AdapterContext) async throws

    /// `GET|POST /webhooks/{channel id}`. Verify the signature on `request.body`, emit, then answer.
    func handleWebhook(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse

    /// Checks channel rules before a send is accepted (WhatsApp's 24-hour window): throw
    /// `SendRejection` to refuse with a 4xx before anything is queued. `override` is the
    /// request's `overrides.<channel type>` when it has one: that payload is what will be sent
    /// instead of `parts` (a native WhatsApp template is a template, whatever `parts` says).
    func validateSend(parts: [Part], override: JSONValue?, conversation: Conversation, context: any AdapterContext) async throws

    /// Sends one rendered message. Throw `SendError` to classify failures.
    func send(_ message: OutboundMessage, context: any AdapterContext) async throws -> SendResult

    /// Typing indicators and read receipts (`POST /v1/conversations/{id}/activity`).
    func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws

    /// Resolves a customer address given to `POST /v1/conversations` into the peer and thread to
    /// use; throw `SendRejection` for an address the channel can't reach.
    func resolveAddress(_ address: String, context: any AdapterContext) async throws -> (peer: Peer, thread: String)

    // Pages and live connections served by the channel itself (the website chat widget). All
    // optional: the defaults serve nothing.

    /// The first path segment under which this channel serves its own pages: requests to
    /// `/<publicArea>/<channel id>/<subpath>` reach `handlePublic`, and WebSocket upgrades there
    /// reach `acceptLive`/`serveLive`. `nil` (the default) serves nothing.
    var publicArea: String? { get }

    /// A GET/POST/PUT/DELETE/OPTIONS under `/<publicArea>/<channel id>/`; `subpath` is the rest of the path
    /// without a leading slash (`widget.js`, `history`, …). Bodies are limited like webhooks.
    func handlePublic(_ request: WebhookRequest, subpath: String, context: any AdapterContext) async -> WebhookResponse

    /// `GET /` of the public listener: the first channel (by id) that answers non-nil serves it.
    func homePage(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse?

    /// A WebSocket upgrade request under `/<publicArea>/<channel id>/`: true accepts it (check
    /// `Origin` here); false refuses, and the request is then answered by `handlePublic`.
    func acceptLive(_ request: WebhookRequest, subpath: String, context: any AdapterContext) async -> Bool

    /// Runs one accepted WebSocket: `incoming` yields its text frames and finishes when the
    /// connection ends; returning closes the socket (with a close frame). It runs in the
    /// connection's own task for as long as the socket is open, so keep what it holds between
    /// frames small (see docs/adapters.md, "Pages and live connections").
    func serveLive(_ request: WebhookRequest, subpath: String, incoming: AsyncStream<String>, socket: LiveSocket,
                   context: any AdapterContext) async

    // Sending through other channels (the web chat's email follow-up). Both optional.

    /// Channels this one relays messages through, named by its config.
    var relayTargets: [RelayTarget] { get }

    /// Whether other channels may relay messages through this one: its `send` then also gets
    /// messages of other channels' conversations (`conversation.channel` is not this channel),
    /// addressed to `recipient.channelUserID`.
    var acceptsRelays: Bool { get }

    /// A customer message of one of this channel's conversations that came in through another
    /// channel (`InboundEvent.conversationID`: an email answer to the web chat's follow-up),
    /// called after its commit so the channel can show it where it keeps its own history (the
    /// widget). `customer` is the conversation's own identity. Default: nothing.
    func conversationContinued(_ message: InboundMessage, messageID: String, via: ChannelRef, conversation: Conversation,
                               customer: Identity, context: any AdapterContext) async
}

/// The sending side of a live connection (a WebSocket) accepted by `ChannelAdapter.acceptLive`.
/// Sending never waits: frames are queued on the connection in the order given and written by
/// its event loop, so a slow peer can't hold up whoever sends (the send worker pushing a reply).
public struct LiveSocket: Sendable {
    private let transport: any LiveTransport
    public init(_ transport: any LiveTransport) { self.transport = transport }
    /// Queues one text frame; does nothing once the connection is closing or gone.
    public func send(_ text: String) { transport.send(text) }
    /// Sends a close frame after the frames already queued and closes the connection; the
    /// peer's `incoming` stream then finishes.
    public func close() { transport.close() }
}

/// What carries a `LiveSocket` (the public listener's WebSocket connections, a test double).
public protocol LiveTransport: AnyObject, Sendable {
    func send(_ text: String)
    func close()
}

extension ChannelAdapter {
    public func run(context: any AdapterContext) async throws {
        // Webhook-only adapters have no loop of their own: wait until the runtime stops us.
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
    }
    public func handleWebhook(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse { .notFound }
    public func validateSend(parts: [Part], override: JSONValue?, conversation: Conversation, context: any AdapterContext) async throws {}
    public func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws {
        throw SendRejection(code: "capability_unsupported", status: 422, detail: "\(channel.type) channels have no \(kind.rawValue)")
    }
    public func resolveAddress(_ address: String, context: any AdapterContext) async throws -> (peer: Peer, thread: String) {
        (Peer(channelUserID: address), "*")
    }
    public var publicArea: String? { nil }
    public func handlePublic(_ request: WebhookRequest, subpath: String, context: any AdapterContext) async -> WebhookResponse { .notFound }
    public func homePage(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse? { nil }
    public func acceptLive(_ request: WebhookRequest, subpath: String, context: any AdapterContext) async -> Bool { false }
    public var relayTargets: [RelayTarget] { [] }
    public var acceptsRelays: Bool { false }
    public func conversationContinued(_ message: InboundMessage, messageID: String, via: ChannelRef, conversation: Conversation,
                                      customer: Identity, context: any AdapterContext) async {}
    public func serveLive(_ request: WebhookRequest, subpath: String, incoming: AsyncStream<String>, socket: LiveSocket,
                          context: any AdapterContext) async {}
}
