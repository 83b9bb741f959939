import Foundation
import NIOPosix
import Synchronization
@testable import SwitchboardCore
@testable import SwitchboardRuntime
import WebhookAdapter

/// A test-only channel: records every send and fails on demand. Tests emit inbound events
/// through its context, exactly as a real adapter does.
final class RecordingAdapter: ChannelAdapter {
    let channel: ChannelRef
    let capabilities: ChannelCapabilities
    enum Behaviour: Sendable { case succeed, failRetryable(times: Int), failPermanent, rejectWindow, slow(Duration) }
    private let state = Mutex<(sent: [OutboundMessage], attempts: Int, behaviour: Behaviour, activities: [ActivityKind])>(([], 0, .succeed, []))

    init(channel: ChannelRef, capabilities: ChannelCapabilities) { self.channel = channel; self.capabilities = capabilities }

    var sent: [OutboundMessage] { state.withLock { $0.sent } }
    var attempts: Int { state.withLock { $0.attempts } }
    var activities: [ActivityKind] { state.withLock { $0.activities } }
    func setBehaviour(_ b: Behaviour) { state.withLock { $0.behaviour = b; $0.attempts = 0 } }

    func validateSend(parts: [Part], override: JSONValue?, conversation: Conversation, context: any AdapterContext) async throws {
        if case .rejectWindow = state.withLock({ $0.behaviour }) {
            throw SendRejection(code: "window_closed", status: 422, detail: "the reply window has closed")
        }
    }

    func send(_ message: OutboundMessage, context: any AdapterContext) async throws -> SendResult {
        if case .slow(let d) = state.withLock({ $0.behaviour }) {
            state.withLock { $0.attempts += 1 }
            try await Task.sleep(for: d)
            state.withLock { $0.sent.append(message) }
            return SendResult(externalIDs: ["ext-\(message.message.id)"])
        }
        let outcome: Result<Void, SendError> = state.withLock { s in
            s.attempts += 1
            switch s.behaviour {
            case .failRetryable(let n) where s.attempts <= n:
                return .failure(SendError(code: "rate_limited", channelCode: "130429", message: "slow down", retryable: true, retryAfter: 0.05))
            case .failPermanent:
                return .failure(SendError(code: "invalid_recipient", channelCode: "131026", message: "not on the channel", retryable: false))
            default:
                s.sent.append(message)
                return .success(())
            }
        }
        try outcome.get()
        return SendResult(externalIDs: ["ext-\(message.message.id)"])
    }

    func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws {
        state.withLock { $0.activities.append(kind) }
    }

    /// Every webhook request it was given, in order.
    var webhooks: [WebhookRequest] { webhookState.withLock { $0.requests } }
    /// How long each webhook takes to answer.
    func setWebhookDelay(_ d: Duration) { webhookState.withLock { $0.delay = d } }
    private let webhookState = Mutex<(requests: [WebhookRequest], delay: Duration)>(([], .zero))

    /// Records the request and answers where it ran: "event loop" on a NIO event loop's thread,
    /// else "elsewhere".
    func handleWebhook(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse {
        let delay = webhookState.withLock { $0.requests.append(request); return $0.delay }
        if delay > .zero { try? await Task.sleep(for: delay) }
        let where_ = MultiThreadedEventLoopGroup.currentEventLoop != nil ? "event loop" : "elsewhere"
        return WebhookResponse(status: 200, headers: ["content-type": "text/plain"], body: Array(where_.utf8))
    }
}

/// Adapter instances by channel id, so a test can reach the one the daemon built.
enum TestRegistry {
    static let adapters = Mutex<[String: RecordingAdapter]>([:])

    static func make() -> AdapterRegistry {
        var r = AdapterRegistry()
        r.register("recording") { channel, node, _ in
            let rich = node.bool("rich", default: false)
            let a = RecordingAdapter(channel: channel, capabilities: rich ? WebhookChannelAdapter.richCapabilities : .textOnly)
            adapters.withLock { $0[channel.id] = a }
            return a
        }
        r.register(WebhookChannelAdapter.type, WebhookChannelAdapter.factory)
        return r
    }

    static func adapter(_ id: String) -> RecordingAdapter { adapters.withLock { $0[id]! } }
}

extension AdapterContext {
    /// A customer text message, the way an adapter emits one.
    func customerSays(_ text: String, from user: String, name: String? = nil, id: String? = nil) async throws -> EmitResult {
        let ext = id ?? "ext-" + UUID().uuidString
        return try await emit(InboundEvent(.message(InboundMessage(externalID: ext, parts: [.text(text)])),
                                           peer: Peer(channelUserID: user, displayName: name), dedupeKey: ext,
                                           raw: .json(Data("{\"text\":\(JSON.string(text))}".utf8))))
    }
}
