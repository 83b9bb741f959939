import Foundation
import Logging
import Metrics
import Synchronization
import SwitchboardCore
import SwitchboardDelivery
import SwitchboardStore

/// A channel's public state (`GET /v1/channels`).
public struct ChannelInfo: Codable, Sendable, Hashable {
    public var id: String
    public var type: String
    public var state: ChannelState
    public var detail: String?
    public var since: Timestamp
    public var capabilities: ChannelCapabilities
    enum CodingKeys: String, CodingKey { case id, type, state, detail, since, capabilities }
}

extension AdapterContext {
    /// For the renderer: a link a customer can open to a stored file the channel can't attach
    /// (signed, valid 30 days), when the public URL is https — a plain-http or loopback address
    /// is no link to give a customer.
    var customerMediaLink: @Sendable (String) -> String? {
        let context = self
        return { id in context.publicURL.hasPrefix("https://") ? context.publicMediaURL(id, validFor: 30 * 86400) : nil }
    }
}

/// The context handed to each adapter: everything it may use, nothing more.
public struct RuntimeAdapterContext: AdapterContext {
    public let channel: ChannelRef
    public let logger: Logger
    public let publicURL: String
    public let state: any AdapterStateStore
    public let media: any MediaStore
    let pipeline: IngestPipeline
    let hub: ChannelHub
    let mediaSigner: MediaURLSigner
    let outboundSignal: ChangeSignal

    public func publicMediaURL(_ mediaID: String, validFor seconds: Double) -> String {
        mediaSigner.url(base: publicURL, mediaID: mediaID, validFor: seconds)
    }

    public func emit(_ event: InboundEvent) async throws -> EmitResult {
        let result = try await pipeline.emit(InboundWork(channel: channel, event: event))
        // The customer's own words (not an auto-reply or a bounce) show in the owner's history.
        if event.conversationID != nil, case .message(let m) = event.kind, m.origin == .customer,
           case .committed(_, let messageID?, let conversationID?) = result, conversationID == event.conversationID {
            await tellOwner(m, messageID: messageID, conversationID: conversationID)
        }
        return result
    }

    /// A message filed in another channel's conversation: that channel shows it too.
    func tellOwner(_ message: InboundMessage, messageID: String, conversationID: String) async {
        do {
            guard let conversation = try await hub.store.conversation(conversationID), conversation.channel.id != channel.id,
                  let owner = hub.entry(conversation.channel.id),
                  let customer = try await hub.store.identity(conversation.identityID) else { return }
            await owner.adapter.conversationContinued(message, messageID: messageID, via: channel, conversation: conversation,
                                                      customer: customer, context: owner.context)
        } catch {
            logger.warning("cannot show a message in its conversation's own channel",
                           metadata: ["channel": "\(channel.id)", "conversation": "\(conversationID)", "error": "\(error)"])
        }
    }

    public func relay(_ request: RelayRequest) async throws -> String {
        guard let target = hub.entry(request.channelID) else {
            throw RelayError("channel \(request.channelID) is not configured")
        }
        guard target.adapter.acceptsRelays else {
            throw RelayError("channel \(request.channelID) (\(target.adapter.channel.type)) can't send on behalf of other channels")
        }
        guard let conversation = try await hub.store.conversation(request.conversationID) else {
            throw RelayError("conversation \(request.conversationID) not found")
        }
        // Only this channel's own conversations: an adapter never writes into another's.
        guard conversation.channel.id == channel.id else {
            throw RelayError("conversation \(request.conversationID) belongs to channel \(conversation.channel.id)")
        }
        let rendered: RenderedMessage
        do {
            rendered = try Renderer.render(parts: request.parts, fallbackText: nil, override: nil, capabilities: target.adapter.capabilities,
                                           channelType: target.adapter.channel.type, policy: .allow,
                                           mediaLink: target.context.customerMediaLink)
        } catch {
            throw RelayError("cannot render the message for \(request.channelID): \(error.detail)")
        }
        let id = try await hub.store.enqueueRelay(conversation: conversation, via: target.adapter.channel, recipient: request.recipient,
                                                  parts: request.parts, rendered: rendered, metadata: request.metadata,
                                                  idempotencyKey: request.idempotencyKey)
        outboundSignal.notify()
        return id
    }

    public func channels(ofType type: String) -> [ChannelHandle] {
        hub.all.filter { $0.info.type == type && $0.info.id != channel.id }.map { ChannelHandle(adapter: $0.adapter, context: $0.context) }
    }

    public func reportStatus(_ state: ChannelState, detail: String?) async {
        await hub.setStatus(channel, state: state, detail: detail)
    }

    public func signatureFailed(reason: String) {
        Counter(label: "switchboard_webhook_signature_failures_total", dimensions: [("channel", channel.id)]).increment()
        logger.warning("webhook rejected: bad signature", metadata: ["channel": "\(channel.id)", "reason": "\(reason)"])
    }
}

/// The running channels: their adapters, contexts and states. The HTTP layer looks adapters up
/// here for webhooks and sends.
public final class ChannelHub: Sendable {
    public struct Entry: Sendable {
        public var adapter: any ChannelAdapter
        public var context: RuntimeAdapterContext
        public var info: ChannelInfo
    }
    private let entries = Mutex<[String: Entry]>([:])
    let store: Store
    let pipeline: IngestPipeline
    let eventSignal: ChangeSignal

    init(store: Store, pipeline: IngestPipeline, eventSignal: ChangeSignal) {
        self.store = store; self.pipeline = pipeline; self.eventSignal = eventSignal
    }

    public func entry(_ id: String) -> Entry? { entries.withLock { $0[id] } }
    public var all: [Entry] { entries.withLock { Array($0.values) }.sorted { $0.info.id < $1.info.id } }

    func put(_ e: Entry) { entries.withLock { $0[e.info.id] = e } }
    func remove(_ id: String) { entries.withLock { _ = $0.removeValue(forKey: id) } }

    /// Records a state change and publishes `channel.status` (only on change, so a flapping
    /// report doesn't flood the helpdesk).
    public func setStatus(_ channel: ChannelRef, state: ChannelState, detail: String?) async {
        let changed = entries.withLock { e -> Bool in
            guard var entry = e[channel.id] else { return false }
            guard entry.info.state != state || entry.info.detail != detail else { return false }
            entry.info.state = state; entry.info.detail = detail; entry.info.since = .now()
            e[channel.id] = entry
            return true
        }
        guard changed else { return }
        let data = Open(ChannelStatusFields(channel: channel, state: state, detail: detail, at: .now()))
        do {
            _ = try await store.appendStandaloneEvent(type: .channelStatus, conversationID: nil, channel: channel,
                                                      data: JSON.encode(data), ctx: pipeline.eventContext)
            eventSignal.notify()
        } catch {
            entry(channel.id)?.context.logger.error("cannot record channel status", metadata: ["error": "\(error)"])
        }
    }
}
