import AsyncHTTPClient
import Foundation
import MessengerAdapter
import MetaAdapter
import SwitchboardCore
import SwitchboardRuntime

/// The Instagram messaging channel: one Instagram professional account (`account_id`), through
/// the Messenger API for Instagram (a Page access token, `graph.facebook.com`) or the Instagram
/// API with Instagram Login (an Instagram user token, `graph_api_base: https://graph.instagram.com`).
///
/// The webhook events (`object: "instagram"`) are the Messenger Platform's, so the translation
/// and the engine are `MessengerAdapter`'s (`MessengerPlatform`, `MessagingChannel`), in the
/// Instagram flavour: read receipts by `mid`, story mentions and story replies, shared posts and
/// reels, unsends; no button template (buttons go out as a one-element generic template), no
/// file or phone-number buttons, text up to 1000 characters. Sends go to `POST /me/messages`,
/// which both token kinds accept.
public struct InstagramChannelAdapter: MessagingChannelAdapter {
    public static let type = "instagram"

    public let core: MessagingChannel

    public init(channel: ChannelRef, settings: MessagingSettings, client: HTTPClient) {
        core = MessagingChannel(channel: channel, settings: settings, client: client)
    }

    /// Keys of an `instagram` channel besides the common Meta ones (`MetaChannelSettings`).
    public static let ownKeys = ["account_id", "store_media"] + MessagingSettings.sharedKeys

    /// The registry entry: reads and checks this channel's keys (problems name the key path,
    /// never a secret's value).
    public static let factory: AdapterFactory = { channel, node, env in
        node.rejectUnknownKeys(AdapterRegistry.commonKeys + MetaChannelSettings.keys + ownKeys,
                               secrets: MetaChannelSettings.secretKeys + ["access_token"])
        let meta = MetaChannelSettings(node: node)
        let account = node.string("account_id", required: true)?.trimmingCharacters(in: .whitespaces)
        if let a = account, a.isEmpty || !a.allSatisfy(\.isNumber) {
            node["account_id"].problem("expected the numeric Instagram professional account id (the id webhooks carry in entry[].id)")
        }
        let token = node.secret("access_token", required: true)?.trimmingCharacters(in: .whitespacesAndNewlines)
        let store = node.bool("store_media", default: true)
        let shared = MessagingSettings.read(node)
        guard let account, let token, !token.isEmpty, meta.appSecret != nil, meta.verifyToken != nil else { return nil }
        let settings = MessagingSettings(flavor: .instagram, ownID: account, sendNode: "me", accessToken: MetaSecret(token), meta: meta,
                                         humanAgentTag: shared.humanAgent, appID: shared.appID, storeMedia: store,
                                         appSecretProof: shared.proof, mediaRetryDelays: shared.delays, mediaRetryFor: shared.retryFor)
        return InstagramChannelAdapter(channel: channel, settings: settings, client: env.httpClient)
    }
}

