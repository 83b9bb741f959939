import Foundation
import Testing
@testable import InstagramAdapter
@testable import MessengerAdapter
@testable import MetaAdapter
@testable import SwitchboardCore
@testable import SwitchboardRuntime
@testable import SwitchboardStore

/// Messenger Platform fixtures (Messenger and Instagram): payload shapes from Meta's webhook
/// reference (shared/reference/meta-channels.md §3.2–3.3, §4.2–4.4).
enum MP {
    static let appSecret = "8a3f5e0c1d2b4a6978e5f4c3b2a1d0e9"
    static let verifyToken = "tell-me-it-is-you"
    static let page = "106540352242922"
    static let igAccount = "17841400008460056"
    static let psid = "24012345678901234"
    static let psid2 = "24098765432109876"
    static let igsid = "6541234567890123"

    static func registry() -> AdapterRegistry {
        var r = TestRegistry.make()
        r.register(MessengerChannelAdapter.type, MessengerChannelAdapter.factory)
        r.register(InstagramChannelAdapter.type, InstagramChannelAdapter.factory)
        return r
    }

    static func messengerYAML(_ id: String, graph: FakeGraph, humanAgent: Bool = false, extra: String = "") -> String {
        """
        { id: \(id), type: messenger, page_id: "\(page)", page_access_token: "\(graph.token)", app_secret: "\(appSecret)",
          verify_token: "\(verifyToken)", graph_api_base: "\(graph.base)", graph_api_version: "\(graph.version)",
          human_agent_tag: \(humanAgent), media_retry_delays: ["0.1s"] \(extra) }
        """
    }

    static func instagramYAML(_ id: String, graph: FakeGraph, humanAgent: Bool = false, extra: String = "") -> String {
        """
        { id: \(id), type: instagram, account_id: "\(igAccount)", access_token: "\(graph.token)", app_secret: "\(appSecret)",
          verify_token: "\(verifyToken)", graph_api_base: "\(graph.base)", graph_api_version: "\(graph.version)",
          human_agent_tag: \(humanAgent), media_retry_delays: ["0.1s"] \(extra) }
        """
    }

    static var now: Int64 { Timestamp.now().milliseconds }
    static func mid(_ tag: String = "") -> String { "m_" + tag + String(UUID().uuidString.prefix(12)) }

    /// One `messaging[]` event from the customer to us; `fields` is the event-specific JSON (no braces).
    static func event(from sender: String = psid, to recipient: String = page, at: Int64 = now, _ fields: String) -> String {
        #"{"sender":{"id":"\#(sender)"},"recipient":{"id":"\#(recipient)"},"timestamp":\#(at),\#(fields)}"#
    }

    static func text(_ text: String, mid: String = mid(), from: String = psid, to: String = page, at: Int64 = now) -> String {
        event(from: from, to: to, at: at, #""message":{"mid":"\#(mid)","text":"\#(text)"}"#)
    }

    /// The envelope: `entries` as (entry id, events).
    static func body(object: String = "page", _ entries: [(String, [String])]) -> [UInt8] {
        let e = entries.map { id, events in #"{"id":"\#(id)","time":\#(now),"messaging":[\#(events.joined(separator: ","))]}"# }
        return Array(#"{"object":"\#(object)","entry":[\#(e.joined(separator: ","))]}"#.utf8)
    }

    static func page(_ events: [String]) -> [UInt8] { body([(page, events)]) }
    static func instagram(_ events: [String]) -> [UInt8] { body(object: "instagram", [(igAccount, events)]) }

    static func post(_ d: TestDaemon, _ channel: String, _ body: [UInt8], signature: String? = nil, sign: Bool = true) async throws -> TestDaemon.HTTPResult {
        var headers = ["content-type": "application/json"]
        if sign { headers["X-Hub-Signature-256"] = signature ?? MetaWebhook.sign(body, appSecret: appSecret) }
        return try await http("POST", d.publicBase + "/webhooks/\(channel)", body: body, headers: headers)
    }

    /// Translates the single event of a `messaging[]` fixture.
    static func translate(_ event: String, flavor: MessengerPlatform.Flavor = .messenger, entry: String? = nil, standby: Bool = false) throws -> MessengerPlatform.Translation {
        let own = flavor == .messenger ? page : igAccount
        let item = MessengerPlatform.Item(entryID: entry ?? own, event: try JSONValue.parse(Data(event.utf8)), standby: standby)
        return MessengerPlatform.translate(item, flavor: flavor, ownID: own, raw: RawPayload(format: "json", bytes: Array(event.utf8)))
    }

    static func message(_ t: MessengerPlatform.Translation) -> InboundMessage? {
        if case .message(let m)? = t.event?.kind { return m }
        return nil
    }

    static func render(_ json: String, flavor: MessengerPlatform.Flavor = .messenger, link: Bool = false,
                       target: String? = nil) throws -> [MessengerPlatform.Outgoing] {
        let parts = try JSON.decode([Part].self, from: Data(json.utf8))
        return try MessengerPlatform.render(parts, flavor: flavor, mediaLink: { link ? "https://chat.example.com/media/\($0)?sig=x" : nil },
                                            reactionTarget: { $0.targetExternalID ?? target })
    }

    static func messageObject(_ o: MessengerPlatform.Outgoing) -> JSONValue? {
        if case .message(let m) = o { return .object(m) }
        return nil
    }
}

/// Runs `body` with a fake Graph API and a daemon that knows the Messenger and Instagram types.
func withMessaging<T: Sendable>(_ yaml: @Sendable (FakeGraph) -> String, _ body: (TestDaemon, FakeGraph) async throws -> T) async throws -> T {
    let graph = try await FakeGraph.start()
    do {
        let r = try await withDaemon(yaml(graph), registry: MP.registry()) { try await body($0, graph) }
        await graph.stop()
        return r
    } catch {
        await graph.stop()
        throw error
    }
}

extension TestDaemon {
    func mpEvents(_ type: String) async throws -> [JSONValue] {
        try await runtime.store.events(afterSeq: 0, limit: 1000).filter { $0.type == type }.compactMap { try? JSONValue.parse($0.body) }
    }
    func mpConversations(_ channel: String) async throws -> [Conversation] {
        try await runtime.store.conversations(channelID: channel, limit: 50, cursor: nil).0
    }
    /// Sends a reply through the API; returns the HTTP answer.
    func mpReply(_ conversation: String, _ json: String) async throws -> HTTPResult {
        try await api("POST", "/v1/conversations/\(conversation)/messages", json: json)
    }
}

extension FakeGraph {
    /// The JSON bodies POSTed to the Send API (`…/messages`), in order.
    func mpSends(_ node: String) -> [JSONValue] { requests("POST", graphPath("\(node)/messages")).compactMap(\.json) }
}
