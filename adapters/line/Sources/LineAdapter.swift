import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOCore
import Synchronization
import SwitchboardCore
import SwitchboardDelivery
import SwitchboardRuntime

/// A value that must never reach a log line or a diagnostic: its descriptions are redacted.
struct Secret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    let value: String
    init(_ value: String) { self.value = value }
    var description: String { "<redacted>" }
    var debugDescription: String { "<redacted>" }
}

/// The LINE Messaging API channel (one LINE Official Account channel per configured channel).
///
/// Inbound: `POST /webhooks/<id>` signed with `X-Line-Signature` (base64 HMAC-SHA256 of the raw
/// body with the channel secret). Every event is committed before LINE gets its 200; media
/// content and profiles are fetched afterwards by `run(context:)` and published as
/// `message.updated` / `identity.updated` events.
///
/// Outbound: the reply API while the conversation's latest reply token is fresh (free), else the
/// push API with an `X-Line-Retry-Key` derived from our message id (a retried push is delivered
/// once). At most 5 message objects per call; longer output goes out in several calls, in order.
public struct LineChannelAdapter: ChannelAdapter {
    public static let type = "line"
    public static let signatureHeader = "x-line-signature"
    public static let defaultAPIBase = "https://api.line.me"
    public static let defaultDataAPIBase = "https://api-data.line.me"

    /// What LINE shows natively. Buttons become a template/Flex message (≤ 4 actions, labels ≤
    /// 20 characters), quick replies ≤ 13, cards and carousels become Flex bubbles (≤ 10 cards,
    /// ≤ 3 actions each). There is no outbound file message: files go out as links.
    public static let lineCapabilities = ChannelCapabilities(
        textFormats: [.plain], maxTextLength: 5000, mediaKinds: [.image, .video, .audio, .sticker],
        maxButtons: 4, maxButtonTitle: 20, buttonActions: [.reply, .postback, .link, .call],
        maxQuickReplies: 13, cards: true, maxCarouselCards: 10, maxListRows: 0,
        location: true, contactCard: false, reactions: false, typing: true, markRead: true,
        // Postback data ≤ 300 characters: a longer payload goes out as numbered text, not cut.
        maxPayload: 300)

    public let channel: ChannelRef
    public var capabilities: ChannelCapabilities { Self.lineCapabilities }
    /// The channel secret, keyed once: it checks every webhook.
    let mac: KeyedHMAC
    let token: Secret
    let apiBase: String
    let dataAPIBase: String
    let client: HTTPClient
    /// How long a reply token is used after its webhook arrived (LINE: 1 minute, not guaranteed).
    let replyTokenTTL: Double
    let timeout: TimeAmount
    /// Waits between attempts to fetch content that is still being prepared (202) or failed transiently.
    let contentRetryDelays: [Double]
    /// How long a content download failing for a transient reason keeps being tried after the
    /// quick retries (`DeferredRetry`); 0: given up after them.
    let contentRetryFor: Double
    let profileTTL: Double
    let jobs = AdapterJobQueue<LineJob>()
    let resumed = AdapterFlag()
    /// Whether a send reported a channel-wide problem (auth_expired), so the next success clears it.
    let problem = AdapterFlag()

    public init(channel: ChannelRef, channelSecret: String, accessToken: String, apiBase: String = Self.defaultAPIBase,
                dataAPIBase: String = Self.defaultDataAPIBase, client: HTTPClient, replyTokenTTL: Double = 50,
                timeout: TimeAmount = .seconds(15), contentRetryDelays: [Double] = [1, 2, 4, 8, 16], contentRetryFor: Double = 86_400, profileTTL: Double = 86_400) {
        self.channel = channel; self.mac = KeyedHMAC(key: Array(channelSecret.utf8)); self.token = Secret(accessToken)
        self.apiBase = Self.trimSlash(apiBase); self.dataAPIBase = Self.trimSlash(dataAPIBase); self.client = client
        self.replyTokenTTL = replyTokenTTL; self.timeout = timeout; self.contentRetryDelays = contentRetryDelays; self.profileTTL = profileTTL
        self.contentRetryFor = contentRetryFor
    }

    static func trimSlash(_ s: String) -> String { s.hasSuffix("/") ? String(s.dropLast()) : s }

    /// The registry entry: reads and checks this channel's keys (problems name the key path,
    /// never a secret's value).
    public static let factory: AdapterFactory = { channel, node, env in
        node.rejectUnknownKeys(AdapterRegistry.commonKeys + ["api_base", "data_api_base", "reply_token_ttl", "timeout", "media_retry_delays", "media_retry_for"],
                               secrets: ["channel_secret", "channel_access_token"])
        let secret = node.secret("channel_secret", required: true)
        if let s = secret, s.trimmingCharacters(in: .whitespacesAndNewlines).count < 16 {
            node["channel_secret"].problem("too short for a LINE channel secret (32 hex characters expected)")
        }
        let token = node.secret("channel_access_token", required: true)
        func base(_ key: String, _ def: String) -> String {
            let v = node.string(key, default: def) ?? def
            if !(v.hasPrefix("https://") || v.hasPrefix("http://")) { node[key].problem("expected an https:// URL") }
            return v
        }
        let api = base("api_base", defaultAPIBase)
        let data = base("data_api_base", defaultDataAPIBase)
        let ttl = node.seconds("reply_token_ttl", default: 50)
        if ttl < 0 || ttl > 60 { node["reply_token_ttl"].problem("must be between 0s and 60s (LINE reply tokens last about a minute)") }
        let timeout = node.seconds("timeout", default: 15)
        let delays = node.durations("media_retry_delays", default: [1, 2, 4, 8, 16])
        let retryFor = node.seconds("media_retry_for", default: 86_400)
        guard let secret, let token else { return nil }
        return LineChannelAdapter(channel: channel, channelSecret: secret.trimmingCharacters(in: .whitespacesAndNewlines),
                                  accessToken: token.trimmingCharacters(in: .whitespacesAndNewlines), apiBase: api, dataAPIBase: data,
                                  client: env.httpClient, replyTokenTTL: min(max(ttl, 0), 60),
                                  timeout: .milliseconds(Int64(timeout * 1000)), contentRetryDelays: delays, contentRetryFor: retryFor)
    }

    // MARK: signature

    /// `X-Line-Signature`: base64 of HMAC-SHA256(channel secret, raw body).
    public static func signature(_ body: [UInt8], secret: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(secret.utf8)))).base64EncodedString()
    }

    /// Constant-time check of the header against the raw bytes.
    static func verify(_ body: [UInt8], header: String, mac: KeyedHMAC) -> Bool {
        guard let given = Data(base64Encoded: header.trimmingCharacters(in: .whitespaces)), given.count == SHA256.byteCount else { return false }
        return mac.isValid(Array(given), for: body)
    }

    // MARK: inbound

    public func handleWebhook(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse {
        guard request.method == "POST" else { return .text(405, "POST only") }
        guard let header = request.header(Self.signatureHeader), !header.isEmpty else {
            context.signatureFailed(reason: "missing \(Self.signatureHeader)")
            return .unauthorized
        }
        guard Self.verify(request.body, header: header, mac: mac) else {
            context.signatureFailed(reason: "signature mismatch")
            return .unauthorized
        }
        let root: JSONValue
        do { root = try JSONValue.parse(Data(request.body)) } catch { return .text(400, "body is not valid JSON") }
        guard let events = root["events"]?.arrayValue else { return .text(400, "no events array") }
        // An empty list is LINE's connection test ("Verify" in the console).
        if events.isEmpty { return .ok }
        // Events can arrive out of order; within one request, commit them oldest first.
        let ordered = events.enumerated().sorted { a, b in
            let ta = a.element["timestamp"]?.intValue ?? 0, tb = b.element["timestamp"]?.intValue ?? 0
            return ta == tb ? a.offset < b.offset : ta < tb
        }.map(\.element)
        let receivedMS = Timestamp.now().milliseconds
        for event in ordered {
            // A single event keeps LINE's exact bytes; several are stored one by one.
            let raw = events.count == 1 ? request.body : Array((try? JSON.encode(event)) ?? Data())
            var t = Self.translate(event, raw: raw, rawParsed: events.count == 1 ? root : event, destination: root["destination"]?.stringValue)
            // Names we already know go in at once; unknown ones are looked up after the 200.
            var needsProfile = false
            if let user = t.speakerID {
                if let cached = await cachedProfile(user, context: context) {
                    if let name = cached.name {
                        if t.event.sender != nil { t.event.sender?.displayName = name; t.event.sender?.profile = cached.profile }
                        else { t.event.peer.displayName = name; t.event.peer.profile = cached.profile }
                    }
                } else {
                    needsProfile = true
                }
            }
            // The chat's reply and mark-as-read tokens and the pending download are committed
            // with the event: one group-committed write per webhook, nothing for a duplicate.
            t.event.stateUpdates += tokenUpdates(t, receivedMS: receivedMS)
            if let media = t.media {
                t.event.stateUpdates.append(StateUpdate(key: MediaJob.key(media.messageID), value: JSON.string(media.persisted)))
            }
            let result: EmitResult
            do { result = try await context.emit(t.event) } catch {
                // Not committed: a non-2xx makes LINE redeliver (when enabled); the redelivery is deduplicated.
                context.logger.error("cannot store LINE webhook event", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
                return .text(503, "temporarily unable to store the event; retry")
            }
            guard case .committed = result else { continue }
            if let media = t.media { jobs.push(.media(media)) }
            if needsProfile, let user = t.speakerID {
                jobs.push(.profile(ProfileJob(userID: user, groupID: t.groupID, roomID: t.roomID, peer: t.event.peer, thread: t.event.thread)))
            }
        }
        return .ok
    }

    /// Keeps the reply token and the mark-as-read token of the chat's latest event. LINE
    /// delivers events out of order: versioned by the event's timestamp, an older event's token
    /// never replaces a newer one's (mark-as-read would leave the newer message unread).
    func tokenUpdates(_ t: Translation, receivedMS: Int64) -> [StateUpdate] {
        var out: [StateUpdate] = []
        let version = t.event.occurredAt?.milliseconds ?? receivedMS
        if let token = t.replyToken, !token.isEmpty, token != "00000000000000000000000000000000", token != "ffffffffffffffffffffffffffffffff" {
            out.append(StateUpdate(key: Self.replyKey(t.chatID), value: "\(receivedMS) \(token)", version: version))
        }
        if let read = t.markAsReadToken {
            out.append(StateUpdate(key: Self.readKey(t.chatID), value: read, version: version))
        }
        return out
    }

    static func replyKey(_ chat: String) -> String { "reply_token:\(chat)" }
    static func readKey(_ chat: String) -> String { "read_token:\(chat)" }
    static func profileKey(_ user: String) -> String { "profile:\(user)" }

    /// The LINE id to send to for a stored identity: `group:C…` → `C…`, `room:R…` → `R…`.
    static func chatID(for channelUserID: String) -> String {
        for prefix in ["group:", "room:"] where channelUserID.hasPrefix(prefix) { return String(channelUserID.dropFirst(prefix.count)) }
        return channelUserID
    }

    public func resolveAddress(_ address: String, context: any AdapterContext) async throws -> (peer: Peer, thread: String) {
        let a = address.trimmingCharacters(in: .whitespaces)
        if a.hasPrefix("group:") || a.hasPrefix("room:") { return (Peer(channelUserID: a), Self.chatID(for: a)) }
        switch a.first {
        case "U": return (Peer(channelUserID: a), "*")
        case "C": return (Peer(channelUserID: "group:" + a), a)
        case "R": return (Peer(channelUserID: "room:" + a), a)
        default:
            throw SendRejection(code: "invalid_request", status: 422,
                                detail: "a LINE address is a user id (U…), a group id (C…) or a room id (R…) from this channel's provider")
        }
    }

    // MARK: background work

    /// Runs the media downloads and profile look-ups queued by webhooks, a few at a time, as
    /// children of this task (cancelled with the channel).
    public func run(context: any AdapterContext) async throws {
        // Downloads still recorded in the state store were interrupted by a restart: resume them
        // (once per adapter instance; a restarted run loop still has its in-memory queue).
        if !resumed.exchange(true) {
            for (_, value) in (try? await context.state.entries(prefix: "media_job:")) ?? [] {
                if let p = try? JSON.decode(MediaJob.Persisted.self, from: Data(value.utf8)) { jobs.push(.media(MediaJob(p))) }
            }
        }
        await jobs.drain(maxConcurrent: 4) { job in await self.perform(job, context: context) }
    }

    func perform(_ job: LineJob, context: any AdapterContext) async {
        switch job {
        case .media(let m): await downloadMedia(m, context: context)
        case .profile(let p): await fetchProfile(p, context: context)
        }
    }

    /// Emits after the webhook's commit, retrying briefly if the store is busy.
    func emitLater(_ event: InboundEvent, context: any AdapterContext) async {
        for attempt in 0..<5 {
            do { _ = try await context.emit(event); return } catch {
                if attempt == 4 || Task.isCancelled {
                    context.logger.error("cannot store a LINE follow-up event", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
                    return
                }
                try? await Task.sleep(for: .milliseconds(200 << attempt))
            }
        }
    }
}

/// Work queued by the webhook handler for `run(context:)`.
enum LineJob: Sendable {
    case media(MediaJob)
    case profile(ProfileJob)
}

extension LineChannelAdapter {
    /// A LINE text-message webhook body as LINE sends it (for `switchboard simulate`). A `userID`
    /// that is not a LINE user id (`U` + 32 hex digits) is turned into a stable one.
    public static func sampleTextWebhook(text: String, userID: String, now: Timestamp = .now()) -> [UInt8] {
        let isLineID = userID.count == 33 && userID.hasPrefix("U") && userID.dropFirst().allSatisfy(\.isHexDigit)
        let user = isLineID ? userID : "U" + Hex.encode(SHA256.hash(data: Array(userID.utf8)).prefix(16))
        let messageID = String(now.milliseconds) + String(Int.random(in: 100_000...999_999))
        let replyToken = Hex.encode((0..<16).map { _ in UInt8.random(in: 0...255) })
        let event: JSONObject = [
            "type": "message", "mode": "active", "timestamp": .int(now.milliseconds),
            "webhookEventId": .string(ID.ulid(milliseconds: now.milliseconds)),
            "deliveryContext": ["isRedelivery": false],
            "replyToken": .string(replyToken),
            "source": ["type": "user", "userId": .string(user)],
            "message": ["id": .string(messageID), "type": "text", "quoteToken": .string("q" + replyToken), "text": .string(text)],
        ]
        let body: JSONObject = ["destination": "U00000000000000000000000000000000", "events": [.object(event)]]
        return Array((try? JSON.encode(body)) ?? Data())
    }
}
