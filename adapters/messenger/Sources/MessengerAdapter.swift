import AsyncHTTPClient
import Crypto
import Foundation
import MetaAdapter
import SwitchboardCore
import SwitchboardRuntime

/// The Facebook Messenger channel: one Facebook Page (`page_id`).
///
/// Inbound: `GET /webhooks/<id>` answers Meta's verification handshake; every `POST`
/// (`object: "page"`) is checked against `X-Hub-Signature-256` on the raw bytes, then every
/// entry and every `messaging[]` / `standby[]` event is committed (deduplicated on the `mid`)
/// before Meta gets its 200. Attachments are copied from Meta's CDN into the media store and
/// profiles looked up afterwards (`message.updated`, `identity.updated`). Delivery and read
/// watermarks become `message.status` on our messages and `conversation.read`. Echoes of our own
/// sends are recognised (our `metadata` marker, app id, the mids we got back); other echoes —
/// replies from the Page inbox or another app — are `message.echo`.
///
/// Outbound: the Send API (`POST /<page_id>/messages`), one request per rendered message object,
/// `messaging_type: RESPONSE` within 24 hours of the customer's last message; with
/// `human_agent_tag: true`, `MESSAGE_TAG` + `HUMAN_AGENT` up to 7 days; otherwise refused with
/// `window_closed` (422) before any Graph call.
public struct MessengerChannelAdapter: MessagingChannelAdapter {
    public static let type = "messenger"

    public let core: MessagingChannel

    public init(channel: ChannelRef, settings: MessagingSettings, client: HTTPClient) {
        core = MessagingChannel(channel: channel, settings: settings, client: client)
    }

    /// Keys of a `messenger` channel besides the common Meta ones (`MetaChannelSettings`).
    public static let ownKeys = ["page_id"] + MessagingSettings.sharedKeys

    /// The registry entry: reads and checks this channel's keys (problems name the key path,
    /// never a secret's value).
    public static let factory: AdapterFactory = { channel, node, env in
        node.rejectUnknownKeys(AdapterRegistry.commonKeys + MetaChannelSettings.keys + ownKeys,
                               secrets: MetaChannelSettings.secretKeys + ["page_access_token"])
        let meta = MetaChannelSettings(node: node)
        let page = node.string("page_id", required: true)?.trimmingCharacters(in: .whitespaces)
        if let p = page, p.isEmpty || !p.allSatisfy(\.isNumber) {
            node["page_id"].problem("expected the numeric Page ID (Page > About > Page transparency, or Meta Business Suite)")
        }
        let token = node.secret("page_access_token", required: true)?.trimmingCharacters(in: .whitespacesAndNewlines)
        let shared = MessagingSettings.read(node)
        guard let page, let token, !token.isEmpty, meta.appSecret != nil, meta.verifyToken != nil else { return nil }
        let settings = MessagingSettings(flavor: .messenger, ownID: page, sendNode: page, accessToken: MetaSecret(token), meta: meta,
                                         humanAgentTag: shared.humanAgent, appID: shared.appID, storeMedia: true,
                                         appSecretProof: shared.proof, mediaRetryDelays: shared.delays, mediaRetryFor: shared.retryFor)
        return MessengerChannelAdapter(channel: channel, settings: settings, client: env.httpClient)
    }
}


extension MessengerPlatform {
    /// A text-message webhook body as Meta sends it (`object` "page" or "instagram"), for
    /// `switchboard simulate`. A `userID` that is not numeric is turned into a stable numeric id.
    public static func sampleTextWebhook(flavor: Flavor, ownID: String, text: String, userID: String, now: Timestamp = .now()) -> [UInt8] {
        let user = !userID.isEmpty && userID.allSatisfy(\.isNumber) ? userID
            : String(SHA256.hash(data: Array(userID.utf8)).prefix(7).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } % 9_000_000_000_000_000 + 1_000_000_000_000_000)
        let mid = (flavor == .messenger ? "m_" : "aWdf") + Hex.encode((0..<18).map { _ in UInt8.random(in: 0...255) })
        let event: JSONObject = [
            "sender": ["id": .string(user)], "recipient": ["id": .string(ownID)], "timestamp": .int(now.milliseconds),
            "message": ["mid": .string(mid), "text": .string(text)],
        ]
        let body: JSONObject = ["object": .string(flavor.object),
                                "entry": [["id": .string(ownID), "time": .int(now.milliseconds), "messaging": [.object(event)]]]]
        return Array((try? JSON.encode(body)) ?? Data())
    }
}
