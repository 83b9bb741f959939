import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardCore
import SwitchboardDelivery
import SwitchboardRuntime

/// A generic JSON-over-HTTPS channel, for systems Switchboard has no adapter for (an in-house
/// app, a kiosk, an SMS gateway with a script in front): they POST customer messages to
/// `/webhooks/<id>` signed with a shared secret, and receive the helpdesk's replies as signed
/// POSTs to `outbound_url`. The same idea as Chatwoot's "API channel".
///
/// Inbound body (one object, or `{"events": [...]}` for a batch):
/// `{"id": "ext-1", "from": {"id": "user-42", "name": "Jane"}, "thread": "*", "text": "hi",
///   "parts": [...], "reply_to": "ext-0", "timestamp": "2025-05-01T10:15:30.123Z"}`
/// plus `"type": "status"` (`{"message_id": "<our external id>", "status": "delivered"}`) and
/// `"type": "typing"` (`{"typing": true}`).
/// Signature: `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.
public struct WebhookChannelAdapter: ChannelAdapter {
    public let channel: ChannelRef
    public let capabilities: ChannelCapabilities
    /// The shared secret, keyed once: it checks every inbound webhook and signs every reply.
    let mac: KeyedHMAC
    let outboundURL: String?
    let client: HTTPClient
    let timeout: TimeAmount
    let consoleWrite: @Sendable (String) -> Void

    public static let type = "webhook"
    public static let signatureHeader = "x-switchboard-signature"

    public static let richCapabilities = ChannelCapabilities(
        textFormats: [.plain, .markdown], mediaKinds: [.image, .video, .audio, .voice, .file, .sticker], maxButtons: 10,
        buttonActions: [.reply, .postback, .link, .call], maxQuickReplies: 13, cards: true, maxCarouselCards: 10, maxListRows: 10,
        location: true, contactCard: true, reactions: true, typing: true, markRead: true)

    public init(channel: ChannelRef, secret: [UInt8], outboundURL: String?, capabilities: ChannelCapabilities = Self.richCapabilities,
                client: HTTPClient, timeout: TimeAmount = .seconds(15),
                consoleWrite: @escaping @Sendable (String) -> Void = { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }) {
        self.channel = channel; self.mac = KeyedHMAC(key: secret); self.outboundURL = outboundURL; self.capabilities = capabilities
        self.client = client; self.timeout = timeout; self.consoleWrite = consoleWrite
    }

    /// The registry entry: reads and checks this channel's keys.
    public static let factory: AdapterFactory = { channel, node, env in
        node.rejectUnknownKeys(AdapterRegistry.commonKeys + ["outbound_url", "rich", "timeout"], secrets: ["secret"])
        let secret = node.secret("secret", required: true)
        if let s = secret, s.count < 16 { node["secret"].problem("too short: use at least 16 random characters") }
        let url = node.string("outbound_url")
        if let u = url, !(u.hasPrefix("http://") || u.hasPrefix("https://") || u.hasPrefix("http+unix://")) {
            node["outbound_url"].problem("expected an http://, https:// or http+unix:// URL")
        }
        let rich = node.bool("rich", default: true)
        let timeout = node.seconds("timeout", default: 15)
        guard let secret else { return nil }
        return WebhookChannelAdapter(channel: channel, secret: Array(secret.utf8), outboundURL: url,
                                     capabilities: rich ? richCapabilities : .textOnly, client: env.httpClient,
                                     timeout: .milliseconds(Int64(timeout * 1000)))
    }

    /// Checks `sha256=<hex>` against the body in constant time.
    static func verify(_ body: [UInt8], header: String, mac keyed: KeyedHMAC) -> Bool {
        let h = header.trimmingSpacesAndTabs
        guard h.hasPrefix("sha256="), let mac = Hex.decode(h.dropFirst(7)), mac.count == 32 else { return false }
        return keyed.isValid(mac, for: body)
    }

    public static func sign(_ body: [UInt8], secret: [UInt8]) -> String { signature(body, mac: KeyedHMAC(key: secret)) }

    static func signature(_ body: [UInt8], mac: KeyedHMAC) -> String {
        "sha256=" + Hex.encode(mac.code(body))
    }

    // MARK: inbound

    public func handleWebhook(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse {
        guard request.method == "POST" else { return .text(405, "POST only") }
        guard let header = request.header(Self.signatureHeader) else {
            context.signatureFailed(reason: "missing \(Self.signatureHeader)")
            return .unauthorized
        }
        guard Self.verify(request.body, header: header, mac: mac) else {
            context.signatureFailed(reason: "signature mismatch")
            return .unauthorized
        }
        let root: JSONValue
        do { root = try JSONValue.parse(request.body) } catch {
            return .text(400, "body is not valid JSON")
        }
        let items: [JSONValue] = root["events"]?.arrayValue ?? [root]
        var results: [JSONValue] = []
        for (i, item) in items.enumerated() {
            let event: InboundEvent
            do { event = try Self.parse(item, raw: items.count == 1 ? request.body : Array((try? JSON.encode(item)) ?? Data())) } catch {
                return .text(400, "event \(i): \(error)")
            }
            do {
                switch try await context.emit(event) {
                case .committed(_, let messageID, let conversationID):
                    var o: JSONObject = ["result": "committed"]
                    if let messageID { o["message_id"] = .string(messageID) }
                    if let conversationID { o["conversation_id"] = .string(conversationID) }
                    results.append(.object(o))
                case .duplicate: results.append(["result": "duplicate"])
                case .ignored(let reason): results.append(["result": "ignored", "reason": .string(reason)])
                }
            } catch {
                // Not committed: answer 503 so the sender retries (it will be deduplicated).
                context.logger.error("cannot store webhook event", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
                return .text(503, "temporarily unable to store the event; retry")
            }
        }
        let body: JSONValue = items.count == 1 && root["events"] == nil ? results[0] : ["results": .array(results)]
        // Written straight from the tree: strings and objects only, which cannot fail to encode.
        var answer = JSONWriter(capacity: 160)
        try? answer.value(body)
        return WebhookResponse(status: 200, headers: ["content-type": "application/json"], body: answer.bytes)
    }

    struct ParseError: Error, CustomStringConvertible { var description: String }

    static func parse(_ v: JSONValue, raw: [UInt8]) throws -> InboundEvent {
        guard let from = v["from"], let userID = from["id"]?.stringValue ?? from["id"]?.intValue.map({ String($0) }) else {
            throw ParseError(description: "from.id is required")
        }
        let peer = Peer(channelUserID: userID, displayName: from["name"]?.stringValue, profile: from["profile"]?.objectValue)
        let thread = v["thread"]?.stringValue ?? "*"
        let occurred = v["timestamp"]?.stringValue.flatMap { Timestamp(rfc3339: $0) }
        let id = v["id"]?.stringValue
        // Already parsed here: hand the tree along so the store doesn't parse the bytes again.
        let rawPayload = RawPayload(format: "json", bytes: raw, parsed: v)
        switch v["type"]?.stringValue ?? "message" {
        case "message":
            var parts: [Part] = []
            if let p = v["parts"] {
                do { parts = try p.decode([Part].self) } catch { throw ParseError(description: "parts: \(error)") }
            }
            if let text = v["text"]?.stringValue, !text.isEmpty { parts.insert(.text(text), at: 0) }
            guard !parts.isEmpty else { throw ParseError(description: "a message needs text or parts") }
            let origin: Origin = v["echo"]?.boolValue == true ? .echo : .customer
            // A customer's message is keyed by its own id: the stored message (its external id
            // row) is then the dedupe record, and no separate key row is written for it — one
            // randomly placed index page less per message for the single writer (a quarter of
            // the pages each commit wrote). An echo keeps a key of its own: its id may be that
            // of the reply it echoes, which is stored already and must not swallow it.
            let dedupeKey = id.map { origin == .customer ? $0 : "msg:\($0)" }
            return InboundEvent(.message(InboundMessage(origin: origin, externalID: id, parts: parts, replyToExternalID: v["reply_to"]?.stringValue)),
                                peer: peer, thread: thread, dedupeKey: dedupeKey, occurredAt: occurred, raw: rawPayload,
                                channelData: v["channel_data"]?.objectValue)
        case "status":
            guard let target = v["message_id"]?.stringValue, let status = v["status"]?.stringValue else {
                throw ParseError(description: "a status needs message_id and status")
            }
            let error = v["error"].flatMap { e -> StatusError? in
                guard let msg = e["message"]?.stringValue else { return nil }
                return StatusError(code: e["code"]?.stringValue ?? "channel_error", message: msg, retryable: false)
            }
            return InboundEvent(.status(externalID: target, status: DeliveryStatus(rawValue: status), error: error), peer: peer, thread: thread,
                                dedupeKey: id.map { "status:\($0)" } ?? "status:\(target):\(status)", occurredAt: occurred)
        case "typing":
            return InboundEvent(.typing(started: v["typing"]?.boolValue ?? true), peer: peer, thread: thread, occurredAt: occurred)
        case let other:
            throw ParseError(description: "unknown type \(other) (message, status or typing)")
        }
    }

    // MARK: outbound

    public func send(_ message: OutboundMessage, context: any AdapterContext) async throws -> SendResult {
        var payload: JSONObject = [
            "message_id": .string(message.message.id),
            "conversation_id": .string(message.conversation.id),
            "to": ["id": .string(message.recipient.channelUserID)],
            "thread": .string(message.conversation.thread),
            "parts": try JSONValue.from(message.rendered.parts),
            "text": .string(message.rendered.textFallback),
        ]
        if let name = message.recipient.displayName { payload["to"] = ["id": .string(message.recipient.channelUserID), "name": .string(name)] }
        if let o = message.rendered.override { payload["override"] = o }
        if let r = message.replyToExternalID { payload["reply_to"] = .string(r) }
        let body = try JSON.encode(payload)
        guard let url = outboundURL else {
            // No receiving system configured (the demo): show the reply on the daemon's console.
            consoleWrite("→ \(channel.id) to \(message.recipient.displayName ?? message.recipient.channelUserID): \(message.rendered.textFallback)")
            return SendResult(externalIDs: ["console-\(message.message.id)"])
        }
        var req = HTTPClientRequest(url: url)
        req.method = .POST
        req.headers.add(name: "content-type", value: "application/json")
        req.headers.add(name: Self.signatureHeader, value: Self.signature(Array(body), mac: mac))
        // Stable across retries, so the receiver can drop a repeated delivery.
        req.headers.add(name: "idempotency-key", value: message.idempotencyKey)
        req.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        do { response = try await client.execute(req, timeout: timeout) } catch {
            throw SendError(code: "channel_unreachable", message: "\(error)", retryable: true)
        }
        let responseBody = try? await response.body.collect(upTo: 64 * 1024)
        let code = Int(response.status.code)
        switch code {
        case 200..<300:
            let answer = responseBody.flatMap { try? JSONValue.parse(Data($0.readableBytesView)) }
            return SendResult(externalIDs: [answer?["id"]?.stringValue ?? message.message.id])
        case 429, 500..<600:
            let after = response.headers.first(name: "retry-after").flatMap(Double.init)
            throw SendError(code: code == 429 ? "rate_limited" : "channel_error", channelCode: String(code),
                            message: "outbound_url answered \(code)", retryable: true, retryAfter: after)
        case 401, 403:
            throw SendError(code: "auth_expired", channelCode: String(code), message: "outbound_url refused our signature (\(code))",
                            retryable: true, channelState: .authExpired)
        default:
            throw SendError(code: "rejected", channelCode: String(code), message: "outbound_url answered \(code)", retryable: false)
        }
    }

    public func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws {
        guard let url = outboundURL else { return }
        let body = try JSON.encode(["activity": JSONValue.string(kind.rawValue), "conversation_id": .string(conversation.id),
                                    "to": ["id": .string(recipient.channelUserID)]] as JSONObject)
        var req = HTTPClientRequest(url: url)
        req.method = .POST
        req.headers.add(name: "content-type", value: "application/json")
        req.headers.add(name: Self.signatureHeader, value: Self.signature(Array(body), mac: mac))
        req.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        do { response = try await client.execute(req, timeout: timeout) } catch {
            throw SendError(code: "channel_unreachable", message: "\(error)", retryable: true)
        }
        _ = try? await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw SendError(code: "channel_error", message: "outbound_url answered \(response.status.code)", retryable: response.status.code >= 500)
        }
    }
}

