import Foundation
import SwitchboardCore
import SwitchboardStore

/// A problem the API reports as `application/problem+json` with a stable `code`.
public struct APIProblem: Error, Sendable, Hashable {
    public var status: Int
    public var code: String
    public var detail: String
    public init(_ status: Int, _ code: String, _ detail: String) { self.status = status; self.code = code; self.detail = detail }
    public static func notFound(_ what: String) -> APIProblem { APIProblem(404, "not_found", "\(what) not found") }
    public static func invalid(_ detail: String) -> APIProblem { APIProblem(400, "invalid_request", detail) }
}

/// `POST /v1/conversations/{id}/messages`.
public struct SendRequest: Codable, Sendable {
    public var parts: [Part]
    public var fallbackText: String?
    public var overrides: [String: JSONValue]?
    public var metadata: JSONObject?
    public var replyTo: MessageRef?
    public var sender: Participant?
    public var policy: Policy?
    public struct Policy: Codable, Sendable { public var degrade: String? }
    enum CodingKeys: String, CodingKey {
        case parts, overrides, metadata, sender, policy
        case fallbackText = "fallback_text", replyTo = "reply_to"
    }
}

/// `POST /v1/conversations`.
public struct OpenConversationRequest: Codable, Sendable {
    public var channelID: String
    /// The customer's address on the channel (phone number, PSID, email address…).
    public var address: String
    public var displayName: String?
    public var message: SendRequest?
    enum CodingKeys: String, CodingKey { case address, message, channelID = "channel_id", displayName = "display_name" }
}

extension Runtime {
    /// Validates, renders for the conversation's channel, stores and queues a reply. The
    /// response is the stored 202 answer (the same one again for a repeated idempotency key).
    public func send(conversationID: String, request: SendRequest, rawBody: [UInt8], idempotencyKey: String?, scope: String) async throws -> SendAccepted {
        var idem: (scope: String, key: String, requestHash: String)? = nil
        if let key = idempotencyKey {
            guard !key.isEmpty, key.count <= 255 else { throw APIProblem.invalid("Idempotency-Key must be 1 to 255 characters") }
            // Hash the request as decoded and re-encoded with sorted keys: the same request sent
            // with other spacing or key order is the same request.
            let hash = sha256Hex(Data(conversationID.utf8) + ((try? JSON.encode(request)) ?? Data(rawBody)))
            idem = (scope, key, hash)
            do {
                if let earlier = try await store.idempotentAnswer(scope: scope, key: key, requestHash: hash) { return earlier }
            } catch is IdempotencyError {
                throw APIProblem(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
            }
        }
        guard !request.parts.isEmpty || request.overrides != nil else { throw APIProblem.invalid("parts must not be empty") }
        if let m = request.metadata, (try? JSON.encode(m).count) ?? 0 > 4096 {
            throw APIProblem.invalid("metadata must be at most 4 KiB of JSON")
        }
        guard let conversation = try await store.conversation(conversationID) else { throw APIProblem.notFound("conversation \(conversationID)") }
        // Empty parts only with a native payload for this conversation's channel type: one for
        // another type is ignored here, which would leave nothing to send.
        guard !request.parts.isEmpty || request.overrides?[conversation.channel.type] != nil else {
            throw APIProblem.invalid("parts must not be empty (overrides has no entry for \(conversation.channel.type))")
        }
        guard let entry = hub.entry(conversation.channel.id) else {
            throw APIProblem(409, "channel_unavailable", "channel \(conversation.channel.id) is not configured")
        }
        var request = request
        request.parts = await withStoredMediaDetails(request.parts)
        do {
            try await entry.adapter.validateSend(parts: request.parts, override: request.overrides?[conversation.channel.type],
                                                 conversation: conversation, context: entry.context)
        } catch let r as SendRejection {
            throw APIProblem(r.status, r.code, r.detail)
        }
        let rendered: RenderedMessage
        do {
            rendered = try Renderer.render(parts: request.parts, fallbackText: request.fallbackText,
                                           override: request.overrides?[conversation.channel.type],
                                           capabilities: entry.adapter.capabilities, channelType: conversation.channel.type,
                                           policy: request.policy?.degrade == "deny" ? .deny : .allow,
                                           mediaLink: entry.context.customerMediaLink)
        } catch {
            throw APIProblem(error.code == "invalid_request" ? 400 : 422, error.code, error.detail)
        }
        do {
            let accepted = try await store.enqueueOutbound(OutboundRequest(
                conversation: conversation, parts: request.parts, rendered: rendered, metadata: request.metadata,
                replyTo: request.replyTo, sender: request.sender, idempotency: idem))
            outboundSignal.notify()
            return accepted
        } catch is IdempotencyError {
            throw APIProblem(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
        }
    }

    /// Media parts that name an uploaded file (`media_id`) get its type, size and name from the
    /// media store where the helpdesk left them out, so adapters can choose by them (Messenger
    /// uploads an image too large to send by link) and the stored message says what was sent.
    /// An unknown id is left as it is, for the adapter to refuse.
    func withStoredMediaDetails(_ parts: [Part]) async -> [Part] {
        var out = parts
        for i in out.indices {
            guard case .media(var m) = out[i], let id = m.mediaID, m.size == nil || m.mimeType == nil || m.filename == nil,
                  let info = try? await media.info(id) else { continue }
            if m.size == nil { m.size = info.size }
            if m.mimeType == nil { m.mimeType = info.mimeType }
            if m.filename == nil { m.filename = info.filename }
            out[i] = .media(m)
        }
        return out
    }

    public func activity(conversationID: String, kind: ActivityKind) async throws {
        guard let conversation = try await store.conversation(conversationID) else { throw APIProblem.notFound("conversation \(conversationID)") }
        guard let entry = hub.entry(conversation.channel.id) else {
            throw APIProblem(409, "channel_unavailable", "channel \(conversation.channel.id) is not configured")
        }
        guard let recipient = try await store.identity(conversation.identityID) else { throw APIProblem.notFound("identity") }
        do {
            try await entry.adapter.activity(kind, conversation: conversation, recipient: recipient, context: entry.context)
        } catch let r as SendRejection {
            throw APIProblem(r.status, r.code, r.detail)
        } catch let e as SendError {
            throw APIProblem(e.retryable ? 503 : 502, e.code, e.message)
        }
    }

    public func openConversation(_ req: OpenConversationRequest) async throws -> (Conversation, Bool) {
        guard let entry = hub.entry(req.channelID) else { throw APIProblem.notFound("channel \(req.channelID)") }
        guard !req.address.trimmingCharacters(in: .whitespaces).isEmpty else { throw APIProblem.invalid("address must not be empty") }
        let resolved: (peer: Peer, thread: String)
        do {
            resolved = try await entry.adapter.resolveAddress(req.address, context: entry.context)
        } catch let r as SendRejection {
            throw APIProblem(r.status, r.code, r.detail)
        }
        var peer = resolved.peer
        if peer.displayName == nil { peer.displayName = req.displayName }
        let result = try await store.openConversation(channel: entry.adapter.channel, peer: peer, thread: resolved.thread, ctx: pipeline.eventContext)
        // A new conversation, or an identity that gained a name: events for the sinks.
        eventSignal.notify()
        return result
    }
}
