import AsyncHTTPClient
import Foundation
import Logging
import MetaAdapter
import NIOCore
import Synchronization
import SwitchboardCore
import SwitchboardRuntime

/// How a Messenger-Platform channel (a Facebook Page, or an Instagram professional account) is
/// configured, as read by the adapters' factories.
public struct MessagingSettings: Sendable {
    public var flavor: MessengerPlatform.Flavor
    /// The Page id / Instagram account id: `entry[].id` and `recipient.id` of our events.
    public var ownID: String
    /// The Graph node sends go to: the Page id (Messenger) or `me` (Instagram, which works with
    /// both a Page token and an Instagram-Login token).
    public var sendNode: String
    public var accessToken: MetaSecret
    public var meta: MetaChannelSettings
    /// Replies 24 h – 7 d after the customer's last message go out tagged `HUMAN_AGENT`.
    public var humanAgentTag: Bool
    /// Our Meta app id: echoes carrying it are our own sends.
    public var appID: String?
    /// Copy inbound attachments into the media store (else keep only the CDN links).
    public var storeMedia: Bool
    public var appSecretProof: Bool
    public var mediaRetryDelays: [Double]
    /// How long an attachment download failing for a transient reason keeps being tried after
    /// the quick retries (`DeferredRetry`); 0: given up after them.
    public var mediaRetryFor: Double
    public var profileTTL: Double
    /// How long an echo of unknown origin waits for sends in flight to the same customer (the
    /// echo can arrive before the Send API's answer that tells us its mid).
    public var echoWait: Double

    public init(flavor: MessengerPlatform.Flavor, ownID: String, sendNode: String, accessToken: MetaSecret, meta: MetaChannelSettings,
                humanAgentTag: Bool = false, appID: String? = nil, storeMedia: Bool = true, appSecretProof: Bool = false,
                mediaRetryDelays: [Double] = [1, 2, 4], mediaRetryFor: Double = 86_400, profileTTL: Double = 7 * 86_400, echoWait: Double = 5) {
        self.flavor = flavor; self.ownID = ownID; self.sendNode = sendNode; self.accessToken = accessToken; self.meta = meta
        self.humanAgentTag = humanAgentTag; self.appID = appID; self.storeMedia = storeMedia; self.appSecretProof = appSecretProof
        self.mediaRetryDelays = mediaRetryDelays; self.profileTTL = profileTTL; self.echoWait = echoWait
        self.mediaRetryFor = mediaRetryFor
    }

    /// The keys both products read the same way, besides `MetaChannelSettings`'.
    public static let sharedKeys = ["human_agent_tag", "app_id", "appsecret_proof", "media_retry_delays", "media_retry_for"]

    /// Reads the shared keys (problems name the key path).
    public static func read(_ node: ConfigNode) -> (humanAgent: Bool, appID: String?, proof: Bool, delays: [Double], retryFor: Double) {
        let human = node.bool("human_agent_tag", default: false)
        let app = node.string("app_id")?.trimmingCharacters(in: .whitespaces)
        if let a = app, a.isEmpty || !a.allSatisfy(\.isNumber) { node["app_id"].problem("expected the numeric App ID from the App Dashboard") }
        let proof = node.bool("appsecret_proof", default: false)
        let delays = node.durations("media_retry_delays", default: [1, 2, 4])
        let retryFor = node.seconds("media_retry_for", default: 86_400)
        return (human, app?.isEmpty == false ? app : nil, proof, delays, retryFor)
    }
}

/// The shared engine of the `messenger` and `instagram` channels: webhooks in (handshake,
/// signature, every entry and event, dedupe, receipts against the mids we sent, echoes of our
/// own sends recognised), media and profiles after the commit, the Send API out (messaging
/// window, HUMAN_AGENT tag, uploads), sender actions.
/// A channel adapter that is a `MessagingChannel` with its own config keys (Messenger,
/// Instagram): everything but the factory forwards to `core`.
public protocol MessagingChannelAdapter: ChannelAdapter {
    var core: MessagingChannel { get }
}

extension MessagingChannelAdapter {
    public var channel: ChannelRef { core.channel }
    public var capabilities: ChannelCapabilities { core.capabilities }
    public func run(context: any AdapterContext) async throws { try await core.run(context: context) }
    public func handleWebhook(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse {
        await core.handleWebhook(request, context: context)
    }
    public func validateSend(parts: [Part], override: JSONValue?, conversation: Conversation, context: any AdapterContext) async throws {
        try await core.validateSend(parts: parts, override: override, conversation: conversation, context: context)
    }
    public func send(_ message: OutboundMessage, context: any AdapterContext) async throws -> SendResult {
        try await core.send(message, context: context)
    }
    public func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws {
        try await core.activity(kind, conversation: conversation, recipient: recipient, context: context)
    }
    public func resolveAddress(_ address: String, context: any AdapterContext) async throws -> (peer: Peer, thread: String) {
        try await core.resolveAddress(address, context: context)
    }
}

public struct MessagingChannel: Sendable {
    public let channel: ChannelRef
    public let settings: MessagingSettings
    public let graph: GraphAPI
    let client: HTTPClient
    let jobs = AdapterJobQueue<MessagingJob>()
    let resumed = Locked(false)
    let problem = Locked(false)
    /// Sends in flight per customer, for echoes that overtake the Send API's answer.
    let inflight = Locked<[String: Int]>([:])

    public static let standardWindow: Double = 24 * 3600
    public static let humanAgentWindow: Double = 7 * 24 * 3600

    public init(channel: ChannelRef, settings: MessagingSettings, client: HTTPClient) {
        self.channel = channel; self.settings = settings; self.client = client
        self.graph = settings.meta.graphAPI(accessToken: settings.accessToken, client: client, appSecretProof: settings.appSecretProof)
    }

    public var capabilities: ChannelCapabilities { MessengerPlatform.capabilities(settings.flavor) }
    var flavor: MessengerPlatform.Flavor { settings.flavor }

    // MARK: state keys

    static func sentKey(_ customer: String) -> String { "sent:\(customer)" }
    static func windowKey(_ conversation: String) -> String { "last_in:\(conversation)" }
    static func profileKey(_ customer: String) -> String { "profile:\(customer)" }
    static func mediaKey(_ mid: String) -> String { "media_job:\(mid)" }
    static func progressKey(_ message: String) -> String { "progress:\(message)" }
    static func ourMIDsKey(_ message: String) -> String { "mids:\(message)" }

    // MARK: inbound

    public func handleWebhook(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse {
        guard let secret = settings.meta.appSecret, let token = settings.meta.verifyToken else { return .text(503, "channel not configured") }
        return await MetaWebhook.route(request, verifyToken: token, appSecret: secret, expectedObject: flavor.object, context: context) { root in
            await self.ingest(root, body: request.body, context: context)
        }
    }

    /// `forwarded`: another channel of the same app verified the POST and hands it on; only
    /// this account's events are ours, and nothing is handed on again.
    func ingest(_ root: JSONValue, body: [UInt8], context: any AdapterContext, forwarded: Bool = false) async -> WebhookResponse {
        var otherAccounts: [String] = []
        let items = MessengerPlatform.items(in: root)
        // Within one POST, oldest first (batches may interleave; Meta does not promise order).
        let ordered = items.enumerated().sorted { a, b in
            let ta = a.element.event["timestamp"]?.intValue ?? 0, tb = b.element.event["timestamp"]?.intValue ?? 0
            return ta == tb ? a.offset < b.offset : ta < tb
        }.map(\.element)
        var profilesQueued = Set<String>()
        for item in ordered {
            let raw = items.count == 1 ? RawPayload(format: "json", bytes: body, parsed: root)
                : RawPayload(format: "json", bytes: Array((try? JSON.encode(item.event)) ?? Data()), parsed: item.event)
            let t = MessengerPlatform.translate(item, flavor: flavor, ownID: settings.ownID, raw: raw, forwarded: forwarded)
            if let policy = t.policy {
                await notePolicyEnforcement(policy.action, reason: policy.reason, context: context)
                continue
            }
            if let why = t.skipped {
                if let other = t.otherAccount {
                    if !otherAccounts.contains(other) { otherAccounts.append(other) }
                } else {
                    // Also when forwarded: the channel that received the POST saw this item as
                    // another account's and said nothing about it.
                    context.logger.warning("\(flavor.label) webhook event skipped",
                                           metadata: ["channel": "\(channel.id)", "reason": "\(why)", "forwarded": "\(forwarded)"])
                }
                continue
            }
            do {
                if let receipt = t.receipt, let customer = t.customerID {
                    try await handleReceipt(receipt, customer: customer, at: t.occurredAt, raw: raw, context: context)
                    continue
                }
                if let echo = t.echo, let customer = t.customerID, await isOwnEcho(echo, customer: customer, context: context) {
                    context.logger.debug("echo of our own send", metadata: ["channel": "\(channel.id)", "mid": "\(echo.mid ?? "")"])
                    continue
                }
                guard var event = t.event else { continue }
                var media = t.media
                if let m = media, !settings.storeMedia {
                    // Links only: the parts are complete as they are.
                    event = Self.withoutPending(event, indices: m.indices)
                    media = nil
                }
                var needsProfile = false
                if t.echo == nil, let customer = t.customerID {
                    if let cached = await cachedProfile(customer, context: context) {
                        if let name = cached.name { event.peer.displayName = name; event.peer.profile = cached.profile }
                    } else {
                        needsProfile = true
                    }
                }
                // Customer activity opens the messaging window; it is kept by the platform's clock
                // (a late redelivery does not extend it), the newest time winning. It and the
                // pending download are committed with the event: one write per webhook.
                if let at = t.customerActivity {
                    event.stateUpdates.append(StateUpdate(key: Self.windowKey(StateUpdate.conversationIDPlaceholder),
                                                          value: String(at.milliseconds), version: at.milliseconds))
                }
                if let media { event.stateUpdates.append(StateUpdate(key: Self.mediaKey(media.externalID), value: JSON.string(media))) }
                let result = try await context.emit(event)
                guard case .committed = result else { continue }
                if let media { jobs.push(.media(media)) }
                if needsProfile, let customer = t.customerID, profilesQueued.insert(customer).inserted { jobs.push(.profile(customer)) }
            } catch {
                // Not committed: a non-2xx makes Meta deliver again, and the redelivery is deduplicated.
                context.logger.error("cannot store \(flavor.label) webhook event", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
                return .text(503, "temporarily unable to store the event; retry")
            }
        }
        if forwarded { return .ok }
        // The app's other Pages / accounts: their channels store their events.
        return await MetaWebhook.handOn(otherAccounts, from: channel, context: context, kind: "\(flavor.label) account", sibling: { account in
            context.channels(ofType: channel.type).lazy
                .compactMap { h in (h.adapter as? any MessagingChannelAdapter).map { ($0.core, h.context) } }
                .first { s in
                    guard let mine = settings.meta.appSecret, let theirs = s.0.settings.meta.appSecret else { return false }
                    return s.0.settings.ownID == account && theirs.matches(mine)
                }
        }, ingest: { adapter, siblingContext in
            await adapter.ingest(root, body: body, context: siblingContext, forwarded: true)
        })
    }

    static func withoutPending(_ event: InboundEvent, indices: [Int]) -> InboundEvent {
        guard case .message(var m) = event.kind else { return event }
        for i in indices where i < m.parts.count {
            if case .media(var media) = m.parts[i] { media.unavailable = nil; m.parts[i] = .media(media) }
        }
        var e = event
        e.kind = .message(m)
        return e
    }

    /// Whether an echo is of a message we sent: our metadata marker, our app id, or a mid we got
    /// back from the Send API (waiting briefly for sends still in flight to this customer).
    func isOwnEcho(_ echo: MessengerPlatform.Echo, customer: String, context: any AdapterContext) async -> Bool {
        if let m = echo.metadata, m.hasPrefix(MessengerPlatform.metadataPrefix) { return true }
        if let ours = settings.appID, let app = echo.appID, app == ours { return true }
        guard let mid = echo.mid else { return false }
        // Each request of a send enters its mid as soon as it returns: look again until it
        // does, while a send to this customer is under way.
        let deadline = ContinuousClock.now + .milliseconds(Int64(settings.echoWait * 1000))
        while true {
            if await sentBook(customer, context: context).contains(where: { $0.m == mid }) { return true }
            guard inflight.withLock({ ($0[customer] ?? 0) > 0 }) && ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(25))
        }
    }

    // MARK: receipts

    /// One of our sent messages as remembered for receipts: mid, when we sent it (ms, taken
    /// before the Send API call, so it is never later than Meta's own time for it), and how far
    /// it got (0 sent, 1 delivered, 2 read).
    struct SentRecord: Codable, Sendable, Hashable { var m: String; var t: Int64; var s: Int }
    static let sentBookSize = 200

    func sentBook(_ customer: String, context: any AdapterContext) async -> [SentRecord] {
        guard let s = try? await context.state.get(Self.sentKey(customer)),
              let book = try? JSON.decode([SentRecord].self, from: Data(s.utf8)) else { return [] }
        return book
    }

    /// Changes the stored book in one step: a send adding mids and a receipt marking them can
    /// run at once for the same customer, and neither may write back a stale copy over the
    /// other's change.
    func updateBook(customer: String, context: any AdapterContext, _ change: @escaping @Sendable (inout [SentRecord]) -> Void) async {
        try? await context.state.update(Self.sentKey(customer)) { current in
            var book = current.flatMap { try? JSON.decode([SentRecord].self, from: Data($0.utf8)) } ?? []
            change(&book)
            return JSON.string(Array(book.suffix(Self.sentBookSize)))
        }
    }

    /// Delivery and read receipts: `message.status` on each of our messages the receipt covers
    /// (by mid, or by watermark against the mids we sent), never moving a status backwards, and
    /// `conversation.read` for reads.
    func handleReceipt(_ receipt: MessengerPlatform.Receipt, customer: String, at: Timestamp?, raw: RawPayload,
                       context: any AdapterContext) async throws {
        var book = await sentBook(customer, context: context)
        let peer = Peer(channelUserID: customer)
        var events: [InboundEvent] = []
        func status(_ mid: String, _ s: DeliveryStatus) -> InboundEvent {
            InboundEvent(.status(externalID: mid, status: s, error: nil), peer: peer, dedupeKey: "status:\(mid):\(s.rawValue)",
                         occurredAt: at, raw: raw)
        }
        switch receipt {
        case .delivered(let mids, let watermark):
            var targets = mids
            if let w = watermark { targets += book.filter { $0.t <= w && $0.s < 1 && !mids.contains($0.m) }.map(\.m) }
            for mid in targets {
                if let i = book.firstIndex(where: { $0.m == mid }) {
                    if book[i].s >= 1 { continue }
                    book[i].s = 1
                }
                events.append(status(mid, .delivered))
            }
        case .read(let watermark, let mid):
            let upTo = watermark ?? mid.flatMap { m in book.first { $0.m == m }?.t } ?? at?.milliseconds ?? Timestamp.now().milliseconds
            // conversation.read first: it lists every outbound message it covers (ours and echoes)
            // that was not read yet; then message.status read for each of ours.
            events.append(InboundEvent(.read(upTo: Timestamp(milliseconds: upTo)), peer: peer,
                                       dedupeKey: "read:\(customer):\(mid ?? String(upTo))", occurredAt: at, raw: raw))
            var targets = book.filter { $0.t <= upTo && $0.s < 2 }.map(\.m)
            if let mid, !book.contains(where: { $0.m == mid }) { targets.append(mid) }
            for m in targets {
                if let i = book.firstIndex(where: { $0.m == m }) { book[i].s = 2 }
                events.append(status(m, .read))
            }
        }
        for e in events { _ = try await context.emit(e) }
        // Only the progress this receipt made, onto the book as it is now.
        let progress = Dictionary(book.map { ($0.m, $0.s) }, uniquingKeysWith: max)
        await updateBook(customer: customer, context: context) { current in
            for i in current.indices { if let s = progress[current[i].m], s > current[i].s { current[i].s = s } }
        }
    }

    /// Meta blocked the Page from messaging (or lifted the block, or warned it): the channel's
    /// state says so to the helpdesk (`channel.status`), and the log to the operator. Sends fail
    /// while it is blocked; nothing here stops them, as the block may be lifted any time.
    func notePolicyEnforcement(_ action: String, reason: String?, context: any AdapterContext) async {
        let why = reason.map { ": \($0)" } ?? ""
        switch action {
        case "block":
            context.logger.error("\(flavor.label): Meta blocked this account from messaging\(why)", metadata: ["channel": "\(channel.id)"])
            await context.reportStatus(.degraded, detail: "Meta blocked messaging for this account (policy enforcement)\(why)")
        case "unblock":
            context.logger.notice("\(flavor.label): Meta lifted the messaging block", metadata: ["channel": "\(channel.id)"])
            await context.reportStatus(.connected, detail: "Meta lifted the messaging block")
        default:
            context.logger.warning("\(flavor.label): Meta policy enforcement \(action)\(why)", metadata: ["channel": "\(channel.id)"])
        }
    }

    // MARK: background work

    public func run(context: any AdapterContext) async throws {
        if resumed.withLock({ r in defer { r = true }; return !r }) {
            for (_, value) in (try? await context.state.entries(prefix: "media_job:")) ?? [] {
                if let job = try? JSON.decode(MessengerPlatform.MediaFetch.self, from: Data(value.utf8)) { jobs.push(.media(job)) }
            }
        }
        await jobs.drain(maxConcurrent: 4) { job in
            switch job {
            case .media(let m): await self.fetchMedia(m, context: context)
            case .profile(let id): await self.fetchProfile(id, context: context)
            }
        }
    }

    /// Copies a message's CDN attachments into the media store and publishes the message's
    /// complete parts as `message.updated`; a part that could not be stored says why
    /// (`too_large`, `expired`, `download_failed`).
    ///
    /// Attachments that fail for a transient reason after the quick retries keep their parts
    /// `pending`: the job is kept, with what was stored so far, and runs again later for those
    /// (`DeferredRetry`) until `media_retry_for` has passed; then they say `download_failed`.
    func fetchMedia(_ job: MessengerPlatform.MediaFetch, context: any AdapterContext) async {
        var parts = job.parts
        var failing: [Int] = []
        for i in job.indices where i < parts.count {
            guard case .media(var m) = parts[i], let url = m.url else { continue }
            switch await download(url, filename: m.filename, kind: m.kind, context: context) {
            case .failure(let reason) where reason.transient:
                failing.append(i)
                continue
            case .success(let stored):
                m.mediaID = stored.id; m.mimeType = stored.mimeType; m.size = stored.size; m.sha256 = stored.sha256
                m.filename = m.filename ?? stored.filename
                m.extra["source_url"] = .string(url)
                m.url = nil
                m.unavailable = nil
            case .failure(let reason):
                m.unavailable = reason.rawValue
            }
            parts[i] = .media(m)
        }
        if Task.isCancelled { return }
        if !failing.isEmpty {
            var later = job
            var retry = job.retry ?? DeferredRetry()
            if let delay = retry.next(lastQuickDelay: settings.mediaRetryDelays.last ?? 1, window: settings.mediaRetryFor) {
                later.parts = parts
                later.indices = failing
                later.retry = retry
                try? await context.state.set(Self.mediaKey(job.externalID), JSON.string(later))
                context.logger.warning("\(flavor.label) attachment download failed again; trying later", metadata: [
                    "channel": "\(channel.id)", "message": "\(job.externalID)", "attempt": "\(retry.count)", "in": "\(delay)"])
                jobs.push(.media(later), after: delay)
                return
            }
            context.logger.warning("\(flavor.label) attachment download given up", metadata: ["channel": "\(channel.id)", "message": "\(job.externalID)"])
            for i in failing { if case .media(var m) = parts[i] { m.unavailable = "download_failed"; parts[i] = .media(m) } }
        }
        let event = InboundEvent(.updated(externalID: job.externalID, parts: parts), peer: Peer(channelUserID: job.peerID),
                                 dedupeKey: "media:\(job.externalID)")
        if await MetaWebhook.emitLater(event, context: context) {
            try? await context.state.set(Self.mediaKey(job.externalID), nil)
        }
    }

    struct Unavailable: Error {
        var rawValue: String
        /// The quick retries ran out on errors that may pass (5xx, network): worth trying later.
        var transient = false
    }

    func download(_ url: String, filename: String?, kind: MediaKind, context: any AdapterContext) async -> Result<StoredMedia, Unavailable> {
        var attempt = 0
        while true {
            do {
                let (bytes, mime) = try await graph.download(url: url, authorized: false, maxBytes: context.media.maxBytes)
                let type = mime ?? Self.guessMIME(kind: kind, filename: filename)
                do {
                    return .success(try await context.media.put(bytes, mimeType: type, filename: filename))
                } catch is MediaTooLarge {
                    return .failure(Unavailable(rawValue: "too_large"))
                }
            } catch is MediaTooLarge {
                return .failure(Unavailable(rawValue: "too_large"))
            } catch let e as GraphError {
                if [403, 404, 410].contains(e.httpStatus) { return .failure(Unavailable(rawValue: "expired")) }
                if !e.retryable || attempt >= settings.mediaRetryDelays.count || Task.isCancelled {
                    context.logger.warning("\(flavor.label) attachment download failed", metadata: ["channel": "\(channel.id)", "error": "\(e)"])
                    return .failure(Unavailable(rawValue: "download_failed", transient: e.retryable && !Task.isCancelled))
                }
            } catch {
                return .failure(Unavailable(rawValue: "download_failed"))
            }
            do { try await Task.sleep(for: .milliseconds(Int64(settings.mediaRetryDelays[attempt] * 1000))) } catch {
                return .failure(Unavailable(rawValue: "download_failed"))
            }
            attempt += 1
        }
    }

    static func guessMIME(kind: MediaKind, filename: String?) -> String {
        switch (filename as NSString?)?.pathExtension.lowercased() ?? "" {
        case "pdf": return "application/pdf"
        case "jpg", "jpeg": return "image/jpeg"
        case "png": return "image/png"
        case "mp4": return "video/mp4"
        case "mp3": return "audio/mpeg"
        default: break
        }
        switch kind {
        case .image: return "image/jpeg"
        case .video: return "video/mp4"
        case .audio, .voice: return "audio/mp4"
        default: return "application/octet-stream"
        }
    }

    /// A profile as cached in the adapter state; a refusal is cached too (no name) for an hour.
    struct CachedProfile: Codable, Sendable {
        var name: String?
        var profile: JSONObject?
        var at: Int64
        var missing: Bool?
    }

    func cachedProfile(_ customer: String, context: any AdapterContext) async -> CachedProfile? {
        guard let s = try? await context.state.get(Self.profileKey(customer)),
              let p = try? JSON.decode(CachedProfile.self, from: Data(s.utf8)) else { return nil }
        let age = Double(Timestamp.now().milliseconds - p.at) / 1000
        return age < (p.missing == true ? min(settings.profileTTL, 3600) : settings.profileTTL) ? p : nil
    }

    /// `GET /<PSID>?fields=first_name,last_name,profile_pic` (Messenger) or
    /// `GET /<IGSID>?fields=name,username,profile_pic` (Instagram), published as
    /// `identity.updated`. Best effort: a refusal (no permission, no consent, no profile) is
    /// logged and remembered for an hour; nothing fails.
    func fetchProfile(_ customer: String, context: any AdapterContext) async {
        if await cachedProfile(customer, context: context) != nil { return }
        guard !customer.hasPrefix("user_ref:") else { return }
        let fields = flavor == .messenger ? "first_name,last_name,profile_pic" : "name,username,profile_pic"
        let answer: JSONValue
        do {
            answer = try await graph.get(customer, query: [("fields", fields)])
        } catch let e as GraphError {
            context.logger.info("\(flavor.label) profile look-up \(e.httpStatus == 0 ? "failed" : "refused")", metadata: [
                "channel": "\(channel.id)", "user": "\(customer)", "error": "\(e)"])
            if !e.retryable {
                let missing = CachedProfile(at: Timestamp.now().milliseconds, missing: true)
                try? await context.state.set(Self.profileKey(customer), JSON.string(missing))
            }
            return
        } catch {
            context.logger.info("\(flavor.label) profile look-up failed", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
            return
        }
        var profile: JSONObject = [:]
        let name: String?
        if flavor == .messenger {
            let parts = [answer["first_name"]?.stringValue, answer["last_name"]?.stringValue].compactMap { $0 }.filter { !$0.isEmpty }
            name = parts.isEmpty ? nil : parts.joined(separator: " ")
            for k in ["first_name", "last_name"] { if let v = answer[k]?.stringValue { profile[k] = .string(v) } }
        } else {
            let n = answer["name"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
            let u = answer["username"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
            name = n ?? u
            if let u { profile["username"] = .string(u) }
        }
        if let pic = answer["profile_pic"]?.stringValue { profile["picture_url"] = .string(pic) }
        let cached = CachedProfile(name: name, profile: profile.isEmpty ? nil : profile, at: Timestamp.now().milliseconds)
        try? await context.state.set(Self.profileKey(customer), JSON.string(cached))
        guard let name else { return }
        await MetaWebhook.emitLater(InboundEvent(.identityUpdated, peer: Peer(channelUserID: customer, displayName: name, profile: cached.profile)),
                                    context: context)
    }
}

/// A mutex-protected value a struct can hold (Mutex itself is not copyable).
final class Locked<Value: Sendable>: Sendable {
    private let m: Mutex<Value>
    init(_ value: Value) { m = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { m.withLock { body(&$0) } }
}

/// Work queued by the webhook handler for `run(context:)`.
enum MessagingJob: Sendable {
    case media(MessengerPlatform.MediaFetch)
    case profile(String)
}
