import AsyncHTTPClient
import Foundation
import Logging
import MetaAdapter
import NIOCore
import Synchronization
import SwitchboardCore
import SwitchboardRuntime

/// The WhatsApp Business Cloud API channel: one business phone number (`phone_number_id`).
///
/// Inbound: `GET /webhooks/<id>` answers Meta's verification handshake; every `POST` is checked
/// against `X-Hub-Signature-256` on the raw bytes, then every entry, change, message and status
/// of the batch is committed (deduplicated on the wamid / status id) before Meta gets its 200.
/// Media is fetched afterwards through the Graph API (`GET /<media id>` → URL → authorised
/// download) into the media store and published as `message.updated`.
///
/// Outbound: one Graph `POST /<phone_number_id>/messages` per rendered part, in order. Outside the
/// 24-hour customer-service window only templates are accepted (`window_closed`, 422, before any
/// Graph call).
///
/// Customers are keyed by their WhatsApp id (`wa_id`, the phone number without `+`) when the
/// webhook carries one, else by the business-scoped user id (`user_id`, e.g. `US.1349…`); both,
/// with the username, are kept in the identity's profile.
public struct WhatsAppChannelAdapter: ChannelAdapter {
    public static let type = "whatsapp"
    public static let webhookObject = "whatsapp_business_account"
    /// The customer-service window: free-form messages only this long after the customer's last message.
    public static let serviceWindow: Double = 24 * 3600

    /// What WhatsApp shows natively (reference §2.8): text up to 4096 characters; images, video,
    /// audio, voice notes, stickers and documents; up to 3 reply buttons with titles of at most 20
    /// characters; lists of up to 10 rows (titles ≤ 24, descriptions ≤ 72); location; contact cards; reactions; templates. Quick
    /// replies have no native form and become reply buttons (≤ 3) through the renderer. A card
    /// becomes one interactive message (image header, body, ≤ 3 reply buttons or one URL button);
    /// a carousel becomes its cards one by one.
    public static let whatsappCapabilities = ChannelCapabilities(
        textFormats: [.plain], maxTextLength: 4096, mediaKinds: [.image, .video, .audio, .voice, .sticker, .file],
        maxButtons: 3, maxButtonTitle: 20, buttonActions: [.reply, .postback],
        maxQuickReplies: 0, cards: true, maxCarouselCards: 0, maxListRows: 10,
        location: true, contactCard: true, reactions: true, typing: true, markRead: true, templates: ["whatsapp"],
        // A card's call actions, and links beside reply buttons, go into its body as lines.
        cardActions: [.reply, .postback, .link, .call],
        // List rows (and section titles) ≤ 24 characters, descriptions ≤ 72: longer ones make
        // the renderer send the list as numbered text rather than cut it.
        maxListRowTitle: WhatsAppChannelAdapter.maxRowTitle, maxListRowDescription: WhatsAppChannelAdapter.maxRowDescription,
        // Reply button ids ≤ 256, list row ids ≤ 200: longer payloads go out as numbered text.
        maxPayload: 200)

    public let channel: ChannelRef
    public var capabilities: ChannelCapabilities { Self.whatsappCapabilities }
    let phoneNumberID: String
    let graph: GraphAPI
    let appSecret: MetaSecret
    let verifyToken: MetaSecret
    /// Upload stored media through `POST /<phone_number_id>/media` (default), or send it as a
    /// signed public link that Meta downloads (needs an https `server.public_url`).
    let uploadMedia: Bool
    let mediaRetryDelays: [Double]
    /// How long a download failing for a transient reason keeps being tried after the quick
    /// retries (`DeferredRetry`); 0: given up after them.
    let mediaRetryFor: Double
    let jobs = AdapterJobQueue<WhatsAppMediaJob>()
    let resumed = AdapterFlag()
    let problem = AdapterFlag()

    public init(channel: ChannelRef, phoneNumberID: String, graph: GraphAPI, appSecret: MetaSecret, verifyToken: MetaSecret,
                uploadMedia: Bool = true, mediaRetryDelays: [Double] = [1, 2, 4, 8, 16], mediaRetryFor: Double = 86_400) {
        self.channel = channel; self.phoneNumberID = phoneNumberID; self.graph = graph; self.appSecret = appSecret
        self.verifyToken = verifyToken; self.uploadMedia = uploadMedia; self.mediaRetryDelays = mediaRetryDelays
        self.mediaRetryFor = mediaRetryFor
    }

    /// Keys of a `whatsapp` channel besides the common Meta ones (`MetaChannelSettings`).
    public static let ownKeys = ["phone_number_id", "waba_id", "upload_media", "media_retry_delays", "media_retry_for"]

    /// The registry entry: reads and checks this channel's keys (problems name the key path,
    /// never a secret's value).
    public static let factory: AdapterFactory = { channel, node, env in
        node.rejectUnknownKeys(AdapterRegistry.commonKeys + MetaChannelSettings.keys + ownKeys,
                               secrets: MetaChannelSettings.secretKeys + ["access_token"])
        let settings = MetaChannelSettings(node: node)
        let phone = node.string("phone_number_id", required: true)?.trimmingCharacters(in: .whitespaces)
        if let p = phone, p.isEmpty || !p.allSatisfy(\.isNumber) {
            node["phone_number_id"].problem("expected the numeric Phone number ID from WhatsApp > API Setup (not the phone number itself)")
        }
        if let w = node.string("waba_id"), !w.allSatisfy(\.isNumber) { node["waba_id"].problem("expected the numeric WhatsApp Business Account ID") }
        let token = node.secret("access_token", required: true)?.trimmingCharacters(in: .whitespacesAndNewlines)
        let upload = node.bool("upload_media", default: true)
        let delays = node.durations("media_retry_delays", default: [1, 2, 4, 8, 16])
        // Webhook media ids are valid for 7 days: retrying longer could only end in `expired`.
        let retryFor = node.seconds("media_retry_for", default: 86_400)
        if retryFor > 7 * 86_400 { node["media_retry_for"].problem("at most 7d: WhatsApp keeps a webhook's media for 7 days") }
        guard let phone, let token, let secret = settings.appSecret, let verify = settings.verifyToken else { return nil }
        return WhatsAppChannelAdapter(channel: channel, phoneNumberID: phone,
                                      graph: settings.graphAPI(accessToken: MetaSecret(token), client: env.httpClient),
                                      appSecret: secret, verifyToken: verify, uploadMedia: upload, mediaRetryDelays: delays, mediaRetryFor: retryFor)
    }

    // MARK: webhooks

    public func handleWebhook(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse {
        await MetaWebhook.route(request, verifyToken: verifyToken, appSecret: appSecret, expectedObject: Self.webhookObject,
                                context: context) { root in
            await ingest(root, rawBody: request.body, context: context)
        }
    }

    /// Commits every item of a verified payload; 503 (Meta retries, duplicates are dropped) if the store fails.
    /// `forwarded`: another channel of the same app verified the POST and hands it on; only
    /// this number's changes are ours, and nothing is handed on again.
    func ingest(_ root: JSONValue, rawBody: [UInt8], context: any AdapterContext, forwarded: Bool = false) async -> WebhookResponse {
        var otherNumbers: [String] = []
        let items = Self.translate(root, rawBody: rawBody, phoneNumberID: phoneNumberID) { skipped in
            if !otherNumbers.contains(skipped) { otherNumbers.append(skipped) }
        } note: { note in
            context.logger.notice("WhatsApp webhook notice", metadata: ["channel": "\(channel.id)", "detail": "\(note)"])
        }
        for item in items {
            // The pending download is committed with the message itself: one group-committed
            // write per webhook, and no state for a duplicate. (The window needs nothing: the
            // store keeps the customer's latest message on the conversation, `lastInbound`.)
            var event = item.event
            if let job = item.media {
                event.stateUpdates.append(StateUpdate(key: WhatsAppMediaJob.key(job.wamid), value: JSON.string(job)))
            }
            let result: EmitResult
            do { result = try await context.emit(event) } catch {
                context.logger.error("cannot store WhatsApp webhook item", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
                return .text(503, "temporarily unable to store the event; retry")
            }
            guard case .committed = result else { continue }
            if let job = item.media { jobs.push(job) }
        }
        if forwarded { return .ok }
        // The app's other numbers: their channels store their changes.
        return await MetaWebhook.handOn(otherNumbers, from: channel, context: context, kind: "WhatsApp phone number", sibling: { number in
            context.channels(ofType: Self.type).lazy
                .compactMap { h in (h.adapter as? WhatsAppChannelAdapter).map { ($0, h.context) } }
                .first { $0.0.phoneNumberID == number && $0.0.appSecret.matches(appSecret) }
        }, ingest: { adapter, siblingContext in
            await adapter.ingest(root, rawBody: rawBody, context: siblingContext, forwarded: true)
        })
    }

    /// Where versions before the store kept `Conversation.lastInbound` wrote the latest customer
    /// message: "<ms> <wamid>", by the platform's timestamp. Read for conversations with no
    /// customer message since the upgrade; no longer written.
    static func lastInboundKey(_ conversationID: String) -> String { "last_inbound:\(conversationID)" }
    static func parseLastInbound(_ s: String) -> (at: Timestamp, wamid: String)? {
        let f = s.split(separator: " ", maxSplits: 1)
        guard f.count == 2, let ms = Int64(f[0]) else { return nil }
        return (Timestamp(milliseconds: ms), String(f[1]))
    }

    /// The customer's latest message: its time (the 24-hour window) by the platform's clock, so
    /// a late redelivery does not extend it, and its wamid (mark-as-read and typing need one);
    /// else the conversation's `last_inbound_at`. Of the store's record and one written by an
    /// earlier version, the later counts: the first message after an upgrade may be a late
    /// redelivery, older than the last one before it.
    func lastInbound(_ conversation: Conversation, context: any AdapterContext) async -> (at: Timestamp, wamid: String?)? {
        let stored = conversation.lastInbound.map { (at: $0.sentAt, wamid: $0.externalID) }
        let legacy = (try? await context.state.get(Self.lastInboundKey(conversation.id))).flatMap { $0 }.flatMap(Self.parseLastInbound)
            .map { (at: $0.at, wamid: Optional($0.wamid)) }
        switch (stored, legacy) {
        case let (s?, l?): return l.at > s.at ? l : s
        case let (s?, nil): return s
        case let (nil, l?): return l
        case (nil, nil): return conversation.lastInboundAt.map { ($0, nil) }
        }
    }

    // MARK: rules before queueing

    /// Templates may go out any time; anything else only within 24 hours of the customer's last
    /// message (Meta would answer 131047). Refused here, before anything is queued or sent.
    /// A native payload (`overrides.whatsapp`) is sent instead of the parts, so it is what
    /// counts: all templates go out any time; a malformed one is refused now.
    public func validateSend(parts: [Part], override: JSONValue?, conversation: Conversation, context: any AdapterContext) async throws {
        let templatesOnly: Bool
        if let override {
            let messages: [JSONObject]
            do { messages = try Self.overrideMessages(override) } catch let e as SendError {
                throw SendRejection(code: e.code, status: 422, detail: e.message)
            }
            templatesOnly = messages.allSatisfy { $0["type"]?.stringValue == "template" }
        } else {
            for (i, part) in parts.enumerated() {
                guard case .template(let t) = part, t.channel == Self.type else { continue }
                if t.name.isEmpty { throw SendRejection(code: "invalid_request", status: 422, detail: "part \(i): a WhatsApp template needs a name") }
                if (t.language ?? "").isEmpty {
                    throw SendRejection(code: "invalid_request", status: 422, detail: "part \(i): a WhatsApp template needs a language (e.g. en_US)")
                }
            }
            templatesOnly = !parts.isEmpty && parts.allSatisfy { if case .template(let t) = $0 { t.channel == Self.type } else { false } }
        }
        if templatesOnly { return }
        let last = await lastInbound(conversation, context: context)
        let age = last.map { Double(Timestamp.now().milliseconds - $0.at.milliseconds) / 1000 }
        guard let age, age < Self.serviceWindow else {
            let when = last.map { "the customer last wrote at \($0.at.rfc3339)" } ?? "the customer has not written yet"
            throw SendRejection(code: "window_closed", status: 422,
                                detail: "WhatsApp's 24-hour customer-service window is closed (\(when)); only a template can be sent (a template part, or a native template in overrides.whatsapp)")
        }
    }

    /// A phone number (`+1 650-555-1234`, digits with an optional `+`) or a business-scoped user id (`US.1349…`).
    public func resolveAddress(_ address: String, context: any AdapterContext) async throws -> (peer: Peer, thread: String) {
        let a = address.trimmingCharacters(in: .whitespaces)
        if Self.isBSUID(a) { return (Peer(channelUserID: a, profile: ["user_id": .string(a)]), "*") }
        let digits = a.filter { !" +-().".contains($0) }
        guard (6...15).contains(digits.count), digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else {
            throw SendRejection(code: "invalid_request", status: 422,
                                detail: "a WhatsApp address is a phone number in international format (e.g. +16505551234) or a business-scoped user id (e.g. US.13491208655302741918)")
        }
        return (Peer(channelUserID: digits, profile: ["wa_id": .string(digits)]), "*")
    }

    /// `CC.<alphanumerics>`: a business-scoped user id rather than a phone number.
    static func isBSUID(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count > 3, u[2] == UInt8(ascii: "."), u[0...1].allSatisfy({ (65...90).contains($0) }) else { return false }
        return u[3...].allSatisfy { (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || $0 == UInt8(ascii: ".") }
    }

    // MARK: background work

    /// Runs the media downloads queued by webhooks (and, once, those a restart interrupted).
    public func run(context: any AdapterContext) async throws {
        if !resumed.exchange(true) {
            for (_, value) in (try? await context.state.entries(prefix: WhatsAppMediaJob.keyPrefix)) ?? [] {
                if let job = try? JSON.decode(WhatsAppMediaJob.self, from: Data(value.utf8)) { jobs.push(job) }
            }
        }
        await jobs.drain(maxConcurrent: 4) { job in await self.downloadMedia(job, context: context) }
    }

    /// Records an expired token (→ channel `auth_expired`) or clears it after a success.
    func noteGraph(_ error: GraphError?, context: any AdapterContext) async {
        if let error, error.isAuthExpired {
            problem.set(true)
            await context.reportStatus(.authExpired, detail: error.message)
        } else if error == nil {
            if problem.exchange(false) { await context.reportStatus(.connected, detail: nil) }
        }
    }
}
