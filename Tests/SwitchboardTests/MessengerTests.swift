import Foundation
import Testing
@testable import InstagramAdapter
@testable import MessengerAdapter
@testable import MetaAdapter
@testable import SwitchboardCore
@testable import SwitchboardDelivery
@testable import SwitchboardRuntime
@testable import SwitchboardStore

// MARK: - translation of each documented Messenger event shape

@Suite struct MessengerFixtureTests {
    @Test func textQuickReplyAndQuotedReply() throws {
        let t = try MP.translate(MP.text("hello", mid: "m_AbC1", at: 1458692752478))
        let m = try #require(MP.message(t))
        #expect(m.parts == [.text("hello")])
        #expect(m.externalID == "m_AbC1" && m.origin == .customer && m.replyToExternalID == nil)
        #expect(t.event?.dedupeKey == "m_AbC1", "Meta's retries carry the same mid")
        #expect(t.event?.peer.channelUserID == MP.psid && t.event?.thread == "*")
        #expect(t.event?.occurredAt == Timestamp(milliseconds: 1458692752478))
        #expect(t.customerActivity == Timestamp(milliseconds: 1458692752478), "a message opens the window")
        #expect(t.event?.raw?.bytes == Array(MP.text("hello", mid: "m_AbC1", at: 1458692752478).utf8))

        let qr = try MP.translate(MP.event(#""message":{"mid":"m_q","text":"Blue","quick_reply":{"payload":"COLOR_BLUE"},"reply_to":{"mid":"m_Orig","is_self_reply":false}}"#))
        let qm = try #require(MP.message(qr))
        #expect(qm.parts == [.interaction(Open(InteractionFields(kind: .quickReply, payload: "COLOR_BLUE", title: "Blue")))])
        #expect(qm.replyToExternalID == "m_Orig")
        #expect(qr.event?.channelData?["is_self_reply"] == .bool(false))
    }

    @Test func attachmentsArePendingDownloadsWithTheirCDNLinks() throws {
        let t = try MP.translate(MP.event(#"""
            "message":{"mid":"m_att","text":"see these","attachments":[
              {"type":"image","payload":{"url":"https://scontent.xx.fbcdn.net/v/photo.jpg?x=1"}},
              {"type":"video","payload":{"url":"https://video.xx.fbcdn.net/v/clip.mp4"}},
              {"type":"audio","payload":{"url":"https://cdn.fbsbx.com/v/voice.mp4"}},
              {"type":"file","payload":{"url":"https://cdn.fbsbx.com/v/t59/invoice%20May.pdf?_nc=1"}}]}
            """#))
        let m = try #require(MP.message(t))
        #expect(m.parts.count == 5)
        #expect(m.parts.first == .text("see these"))
        let media = m.parts.dropFirst().compactMap { p -> Open<MediaFields>? in if case .media(let x) = p { return x }; return nil }
        #expect(media.map(\.kind) == [.image, .video, .audio, .file])
        #expect(media.allSatisfy { $0.unavailable == "pending" && $0.url?.hasPrefix("https://") == true })
        #expect(media[3].filename == "invoice May.pdf")
        #expect(media[0].extra["attachment_type"] == "image")
        let fetch = try #require(t.media)
        #expect(fetch.indices == [1, 2, 3, 4] && fetch.externalID == "m_att" && fetch.peerID == MP.psid && !fetch.echo)
    }

    @Test func stickersLocationsFallbacksAndUnknownAttachments() throws {
        // Until 30 Aug 2026 a sticker arrives as the new sticker attachment AND the old image with sticker_id: one part.
        let both = try MP.translate(MP.event(#"""
            "message":{"mid":"m_st","attachments":[
              {"type":"image","payload":{"url":"https://scontent.xx.fbcdn.net/v/369239263222822.png","sticker_id":369239263222822}},
              {"type":"sticker","payload":{"url":"https://scontent.xx.fbcdn.net/v/369239263222822.png","sticker_id":369239263222822}}]}
            """#))
        let bm = try #require(MP.message(both))
        guard bm.parts.count == 1, case .media(let sticker) = bm.parts[0] else { Issue.record("one sticker part expected: \(bm.parts)"); return }
        #expect(sticker.kind == .sticker && sticker.extra["sticker_id"] == .int(369239263222822) && sticker.unavailable == nil)
        #expect(both.media == nil, "stickers are not downloaded")
        let legacy = try MP.translate(MP.event(#""message":{"mid":"m_like","attachments":[{"type":"image","payload":{"url":"https://x.fbcdn.net/like.png","sticker_id":369239263222822}}]}"#))
        guard case .media(let like)? = MP.message(legacy)?.parts.first else { Issue.record("legacy sticker"); return }
        #expect(like.kind == .sticker)

        let loc = try MP.translate(MP.event(#"""
            "message":{"mid":"m_loc","attachments":[{"type":"location","title":"Pinned Location","url":"https://l.facebook.com/l.php?u=maps",
              "payload":{"coordinates":{"lat":37.483872693672,"long":-122.14900441942}}}]}
            """#))
        #expect(MP.message(loc)?.parts == [.location(Open(LocationFields(lat: 37.483872693672, long: -122.14900441942, name: "Pinned Location",
                                                                           url: "https://l.facebook.com/l.php?u=maps")))])

        let fallback = try MP.translate(MP.event(#"""
            "message":{"mid":"m_fb","attachments":[{"type":"fallback","title":"Shared link","url":"https://example.com/article","payload":null},
                                                 {"type":"fallback","payload":null},
                                                 {"type":"appointment_booking","payload":{"id":"9"}}]}
            """#))
        let fm = try #require(MP.message(fallback))
        #expect(fm.parts.count == 3)
        guard case .text(let link) = fm.parts[0], case .unsupported(let blank) = fm.parts[1], case .unsupported(let booking) = fm.parts[2] else {
            Issue.record("fallback parts: \(fm.parts)"); return
        }
        #expect(link.text == "Shared link\nhttps://example.com/article" && link.extra["url"] == "https://example.com/article")
        #expect(blank.channelType == "messenger")
        #expect(booking.description == "Messenger appointment_booking attachment" && booking.extra["attachment"]?["payload"]?["id"] == "9")
    }

    @Test func postbacksReactionsAndEdits() throws {
        let pb = try MP.translate(MP.event(at: 1527459824000, #"""
            "postback":{"mid":"m_pb","title":"Get Started","payload":"GET_STARTED","referral":{"ref":"campaign42","source":"SHORTLINK","type":"OPEN_THREAD"}}
            """#))
        let pm = try #require(MP.message(pb))
        #expect(pm.parts == [.interaction(Open(InteractionFields(kind: .postback, payload: "GET_STARTED", title: "Get Started")))])
        #expect(pm.externalID == "m_pb" && pb.event?.dedupeKey == "postback:m_pb")
        #expect(pb.event?.channelData?["referral"]?["ref"] == "campaign42")
        #expect(pb.customerActivity != nil, "a postback opens the window")

        let react = try MP.translate(MP.event(at: 1458668856463, #""reaction":{"reaction":"love","emoji":"❤️","action":"react","mid":"m_target"}"#))
        guard case .reaction(let target, let emoji, let action)? = react.event?.kind else { Issue.record("reaction"); return }
        #expect(target == "m_target" && emoji == "❤️" && action == "add")
        #expect(react.event?.dedupeKey == "reaction:m_target:\(MP.psid):1458668856463:add")
        let unreact = try MP.translate(MP.event(#""reaction":{"reaction":"like","action":"unreact","mid":"m_target"}"#))
        guard case .reaction(_, let e2, let a2)? = unreact.event?.kind else { Issue.record("unreact"); return }
        #expect(e2 == "👍" && a2 == "remove", "the emoji comes from the reaction name when absent")

        let edit = try MP.translate(MP.event(#""message_edit":{"mid":"m_e","text":"new text","num_edit":1}"#))
        guard case .updated(let edited, let parts)? = edit.event?.kind else { Issue.record("edit"); return }
        #expect(edited == "m_e" && parts == [.text("new text")] && edit.event?.dedupeKey == "edit:m_e:1")
    }

    @Test func receiptsAreLeftToTheAdapter() throws {
        let d = try MP.translate(MP.event(#""delivery":{"mids":["mid.1458668856218:ed81099e15d3f4f233"],"watermark":1458668856253}"#))
        #expect(d.event == nil && d.receipt == .delivered(mids: ["mid.1458668856218:ed81099e15d3f4f233"], watermark: 1458668856253))
        let r = try MP.translate(MP.event(#""read":{"watermark":1458668856253}"#))
        #expect(r.event == nil && r.receipt == .read(watermark: 1458668856253, mid: nil) && r.customerID == MP.psid)
    }

    @Test func echoesAreTheBusinessSpeakingToTheRecipient() throws {
        let e = try MP.translate(MP.event(from: MP.page, to: MP.psid, #"""
            "message":{"is_echo":true,"app_id":1517776481860111,"metadata":"agent-note","mid":"m_echo","text":"We are on it"}
            """#))
        let m = try #require(MP.message(e))
        #expect(m.origin == .echo && m.parts == [.text("We are on it")] && m.externalID == "m_echo")
        #expect(e.event?.peer.channelUserID == MP.psid, "the customer is the echo's recipient")
        #expect(e.echo == MessengerPlatform.Echo(mid: "m_echo", appID: "1517776481860111", metadata: "agent-note"))
        #expect(e.customerActivity == nil, "our own message does not open the window")
        #expect(e.event?.channelData?["app_id"] == "1517776481860111")
        // A generic template another app sent comes back as a card.
        let tpl = try MP.translate(MP.event(from: MP.page, to: MP.psid, #"""
            "message":{"is_echo":true,"app_id":1,"mid":"m_tpl","attachments":[{"type":"template","payload":{"template_type":"generic","elements":[
              {"title":"Chair","subtitle":"Oak","image_url":"https://shop.example/chair.jpg","buttons":[{"type":"web_url","url":"https://shop.example/chair","title":"View"}]}]}}]}
            """#))
        guard case .card(let card)? = MP.message(tpl)?.parts.first else { Issue.record("template echo"); return }
        #expect(card.title == "Chair" && card.actions?.first?.url == "https://shop.example/chair")
    }

    @Test func referralsOptinsAndUnknownEventsAreKept() throws {
        let ref = try MP.translate(MP.event(#"""
            "referral":{"ref":"summer","ad_id":"6045246247433","source":"ADS","type":"OPEN_THREAD","ads_context_data":{"ad_title":"Summer sale","post_id":"1"}}
            """#))
        guard case .custom(let type, let data)? = ref.event?.kind else { Issue.record("referral"); return }
        #expect(type.rawValue == "conversation.referred" && data["ad_id"] == "6045246247433" && data["source"] == "ADS")
        #expect(data["referral"]?["ads_context_data"]?["ad_title"] == "Summer sale")
        #expect(ref.customerActivity != nil)

        let optin = try MP.translate(MP.event(#""optin":{"type":"notification_messages","payload":"news","notification_messages_token":"tok"}"#))
        guard case .custom(let ot, let od)? = optin.event?.kind else { Issue.record("optin"); return }
        #expect(ot.rawValue == "conversation.opted_in" && od["optin"]?["payload"] == "news")

        let odd = try MP.translate(MP.event(#""account_linking":{"status":"linked","authorization_code":"abc"}"#))
        guard case .unsupported(let u)? = MP.message(odd)?.parts.first else { Issue.record("unknown event"); return }
        #expect(u.description == "Messenger account_linking event" && u.extra["event"]?["account_linking"]?["status"] == "linked")
        #expect(odd.event?.raw != nil)
    }

    @Test func otherPagesEventsAndEntriesAreWalkedCompletely() throws {
        let other = try MP.translate(MP.text("not for us", to: "999000"), entry: "999000")
        #expect(other.event == nil && other.skipped?.contains("999000") == true)
        let wrongRecipient = try MP.translate(MP.text("not for us", to: "999000"))
        #expect(wrongRecipient.event == nil && wrongRecipient.skipped != nil)

        let root = try JSONValue.parse(Data(#"""
            {"object":"page","entry":[
              {"id":"\#(MP.page)","time":1,"messaging":[\#(MP.text("a")),\#(MP.text("b"))],"standby":[\#(MP.text("c"))]},
              {"id":"\#(MP.page)","time":2,"messaging":[\#(MP.text("d"))]}]}
            """#.utf8))
        let items = MessengerPlatform.items(in: root)
        #expect(items.count == 4)
        #expect(items.map(\.standby) == [false, false, true, false])
        let standby = MessengerPlatform.translate(items[2], flavor: .messenger, ownID: MP.page, raw: RawPayload(format: "json", bytes: []))
        #expect(standby.event?.channelData?["standby"] == .bool(true))
    }
}

// MARK: - Send API rendering

@Suite struct MessengerRenderTests {
    @Test func textAndQuickReplies() throws {
        let out = try MP.render(#"""
            [{"type":"text","text":"Hi"},{"type":"quick_replies","text":"Pick a colour","options":[{"title":"Red","payload":"RED"},
              {"title":"A very long option title here","payload":"LONG"},{"title":"Green","id":"g1"}]}]
            """#)
        #expect(out == [
            .message(["text": "Hi"]),
            .message(["text": "Pick a colour", "quick_replies": [
                ["content_type": "text", "title": "Red", "payload": "RED"],
                ["content_type": "text", "title": "A very long option…", "payload": "LONG"],
                ["content_type": "text", "title": "Green", "payload": "g1"]]]),
        ])
        let long = String(repeating: "word ", count: 500) // 2500 characters
        let split = try MP.render(#"[{"type":"text","text":"\#(long)"}]"#)
        #expect(split.count == 2)
        #expect(try MP.render(#"[{"type":"text","text":"\#(long)"}]"#, flavor: .instagram).count == 3, "Instagram: < 1000 characters")
        // The limits are "fewer than": exactly 2,000 (Instagram 1,000) characters is one too many.
        #expect(try MP.render(#"[{"type":"text","text":"\#(String(repeating: "a", count: 2000))"}]"#).count == 2)
        #expect(try MP.render(#"[{"type":"text","text":"\#(String(repeating: "a", count: 1999))"}]"#).count == 1)
        #expect(try MP.render(#"[{"type":"text","text":"\#(String(repeating: "a", count: 1000))"}]"#, flavor: .instagram).count == 2)
    }

    @Test func buttonsCardsCarouselsAndLists() throws {
        let buttons = #"[{"type":"buttons","text":"How can we help?","actions":[{"type":"reply","title":"Order status","payload":"STATUS"},{"type":"link","title":"FAQ","url":"https://example.com/faq"},{"type":"call","title":"Call us","phone":"+15105551234"}]}]"#
        #expect(try MP.render(buttons) == [.message(["attachment": ["type": "template", "payload": [
            "template_type": "button", "text": "How can we help?", "buttons": [
                ["type": "postback", "title": "Order status", "payload": "STATUS"],
                ["type": "web_url", "title": "FAQ", "url": "https://example.com/faq"],
                ["type": "phone_number", "title": "Call us", "payload": "+15105551234"]]]]])])

        let card = #"[{"type":"card","title":"Oak chair","subtitle":"Solid oak","image_url":"https://shop.example/chair.jpg","default_action":{"type":"link","title":"Open","url":"https://shop.example/chair"},"actions":[{"type":"postback","title":"Buy","payload":"BUY_CHAIR"}]}]"#
        #expect(try MP.render(card) == [.message(["attachment": ["type": "template", "payload": [
            "template_type": "generic", "elements": [[
                "title": "Oak chair", "subtitle": "Solid oak", "image_url": "https://shop.example/chair.jpg",
                "default_action": ["type": "web_url", "url": "https://shop.example/chair"],
                "buttons": [["type": "postback", "title": "Buy", "payload": "BUY_CHAIR"]]]]]]])])

        let carousel = #"[{"type":"carousel","cards":[{"title":"A","media_id":"med_1"},{"title":"B"}]}]"#
        let rendered = try MP.render(carousel, link: true)
        let elements = try #require(MP.messageObject(rendered[0])?["attachment"]?["payload"]?["elements"]?.arrayValue)
        #expect(elements.count == 2 && elements[0]["image_url"] == "https://chat.example.com/media/med_1?sig=x" && elements[1]["image_url"] == nil)

        let list = #"[{"type":"list","header":"Shipping","text":"Pick a speed","button_text":"Options","sections":[{"rows":[{"id":"express","title":"Express","description":"Next day"},{"id":"std","title":"Standard"}]}]}]"#
        #expect(try MP.render(list) == [.message(["text": "Shipping\nPick a speed\n• Express: Next day\n• Standard", "quick_replies": [
            ["content_type": "text", "title": "Express", "payload": "express"], ["content_type": "text", "title": "Standard", "payload": "std"]]])])

        // Instagram has no button template: one generic element carries the buttons.
        let ig = try MP.render(#"[{"type":"buttons","text":"Track it?","actions":[{"type":"postback","title":"Track","payload":"TRACK"}]}]"#, flavor: .instagram)
        #expect(ig == [.message(["attachment": ["type": "template", "payload": ["template_type": "generic", "elements": [
            ["title": "Track it?", "buttons": [["type": "postback", "title": "Track", "payload": "TRACK"]]]]]]])])
    }

    @Test func mediaByLinkUploadOrSticker() throws {
        let parts = #"[{"type":"media","kind":"image","url":"https://cdn.example.com/a.png","caption":"Your receipt"},{"type":"media","kind":"file","media_id":"med_9"},{"type":"media","kind":"voice","media_id":"med_8"},{"type":"media","kind":"sticker","sticker_id":369239263222822}]"#
        #expect(try MP.render(parts) == [
            .message(["attachment": ["type": "image", "payload": ["url": "https://cdn.example.com/a.png", "is_reusable": true]]]),
            .message(["text": "Your receipt"]),
            .upload(type: "file", mediaID: "med_9"),
            .upload(type: "audio", mediaID: "med_8"),
            .message(["sticker_id": 369239263222822]),
        ])
        let linked = try MP.render(#"[{"type":"media","kind":"file","media_id":"med_9"}]"#, link: true)
        #expect(linked == [.message(["attachment": ["type": "file", "payload": ["url": "https://chat.example.com/media/med_9?sig=x", "is_reusable": true]]])])
        // Meta takes an image by link only up to 8 MB: a larger one is uploaded (up to 25 MB).
        let big = try MP.render(#"[{"type":"media","kind":"image","media_id":"med_7","size":9000000}]"#, link: true)
        #expect(big == [.upload(type: "image", mediaID: "med_7")])
        let small = try MP.render(#"[{"type":"media","kind":"image","media_id":"med_6","size":900000}]"#, link: true)
        #expect(small == [.message(["attachment": ["type": "image", "payload": ["url": "https://chat.example.com/media/med_6?sig=x", "is_reusable": true]]])])
    }

    @Test func reactionsAndOverrides() throws {
        #expect(try MP.render(#"[{"type":"reaction","emoji":"❤️","target_external_id":"m_1"}]"#) == [.action("react", payload: ["message_id": "m_1", "reaction": "love"])])
        #expect(try MP.render(#"[{"type":"reaction","emoji":"👍🏽","target_message_id":"msg_1"}]"#, target: "m_2") == [.action("react", payload: ["message_id": "m_2", "reaction": "like"])])
        #expect(try MP.render(#"[{"type":"reaction","emoji":"","action":"remove","target_external_id":"m_1"}]"#) == [.action("unreact", payload: ["message_id": "m_1"])])
        #expect(throws: SendError.self) { try MP.render(#"[{"type":"reaction","emoji":"👍","target_external_id":"m_1"}]"#, flavor: .instagram) }
        #expect(throws: SendError.self) { try MP.render(#"[{"type":"reaction","emoji":"❤️","target_message_id":"msg_unknown"}]"#) }

        #expect(try MessengerPlatform.overrideMessages(["text": "raw"], flavor: .messenger) == [.message(["text": "raw"])])
        #expect(try MessengerPlatform.overrideMessages(["message": ["sticker_id": 1]], flavor: .messenger) == [.message(["sticker_id": 1])])
        #expect(try MessengerPlatform.overrideMessages([["text": "a"], ["text": "b"]], flavor: .messenger).count == 2)
        // Every form is checked for content the Send API takes.
        #expect(throws: SendError.self) { try MessengerPlatform.overrideMessages([["quick_replies": []]], flavor: .messenger) }
        #expect(throws: SendError.self) { try MessengerPlatform.overrideMessages(["message": ["foo": 1]], flavor: .instagram) }
        #expect(throws: SendError.self) { try MessengerPlatform.overrideMessages([], flavor: .messenger) }
        #expect(throws: SendError.self) { try MessengerPlatform.overrideMessages(["recipient": ["id": "1"]], flavor: .messenger) }
    }

    @Test func configDiagnosticsNameKeysAndNeverSecrets() {
        let d = ConfigDiagnostics()
        let env = AdapterEnvironment(httpClient: .shared, publicURL: "https://x", logger: testLogger)
        let cfg = ConfigLoader.load(text: """
            channels:
              - { id: fb, type: messenger, page_id: "my page", page_access_token: "EAAG-super-secret-token", app_secret: "short",
                  human_agent_tags: true, graph_api_version: "23", app_id: "abc" }
            """, environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"), adapterKinds: ["messenger"], diagnostics: d)
        _ = MP.registry().make(cfg.channels[0], env: env)
        let p = d.problems
        #expect(p.contains { $0.hasPrefix("channels[0].page_id:") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].verify_token: missing") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].app_secret:") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].human_agent_tags: unknown key (did you mean human_agent_tag?)") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].graph_api_version:") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].app_id:") }, "\(p)")
        #expect(!p.joined().contains("EAAG-super-secret-token"))
    }
}

// MARK: - webhooks through the daemon

@Suite struct MessengerWebhookTests {
    @Test func handshakeAndSignatureOnTheRawBytes() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, _ in
            let ok = try await http("GET", d.publicBase + "/webhooks/\(channel)?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=\(MP.verifyToken)")
            #expect(ok.status == 200 && String(decoding: ok.body, as: UTF8.self) == "1158201444")
            let wrong = try await http("GET", d.publicBase + "/webhooks/\(channel)?hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess")
            #expect(wrong.status == 403)

            let body = MP.page([MP.text(#"Caf\u00e9 \/ 50% off"#)])
            #expect(try await MP.post(d, channel, body, sign: false).status == 401)
            #expect(try await MP.post(d, channel, body, signature: MetaWebhook.sign(body, appSecret: "0" + MP.appSecret.dropFirst())).status == 401)
            let reencoded = Array(String(decoding: body, as: UTF8.self).replacingOccurrences(of: #"\u00e9"#, with: "é").utf8)
            #expect(try await MP.post(d, channel, reencoded, signature: MetaWebhook.sign(body, appSecret: MP.appSecret)).status == 401)
            #expect(try await d.runtime.store.counts().messages == 0, "nothing stored for a bad signature")
            #expect(try await MP.post(d, channel, body).status == 200)
            let received = try await d.mpEvents("message.received")
            #expect(received.count == 1 && received.first?["data"]?["text_fallback"] == "Café / 50% off")
            // A payload for another product is acknowledged and ignored.
            #expect(try await MP.post(d, channel, Array(#"{"object":"instagram","entry":[]}"#.utf8)).status == 200)
        }
    }

    @Test func everyEntryOfABatchIsCommittedAndRetriesAreDeduplicated() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, _ in
            let t0 = MP.now - 5000
            let body = MP.body([
                (MP.page, [MP.text("first", mid: "m_b1", at: t0), MP.text("from someone else", mid: "m_b2", from: MP.psid2, at: t0 + 1)]),
                (MP.page, [MP.text("second", mid: "m_b3", at: t0 + 2),
                           MP.event(at: t0 + 3, #""reaction":{"reaction":"like","emoji":"👍","action":"react","mid":"m_b1"}"#)]),
                ("999000", [MP.text("another page's", mid: "m_b4", to: "999000", at: t0 + 4)]),
            ])
            #expect(try await MP.post(d, channel, body).status == 200)
            #expect(try await d.runtime.store.counts().messages == 3)
            #expect(try await d.mpConversations(channel).count == 2)
            let reaction = try #require(try await d.mpEvents("message.reaction").first?["data"])
            #expect(reaction["target_external_id"] == "m_b1" && reaction["emoji"] == "👍" && reaction["action"] == "add")
            #expect(reaction["target_message_id"]?.stringValue?.hasPrefix("msg_") == true)
            // Meta retries the first message alone, and again inside another batch.
            #expect(try await MP.post(d, channel, MP.page([MP.text("first", mid: "m_b1", at: t0)])).status == 200)
            #expect(try await MP.post(d, channel, MP.page([MP.text("first", mid: "m_b1", at: t0), MP.text("third", mid: "m_b5")])).status == 200)
            #expect(try await d.mpEvents("message.received").compactMap { $0["data"]?["external_id"]?.stringValue }.sorted() == ["m_b1", "m_b2", "m_b3", "m_b5"])
        }
    }

    /// Meta's policy enforcement for the Page is about the channel: a block turns it `degraded`
    /// (with Meta's reason), an unblock `connected`; no conversation is made of either.
    @Test func policyEnforcementIsTheChannelsState() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, graph in
            @Sendable func state() async throws -> JSONValue? {
                try await d.api("GET", "/v1/channels").json?["channels"]?.arrayValue?.first { $0["id"] == .string(channel) }
            }
            let block = #"{"recipient":{"id":"\#(MP.page)"},"timestamp":\#(MP.now),"policy_enforcement":{"action":"block","reason":"The bot violated our Platform Policies."}}"#
            #expect(try await MP.post(d, channel, MP.page([block])).status == 200)
            try await eventually("degraded") { try await state()?["state"] == "degraded" }
            #expect(try await state()?["detail"]?.stringValue?.contains("The bot violated our Platform Policies.") == true)
            #expect(try await d.mpEvents("channel.status").contains { $0["data"]?["state"] == "degraded" })
            let unblock = #"{"recipient":{"id":"\#(MP.page)"},"timestamp":\#(MP.now + 1),"policy-enforcement":{"action":"unblock"}}"#
            #expect(try await MP.post(d, channel, MP.page([unblock])).status == 200)
            try await eventually("connected") { try await state()?["state"] == "connected" }
            #expect(try await d.mpConversations(channel).isEmpty, "no conversation for a notice about the Page")
        }
    }

    /// An attachment whose CDN keeps failing (503) past the quick retries stays `pending` and is
    /// copied later; the ones already stored are kept, and the message is updated once.
    @Test func anAttachmentThatKeepsFailingIsCopiedLater() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0, extra: #", media_retry_for: "3s""#)) ]" }) { d, graph in
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 5, count: 1500)
            let photo = graph.serveFile("/cdn/ok.jpg", bytes: jpeg, contentType: "image/jpeg")
            let flaky = graph.serveFile("/cdn/flaky.jpg", bytes: jpeg.reversed(), contentType: "image/jpeg")
            graph.queue("GET", "/cdn/flaky.jpg", Array(repeating: FakeGraph.Answer(status: 503, ["error": "busy"]), count: 4))
            let body = MP.page([MP.event(#"""
                "message":{"mid":"m_flaky","attachments":[{"type":"image","payload":{"url":"\#(photo)"}},{"type":"image","payload":{"url":"\#(flaky)"}}]}
                """#)])
            #expect(try await MP.post(d, channel, body).status == 200)
            try await eventually("message.updated") { try await d.mpEvents("message.updated").count == 1 }
            let parts = try #require(try await d.mpEvents("message.updated").first?["data"]?["parts"]?.arrayValue)
            #expect(parts.count == 2 && parts.allSatisfy { $0["unavailable"] == nil && $0["media_id"] != nil }, "\(parts)")
            let flakyID = try #require(parts[1]["media_id"]?.stringValue)
            #expect(Array(try await d.api("GET", "/v1/media/\(flakyID)").body) == Array(jpeg.reversed()))
            #expect(graph.requests.filter { $0.path == "/cdn/flaky.jpg" }.count == 5, "two rounds of two attempts, then the one that worked")
            #expect(graph.requests.filter { $0.path == "/cdn/ok.jpg" }.count == 1, "a stored attachment is not fetched again")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await d.mpEvents("message.updated").count == 1)
        }
    }

    @Test func attachmentsAreCopiedAfterTheCommitAndFailuresSaySo() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, graph in
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 7, count: 3000)
            let photo = graph.serveFile("/cdn/photo.jpg", bytes: jpeg, contentType: "image/jpeg")
            let big = graph.serveFile("/cdn/big.mp4", bytes: Array(repeating: 1, count: 1_200_000), contentType: "video/mp4")
            let body = MP.page([MP.event(#"""
                "message":{"mid":"m_media","attachments":[{"type":"image","payload":{"url":"\#(photo)"}},
                  {"type":"file","payload":{"url":"\#(graph.base)/cdn/gone.pdf"}},{"type":"video","payload":{"url":"\#(big)"}}]}
                """#)])
            #expect(try await MP.post(d, channel, body).status == 200)
            let received = try #require(try await d.mpEvents("message.received").first?["data"])
            #expect(received["parts"]?.arrayValue?.compactMap { $0["unavailable"]?.stringValue } == ["pending", "pending", "pending"])
            try await eventually("message.updated") { try await d.mpEvents("message.updated").count == 1 }
            let update = try #require(try await d.mpEvents("message.updated").first?["data"])
            #expect(update["external_id"] == "m_media" && update["message_id"] == received["id"])
            let parts = try #require(update["parts"]?.arrayValue)
            #expect(parts.count == 3)
            let mediaID = try #require(parts[0]["media_id"]?.stringValue)
            #expect(parts[0]["mime_type"] == "image/jpeg" && parts[0]["unavailable"] == nil && parts[0]["source_url"] == .string(photo))
            #expect(Array(try await d.api("GET", "/v1/media/\(mediaID)").body) == jpeg)
            #expect(parts[1]["unavailable"] == "download_failed" && parts[1]["filename"] == "gone.pdf")
            #expect(parts[2]["unavailable"] == "too_large", "media.max_bytes is 1MB in tests")
            #expect(graph.requests.filter { $0.path.hasPrefix("/cdn/") }.allSatisfy { $0.headers["authorization"] == nil },
                    "CDN links are fetched without the token")
        }
    }

    @Test func profilesAreLookedUpAfterwardsAndRefusalsDegradeCleanly() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, graph in
            graph.queue("GET", graph.graphPath(MP.psid), [.init(["first_name": "Peter", "last_name": "Chang", "profile_pic": "https://platform-lookaside.fbsbx.com/p.jpg", "id": .string(MP.psid)])])
            graph.queue("GET", graph.graphPath(MP.psid2), [FakeGraph.graphError(code: 100, subcode: 2018218, message: "No profile available for this user.")])
            #expect(try await MP.post(d, channel, MP.page([MP.text("hi", from: MP.psid), MP.text("hello", from: MP.psid2)])).status == 200)
            try await eventually("identity.updated with the name") {
                try await d.mpEvents("identity.updated").contains { $0["data"]?["display_name"] == "Peter Chang" }
            }
            let updated = try #require(try await d.mpEvents("identity.updated").first { $0["data"]?["display_name"] == "Peter Chang" }?["data"])
            #expect(updated["profile"]?["picture_url"] == "https://platform-lookaside.fbsbx.com/p.jpg" && updated["profile"]?["first_name"] == "Peter")
            let lookup = try #require(graph.requests("GET", graph.graphPath(MP.psid)).first)
            #expect(lookup.query["fields"] == "first_name,last_name,profile_pic" && lookup.headers["authorization"] == "Bearer \(graph.token)")
            try await eventually("refused look-up") { graph.requests("GET", graph.graphPath(MP.psid2)).count == 1 }
            // The refusal is remembered once its answer is handled (not when the request is seen).
            let state = StoreAdapterState(store: d.runtime.store, channelID: channel)
            try await eventually("refusal remembered") { try await state.get("profile:\(MP.psid2)") != nil }
            // The refusal is remembered: a second message does not ask again; the first one's name is reused.
            #expect(try await MP.post(d, channel, MP.page([MP.text("again", from: MP.psid2), MP.text("again", from: MP.psid)])).status == 200)
            try await Task.sleep(for: .milliseconds(200))
            #expect(graph.requests("GET", graph.graphPath(MP.psid2)).count == 1)
            #expect(graph.requests("GET", graph.graphPath(MP.psid)).count == 1)
            let names = try await d.mpEvents("message.received").compactMap { $0["data"]?["sender"]?["display_name"]?.stringValue }
            #expect(names == ["Peter Chang"], "the cached name is on the later message")
            #expect(try await d.runtime.store.counts().messages == 4)
        }
    }
}

extension MessengerWebhookTests {
    /// Meta may deliver the echo of a send before the Send API has answered with its mid: an
    /// unrecognised echo waits while a send to that customer is in flight.
    @Test func anEchoThatOvertakesTheSendAPIAnswerWaitsForIt() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, _ in
            let core = try #require(d.runtime.hub.entry(channel)?.adapter as? MessengerChannelAdapter).core
            let ctx = d.context(channel)
            let echo = MessengerPlatform.Echo(mid: "m_race", appID: nil, metadata: nil)
            let started = ContinuousClock.now
            #expect(await core.isOwnEcho(echo, customer: MP.psid, context: ctx) == false)
            #expect(ContinuousClock.now - started < .seconds(1), "nothing in flight: no wait")
            core.inflight.withLock { $0[MP.psid] = 1 }
            async let judged = core.isOwnEcho(echo, customer: MP.psid, context: ctx)
            try await Task.sleep(for: .milliseconds(150))
            await core.updateBook(customer: MP.psid, context: ctx) { $0.append(.init(m: "m_race", t: MP.now, s: 0)) }
            core.inflight.withLock { $0[MP.psid] = nil }
            #expect(await judged == true)
            #expect(await core.isOwnEcho(MessengerPlatform.Echo(mid: "m_other", appID: nil, metadata: "switchboard:msg_1"),
                                         customer: MP.psid, context: ctx) == true, "the metadata marker alone suffices")
        }
    }
}

// MARK: - end to end: helpdesk, replies, window, receipts, echoes, errors

@Suite struct MessengerEndToEndTests {
    @Test func webhookToHelpdeskThenReplyWithTheExactSendAPIBodies() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("fb")
            try await withMessaging({ graph in """
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ \(MP.messengerYAML(channel, graph: graph)) ]
                """ }) { d, graph in
                // 1. A signed webhook becomes a verified CloudEvent at the helpdesk.
                #expect(try await MP.post(d, channel, MP.page([MP.text("Do you have it in blue?", mid: "m_e2e1")])).status == 200)
                try await eventually("message.received at the helpdesk") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                let signer = try WebhookSigner(secrets: testSecret)
                for delivery in helpdesk.deliveries {
                    let ts = try #require(delivery.headers["webhook-timestamp"].flatMap { Int64($0) })
                    #expect(signer.verify(id: delivery.headers["webhook-id"] ?? "", timestamp: ts, body: delivery.body,
                                          header: delivery.headers["webhook-signature"] ?? "", now: Int64(Date().timeIntervalSince1970)))
                }
                let received = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" })
                #expect(received.data?["text_fallback"] == "Do you have it in blue?" && received.data?["external_id"] == "m_e2e1")
                #expect(received.data?["sender"]?["channel_user_id"] == .string(MP.psid) && received.data?["channel"]?["type"] == "messenger")
                let conversation = try #require(received.subject)
                let inbound = try #require(received.data?["id"]?.stringValue)

                // 2. The agent answers, quoting the question: two Send API requests, exactly these.
                let r = try await d.mpReply(conversation, #"""
                    {"parts":[{"type":"text","text":"Yes, we do."},{"type":"quick_replies","text":"Which size?","options":[{"title":"S","payload":"SIZE_S"},{"title":"M","payload":"SIZE_M"}]}],
                     "reply_to":{"message_id":"\#(inbound)"},"metadata":{"ticket":"T-9"}}
                    """#)
                #expect(r.status == 202)
                #expect(r.json?["render"]?["degradations"]?.arrayValue == [])
                let id = try #require(r.json?["id"]?.stringValue)
                try await eventually("two sends") { graph.mpSends(MP.page).count == 2 }
                let sends = graph.mpSends(MP.page)
                let marker = JSONValue.string("switchboard:\(id)")
                #expect(sends[0] == ["recipient": ["id": .string(MP.psid)], "messaging_type": "RESPONSE",
                                     "message": ["text": "Yes, we do.", "metadata": marker], "reply_to": ["mid": "m_e2e1"]])
                #expect(sends[1] == ["recipient": ["id": .string(MP.psid)], "messaging_type": "RESPONSE",
                                     "message": ["text": "Which size?", "metadata": marker, "quick_replies": [
                                        ["content_type": "text", "title": "S", "payload": "SIZE_S"],
                                        ["content_type": "text", "title": "M", "payload": "SIZE_M"]]]])
                #expect(graph.requests("POST", graph.graphPath("\(MP.page)/messages")).allSatisfy { $0.headers["authorization"] == "Bearer \(graph.token)" })
                try await eventually("message.status sent") {
                    helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"] == .string(id) && $0.data?["status"] == "sent" }
                }
                let sent = try #require(helpdesk.events.first { $0.type == "switchboard.message.status" && $0.data?["message_id"] == .string(id) })
                let mids = (sent.data?["external_ids"]?.arrayValue ?? []).compactMap { $0.stringValue }
                #expect(mids.count == 2 && sent.data?["metadata"]?["ticket"] == "T-9")

                // 3. Echoes of that send (our metadata marker, or just our mid) are not new messages;
                //    a reply typed in the Page inbox is a message.echo.
                let echoes = MP.page([
                    MP.event(from: MP.page, to: MP.psid, #""message":{"is_echo":true,"app_id":555,"metadata":"switchboard:\#(id)","mid":"\#(mids[0])","text":"Yes, we do."}"#),
                    MP.event(from: MP.page, to: MP.psid, #""message":{"is_echo":true,"app_id":555,"mid":"\#(mids[1])","text":"Which size?"}"#),
                    MP.event(from: MP.page, to: MP.psid, #""message":{"is_echo":true,"app_id":263902037430900,"mid":"m_inbox1","text":"Also in green!"}"#),
                ])
                #expect(try await MP.post(d, channel, echoes).status == 200)
                try await eventually("message.echo") { helpdesk.events.contains { $0.type == "switchboard.message.echo" } }
                let echo = try #require(helpdesk.events.first { $0.type == "switchboard.message.echo" })
                #expect(echo.data?["origin"] == "echo" && echo.data?["direction"] == "outbound" && echo.data?["text_fallback"] == "Also in green!")
                #expect(echo.subject == conversation)
                #expect(try await d.mpEvents("message.echo").count == 1)

                // 4. Receipts: a delivery watermark and a read watermark cover both mids.
                let later = MP.now + 1000
                let receipts = MP.page([MP.event(at: later, #""delivery":{"watermark":\#(later)}"#), MP.event(at: later + 1, #""read":{"watermark":\#(later)}"#)])
                #expect(try await MP.post(d, channel, receipts).status == 200)
                try await eventually("read status") {
                    helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"] == .string(id) && $0.data?["status"] == "read" }
                }
                @Sendable func statuses() async throws -> [String] {
                    try await d.mpEvents("message.status").filter { $0["data"]?["message_id"] == .string(id) }.compactMap { $0["data"]?["status"]?.stringValue }
                }
                // Once per message, though the watermarks cover both of its mids.
                #expect(try await statuses() == ["sent", "delivered", "read"])
                try await eventually("conversation.read") { helpdesk.events.contains { $0.type == "switchboard.conversation.read" } }
                let read = try #require(helpdesk.events.first { $0.type == "switchboard.conversation.read" })
                // Ours and the Page inbox's echo: everything outbound up to the watermark.
                let echoID = try #require(echo.data?["id"])
                #expect(Set(read.data?["message_ids"]?.arrayValue ?? []) == [.string(id), echoID])
                // The same receipts again change nothing.
                #expect(try await MP.post(d, channel, receipts).status == 200)
                #expect(try await statuses().count == 3, "no repeats")
                #expect(try await d.mpEvents("conversation.read").count == 1)
            }
        }
    }

    @Test func outsideTheWindowRepliesAreRefusedBeforeAnyGraphCall() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, graph in
            let twoDaysAgo = MP.now - 2 * 86_400_000
            #expect(try await MP.post(d, channel, MP.page([MP.text("hello?", at: twoDaysAgo)])).status == 200)
            let conversation = try #require(try await d.mpConversations(channel).first?.id)
            let r = try await d.mpReply(conversation, #"{"parts":[{"type":"text","text":"Sorry for the wait"}]}"#)
            #expect(r.status == 422)
            #expect(r.json?["code"] == "window_closed")
            #expect(r.json?["detail"]?.stringValue?.contains("2 days ago") == true, "\(String(describing: r.json))")
            // A native payload keeps to the window too, and one of the wrong shape is refused as such.
            let native = try await d.mpReply(conversation, #"{"parts":[],"overrides":{"messenger":{"text":"Sorry"}}}"#)
            #expect(native.status == 422 && native.json?["code"] == "window_closed")
            let malformed = try await d.mpReply(conversation, #"{"parts":[],"overrides":{"messenger":{"txt":"Sorry"}}}"#)
            #expect(malformed.status == 422 && malformed.json?["code"] == "invalid_request", "\(String(describing: malformed.json))")
            try await Task.sleep(for: .milliseconds(100))
            #expect(graph.requests.filter { $0.method == "POST" }.isEmpty, "no Graph request")
            #expect(try await d.runtime.store.counts().messages == 1, "nothing queued")
        }
    }

    @Test func humanAgentTagAtDayThreeWhenEnabled() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0, humanAgent: true)) ]" }) { d, graph in
            #expect(try await MP.post(d, channel, MP.page([MP.text("any update?", at: MP.now - 3 * 86_400_000)])).status == 200)
            #expect(try await MP.post(d, channel, MP.page([MP.text("hello?", from: MP.psid2, at: MP.now - 8 * 86_400_000)])).status == 200)
            let convs = try await d.mpConversations(channel)
            var ids: [String: String] = [:]
            for c in convs { ids[try #require(try await d.runtime.store.identity(c.identityID)?.channelUserID)] = c.id }
            let r = try await d.mpReply(try #require(ids[MP.psid]), #"{"parts":[{"type":"text","text":"Yes: it shipped today."}]}"#)
            #expect(r.status == 202)
            try await eventually("tagged send") { graph.mpSends(MP.page).count == 1 }
            let id = try #require(r.json?["id"]?.stringValue)
            #expect(graph.mpSends(MP.page).first == ["recipient": ["id": .string(MP.psid)], "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
                                                    "message": ["text": "Yes: it shipped today.", "metadata": .string("switchboard:\(id)")]])
            // Day 8: past the human-agent window too.
            let late = try await d.mpReply(try #require(ids[MP.psid2]), #"{"parts":[{"type":"text","text":"late"}]}"#)
            #expect(late.status == 422 && late.json?["code"] == "window_closed")
            #expect(graph.mpSends(MP.page).count == 1)
        }
    }

    @Test func graphErrorsBecomeStatusesAndAnExpiredTokenMarksTheChannel() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, graph in
            #expect(try await MP.post(d, channel, MP.page([MP.text("hi")])).status == 200)
            let conversation = try #require(try await d.mpConversations(channel).first?.id)
            let path = graph.graphPath("\(MP.page)/messages")
            @Sendable func failed(_ id: String) async throws -> JSONValue? {
                try await d.mpEvents("message.status").first { $0["data"]?["message_id"] == .string(id) && $0["data"]?["status"] == "failed" }?["data"]
            }
            // A permanent refusal: failed at once, with Graph's code, not retried.
            graph.queue("POST", path, [FakeGraph.graphError(code: 551, message: "This person isn't available right now.")])
            let r1 = try await d.mpReply(conversation, #"{"parts":[{"type":"text","text":"one"}]}"#)
            let id1 = try #require(r1.json?["id"]?.stringValue)
            try await eventually("failed status") { try await failed(id1) != nil }
            let f1 = try #require(try await failed(id1))
            #expect(f1["error"]?["code"] == "recipient_unavailable" && f1["error"]?["channel_code"] == "551" && f1["error"]?["retryable"] == false)
            #expect(f1["final"] == true && graph.requests("POST", path).count == 1)

            // A rate limit is retried (Retry-After: 0 here) and then goes out.
            graph.queue("POST", path, [FakeGraph.graphError(code: 613, message: "Calls to this api have exceeded the rate limit.", headers: ["Retry-After": "0"])])
            let r2 = try await d.mpReply(conversation, #"{"parts":[{"type":"text","text":"two"}]}"#)
            let id2 = try #require(r2.json?["id"]?.stringValue)
            try await eventually("sent after the rate limit") { try await d.runtime.store.message(id2)?.externalID != nil }
            #expect(graph.requests("POST", path).count == 3)

            // An expired token (190): the channel turns auth_expired until a send works again; the
            // reply waits on the retry schedule rather than failing.
            graph.queue("POST", path, [FakeGraph.graphError(status: 401, code: 190, subcode: 463, message: "Error validating access token: Session has expired")])
            let r3 = try await d.mpReply(conversation, #"{"parts":[{"type":"text","text":"three"}]}"#)
            let id3 = try #require(r3.json?["id"]?.stringValue)
            @Sendable func state() async throws -> String? {
                try await d.api("GET", "/v1/channels").json?["channels"]?.arrayValue?.first { $0["id"] == .string(channel) }?["state"]?.stringValue
            }
            try await eventually("auth_expired") { try await state() == "auth_expired" }
            #expect(try await d.mpEvents("channel.status").contains { $0["data"]?["state"] == "auth_expired" })
            try await eventually("three sent on its retry") { try await d.runtime.store.message(id3)?.externalID != nil }
            #expect(try await failed(id3) == nil)
            let r4 = try await d.mpReply(conversation, #"{"parts":[{"type":"text","text":"four"}]}"#)
            let id4 = try #require(r4.json?["id"]?.stringValue)
            try await eventually("sent again") { try await d.runtime.store.message(id4)?.externalID != nil }
            try await eventually("connected again") { try await state() == "connected" }
        }
    }

    @Test func storedMediaIsUploadedAndActivityUsesSenderActions() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, graph in
            #expect(try await MP.post(d, channel, MP.page([MP.text("send me the invoice", mid: "m_inv")])).status == 200)
            let conversation = try #require(try await d.mpConversations(channel).first?.id)
            let pdf = Array("%PDF-1.4 fake invoice".utf8)
            let stored = try await d.context(channel).media.put(pdf, mimeType: "application/pdf", filename: "invoice.pdf")
            let r = try await d.mpReply(conversation, #"""
                {"parts":[{"type":"media","kind":"file","media_id":"\#(stored.id)"},{"type":"reaction","emoji":"👍","target_external_id":"m_inv"},
                          {"type":"location","lat":52.52,"long":13.405,"name":"Shop"}]}
                """#)
            #expect(r.status == 202)
            #expect(r.json?["render"]?["degradations"]?.arrayValue?.first?["from"] == "location")
            let id = try #require(r.json?["id"]?.stringValue)
            try await eventually("sent") { try await d.runtime.store.message(id)?.externalID != nil }
            // No public https URL in tests: the file went through the Attachment Upload API.
            let upload = try #require(graph.requests("POST", graph.graphPath("\(MP.page)/message_attachments")).first)
            #expect(upload.file == pdf && upload.fileName == "invoice.pdf" && upload.fileType == "application/pdf" && upload.form["filedata"] == "invoice.pdf")
            #expect(try JSONValue.parse(Data((upload.form["message"] ?? "").utf8)) == ["attachment": ["type": "file", "payload": ["is_reusable": true]]])
            let sends = graph.mpSends(MP.page)
            #expect(sends.count == 3)
            #expect(sends[0]["message"]?["attachment"] == ["type": "file", "payload": ["attachment_id": "1001"]])
            #expect(sends[1] == ["recipient": ["id": .string(MP.psid)], "sender_action": "react", "payload": ["message_id": "m_inv", "reaction": "like"]])
            #expect(sends[2]["message"]?["text"]?.stringValue?.contains("https://maps.google.com/?q=52.52,13.405") == true)

            for (kind, action) in [("typing_start", "typing_on"), ("typing_stop", "typing_off"), ("mark_read", "mark_seen")] {
                #expect(try await d.api("POST", "/v1/conversations/\(conversation)/activity", json: #"{"type":"\#(kind)"}"#).status == 204)
                #expect(graph.mpSends(MP.page).last == ["recipient": ["id": .string(MP.psid)], "sender_action": .string(action)])
            }
        }
    }

    @Test func theSimulateSampleIsASignedMessengerWebhook() async throws {
        let channel = uniqueID("fb")
        try await withMessaging({ "channels: [ \(MP.messengerYAML(channel, graph: $0)) ]" }) { d, _ in
            let body = MessengerPlatform.sampleTextWebhook(flavor: .messenger, ownID: MP.page, text: "simulated hello", userID: "simulated-customer")
            #expect(try await MP.post(d, channel, body).status == 200)
            let received = try #require(try await d.mpEvents("message.received").first?["data"])
            #expect(received["text_fallback"] == "simulated hello")
            #expect(received["sender"]?["channel_user_id"]?.stringValue?.allSatisfy(\.isNumber) == true)
        }
    }
}

// MARK: - the documented configurations

@Suite struct MessagingConfigDocsTests {
    /// The `sample.yaml` files and the commented blocks of Config/switchboard.yaml validate as
    /// they are (with their credential files present), and show every key the factories accept.
    @Test func samplesAndReferenceBlocksValidateAndShowEveryKey() throws {
        let dir = TempDir()
        defer { dir.remove() }
        for name in ["meta-page-token", "meta-ig-token", "meta-verify-token"] {
            FileManager.default.createFile(atPath: dir.file(name), contents: Data("value-of-\(name)".utf8))
        }
        FileManager.default.createFile(atPath: dir.file("meta-app-secret"), contents: Data("0123456789abcdef0123456789abcdef\n".utf8))
        let reference = try ContractTests.text("Config/switchboard.yaml")
        func commented(_ id: String) throws -> String {
            let lines = reference.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let start = try #require(lines.firstIndex(of: "  # - id: \(id)"))
            let block = lines[start...].prefix { $0.hasPrefix("  # ") }.map { String($0.dropFirst(4)) }
            return "channels:\n" + block.map { "  " + $0 }.joined(separator: "\n")
        }
        let documents = [
            ("adapters/messenger/sample.yaml", try ContractTests.text("adapters/messenger/sample.yaml"), MessengerChannelAdapter.ownKeys),
            ("adapters/instagram/sample.yaml", try ContractTests.text("adapters/instagram/sample.yaml"), InstagramChannelAdapter.ownKeys),
            ("Config/switchboard.yaml fb-page", try commented("fb-page"), MessengerChannelAdapter.ownKeys),
            ("Config/switchboard.yaml ig-shop", try commented("ig-shop"), InstagramChannelAdapter.ownKeys),
        ]
        let env = AdapterEnvironment(httpClient: .shared, publicURL: "https://chat.example.com", logger: testLogger)
        for (what, text, ownKeys) in documents {
            let d = ConfigDiagnostics()
            let cfg = ConfigLoader.load(text: text, environment: ConfigEnvironment(variables: [:], baseDirectory: dir.path),
                                        adapterKinds: ["messenger", "instagram"], diagnostics: d)
            let channel = try #require(cfg.channels.first, "\(what): no channel")
            #expect(MP.registry().make(channel, env: env) != nil, "\(what)")
            #expect(d.problems.isEmpty, "\(what): \(d.problems)")
            let shown = Set(text.split(separator: "\n").compactMap { line -> String? in
                let t = line.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "- ", with: "")
                guard let colon = t.firstIndex(of: ":"), !t.hasPrefix("#") else { return nil }
                return String(t[..<colon])
            })
            let expected = Set(ownKeys + MetaChannelSettings.keys + ["id", "type"])
            #expect(expected.subtracting(shown).isEmpty, "\(what) does not show \(expected.subtracting(shown))")
        }
    }
}
