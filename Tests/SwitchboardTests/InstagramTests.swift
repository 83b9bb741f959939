import Foundation
import Testing
@testable import InstagramAdapter
@testable import MessengerAdapter
@testable import MetaAdapter
@testable import SwitchboardCore
@testable import SwitchboardDelivery
@testable import SwitchboardRuntime
@testable import SwitchboardStore

// MARK: - translation of each documented Instagram event shape

@Suite struct InstagramFixtureTests {
    static func ig(_ fields: String, at: Int64 = MP.now) -> String { MP.event(from: MP.igsid, to: MP.igAccount, at: at, fields) }

    @Test func textQuickRepliesAndMessageReplies() throws {
        let t = try MP.translate(Self.ig(#""message":{"mid":"aWdfZAG1_1","text":"hi","reply_to":{"mid":"aWdfZAG1_0"}}"#), flavor: .instagram)
        let m = try #require(MP.message(t))
        #expect(m.parts == [.text("hi")] && m.externalID == "aWdfZAG1_1" && m.replyToExternalID == "aWdfZAG1_0")
        #expect(t.event?.peer.channelUserID == MP.igsid && t.event?.dedupeKey == "aWdfZAG1_1")
        let qr = try MP.translate(Self.ig(#""message":{"mid":"aWdf_2","text":"Track","quick_reply":{"payload":"TRACK"}}"#), flavor: .instagram)
        #expect(MP.message(qr)?.parts == [.interaction(Open(InteractionFields(kind: .quickReply, payload: "TRACK", title: "Track")))])
        let pb = try MP.translate(Self.ig(#""postback":{"mid":"aWdf_pb","title":"Track order","payload":"TRACK"}"#), flavor: .instagram)
        #expect(MP.message(pb)?.parts == [.interaction(Open(InteractionFields(kind: .postback, payload: "TRACK", title: "Track order")))])
    }

    @Test func storyMentionsAndStoryRepliesKeepOnlyTheLinks() throws {
        let mention = try MP.translate(Self.ig(#"""
            "message":{"mid":"aWdf_sm","attachments":[{"type":"story_mention","payload":{"url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=x"}}]}
            """#), flavor: .instagram)
        guard case .media(let story)? = MP.message(mention)?.parts.first else { Issue.record("story mention"); return }
        #expect(story.kind == .image && story.url == "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=x")
        #expect(story.unavailable == nil && story.extra["story_mention"] == true && story.caption == "Mentioned you in their story")
        #expect(mention.media == nil, "story media is never stored (Meta's policy)")
        #expect(mention.event?.channelData?["story_mention"]?["url"] != nil)
        #expect(mention.customerActivity != nil, "a story mention opens the window")

        let reply = try MP.translate(Self.ig(#"""
            "message":{"mid":"aWdf_sr","text":"love this","reply_to":{"story":{"id":"17900000000000000","url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=2"}}}
            """#), flavor: .instagram)
        let rm = try #require(MP.message(reply))
        #expect(rm.parts == [.text("love this")] && rm.replyToExternalID == nil)
        #expect(reply.event?.channelData?["reply_to_story"]?["id"] == "17900000000000000")
        #expect(reply.event?.channelData?["reply_to_story"]?["url"] == "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=2")
    }

    @Test func sharedReelsPostsAndLegacyShares() throws {
        let t = try MP.translate(Self.ig(#"""
            "message":{"mid":"aWdf_sh","attachments":[
              {"type":"ig_reel","payload":{"url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=3","title":"Our new drop","reel_video_id":"18000000000000000"}},
              {"type":"ig_post","payload":{"url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=5","title":"","ig_post_media_id":"17950000000000000"}},
              {"type":"share","payload":{"url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=4"}}]}
            """#), flavor: .instagram)
        let parts = try #require(MP.message(t)?.parts)
        let media = parts.compactMap { p -> Open<MediaFields>? in if case .media(let x) = p { return x }; return nil }
        #expect(media.map(\.kind) == [.video, .image, .image])
        #expect(media[0].caption == "Our new drop" && media[0].extra["reel_video_id"] == "18000000000000000" && media[0].extra["shared"] == true)
        #expect(media[1].caption == nil && media[1].extra["ig_post_media_id"] == "17950000000000000")
        #expect(media.allSatisfy { $0.unavailable == nil && $0.url != nil })
        #expect(t.media == nil, "other people's posts are linked, not copied")
        // The customer's own photo is copied like on Messenger.
        let photo = try MP.translate(Self.ig(#""message":{"mid":"aWdf_ph","attachments":[{"type":"image","payload":{"url":"https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=9"}}]}"#), flavor: .instagram)
        #expect(photo.media?.indices == [0])
    }

    @Test func unsendsUnsupportedContentReactionsAndReads() throws {
        let gone = try MP.translate(Self.ig(#""message":{"mid":"aWdf_del","is_deleted":true}"#), flavor: .instagram)
        guard case .deleted(let mid)? = gone.event?.kind else { Issue.record("unsend"); return }
        #expect(mid == "aWdf_del" && gone.event?.dedupeKey == "deleted:aWdf_del")

        let gif = try MP.translate(Self.ig(#""message":{"mid":"aWdf_gif","is_unsupported":true}"#), flavor: .instagram)
        guard case .unsupported(let u)? = MP.message(gif)?.parts.first else { Issue.record("unsupported"); return }
        #expect(u.channelType == "instagram" && u.description.contains("does not deliver"))

        let unreact = try MP.translate(Self.ig(#""reaction":{"mid":"aWdf_t","action":"unreact","reaction":"love"}"#), flavor: .instagram)
        guard case .reaction(let target, let emoji, let action)? = unreact.event?.kind else { Issue.record("reaction"); return }
        #expect(target == "aWdf_t" && emoji == "❤️" && action == "remove")

        let seen = try MP.translate(Self.ig(#""read":{"mid":"aWdf_last"}"#), flavor: .instagram)
        #expect(seen.receipt == .read(watermark: nil, mid: "aWdf_last") && seen.event == nil)

        let echo = try MP.translate(MP.event(from: MP.igAccount, to: MP.igsid, #""message":{"mid":"aWdf_echo","text":"sent from the app","is_echo":true}"#), flavor: .instagram)
        #expect(MP.message(echo)?.origin == .echo && echo.event?.peer.channelUserID == MP.igsid && echo.echo?.mid == "aWdf_echo")
    }

    @Test func dashboardTestPayloadsArriveAsChanges() throws {
        let root = try JSONValue.parse(Data(#"""
            {"object":"instagram","entry":[{"id":"0","time":1569262486134,"changes":[{"field":"messages","value":{
              "sender":{"id":"12334"},"recipient":{"id":"23245"},"timestamp":"1527459824","message":{"mid":"random_mid","text":"random_text"}}}]}]}
            """#.utf8))
        let items = MessengerPlatform.items(in: root)
        #expect(items.count == 1 && items[0].test && items[0].entryID == "0")
        let t = MessengerPlatform.translate(items[0], flavor: .instagram, ownID: MP.igAccount, raw: RawPayload(format: "json", bytes: []))
        #expect(MP.message(t)?.parts == [.text("random_text")])
        #expect(t.occurredAt == Timestamp(milliseconds: 1_527_459_824_000), "seconds as a string")
        #expect(t.event?.channelData?["test"] == true)
    }
}

// MARK: - through the daemon

@Suite struct InstagramEndToEndTests {
    @Test func webhookToHelpdeskReplyEchoesAndSeen() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("ig")
            try await withMessaging({ graph in """
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ \(MP.instagramYAML(channel, graph: graph)) ]
                """ }) { d, graph in
                graph.queue("GET", graph.graphPath(MP.igsid), [.init(["name": .null, "username": "jane.doe", "profile_pic": "https://scontent.cdninstagram.com/p.jpg"])])
                let body = MP.instagram([MP.text("Is this still available?", mid: "aWdf_in1", from: MP.igsid, to: MP.igAccount)])
                #expect(try await MP.post(d, channel, body).status == 200)
                try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                let signer = try WebhookSigner(secrets: testSecret)
                for delivery in helpdesk.deliveries {
                    let ts = try #require(delivery.headers["webhook-timestamp"].flatMap { Int64($0) })
                    #expect(signer.verify(id: delivery.headers["webhook-id"] ?? "", timestamp: ts, body: delivery.body,
                                          header: delivery.headers["webhook-signature"] ?? "", now: Int64(Date().timeIntervalSince1970)))
                }
                let received = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" })
                #expect(received.data?["channel"]?["type"] == "instagram" && received.data?["external_id"] == "aWdf_in1")
                #expect(received.data?["sender"]?["channel_user_id"] == .string(MP.igsid))
                let conversation = try #require(received.subject)
                // The profile: no name, so the username.
                try await eventually("identity.updated") {
                    helpdesk.events.contains { $0.type == "switchboard.identity.updated" && $0.data?["display_name"] == "jane.doe" }
                }
                #expect(graph.requests("GET", graph.graphPath(MP.igsid)).first?.query["fields"] == "name,username,profile_pic")

                let r = try await d.mpReply(conversation, #"""
                    {"parts":[{"type":"text","text":"Yes! Want it?"},{"type":"buttons","text":"Choose","actions":[{"type":"postback","title":"Reserve","payload":"RESERVE"},{"type":"link","title":"Shop","url":"https://shop.example/p/1"}]}]}
                    """#)
                #expect(r.status == 202)
                let id = try #require(r.json?["id"]?.stringValue)
                try await eventually("two sends") { graph.mpSends("me").count == 2 }
                let sends = graph.mpSends("me")
                #expect(sends[0] == ["recipient": ["id": .string(MP.igsid)], "messaging_type": "RESPONSE", "message": ["text": "Yes! Want it?"]])
                #expect(sends[1] == ["recipient": ["id": .string(MP.igsid)], "messaging_type": "RESPONSE", "message": ["attachment": ["type": "template", "payload": [
                    "template_type": "generic", "elements": [["title": "Choose", "buttons": [
                        ["type": "postback", "title": "Reserve", "payload": "RESERVE"], ["type": "web_url", "title": "Shop", "url": "https://shop.example/p/1"]]]]]]]])
                try await eventually("sent") { try await d.runtime.store.message(id)?.externalID != nil }
                let sent = try await d.mpEvents("message.status").first { $0["data"]?["message_id"] == .string(id) && $0["data"]?["status"] == "sent" }
                let mids = (sent?["data"]?["external_ids"]?.arrayValue ?? []).compactMap { $0.stringValue }
                #expect(mids.count == 2)

                // Instagram echoes carry no metadata: ours are known by their mids; one typed in the Instagram app is an echo.
                let echoes = MP.instagram([
                    MP.event(from: MP.igAccount, to: MP.igsid, #""message":{"mid":"\#(mids[0])","text":"Yes! Want it?","is_echo":true}"#),
                    MP.event(from: MP.igAccount, to: MP.igsid, #""message":{"mid":"aWdf_app1","text":"(typed in the app)","is_echo":true}"#),
                ])
                #expect(try await MP.post(d, channel, echoes).status == 200)
                let echoed = try await d.mpEvents("message.echo")
                #expect(echoed.count == 1 && echoed.first?["data"]?["text_fallback"] == "(typed in the app)")

                // Seen, by the last read mid: our message is read, and conversation.read follows.
                #expect(try await MP.post(d, channel, MP.instagram([MP.event(from: MP.igsid, to: MP.igAccount, #""read":{"mid":"\#(mids[1])"}"#)])).status == 200)
                let statuses = try await d.mpEvents("message.status").filter { $0["data"]?["message_id"] == .string(id) }.compactMap { $0["data"]?["status"]?.stringValue }
                // One `read` for the message, though both of its mids were read.
                #expect(statuses == ["sent", "read"])
                #expect(try await d.mpEvents("conversation.read").count == 1)

                // The customer unsends their first message.
                #expect(try await MP.post(d, channel, MP.instagram([MP.event(from: MP.igsid, to: MP.igAccount, #""message":{"mid":"aWdf_in1","is_deleted":true}"#)])).status == 200)
                let deleted = try #require(try await d.mpEvents("message.deleted").first?["data"])
                #expect(deleted["external_id"] == "aWdf_in1" && deleted["message_id"] == received.data?["id"])
            }
        }
    }

    @Test func windowHumanAgentAndGraphErrors() async throws {
        let channel = uniqueID("ig")
        try await withMessaging({ "channels: [ \(MP.instagramYAML(channel, graph: $0, humanAgent: true)) ]" }) { d, graph in
            #expect(try await MP.post(d, channel, MP.instagram([MP.text("still there?", from: MP.igsid, to: MP.igAccount, at: MP.now - 3 * 86_400_000)])).status == 200)
            #expect(try await MP.post(d, channel, MP.instagram([MP.text("old", from: "6549999999999999", to: MP.igAccount, at: MP.now - 10 * 86_400_000)])).status == 200)
            var byUser: [String: String] = [:]
            for c in try await d.mpConversations(channel) { byUser[try #require(try await d.runtime.store.identity(c.identityID)?.channelUserID)] = c.id }
            let old = try await d.mpReply(try #require(byUser["6549999999999999"]), #"{"parts":[{"type":"text","text":"late"}]}"#)
            #expect(old.status == 422 && old.json?["code"] == "window_closed")
            #expect(graph.mpSends("me").isEmpty)

            let r = try await d.mpReply(try #require(byUser[MP.igsid]), #"{"parts":[{"type":"text","text":"Sorry, here you go"}]}"#)
            #expect(r.status == 202)
            try await eventually("tagged send") { graph.mpSends("me").count == 1 }
            #expect(graph.mpSends("me").first == ["recipient": ["id": .string(MP.igsid)], "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
                                                 "message": ["text": "Sorry, here you go"]])

            // Meta's own window refusal (10/2018278) is reported as window_closed, not retried.
            graph.queue("POST", graph.graphPath("me/messages"), [FakeGraph.graphError(code: 10, subcode: 2018278, message: "(#10) This message is sent outside of allowed window.")])
            let r2 = try await d.mpReply(try #require(byUser[MP.igsid]), #"{"parts":[{"type":"text","text":"again"}]}"#)
            let id2 = try #require(r2.json?["id"]?.stringValue)
            try await eventually("failed") {
                try await d.mpEvents("message.status").contains { $0["data"]?["message_id"] == .string(id2) && $0["data"]?["status"] == "failed" }
            }
            let failed = try #require(try await d.mpEvents("message.status").first { $0["data"]?["message_id"] == .string(id2) && $0["data"]?["status"] == "failed" }?["data"])
            #expect(failed["error"]?["code"] == "window_closed" && failed["error"]?["channel_code"] == "10/2018278" && failed["error"]?["retryable"] == false)
            #expect(graph.mpSends("me").count == 2)
        }
    }

    @Test func storyMentionsAreNotDownloadedAndStoreMediaCanBeOff() async throws {
        let channel = uniqueID("ig")
        try await withMessaging({ "channels: [ \(MP.instagramYAML(channel, graph: $0, extra: ", store_media: false")) ]" }) { d, graph in
            let photo = graph.serveFile("/cdn/ig.jpg", bytes: [0xFF, 0xD8, 1, 2, 3], contentType: "image/jpeg")
            let body = MP.instagram([
                MP.event(from: MP.igsid, to: MP.igAccount, #""message":{"mid":"aWdf_sm1","attachments":[{"type":"story_mention","payload":{"url":"\#(graph.base)/cdn/story.jpg"}}]}"#),
                MP.event(from: MP.igsid, to: MP.igAccount, #""message":{"mid":"aWdf_img1","attachments":[{"type":"image","payload":{"url":"\#(photo)"}}]}"#),
            ])
            #expect(try await MP.post(d, channel, body).status == 200)
            let received = try await d.mpEvents("message.received")
            #expect(received.count == 2)
            let parts = received.compactMap { $0["data"]?["parts"]?.arrayValue?.first }
            #expect(parts.allSatisfy { $0["unavailable"] == nil && $0["url"]?.stringValue?.hasPrefix(graph.base) == true }, "\(parts)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(graph.requests.filter { $0.path.hasPrefix("/cdn/") }.isEmpty, "nothing downloaded")
            #expect(try await d.mpEvents("message.updated").isEmpty)
        }
    }

    @Test func dashboardTestsAndOtherAccountsAreAnsweredWithoutHarm() async throws {
        let channel = uniqueID("ig")
        try await withMessaging({ "channels: [ \(MP.instagramYAML(channel, graph: $0)) ]" }) { d, _ in
            let test = Array(#"""
                {"object":"instagram","entry":[{"id":"0","time":1569262486134,"changes":[{"field":"messages","value":{
                  "sender":{"id":"12334"},"recipient":{"id":"23245"},"timestamp":"1527459824","message":{"mid":"random_mid","text":"random_text"}}}]}]}
                """#.utf8)
            #expect(try await MP.post(d, channel, test).status == 200)
            let other = MP.body(object: "instagram", [("17841499999999999", [MP.text("elsewhere", from: MP.igsid, to: "17841499999999999")])])
            #expect(try await MP.post(d, channel, other).status == 200)
            let received = try await d.mpEvents("message.received")
            #expect(received.count == 1 && received.first?["data"]?["channel_data"]?["test"] == true)
            // A Messenger payload posted to the Instagram channel is ignored.
            #expect(try await MP.post(d, channel, MP.page([MP.text("page")])).status == 200)
            #expect(try await d.runtime.store.counts().messages == 1)
        }
    }
}

extension InstagramEndToEndTests {
    /// A reply that goes out in two requests: the echo of the first arrives while the second is
    /// still under way. It is ours at once (not a `message.echo`), and the webhook is answered
    /// without waiting for the whole send.
    @Test func theEchoOfAReplysFirstRequestIsOursWhileTheRestGoesOut() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("ig")
            try await withMessaging({ graph in """
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ \(MP.instagramYAML(channel, graph: graph)) ]
                """ }) { d, graph in
                #expect(try await MP.post(d, channel, MP.instagram([MP.text("Hi", mid: "aWdf_in7", from: MP.igsid, to: MP.igAccount)])).status == 200)
                try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                let conversation = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.subject)
                graph.queue("POST", graph.graphPath("me/messages"), [
                    .init(["recipient_id": .string(MP.igsid), "message_id": "aWdf_outA"]),
                    .init(["recipient_id": .string(MP.igsid), "message_id": "aWdf_outB"], delay: .seconds(7)),
                ])
                let r = try await d.mpReply(conversation, #"""
                    {"parts":[{"type":"text","text":"First"},{"type":"buttons","text":"Then","actions":[{"type":"postback","title":"OK","payload":"OK"}]}]}
                    """#)
                #expect(r.status == 202)
                try await eventually("the second request is under way") { graph.mpSends("me").count == 2 }
                let started = ContinuousClock.now
                let echo = MP.instagram([MP.event(from: MP.igAccount, to: MP.igsid, #""message":{"mid":"aWdf_outA","text":"First","is_echo":true}"#)])
                #expect(try await MP.post(d, channel, echo).status == 200)
                let took = ContinuousClock.now - started
                #expect(took < .seconds(3), "the webhook waited \(took) for the whole send")
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await d.mpEvents("message.echo").isEmpty, "our own reply came back as an echo")
            }
        }
    }
}
