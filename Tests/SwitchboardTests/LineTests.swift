import Foundation
import GRDB
import Testing
@testable import LineAdapter
@testable import SwitchboardCore
@testable import SwitchboardRuntime
@testable import SwitchboardStore

/// Shared LINE fixtures: payload shapes from LINE's webhook reference.
enum LineFixture {
    static let secret = "8c570fa6dd201bb328f1c1eac23a96d8"
    static let user = "U4af4980629a0b1c2d3e4f5a6b7c8d9e0"
    static let user2 = "U49585cd0d5e1f2a3b4c5d6e7f8a9b0c1"
    static let group = "Ca56f94637c0a1b2c3d4e5f6a7b8c9d0e"
    static let room = "Ra8dbf4673c0a1b2c3d4e5f6a7b8c9d0e"

    static func registry() -> AdapterRegistry {
        var r = TestRegistry.make()
        r.register(LineChannelAdapter.type, LineChannelAdapter.factory)
        return r
    }

    static func channelYAML(_ id: String, api: FakeLineAPI, ttl: String = "50s") -> String {
        """
        { id: \(id), type: line, channel_secret: "\(secret)", channel_access_token: "\(FakeLineAPI.token)",
          api_base: "\(api.base)", data_api_base: "\(api.base)", reply_token_ttl: \(ttl), media_retry_delays: ["0.2s", "0.2s", "0.2s"] }
        """
    }

    static func userSource(_ u: String = user) -> String { #"{"type":"user","userId":"\#(u)"}"# }
    static func groupSource(_ u: String = user) -> String { #"{"type":"group","groupId":"\#(group)","userId":"\#(u)"}"# }
    static func roomSource(_ u: String = user) -> String { #"{"type":"room","roomId":"\#(room)","userId":"\#(u)"}"# }

    static func eventID() -> String { ID.ulid(milliseconds: Timestamp.now().milliseconds) }

    /// One event with the common envelope; `fields` is the type-specific JSON (without braces).
    static func event(_ type: String, source: String = userSource(), replyToken: String? = "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA",
                      id: String = eventID(), redelivery: Bool = false, at: Int64? = nil, _ fields: String = "") -> String {
        var s = #"{"type":"\#(type)","mode":"active","timestamp":\#(at ?? Timestamp.now().milliseconds),"webhookEventId":"\#(id)","deliveryContext":{"isRedelivery":\#(redelivery)},"source":\#(source)"#
        if let replyToken { s += #","replyToken":"\#(replyToken)""# }
        if !fields.isEmpty { s += "," + fields }
        return s + "}"
    }

    static func text(_ text: String, messageID: String = String(Int.random(in: 100_000_000...999_999_999)), source: String = userSource(),
                     replyToken: String? = "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA", id: String = eventID()) -> String {
        event("message", source: source, replyToken: replyToken, id: id,
              #""message":{"id":"\#(messageID)","type":"text","quoteToken":"q3Plxr4AgKd","markAsReadToken":"30yhdy232","text":"\#(text)"}"#)
    }

    static func body(_ events: [String]) -> [UInt8] {
        Array(#"{"destination":"U00000000000000000000000000000001","events":[\#(events.joined(separator: ","))]}"#.utf8)
    }

    static func sign(_ body: [UInt8], secret: String = secret) -> String { LineChannelAdapter.signature(body, secret: secret) }

    static func post(_ d: TestDaemon, _ channel: String, _ body: [UInt8], header: String = "x-line-signature",
                     signature: String? = nil) async throws -> TestDaemon.HTTPResult {
        try await http("POST", d.publicBase + "/webhooks/\(channel)", body: body,
                       headers: ["content-type": "application/json", header: signature ?? sign(body)])
    }

    static func translate(_ event: String) throws -> Translation {
        LineChannelAdapter.translate(try JSONValue.parse(Data(event.utf8)), raw: Array(event.utf8))
    }
}

/// Runs `body` with a fake LINE API and a daemon that knows the `line` channel type.
func withLine<T: Sendable>(_ yaml: @Sendable (FakeLineAPI) -> String, publicURL: String = "http://127.0.0.1:1",
                           _ body: (TestDaemon, FakeLineAPI) async throws -> T) async throws -> T {
    let api = try await FakeLineAPI.start()
    do {
        let r = try await withDaemon(yaml(api), registry: LineFixture.registry(), publicURL: publicURL) { try await body($0, api) }
        await api.stop()
        return r
    } catch {
        await api.stop()
        throw error
    }
}

extension TestDaemon {
    func lineConversations(_ channel: String) async throws -> [Conversation] {
        try await runtime.store.conversations(channelID: channel, limit: 50, cursor: nil).0
    }
    func storedEvents(_ type: String) async throws -> [JSONValue] {
        try await runtime.store.events(afterSeq: 0, limit: 500).filter { $0.type == type }.compactMap { try? JSONValue.parse($0.body) }
    }
}

// MARK: - translation of each documented event shape

@Suite struct LineFixtureTests {
    @Test func textWithEmojiAndMentionsInAGroup() throws {
        let e = LineFixture.event("message", source: LineFixture.groupSource(), #"""
            "message":{"id":"444573844083572737","type":"text","quoteToken":"q3Plxr4AgKd","markAsReadToken":"30yhdy232",
             "text":"@All @example Good Morning!! (love)","quotedMessageId":"444573844083570000",
             "emojis":[{"index":29,"length":6,"productId":"5ac1bfd5040ab15980c9b435","emojiId":"001"}],
             "mention":{"mentionees":[{"index":0,"length":4,"type":"all"},{"index":5,"length":8,"type":"user","userId":"U49585cd0d5","isSelf":false}]}}
            """#)
        let t = try LineFixture.translate(e)
        #expect(t.event.peer.channelUserID == "group:\(LineFixture.group)")
        #expect(t.event.thread == LineFixture.group)
        #expect(t.event.sender?.channelUserID == LineFixture.user)
        #expect(t.chatID == LineFixture.group)
        #expect(t.replyToken == "nHuyWiB7yP5Zw52FIkcQobQuGDXCTA")
        #expect(t.markAsReadToken == "30yhdy232")
        let eventID = try #require(try JSONValue.parse(Data(e.utf8))["webhookEventId"]?.stringValue)
        #expect(t.event.dedupeKey == "evt:\(eventID)", "redeliveries carry the same webhookEventId")
        guard case .message(let m) = t.event.kind, case .text(let text) = m.parts.first else { Issue.record("not a text message"); return }
        #expect(m.externalID == "444573844083572737")
        #expect(m.replyToExternalID == "444573844083570000")
        #expect(text.text == "@All @example Good Morning!! (love)")
        #expect(text.extra["emojis"]?.arrayValue?.first?["productId"]?.stringValue == "5ac1bfd5040ab15980c9b435")
        #expect(text.extra["mention"]?["mentionees"]?.arrayValue?.count == 2)
        #expect(t.event.channelData?["quote_token"]?.stringValue == "q3Plxr4AgKd")
        #expect(t.event.channelData?["mention"] != nil)
    }

    @Test func mediaMessagesAreCommittedPendingAndQueuedForDownload() throws {
        for (type, extra) in [("image", #","imageSet":{"id":"E005D41A7288F41B655","index":2,"total":2}"#), ("video", #","duration":60000"#),
                              ("audio", #","duration":60000"#), ("file", #","fileName":"file.txt","fileSize":2138"#)] {
            let provider = type == "file" ? "" : #","contentProvider":{"type":"line"}"#
            let t = try LineFixture.translate(LineFixture.event("message", #""message":{"id":"325708","type":"\#(type)"\#(provider)\#(extra)}"#))
            guard case .message(let m) = t.event.kind, case .media(let media) = m.parts.first else { Issue.record("\(type): not media"); continue }
            #expect(media.kind.rawValue == type)
            #expect(media.unavailable == "pending")
            #expect(media.url == "line-content:325708")
            #expect(t.media?.messageID == "325708")
            if type == "file" { #expect(media.filename == "file.txt" && media.size == 2138) }
            if type == "video" { #expect(media.extra["duration_ms"]?.intValue == 60000) }
            if type == "image" { #expect(media.extra["image_set"]?["total"]?.intValue == 2) }
        }
        // Externally hosted content can't be fetched through the content API: links kept, nothing queued.
        let ext = try LineFixture.translate(LineFixture.event("message", #"""
            "message":{"id":"1","type":"image","contentProvider":{"type":"external","originalContentUrl":"https://example.com/a.jpg","previewImageUrl":"https://example.com/p.jpg"}}
            """#))
        guard case .message(let m) = ext.event.kind, case .media(let media) = m.parts.first else { Issue.record("external image"); return }
        #expect(media.url == "https://example.com/a.jpg" && ext.media == nil && media.unavailable == nil)
    }

    @Test func locationStickerAndPostback() throws {
        let loc = try LineFixture.translate(LineFixture.event("message", #"""
            "message":{"id":"325708","type":"location","title":"my location","address":"1-3 Kioicho, Chiyoda-ku, Tokyo","latitude":35.67966,"longitude":139.73669}
            """#))
        guard case .message(let lm) = loc.event.kind, case .location(let l) = lm.parts.first else { Issue.record("location"); return }
        #expect(l.lat == 35.67966 && l.long == 139.73669 && l.name == "my location" && l.address?.hasPrefix("1-3 Kioicho") == true)

        let sticker = try LineFixture.translate(LineFixture.event("message", #"""
            "message":{"id":"1501597916","type":"sticker","quoteToken":"q","packageId":"11537","stickerId":"52002738","stickerResourceType":"ANIMATION","keywords":["cony","hi"]}
            """#))
        guard case .message(let sm) = sticker.event.kind, case .media(let s) = sm.parts.first else { Issue.record("sticker"); return }
        #expect(s.kind == .sticker && s.extra["package_id"]?.stringValue == "11537" && s.extra["sticker_id"]?.stringValue == "52002738")
        #expect(s.extra["sticker_resource_type"]?.stringValue == "ANIMATION")
        #expect(sticker.media == nil, "stickers are never downloaded")

        let pb = try LineFixture.translate(LineFixture.event("postback", #""postback":{"data":"action=buy&itemId=123","params":{"datetime":"2017-12-25T01:00"}}"#))
        guard case .message(let pm) = pb.event.kind, case .interaction(let i) = pm.parts.first else { Issue.record("postback"); return }
        #expect(i.kind == .postback && i.payload == "action=buy&itemId=123")
        #expect(i.values?["datetime"]?.stringValue == "2017-12-25T01:00")
    }

    @Test func unsendEditAndConversationEvents() throws {
        let unsend = try LineFixture.translate(LineFixture.event("unsend", source: LineFixture.groupSource(), replyToken: nil, #""unsend":{"messageId":"325708"}"#))
        guard case .deleted(let gone) = unsend.event.kind else { Issue.record("unsend"); return }
        #expect(gone == "325708" && unsend.event.thread == LineFixture.group)

        let edited = try LineFixture.translate(LineFixture.event("messageEdited", source: LineFixture.groupSource(),
                                                                 #""message":{"id":"610830548529053697","type":"text","quoteToken":"q","text":"Edited message"}"#))
        guard case .updated(let ext, let parts) = edited.event.kind else { Issue.record("edit"); return }
        #expect(ext == "610830548529053697" && parts.textFallback == "Edited message")

        let cases: [(String, String, String, String)] = [
            ("follow", LineFixture.userSource(), #""follow":{"isUnblocked":true}"#, "conversation.followed"),
            ("unfollow", LineFixture.userSource(), "", "conversation.unfollowed"),
            ("join", #"{"type":"group","groupId":"\#(LineFixture.group)"}"#, "", "conversation.joined"),
            ("leave", #"{"type":"group","groupId":"\#(LineFixture.group)"}"#, "", "conversation.left"),
            ("memberJoined", #"{"type":"group","groupId":"\#(LineFixture.group)"}"#, #""joined":{"members":[{"type":"user","userId":"U1"},{"type":"user","userId":"U2"}]}"#, "conversation.member_joined"),
            ("memberLeft", #"{"type":"room","roomId":"\#(LineFixture.room)"}"#, #""left":{"members":[{"type":"user","userId":"U3"}]}"#, "conversation.member_left"),
        ]
        for (type, source, fields, expected) in cases {
            let t = try LineFixture.translate(LineFixture.event(type, source: source, fields))
            guard case .custom(let et, let data) = t.event.kind else { Issue.record("\(type) not custom"); continue }
            #expect(et.rawValue == expected)
            #expect(data["line_event_type"]?.stringValue == type)
            if type == "follow" { #expect(data["is_unblocked"]?.boolValue == true && t.event.peer.channelUserID == LineFixture.user) }
            if type == "memberJoined" { #expect(data["members"]?.arrayValue?.compactMap(\.stringValue) == ["U1", "U2"]) }
            if type == "memberLeft" { #expect(t.event.peer.channelUserID == "room:\(LineFixture.room)" && t.event.thread == LineFixture.room) }
        }
    }

    @Test func unknownEventsAndMessageTypesAreKeptAsUnsupported() throws {
        let beacon = try LineFixture.translate(LineFixture.event("beacon", #""beacon":{"hwid":"d41d8cd98f","type":"enter"}"#))
        guard case .message(let m) = beacon.event.kind, case .unsupported(let u) = m.parts.first else { Issue.record("beacon"); return }
        #expect(u.channelType == "line" && u.extra["line_event"]?["beacon"]?["hwid"]?.stringValue == "d41d8cd98f")
        #expect(beacon.event.raw != nil)
        let odd = try LineFixture.translate(LineFixture.event("message", #""message":{"id":"9","type":"hologram"}"#))
        guard case .message(let om) = odd.event.kind, case .unsupported = om.parts.first else { Issue.record("unknown message type"); return }
        let standby = try LineFixture.translate(LineFixture.text("hi").replacingOccurrences(of: #""mode":"active""#, with: #""mode":"standby""#))
        #expect(standby.replyToken == nil, "no replies while another module owns the chat")
    }

    @Test func textIsSplitByUTF16UnitsAndRetryKeysAreStableUUIDs() {
        let emoji = String(repeating: "😀", count: 3000) // 6000 UTF-16 units, 3000 characters
        let chunks = LineChannelAdapter.splitUTF16(emoji, max: 5000)
        #expect(chunks.count == 2 && chunks.allSatisfy { $0.utf16.count <= 5000 } && chunks.joined() == emoji)
        let words = String(repeating: "word ", count: 1500)
        #expect(LineChannelAdapter.splitUTF16(words, max: 5000).allSatisfy { $0.utf16.count <= 5000 && !$0.hasPrefix(" ") })
        let a = LineChannelAdapter.retryKey(messageID: "msg_1", batch: 0)
        #expect(a == LineChannelAdapter.retryKey(messageID: "msg_1", batch: 0))
        #expect(a != LineChannelAdapter.retryKey(messageID: "msg_1", batch: 1))
        #expect(UUID(uuidString: a) != nil)
    }

    @Test func errorsAreClassified() {
        let quota = LineChannelAdapter.classify(status: 429, body: ["message": "You have reached your monthly limit."], retryAfter: nil)
        #expect(quota.code == "quota_exceeded" && !quota.retryable)
        let rate = LineChannelAdapter.classify(status: 429, body: ["message": "The API rate limit has been exceeded. Try again later."], retryAfter: "7")
        #expect(rate.retryable && rate.retryAfter == 7)
        let bad = LineChannelAdapter.classify(status: 400, body: ["message": "The request body has 1 error(s)",
                                                                  "details": [["message": "May not be empty", "property": "messages[0].text"]]], retryAfter: nil)
        #expect(!bad.retryable && bad.message.contains("messages[0].text: May not be empty"))
        let auth = LineChannelAdapter.classify(status: 401, body: nil, retryAfter: nil)
        #expect(auth.channelState == .authExpired)
        #expect(LineChannelAdapter.classify(status: 502, body: nil, retryAfter: nil).retryable)
    }

    @Test func configDiagnosticsNameKeysAndNeverSecrets() {
        let d = ConfigDiagnostics()
        let env = AdapterEnvironment(httpClient: .shared, publicURL: "https://x", logger: testLogger)
        let cfg = ConfigLoader.load(text: """
            channels:
              - { id: l1, type: line, channel_access_token: "super-secret-token-value", api_base: "ftp://x", chanel_secret: "abc" }
            """, environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"), adapterKinds: ["line"], diagnostics: d)
        _ = LineFixture.registry().make(cfg.channels[0], env: env)
        let p = d.problems
        #expect(p.contains { $0.hasPrefix("channels[0].channel_secret: missing") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].chanel_secret: unknown key") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].api_base:") }, "\(p)")
        #expect(!p.joined().contains("super-secret-token-value"))
    }
}

// MARK: - webhooks through the daemon

@Suite struct LineWebhookTests {
    @Test func signaturesAreCheckedOnTheRawBytes() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { d, _ in
            let body = LineFixture.body([LineFixture.text("Hello")])
            // Missing header, wrong secret, a re-encoded body (other spacing) with the original's signature.
            let missing = try await http("POST", d.publicBase + "/webhooks/\(channel)", body: body, headers: ["content-type": "application/json"])
            #expect(missing.status == 401)
            #expect(try await LineFixture.post(d, channel, body, signature: LineFixture.sign(body, secret: "ffffffffffffffffffffffffffffffff")).status == 401)
            let reencoded = Array(String(decoding: body, as: UTF8.self).replacingOccurrences(of: ",", with: ", ").utf8)
            #expect(try await LineFixture.post(d, channel, reencoded, signature: LineFixture.sign(body)).status == 401)
            #expect(try await LineFixture.post(d, channel, body, signature: "not base64 at all").status == 401)
            #expect(try await d.runtime.store.counts().messages == 0, "nothing stored for a bad signature")
            // The header name in any capitalisation.
            let ok = try await LineFixture.post(d, channel, body, header: "X-LINE-Signature")
            #expect(ok.status == 200)
            #expect(try await d.runtime.store.counts().messages == 1)
            // The console's verification ping: no events.
            let ping = Array(#"{"destination":"U00000000000000000000000000000001","events":[]}"#.utf8)
            #expect(try await LineFixture.post(d, channel, ping).status == 200)
        }
    }

    @Test func redeliveredEventsAreStoredOnce() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { (d: TestDaemon, _: FakeLineAPI) async throws in
            let id = LineFixture.eventID()
            let first = LineFixture.body([LineFixture.text("once", messageID: "5001", id: id)])
            let again = LineFixture.body([LineFixture.text("once", messageID: "5001", id: id)
                .replacingOccurrences(of: #""isRedelivery":false"#, with: #""isRedelivery":true"#)])
            #expect(try await LineFixture.post(d, channel, first).status == 200)
            #expect(try await LineFixture.post(d, channel, again).status == 200)
            #expect(try await d.runtime.store.counts().messages == 1)
            #expect(try await d.storedEvents("message.received").count == 1)
        }
    }

    @Test func groupsAndRoomsAreOneConversationEachWithTheSpeakerAsSender() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { d, api in
            api.setProfile(LineFixture.user, name: "Alice")
            let body = LineFixture.body([
                LineFixture.text("hi from alice", source: LineFixture.groupSource(LineFixture.user)),
                LineFixture.text("hi from bob", source: LineFixture.groupSource(LineFixture.user2)),
                LineFixture.text("in a room", source: LineFixture.roomSource(LineFixture.user)),
                LineFixture.text("direct", source: LineFixture.userSource(LineFixture.user)),
            ])
            #expect(try await LineFixture.post(d, channel, body).status == 200)
            let convs = try await d.lineConversations(channel)
            #expect(Set(convs.map(\.thread)) == [LineFixture.group, LineFixture.room, "*"])
            let group = try #require(convs.first { $0.thread == LineFixture.group })
            let msgs = try await d.runtime.store.messages(conversationID: group.id, after: nil, limit: 10)
            #expect(msgs.compactMap { $0.sender?.channelUserID } == [LineFixture.user, LineFixture.user2])
            // Profiles come afterwards: Alice's member profile was looked up through the group endpoint.
            try await eventually("member profile look-up") {
                api.requests.contains { $0.path == "/v2/bot/group/\(LineFixture.group)/member/\(LineFixture.user)" }
            }
            try await eventually("Alice's name stored") {
                try await d.runtime.store.identity(msgs[0].sender!.identityID!)?.displayName == "Alice"
            }
            // …and announced: identity.updated is about Alice (the group's identity has no name).
            // (Alice also wrote directly and in a room: her profile is announced in each.)
            try await eventually("identity.updated in the group") {
                try await d.storedEvents("identity.updated").contains { $0["subject"]?.stringValue == group.id }
            }
            let updates = try await d.storedEvents("identity.updated")
            let alice = try #require(updates.first { $0["subject"]?.stringValue == group.id }, "\(updates)")
            #expect(alice["data"]?["channel_user_id"]?.stringValue == LineFixture.user)
            #expect(alice["data"]?["display_name"] == "Alice" && alice["data"]?["id"]?.stringValue == msgs[0].sender?.identityID)
            #expect(!updates.contains { $0["data"]?["channel_user_id"]?.stringValue == "group:" + LineFixture.group })
        }
    }

    @Test func mediaIsDownloadedAfterTheCommitAndPublishedAsAnUpdate() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { d, api in
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 7, count: 2000)
            api.setContent("7001", [.init(status: 202), .init(status: 202), .init(status: 200, bytes: jpeg, contentType: "image/jpeg")])
            api.setContent("7002", [.init(status: 410)])
            api.setContent("7003", [.init(status: 200, bytes: Array(repeating: 1, count: 2_000_000), contentType: "video/mp4")])
            let body = LineFixture.body([
                LineFixture.event("message", #""message":{"id":"7001","type":"image","contentProvider":{"type":"line"}}"#),
                LineFixture.event("message", #""message":{"id":"7002","type":"file","fileName":"gone.pdf","fileSize":10}"#),
                LineFixture.event("message", #""message":{"id":"7003","type":"video","duration":1000,"contentProvider":{"type":"line"}}"#),
            ])
            #expect(try await LineFixture.post(d, channel, body).status == 200)
            // Answered before the downloads finished: 7001 needs three tries 0.2 s apart, so had
            // the answer waited for them, all three updates would already be stored.
            #expect(try await d.storedEvents("message.updated").count < 3, "the webhook is answered before the downloads")
            let received = try await d.storedEvents("message.received")
            #expect(received.count == 3)
            #expect(received.allSatisfy { $0["data"]?["parts"]?.arrayValue?.first?["unavailable"]?.stringValue == "pending" })
            try await eventually("three message.updated events") { try await d.storedEvents("message.updated").count == 3 }
            let updates = try await d.storedEvents("message.updated")
            func part(_ id: String) -> JSONValue? {
                updates.first { $0["data"]?["external_id"]?.stringValue == id }?["data"]?["parts"]?.arrayValue?.first
            }
            let image = try #require(part("7001"))
            let mediaID = try #require(image["media_id"]?.stringValue)
            #expect(image["mime_type"]?.stringValue == "image/jpeg" && image["unavailable"] == nil)
            #expect(updates.first { $0["data"]?["external_id"]?.stringValue == "7001" }?["data"]?["message_id"]?.stringValue != nil)
            #expect(api.requests("/v2/bot/message/7001/content").count == 3, "202, 202, then 200")
            let download = try await d.api("GET", "/v1/media/\(mediaID)")
            #expect(Array(download.body) == jpeg)
            #expect(part("7002")?["unavailable"]?.stringValue == "expired")
            #expect(part("7002")?["filename"]?.stringValue == "gone.pdf")
            #expect(part("7003")?["unavailable"]?.stringValue == "too_large", "media.max_bytes is 1MB in tests")
            // The stored message shows the fetched media, not `pending`.
            let messageID = try #require(updates.first { $0["data"]?["external_id"]?.stringValue == "7001" }?["data"]?["message_id"]?.stringValue)
            let stored = try await d.api("GET", "/v1/messages/\(messageID)")
            #expect(stored.json?["parts"]?.arrayValue?.first?["media_id"]?.stringValue == mediaID)
            #expect(stored.json?["parts"]?.arrayValue?.first?["unavailable"] == nil)
        }
    }

    /// Content LINE keeps preparing (202) or a data API that keeps failing (5xx) past the quick
    /// retries stays `pending` and is fetched later; past `media_retry_for` it is given up.
    @Test func contentThatKeepsFailingIsTriedAgainLater() async throws {
        let channel = uniqueID("line")
        // Three rounds take about a second; the window is stretched like every test wait
        // (`testTimeoutScale`), since at the start of a full run the rounds were seen to slip
        // past a 3 s window.
        let window = "\(Int(3 * testTimeoutScale))s"
        try await withLine({ api in
            "channels: [ \(LineFixture.channelYAML(channel, api: api).replacingOccurrences(of: #"["0.2s", "0.2s", "0.2s"]"#, with: #"["0.1s"], media_retry_for: "\#(window)""#)) ]"
        }) { d, api in
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 9, count: 1000)
            api.setContent("7201", [.init(status: 202), .init(status: 503), .init(status: 202), .init(status: 503), .init(status: 200, bytes: jpeg)])
            api.setContent("7202", [.init(status: 503)])
            let body = LineFixture.body([
                LineFixture.event("message", #""message":{"id":"7201","type":"image","contentProvider":{"type":"line"}}"#),
                LineFixture.event("message", #""message":{"id":"7202","type":"image","contentProvider":{"type":"line"}}"#),
            ])
            #expect(try await LineFixture.post(d, channel, body).status == 200)
            @Sendable func update(_ id: String) async throws -> JSONValue? {
                try await d.storedEvents("message.updated").first { $0["data"]?["external_id"]?.stringValue == id }
            }
            try await eventually("7201 stored") { try await update("7201") != nil }
            let image = try await update("7201")?["data"]?["parts"]?.arrayValue?.first
            #expect(image?["unavailable"] == nil && image?["media_id"] != nil, "stored after two rounds of two failed attempts")
            #expect(api.requests("/v2/bot/message/7201/content").count == 5)
            try await eventually(timeout: 15, "7202 given up") { try await update("7202") != nil }
            #expect(try await update("7202")?["data"]?["parts"]?.arrayValue?.first?["unavailable"] == "download_failed")
            #expect(api.requests("/v2/bot/message/7202/content").count > 2, "tried again after the quick retries")
            #expect(try await d.storedEvents("message.updated").count == 2, "each published once")
        }
    }

    /// A download interrupted by a restart is resumed by the next daemon on the same database.
    @Test func pendingDownloadsSurviveARestart() async throws {
        let channel = uniqueID("line")
        let api = try await FakeLineAPI.start()
        defer { Task { await api.stop() } }
        let yaml = "channels: [ \(LineFixture.channelYAML(channel, api: api).replacingOccurrences(of: #"["0.2s", "0.2s", "0.2s"]"#, with: #"["30s"]"#)) ]"
        api.setContent("7101", [.init(status: 202)])
        let first = try await TestDaemon.start(yaml, registry: LineFixture.registry())
        let body = LineFixture.body([LineFixture.event("message", #""message":{"id":"7101","type":"image","contentProvider":{"type":"line"}}"#)])
        #expect(try await LineFixture.post(first, channel, body).status == 200)
        try await eventually("first attempt") { api.requests("/v2/bot/message/7101/content").count == 1 }
        #expect(try await first.runtime.store.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM adapter_state WHERE key = 'media_job:7101'")
        } == 1, "the pending download is recorded")
        await first.stop(keepFiles: true)

        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 9, count: 100)
        api.setContent("7101", [.init(status: 200, bytes: jpeg, contentType: "image/jpeg")])
        let second = try await TestDaemon.start(yaml, registry: LineFixture.registry(), dir: first.dir)
        try await eventually("resumed download published") { try await second.storedEvents("message.updated").count == 1 }
        let part = try await second.storedEvents("message.updated").first?["data"]?["parts"]?.arrayValue?.first
        #expect(part?["media_id"]?.stringValue != nil && part?["unavailable"] == nil)
        try await eventually("record removed") {
            try await second.runtime.store.pool.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM adapter_state WHERE key = 'media_job:7101'")
            } == 0
        }
        await second.stop()
    }

    @Test func theSimulateSampleIsASignedLINETextWebhook() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { (d: TestDaemon, _: FakeLineAPI) async throws in
            let body = LineChannelAdapter.sampleTextWebhook(text: "simulated hello", userID: "simulated-customer")
            let r = try await LineFixture.post(d, channel, body)
            #expect(r.status == 200)
            let received = try await d.storedEvents("message.received")
            #expect(received.first?["data"]?["text_fallback"]?.stringValue == "simulated hello")
            let user = try #require(received.first?["data"]?["sender"]?["channel_user_id"]?.stringValue)
            #expect(user.count == 33 && user.hasPrefix("U"))
        }
    }

    @Test func otherEventTypesReachTheStore() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { d, _ in
            let body = LineFixture.body([
                LineFixture.text("to be unsent", messageID: "8001"),
                LineFixture.event("unsend", replyToken: nil, #""unsend":{"messageId":"8001"}"#),
                LineFixture.event("follow", #""follow":{"isUnblocked":false}"#),
                LineFixture.event("postback", #""postback":{"data":"action=buy","params":{"date":"2026-01-01"}}"#),
                LineFixture.event("things", #""things":{"deviceId":"t1","type":"link"}"#),
            ])
            #expect(try await LineFixture.post(d, channel, body).status == 200)
            let deleted = try await d.storedEvents("message.deleted")
            #expect(deleted.first?["data"]?["external_id"]?.stringValue == "8001")
            #expect(deleted.first?["data"]?["message_id"]?.stringValue != nil)
            #expect(try await d.storedEvents("conversation.followed").count == 1)
            let received = try await d.storedEvents("message.received").compactMap { $0["data"]?["parts"]?.arrayValue?.first?["type"]?.stringValue }
            #expect(received.sorted() == ["interaction", "text", "unsupported"])
        }
    }
}

// MARK: - end to end: helpdesk, replies, push, quota

@Suite struct LineEndToEndTests {
    @Test func webhookToHelpdeskThenReplyThenPushAfterTheTokenExpired() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("line")
            try await withLine({ api in """
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ \(LineFixture.channelYAML(channel, api: api, ttl: "6s")) ]
                """ }) { d, api in
                // The token TTL leaves room for a slow, shared test machine between the webhook
                // and the helpdesk's reply; step 3 waits it out.
                api.setProfile(LineFixture.user, name: "Taro")
                // 1. A signed text webhook becomes a CloudEvent at the helpdesk.
                let first = LineFixture.body([LineFixture.text("Where is my order?", messageID: "9001", replyToken: "reply-token-1")])
                #expect(try await LineFixture.post(d, channel, first).status == 200)
                try await eventually("message.received at the helpdesk") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                let received = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" })
                #expect(received.data?["text_fallback"]?.stringValue == "Where is my order?")
                #expect(received.data?["external_id"]?.stringValue == "9001")
                #expect(received.data?["sender"]?["channel_user_id"]?.stringValue == LineFixture.user)
                let conversation = try #require(received.subject)
                // The profile arrives afterwards as identity.updated.
                try await eventually("identity.updated with the LINE display name") {
                    helpdesk.events.contains { $0.type == "switchboard.identity.updated" && $0.data?["display_name"]?.stringValue == "Taro" }
                }

                // 2. The helpdesk replies at once: the reply API with the webhook's token.
                let r1 = try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                         json: #"{"parts":[{"type":"text","text":"Let me check."},{"type":"quick_replies","text":"Which order?","options":[{"title":"Latest","payload":"ORDER_LATEST"},{"title":"Another one","payload":"ORDER_OTHER"}]}]}"#)
                #expect(r1.status == 202)
                try await eventually("reply call") { api.requests("/v2/bot/message/reply").count == 1 }
                let reply = try #require(api.requests("/v2/bot/message/reply").first)
                #expect(reply.body?["replyToken"]?.stringValue == "reply-token-1")
                #expect(reply.headers["x-line-retry-key"] == nil)
                let messages = try #require(reply.body?["messages"]?.arrayValue)
                #expect(messages.first?["text"]?.stringValue == "Let me check.")
                #expect(messages.last?["quickReply"]?["items"]?.arrayValue?.first?["action"]?["data"]?.stringValue == "ORDER_LATEST")
                let id1 = try #require(r1.json?["id"]?.stringValue)
                try await eventually("message.status sent") {
                    helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id1
                        && $0.data?["status"]?.stringValue == "sent" }
                }

                // 3. A new customer message brings a new token; the agent answers after it expired: push.
                let second = LineFixture.body([LineFixture.text("Hello?", messageID: "9002", replyToken: "reply-token-2")])
                #expect(try await LineFixture.post(d, channel, second).status == 200)
                try await Task.sleep(for: .milliseconds(6300))
                let r2 = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"It ships today."}]}"#)
                let id2 = try #require(r2.json?["id"]?.stringValue)
                try await eventually("push call") { api.requests("/v2/bot/message/push").count == 1 }
                let push = try #require(api.requests("/v2/bot/message/push").first)
                #expect(push.body?["to"]?.stringValue == LineFixture.user)
                #expect(push.body?["messages"]?.arrayValue?.first?["text"]?.stringValue == "It ships today.")
                #expect(push.headers["x-line-retry-key"] == LineChannelAdapter.retryKey(messageID: id2, batch: 0))
                #expect(api.requests("/v2/bot/message/reply").count == 1, "the expired token was not used")
                try await eventually("second message.status sent") {
                    helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id2
                        && $0.data?["status"]?.stringValue == "sent" }
                }
                #expect(api.violations.isEmpty, "\(api.violations)")
            }
        }
    }

    @Test func monthlyLimitFailsPermanentlyAndRateLimitsAreRetried() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("line")
            try await withLine({ api in """
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ \(LineFixture.channelYAML(channel, api: api, ttl: "0s")) ]
                """ }) { d, api in
                #expect(try await LineFixture.post(d, channel, LineFixture.body([LineFixture.text("hi")])).status == 200)
                let conversation = try #require(try await d.lineConversations(channel).first?.id)
                api.setPushMode(.monthlyLimit)
                let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"quota?"}]}"#)
                let id = try #require(r.json?["id"]?.stringValue)
                try await eventually("message.status failed") {
                    helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id
                        && $0.data?["status"]?.stringValue == "failed" }
                }
                let failed = try #require(helpdesk.events.first { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id })
                #expect(failed.data?["error"]?["retryable"]?.boolValue == false)
                #expect(failed.data?["error"]?["code"]?.stringValue == "quota_exceeded")
                #expect(api.requests("/v2/bot/message/push").count == 1, "a quota 429 is not retried")

                // A rate-limit 429 is retried with the same retry key, and goes out once.
                api.setPushMode(.rateLimited(retryAfter: 0))
                let r2 = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"again"}]}"#)
                let id2 = try #require(r2.json?["id"]?.stringValue)
                try await eventually("first rate-limited attempt") { api.requests("/v2/bot/message/push").count >= 2 }
                api.setPushMode(.ok)
                try await eventually(timeout: 20, "sent after the rate limit") {
                    helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id2
                        && $0.data?["status"]?.stringValue == "sent" }
                }
                let keys = Set(api.requests("/v2/bot/message/push").dropFirst().compactMap { $0.headers["x-line-retry-key"] })
                #expect(keys == [LineChannelAdapter.retryKey(messageID: id2, batch: 0)])
            }
        }
    }

    @Test func longOutputIsSplitIntoCallsOfFiveAndRichPartsAreValidLINEObjects() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { d, api in
            #expect(try await LineFixture.post(d, channel, LineFixture.body([LineFixture.text("hi", replyToken: "tok-A")])).status == 200)
            let conversation = try #require(try await d.lineConversations(channel).first?.id)
            // Seven native objects through overrides.line: 5 by reply, 2 by push, in order.
            let override = (1...7).map { #"{"type":"text","text":"m\#($0)"}"# }.joined(separator: ",")
            let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                    json: #"{"parts":[{"type":"text","text":"fallback"}],"overrides":{"line":[\#(override)]}}"#)
            #expect(r.status == 202)
            try await eventually("both calls") { api.requests("/v2/bot/message/push").count == 1 }
            let texts = (api.requests("/v2/bot/message/reply") + api.requests("/v2/bot/message/push"))
                .flatMap { $0.body?["messages"]?.arrayValue ?? [] }.compactMap { $0["text"]?.stringValue }
            #expect(texts == (1...7).map { "m\($0)" })
            #expect(api.requests("/v2/bot/message/push").first?.headers["x-line-retry-key"] != nil)

            // Buttons, a card carousel, a location, an image and a sticker: each a valid LINE object.
            let rich = """
                {"parts":[
                  {"type":"buttons","text":"Pick one","actions":[{"type":"reply","title":"Yes","payload":"Y"},{"type":"link","title":"Site","url":"https://example.com"}]},
                  {"type":"carousel","cards":[{"title":"A","subtitle":"first","image_url":"https://example.com/a.png","actions":[{"type":"postback","title":"Buy A","payload":"A"}]},
                                             {"title":"B","actions":[{"type":"postback","title":"Buy B","payload":"B"}]}]},
                  {"type":"location","lat":35.1,"long":139.2,"name":"Shop"},
                  {"type":"media","kind":"image","url":"https://example.com/photo.jpg"},
                  {"type":"media","kind":"sticker","package_id":"446","sticker_id":"1988"},
                  {"type":"media","kind":"file","url":"https://example.com/manual.pdf","filename":"manual.pdf"}
                ]}
                """
            let r2 = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: rich)
            #expect(r2.status == 202)
            // Six objects: one call of five, then one of one.
            try await eventually("rich push") { api.requests("/v2/bot/message/push").count == 3 }
            #expect(api.requests("/v2/bot/message/push").dropFirst().map { $0.body?["messages"]?.arrayValue?.count } == [5, 1])
            #expect(r2.json?["render"]?["degradations"]?.arrayValue?.first?["to"]?.stringValue == "link")
            let sent = api.requests("/v2/bot/message/push").dropFirst().flatMap { $0.body?["messages"]?.arrayValue ?? [] }
            #expect(sent.compactMap { $0["type"]?.stringValue } == ["template", "flex", "location", "image", "sticker", "text"])
            #expect(sent.last?["text"]?.stringValue?.contains("https://example.com/manual.pdf") == true, "files go out as links")
            #expect(api.violations.isEmpty, "\(api.violations)")
        }
    }

    @Test func anInvalidReplyTokenFallsBackToPush() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { (d: TestDaemon, api: FakeLineAPI) async throws in
            api.burnReplyToken("used-elsewhere")
            #expect(try await LineFixture.post(d, channel, LineFixture.body([LineFixture.text("hi", replyToken: "used-elsewhere")])).status == 200)
            let conversation = try #require(try await d.lineConversations(channel).first?.id)
            let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"hello"}]}"#)
            let id = try #require(r.json?["id"]?.stringValue)
            try await eventually("push after the refused reply") { api.requests("/v2/bot/message/push").count == 1 }
            #expect(api.requests("/v2/bot/message/reply").count == 1)
            try await eventually("sent") { try await d.runtime.store.message(id)?.externalID != nil }
        }
    }

    @Test func typingAndMarkRead() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { d, api in
            let body = LineFixture.body([LineFixture.text("hi"), LineFixture.text("group hi", source: LineFixture.groupSource())])
            #expect(try await LineFixture.post(d, channel, body).status == 200)
            let convs = try await d.lineConversations(channel)
            let direct = try #require(convs.first { $0.thread == "*" }?.id)
            let group = try #require(convs.first { $0.thread == LineFixture.group }?.id)
            #expect(try await d.api("POST", "/v1/conversations/\(direct)/activity", json: #"{"type":"typing_start"}"#).status == 204)
            #expect(api.requests("/v2/bot/chat/loading/start").first?.body?["chatId"]?.stringValue == LineFixture.user)
            let groupTyping = try await d.api("POST", "/v1/conversations/\(group)/activity", json: #"{"type":"typing_start"}"#)
            #expect(groupTyping.status == 422 && groupTyping.json?["code"]?.stringValue == "capability_unsupported")
            #expect(try await d.api("POST", "/v1/conversations/\(direct)/activity", json: #"{"type":"mark_read"}"#).status == 204)
            #expect(api.requests("/v2/bot/chat/markAsRead").first?.body?["markAsReadToken"]?.stringValue == "30yhdy232")
            #expect(api.violations.isEmpty, "\(api.violations)")
        }
    }

    /// LINE delivers events out of order: the older message's tokens, arriving last, must not
    /// replace the newer one's (mark-as-read with them would leave the newer message unread).
    @Test func tokensOfAnOlderEventArrivingLateAreNotKept() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }) { d, api in
            func message(_ id: String, token: String, at: Int64) -> String {
                LineFixture.event("message", replyToken: "reply-\(token)", at: at,
                                  #""message":{"id":"\#(id)","type":"text","markAsReadToken":"\#(token)","text":"m\#(id)"}"#)
            }
            let now = Timestamp.now().milliseconds
            #expect(try await LineFixture.post(d, channel, LineFixture.body([message("502", token: "newer", at: now)])).status == 200)
            #expect(try await LineFixture.post(d, channel, LineFixture.body([message("501", token: "older", at: now - 5000)])).status == 200)
            let conversation = try #require(try await d.lineConversations(channel).first?.id)
            #expect(try await d.api("POST", "/v1/conversations/\(conversation)/activity", json: #"{"type":"mark_read"}"#).status == 204)
            #expect(api.requests("/v2/bot/chat/markAsRead").map { $0.body?["markAsReadToken"]?.stringValue } == ["newer"])
            _ = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"hello"}]}"#)
            try await eventually("reply") { api.requests("/v2/bot/message/reply").count == 1 }
            #expect(api.requests("/v2/bot/message/reply").first?.body?["replyToken"]?.stringValue == "reply-newer")
        }
    }

    /// Uploaded files go out as signed links to our copy (LINE has no file message), a card's
    /// uploaded picture as its hero image, and quick replies sit on the last object, where LINE
    /// shows them.
    @Test func uploadedFilesAndCardPicturesGoOutAsSignedLinks() async throws {
        let channel = uniqueID("line")
        try await withLine({ "channels: [ \(LineFixture.channelYAML(channel, api: $0)) ]" }, publicURL: "https://sb.example") { d, api in
            #expect(try await LineFixture.post(d, channel, LineFixture.body([LineFixture.text("hi", replyToken: nil)])).status == 200)
            let conversation = try #require(try await d.lineConversations(channel).first?.id)
            func upload(_ name: String, _ type: String) async throws -> String {
                let r = try await http("POST", d.apiBase + "/v1/media?filename=\(name)", body: Array("data of \(name)".utf8),
                                       headers: ["authorization": "Bearer \(TestDaemon.token)", "content-type": type])
                return try #require(r.json?["id"]?.stringValue, "upload: \(r.status)")
            }
            let file = try await upload("invoice.pdf", "application/pdf")
            let picture = try await upload("chair.png", "image/png")
            let request = """
                {"parts":[
                  {"type":"quick_replies","text":"Anything else?","options":[{"title":"No","payload":"NO"}]},
                  {"type":"media","kind":"file","media_id":"\(file)","filename":"invoice.pdf"},
                  {"type":"card","title":"Oak chair","media_id":"\(picture)","actions":[{"type":"postback","title":"Buy","payload":"BUY"}]}
                ]}
                """
            let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: request)
            #expect(r.status == 202, "\(String(decoding: r.body, as: UTF8.self))")
            #expect(r.json?["render"]?["degradations"] == [["part": 1, "from": "media/file", "to": "link", "reason": "channel_unsupported"]])
            try await eventually("push") { api.requests("/v2/bot/message/push").count == 1 }
            let sent = api.requests("/v2/bot/message/push").first?.body?["messages"]?.arrayValue ?? []
            #expect(sent.map { $0["type"]?.stringValue } == ["text", "text", "flex"])
            let link = try #require(sent[1]["text"]?.stringValue)
            #expect(link.hasPrefix("invoice.pdf: https://sb.example/media/\(file)"), "\(link)")
            #expect(sent[2]["contents"]?["hero"]?["url"]?.stringValue?.hasPrefix("https://sb.example/media/\(picture)") == true)
            #expect(sent.map { $0["quickReply"] != nil } == [false, false, true])
            #expect(api.violations.isEmpty, "\(api.violations)")
        }
    }
}
