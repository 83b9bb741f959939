import Foundation
import GRDB
import Testing
@testable import MetaAdapter
@testable import SwitchboardCore
@testable import SwitchboardDelivery
@testable import SwitchboardRuntime
@testable import SwitchboardStore
@testable import WhatsAppAdapter

/// WhatsApp fixtures: payload shapes from Meta's webhook reference (shared/reference/meta-channels.md §2).
enum WAFixture {
    static let appSecret = "0123456789abcdef0123456789abcdef"
    static let verifyToken = "wa-verify-token-42"
    static let phoneID = "106540352242922"
    static let customer = "16505551234"
    static let bsuid = "US.13491208655302741918"

    static func registry() -> AdapterRegistry {
        var r = TestRegistry.make()
        r.register(WhatsAppChannelAdapter.type, WhatsAppChannelAdapter.factory)
        return r
    }

    static func channelYAML(_ id: String, graph: FakeGraph) -> String {
        """
        { id: \(id), type: whatsapp, phone_number_id: "\(phoneID)", access_token: "\(graph.token)", app_secret: "\(appSecret)",
          verify_token: "\(verifyToken)", graph_api_base: "\(graph.base)", graph_api_version: "\(graph.version)", media_retry_delays: ["0.1s", "0.1s"] }
        """
    }

    static var now: Int64 { Timestamp.now().milliseconds / 1000 }

    static func wamid() -> String { "wamid.HBgL" + String(UUID().uuidString.prefix(12)).replacingOccurrences(of: "-", with: "") }

    /// One `messages[]` element: common keys plus `fields` (JSON without braces).
    static func message(_ type: String, _ fields: String, id: String = wamid(), from: String = customer, at: Int64 = now,
                        extra: String = "") -> String {
        #"{"from":"\#(from)","id":"\#(id)","timestamp":"\#(at)","type":"\#(type)","\#(type)":\#(fields)\#(extra)}"#
    }

    static func text(_ body: String, id: String = wamid(), from: String = customer, at: Int64 = now, extra: String = "") -> String {
        message("text", #"{"body":"\#(body)"}"#, id: id, from: from, at: at, extra: extra)
    }

    static let contact = #"{"profile":{"name":"Sheena Nelson","username":"@sheena"},"wa_id":"16505551234","user_id":"US.13491208655302741918"}"#

    static func value(messages: [String] = [], statuses: [String] = [], contacts: [String]? = nil, phone: String = phoneID) -> String {
        var parts = [#""messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"\#(phone)"}"#]
        let c = contacts ?? (messages.isEmpty ? [] : [contact])
        if !c.isEmpty { parts.append(#""contacts":[\#(c.joined(separator: ","))]"#) }
        if !messages.isEmpty { parts.append(#""messages":[\#(messages.joined(separator: ","))]"#) }
        if !statuses.isEmpty { parts.append(#""statuses":[\#(statuses.joined(separator: ","))]"#) }
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// The envelope: entries, each a list of change values (field `messages`).
    static func body(entries: [[String]]) -> [UInt8] {
        let e = entries.enumerated().map { i, values in
            #"{"id":"10293847\#(i)","changes":[\#(values.map { #"{"field":"messages","value":\#($0)}"# }.joined(separator: ","))]}"#
        }
        return Array(#"{"object":"whatsapp_business_account","entry":[\#(e.joined(separator: ","))]}"#.utf8)
    }

    static func body(_ values: String...) -> [UInt8] { body(entries: [values]) }

    static func status(_ id: String, _ status: String, recipient: String = customer, extra: String = "") -> String {
        #"{"id":"\#(id)","status":"\#(status)","timestamp":"\#(now)","recipient_id":"\#(recipient)"\#(extra)}"#
    }

    static func post(_ d: TestDaemon, _ channel: String, _ body: [UInt8], signature: String? = nil) async throws -> TestDaemon.HTTPResult {
        try await http("POST", d.publicBase + "/webhooks/\(channel)", body: body,
                       headers: ["content-type": "application/json", "x-hub-signature-256": signature ?? MetaWebhook.sign(body, appSecret: appSecret)])
    }

    static func translate(_ body: [UInt8], phone: String = phoneID) throws -> [WhatsAppItem] {
        WhatsAppChannelAdapter.translate(try JSONValue.parse(Data(body)), rawBody: body, phoneNumberID: phone)
    }

    /// The single item of a one-message body.
    static func one(_ message: String, contacts: [String]? = nil) throws -> WhatsAppItem {
        let items = try translate(body(value(messages: [message], contacts: contacts)))
        #expect(items.count == 1)
        return try #require(items.first)
    }

    static func parts(_ item: WhatsAppItem) -> [Part] {
        if case .message(let m) = item.event.kind { return m.parts }
        return []
    }
}

func withWhatsApp<T: Sendable>(_ yaml: @Sendable (FakeGraph) -> String, _ body: (TestDaemon, FakeGraph) async throws -> T) async throws -> T {
    let graph = try await FakeGraph.start()
    do {
        let r = try await withDaemon(yaml(graph), registry: WAFixture.registry()) { try await body($0, graph) }
        await graph.stop()
        return r
    } catch {
        await graph.stop()
        throw error
    }
}

// MARK: - translation of each documented payload shape

@Suite struct WhatsAppFixtureTests {
    @Test func textWithContactIdentityAndDedupe() throws {
        let item = try WAFixture.one(WAFixture.text("Hi there", id: "wamid.TEXT1", at: 1697043223))
        #expect(item.event.peer.channelUserID == WAFixture.customer)
        #expect(item.event.peer.displayName == "Sheena Nelson")
        #expect(item.event.peer.profile == ["wa_id": "16505551234", "user_id": "US.13491208655302741918", "username": "@sheena"])
        #expect(item.event.dedupeKey == "wamid.TEXT1")
        #expect(item.event.occurredAt == Timestamp(milliseconds: 1697043223000))
        guard case .message(let m) = item.event.kind else { Issue.record("not a message"); return }
        #expect(m.externalID == "wamid.TEXT1" && m.origin == .customer && m.replyToExternalID == nil)
        #expect(m.parts == [.text("Hi there")])
        #expect(item.event.raw?.bytes == Array(WAFixture.body(WAFixture.value(messages: [WAFixture.text("Hi there", id: "wamid.TEXT1", at: 1697043223)]))),
                "a lone message keeps Meta's exact bytes")
        #expect(item.event.channelData?["whatsapp_type"] == "text")
    }

    @Test func usernameUsersAreKeyedByTheirBusinessScopedID() throws {
        let contact = #"{"profile":{"name":"Kim"},"user_id":"US.13491208655302741918"}"#
        let m = #"{"from_user_id":"US.13491208655302741918","id":"wamid.B1","timestamp":"1697043223","type":"text","text":{"body":"hi"}}"#
        let item = try WAFixture.one(m, contacts: [contact])
        #expect(item.event.peer.channelUserID == WAFixture.bsuid && item.event.peer.displayName == "Kim")
        #expect(WhatsAppChannelAdapter.isBSUID(WAFixture.bsuid) && !WhatsAppChannelAdapter.isBSUID("16505551234"))
        #expect(WhatsAppChannelAdapter.recipientFields(WAFixture.bsuid) == ["recipient": .string(WAFixture.bsuid)])
        #expect(WhatsAppChannelAdapter.recipientFields("16505551234") == ["to": "16505551234"])
    }

    @Test func businessScopedIDsAreAliasesAndIDChangesMoveTheCustomer() throws {
        // Both ids: keyed by the number, the business-scoped ids are aliases.
        let both = try WAFixture.one(WAFixture.text("hi"), contacts: [#"{"profile":{"name":"Sheena"},"wa_id":"16505551234","user_id":"US.1349","parent_user_id":"US.ENT.77"}"#])
        #expect(both.event.peer.channelUserID == "16505551234" && both.event.peer.aliases == ["US.1349", "US.ENT.77"] && both.event.peer.movedTo == nil)
        // A new number (the 2026 form: the new and previous business-scoped ids beside the new number).
        let number = try WAFixture.one(WAFixture.message("system", #"{"type":"user_changed_number","body":"User A changed from 16505551234 to 16505559999","wa_id":"16505559999","user_id":"US.2222","previous_user_id":"US.1349","parent_user_id":"US.ENT.88","previous_parent_user_id":"US.ENT.77"}"#), contacts: [])
        #expect(number.event.peer.channelUserID == "16505551234" && number.event.peer.aliases == ["US.1349", "US.ENT.77"])
        #expect(number.event.peer.movedTo == Peer.IDs(channelUserID: "16505559999", aliases: ["US.2222", "US.ENT.88"]))
        #expect(number.event.peer.profile == ["wa_id": "16505559999", "user_id": "US.2222", "parent_user_id": "US.ENT.88"])
        // The earlier form names only the new number.
        let legacy = try WAFixture.one(WAFixture.message("system", #"{"type":"user_changed_number","body":"User A changed from 16505551234 to 16505559999","wa_id":"16505559999"}"#), contacts: [])
        #expect(legacy.event.peer.channelUserID == "16505551234" && legacy.event.peer.movedTo == Peer.IDs(channelUserID: "16505559999"))
        #expect(legacy.event.peer.profile == ["wa_id": "16505559999", "user_id": .null], "the old business-scoped id is stale too")
        // A new business-scoped id for a username user (no number): the old one from the body when not given.
        let user = try WAFixture.one(#"{"id":"wamid.S2","timestamp":"1697043223","type":"system","system":{"type":"user_changed_user_id","body":"User Kim changed from US.1111 to US.2222","user_id":"US.2222"}}"#, contacts: [])
        #expect(user.event.peer.channelUserID == "US.1111" && user.event.peer.movedTo == Peer.IDs(channelUserID: "US.2222"))
        // Other system notices change no ids; a notice without a new id is only shown.
        let other = try WAFixture.one(WAFixture.message("system", #"{"type":"customer_identity_changed","body":"User identity changed"}"#), contacts: [])
        #expect(other.event.peer.movedTo == nil && other.event.peer.channelUserID == WAFixture.customer)
        // The first form of the notice, the `user_id_update` field.
        let update = #"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"user_id_update","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"\#(WAFixture.phoneID)"},"contacts":[{"profile":{"name":"Ana"},"wa_id":"16505551234"}],"user_id_update":[{"wa_id":"16505551234","detail":"User id for Ana has been updated.","user_id":{"previous":"US.1349","current":"US.2222"},"timestamp":"1750030073"}]}}]}]}"#
        let items = try WAFixture.translate(Array(update.utf8))
        #expect(items.count == 1)
        let u = try #require(items.first)
        guard case .identityUpdated = u.event.kind else { Issue.record("user_id_update is an identity update"); return }
        #expect(u.event.peer.channelUserID == "16505551234" && u.event.peer.aliases == ["US.1349"])
        #expect(u.event.peer.movedTo == Peer.IDs(channelUserID: "16505551234", aliases: ["US.2222"]))
        #expect(u.event.dedupeKey == "user_id_update:US.1349>US.2222")
    }

    @Test func mediaWhatsAppWouldRefuseGoesAsADocument() throws {
        func type(_ kind: MediaKind, _ mime: String?, _ size: Int64? = 1000) throws -> String {
            try WhatsAppChannelAdapter.messageType(for: Open(MediaFields(kind: kind, mediaID: "med_1", mimeType: mime, size: size)))
        }
        #expect(try type(.image, "image/jpeg") == "image" && type(.image, "image/png") == "image")
        #expect(try type(.image, "image/webp") == "document", "WhatsApp's images are JPEG and PNG")
        #expect(try type(.image, "image/jpeg", 6 * 1024 * 1024) == "document", "images up to 5 MB")
        #expect(try type(.video, "video/mp4") == "video" && type(.video, "video/webm") == "document")
        #expect(try type(.voice, "audio/ogg; codecs=opus") == "audio" && type(.audio, "audio/mpeg") == "audio")
        #expect(try type(.audio, "audio/webm") == "document" && type(.audio, "audio/mpeg", 17 * 1024 * 1024) == "document")
        #expect(try type(.sticker, "image/webp") == "sticker" && type(.sticker, "image/png") == "image")
        #expect(try type(.sticker, "image/webp", 600 * 1024) == "document")
        #expect(try type(.file, "application/zip") == "document")
        #expect(try type(.image, nil, nil) == "image", "a link of unknown type is left to its kind")
        #expect(throws: SendError.self) { try type(.file, "application/pdf", 101 * 1024 * 1024) }
    }

    @Test func quotedRepliesForwardsAndAdReferrals() throws {
        let quoted = try WAFixture.one(WAFixture.text("yes", extra: #","context":{"from":"15550783881","id":"wamid.ORIGINAL"}"#))
        guard case .message(let q) = quoted.event.kind else { Issue.record("quoted"); return }
        #expect(q.replyToExternalID == "wamid.ORIGINAL")
        let fwd = try WAFixture.one(WAFixture.text("look", extra: #","context":{"forwarded":true,"frequently_forwarded":true}"#))
        #expect(fwd.event.channelData?["forwarded"] == true && fwd.event.channelData?["frequently_forwarded"] == true)
        let ad = try WAFixture.one(WAFixture.text("Hi", extra: #"""
            ,"referral":{"source_url":"https://fb.me/abc","source_id":"120212","source_type":"ad","headline":"Summer sale","body":"50% off",
             "media_type":"image","image_url":"https://scontent/x.jpg","ctwa_clid":"ARAkLkA","welcome_message":{"text":"Hi! How can we help?"}}
            """#))
        #expect(ad.event.channelData?["referral"]?["source_id"] == "120212")
        #expect(ad.event.channelData?["referral"]?["ctwa_clid"] == "ARAkLkA")
        #expect(ad.event.channelData?["referral"]?["welcome_message"]?["text"] == "Hi! How can we help?")
    }

    @Test func mediaMessagesAreCommittedPendingAndQueuedForDownload() throws {
        let cases: [(String, String, MediaKind)] = [
            ("image", #"{"id":"2754859441498128","mime_type":"image/jpeg","sha256":"81d3bd8a","caption":"my photo","url":"https://lookaside.fbsbx.com/x"}"#, .image),
            ("document", #"{"id":"55501","mime_type":"application/pdf","sha256":"aa","filename":"invoice.pdf","caption":"March"}"#, .file),
            ("audio", #"{"id":"55502","mime_type":"audio/ogg; codecs=opus","sha256":"bb","voice":true}"#, .voice),
            ("audio", #"{"id":"55503","mime_type":"audio/mpeg","sha256":"cc","voice":false}"#, .audio),
            ("video", #"{"id":"55504","mime_type":"video/mp4","sha256":"dd","caption":"clip"}"#, .video),
            ("sticker", #"{"id":"55505","mime_type":"image/webp","sha256":"ee","animated":true}"#, .sticker),
        ]
        for (type, fields, kind) in cases {
            let item = try WAFixture.one(WAFixture.message(type, fields, id: "wamid.M-\(type)"))
            guard case .media(let m)? = WAFixture.parts(item).first else { Issue.record("\(type): not media"); continue }
            let id = try JSONValue.parse(Data(fields.utf8))["id"]?.stringValue
            #expect(m.kind == kind, "\(type)")
            #expect(m.unavailable == "pending" && m.mediaID == nil)
            #expect(m.extra["whatsapp_media_id"]?.stringValue == id)
            #expect(item.media?.mediaID == id && item.media?.wamid == "wamid.M-\(type)")
            switch type {
            case "image": #expect(m.caption == "my photo" && m.mimeType == "image/jpeg" && m.extra["whatsapp_sha256"] == "81d3bd8a")
            case "document": #expect(m.filename == "invoice.pdf" && m.caption == "March")
            case "sticker": #expect(m.extra["animated"] == true)
            default: break
            }
        }
    }

    @Test func locationAndContacts() throws {
        let loc = try WAFixture.one(WAFixture.message("location", #"{"latitude":37.46,"longitude":-122.21,"name":"Facebook HQ","address":"1 Hacker Way","url":"https://fb.com"}"#))
        #expect(WAFixture.parts(loc) == [.location(Open(LocationFields(lat: 37.46, long: -122.21, name: "Facebook HQ", address: "1 Hacker Way", url: "https://fb.com")))])
        let pin = try WAFixture.one(WAFixture.message("location", #"{"latitude":1.5,"longitude":2.25}"#))
        #expect(WAFixture.parts(pin) == [.location(Open(LocationFields(lat: 1.5, long: 2.25)))])

        let raw = #"""
            {"from":"16505551234","id":"wamid.C1","timestamp":"1697043223","type":"contacts","contacts":[
              {"name":{"formatted_name":"Chandler Bing","first_name":"Chandler","last_name":"Bing"},
               "phones":[{"phone":"+1 555-555-5555","wa_id":"15555555555","type":"CELL"}],
               "emails":[{"email":"c@x.com","type":"WORK"}],"org":{"company":"Transponster Inc"},"birthday":"1968-04-08"},
              {"name":{"first_name":"Joey"},"phones":[{"phone":"+1 555-000-0000"}]}]}
            """#
        let item = try WAFixture.one(raw)
        let parts = WAFixture.parts(item)
        #expect(parts.count == 2)
        guard case .contactCard(let c)? = parts.first, case .contactCard(let joey)? = parts.last else { Issue.record("contacts"); return }
        #expect(c.name == "Chandler Bing" && c.org == "Transponster Inc")
        #expect(c.phones == [.init(value: "+1 555-555-5555", label: "CELL")] && c.emails == [.init(value: "c@x.com", label: "WORK")])
        #expect(c.extra["whatsapp_contact"]?["birthday"] == "1968-04-08", "what has no field is kept")
        #expect(joey.name == "Joey" && joey.emails == nil)
    }

    @Test func interactiveRepliesAndTemplateButtonsAreInteractions() throws {
        let ctx = #","context":{"from":"15550783881","id":"wamid.OURMSG"}"#
        let button = try WAFixture.one(WAFixture.message("interactive", #"{"type":"button_reply","button_reply":{"id":"cancel-button","title":"Cancel"}}"#, extra: ctx))
        #expect(WAFixture.parts(button) == [.interaction(Open(InteractionFields(kind: .buttonReply, payload: "cancel-button", title: "Cancel")))])
        guard case .message(let bm) = button.event.kind else { return }
        #expect(bm.replyToExternalID == "wamid.OURMSG")

        let list = try WAFixture.one(WAFixture.message("interactive", #"{"type":"list_reply","list_reply":{"id":"priority_express","title":"Priority Mail","description":"Next day"}}"#))
        #expect(WAFixture.parts(list) == [.interaction(Open(InteractionFields(kind: .listReply, payload: "priority_express", title: "Priority Mail",
                                                                             values: ["description": "Next day"])))])

        let flow = try WAFixture.one(WAFixture.message("interactive", #"{"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{\"flow_token\":\"tok\",\"size\":\"M\"}"}}"#))
        #expect(WAFixture.parts(flow) == [.interaction(Open(InteractionFields(kind: .formResponse, payload: "flow", title: "Sent",
                                                                             values: ["flow_token": "tok", "size": "M"])))])

        let template = try WAFixture.one(WAFixture.message("button", #"{"payload":"callback_data","text":"Yes"}"#, extra: #","context":{"from":"15550783881","id":"wamid.TEMPLATE"}"#))
        #expect(WAFixture.parts(template) == [.interaction(Open(InteractionFields(kind: .quickReply, payload: "callback_data", title: "Yes")))])

        let other = try WAFixture.one(WAFixture.message("interactive", #"{"type":"call_permission_reply","call_permission_reply":{"response":"accept"}}"#))
        guard case .interaction(let o)? = WAFixture.parts(other).first else { Issue.record("generic interactive"); return }
        #expect(o.kind.rawValue == "call_permission_reply" && o.values == ["response": "accept"])
    }

    @Test func reactionsAddAndRemove() throws {
        let add = try WAFixture.one(WAFixture.message("reaction", #"{"message_id":"wamid.TARGET","emoji":"😮"}"#, id: "wamid.R1"))
        guard case .reaction(let target, let emoji, let action) = add.event.kind else { Issue.record("reaction"); return }
        #expect(target == "wamid.TARGET" && emoji == "😮" && action == "add")
        #expect(add.event.dedupeKey == "wamid:wamid.R1")
        let remove = try WAFixture.one(WAFixture.message("reaction", #"{"message_id":"wamid.TARGET","emoji":""}"#))
        guard case .reaction(_, let e2, let a2) = remove.event.kind else { Issue.record("removal"); return }
        #expect(e2 == "" && a2 == "remove")
    }

    @Test func unsupportedUnknownSystemOrderAndWelcome() throws {
        let unsupported = try WAFixture.one(#"""
            {"from":"16505551234","id":"wamid.U1","timestamp":"1697043223","type":"unsupported","unsupported":{"type":"pool"},
             "errors":[{"code":131051,"title":"Message type unknown","message":"Message type unknown","error_data":{"details":"Message type is currently not supported."}}]}
            """#)
        guard case .unsupported(let u)? = WAFixture.parts(unsupported).first else { Issue.record("unsupported"); return }
        #expect(u.description == "WhatsApp pool message: Message type is currently not supported." && u.channelType == "whatsapp")
        #expect(u.extra["whatsapp_message"]?["unsupported"]?["type"] == "pool")
        #expect(unsupported.event.channelData?["errors"]?.arrayValue?.first?["code"] == 131051)

        let future = try WAFixture.one(WAFixture.message("hologram", #"{"shape":"cube"}"#))
        guard case .unsupported(let f)? = WAFixture.parts(future).first else { Issue.record("unknown type"); return }
        #expect(f.description == "WhatsApp hologram message" && f.extra["whatsapp_message"]?["hologram"]?["shape"] == "cube")
        #expect(future.event.raw != nil)

        let changed = try WAFixture.one(WAFixture.message("system", #"{"type":"user_changed_number","body":"User A changed from 16505551234 to 16505559999","wa_id":"16505559999"}"#), contacts: [])
        guard case .message(let sys) = changed.event.kind else { Issue.record("system"); return }
        #expect(sys.origin == .system && sys.parts == [.text("User A changed from 16505551234 to 16505559999")])
        #expect(changed.event.channelData?["system_type"] == "user_changed_number" && changed.event.channelData?["new_wa_id"] == "16505559999")

        let order = try WAFixture.one(WAFixture.message("order", #"{"catalog_id":"354160437058781","text":"for tonight","product_items":[{"product_retailer_id":"HAMBURGER","quantity":3,"item_price":30,"currency":"ILS"}]}"#))
        #expect(WAFixture.parts(order).first == .text("for tonight"))
        guard case .unsupported(let o)? = WAFixture.parts(order).last else { Issue.record("order"); return }
        #expect(o.description == "WhatsApp order: 3 × HAMBURGER (30 ILS)" && o.extra["whatsapp_order"]?["catalog_id"] == "354160437058781")

        let welcome = try WAFixture.one(#"{"from":"16505551234","id":"wamid.W1","timestamp":"1697043223","type":"request_welcome"}"#)
        guard case .custom(let type, _) = welcome.event.kind else { Issue.record("welcome"); return }
        #expect(type.rawValue == "conversation.welcome_requested")
    }

    @Test func statusesMapToDeliveryStatuses() throws {
        let failed = #"""
            {"id":"wamid.OUT1","status":"failed","timestamp":"1698266945","recipient_id":"16505551234",
             "errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message",
                        "error_data":{"details":"Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
                        "href":"https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]}
            """#
        let delivered = WAFixture.status("wamid.OUT1", "delivered", extra: #","biz_opaque_callback_data":"msg_1","conversation":{"id":"7270","origin":{"type":"service"}},"pricing":{"billable":false,"pricing_model":"PMP","category":"service"}"#)
        let items = try WAFixture.translate(WAFixture.body(WAFixture.value(statuses: [
            WAFixture.status("wamid.OUT1", "sent"), delivered, WAFixture.status("wamid.OUT1", "read"), WAFixture.status("wamid.OUT2", "played"), failed,
            #"{"id":"wamid.OUT3","status":"failed","timestamp":"1698266945","recipient_id":"16505551234","errors":[{"code":130429,"title":"Rate limit hit"}]}"#,
        ])))
        let kinds = items.compactMap { i -> (String, DeliveryStatus, StatusError?)? in
            if case .status(let id, let s, let e) = i.event.kind { return (id, s, e) }
            return nil
        }
        #expect(kinds.map(\.1) == [.sent, .delivered, .read, .read, .failed, .failed])
        #expect(items.map(\.event.dedupeKey) == ["status:wamid.OUT1:sent", "status:wamid.OUT1:delivered", "status:wamid.OUT1:read",
                                                 "status:wamid.OUT2:played", "status:wamid.OUT1:failed", "status:wamid.OUT3:failed"])
        #expect(items.allSatisfy { $0.event.peer.channelUserID == WAFixture.customer })
        let e = try #require(kinds[4].2)
        #expect(e.code == "window_closed" && e.channelCode == "131047" && !e.retryable && e.message.contains("24 hours"))
        let rate = try #require(kinds[5].2)
        #expect(rate.code == "rate_limited" && rate.retryable)
        #expect(items[1].event.channelData?["pricing"]?["category"] == "service")
    }

    @Test func batchesAreReadWholeAndOtherPhoneNumbersSkipped() throws {
        let body = WAFixture.body(entries: [
            [WAFixture.value(messages: [WAFixture.text("second", id: "wamid.A2", at: 200), WAFixture.text("first", id: "wamid.A1", at: 100)]),
             WAFixture.value(statuses: [WAFixture.status("wamid.OUT9", "delivered")])],
            [WAFixture.value(messages: [WAFixture.text("other number", id: "wamid.X")], phone: "999999"),
             WAFixture.value(messages: [WAFixture.text("third", id: "wamid.A3", from: "447700900123", at: 150)],
                             contacts: [#"{"profile":{"name":"Ann"},"wa_id":"447700900123"}"#])],
        ])
        var skipped: [String] = []
        let items = WhatsAppChannelAdapter.translate(try JSONValue.parse(Data(body)), rawBody: body, phoneNumberID: WAFixture.phoneID,
                                                     skipped: { skipped.append($0) })
        #expect(skipped == ["999999"])
        let wamids = items.compactMap { item -> String? in if case .message(let m) = item.event.kind { m.externalID } else { nil } }
        #expect(wamids == ["wamid.A1", "wamid.A2", "wamid.A3"], "oldest first within a change; every entry and change")
        #expect(items.count == 4)
        #expect(items.last?.event.peer == Peer(channelUserID: "447700900123", displayName: "Ann", profile: ["wa_id": "447700900123"]))
        // Several items: each keeps a self-contained raw value.
        let raw = try #require(items.first?.event.raw?.parsed)
        #expect(raw["messages"]?.arrayValue?.count == 1 && raw["metadata"]?["phone_number_id"]?.stringValue == WAFixture.phoneID)
    }

    /// WhatsApp's interactive bodies and captions take 1024 characters: a longer text goes out
    /// whole as text messages, never cut to fit.
    @Test func longTextsAreNeverCut() {
        let long = String(repeating: "Lorem ipsum dolor sit amet. ", count: 60)
        let actions = [Action(ActionFields(type: .reply, title: "Yes", id: "y", payload: "y")), Action(ActionFields(type: .reply, title: "No", id: "n", payload: "n"))]
        let buttons = WhatsAppChannelAdapter.buttonsMessages(text: long, actions: actions, header: nil)
        #expect(buttons.count == 2)
        #expect(buttons.first?["text"]?["body"]?.stringValue == long)
        #expect(buttons.last?["interactive"]?["body"]?["text"] == "Please choose:")
        #expect(WhatsAppChannelAdapter.buttonsMessages(text: "Shall we?", actions: actions, header: nil).first?["interactive"]?["body"]?["text"] == "Shall we?")
        let image: JSONObject = ["type": "image", "image": ["link": "https://cdn.example/p.jpg"]]
        let captioned = WhatsAppChannelAdapter.captioned(image, type: "image", caption: long)
        #expect(captioned.count == 2 && captioned[0]["image"]?["caption"] == nil && captioned[1]["text"]?["body"]?.stringValue == long)
        #expect(WhatsAppChannelAdapter.captioned(image, type: "image", caption: "Our shop").first?["image"]?["caption"] == "Our shop")
    }

    /// Our message id comes back in every status (`biz_opaque_callback_data`): the receipt carries
    /// it, so it finds the message even before the send that returned the wamid is recorded.
    @Test func statusesCarryOurMessageID() throws {
        let ours = ID.make(.message)
        let s = try JSONValue.parse(Data(#"{"id":"wamid.P1","status":"delivered","timestamp":"1739321024","recipient_id":"16505551234","biz_opaque_callback_data":"\#(ours)"}"#.utf8))
        #expect(WhatsAppChannelAdapter.status(s, raw: .json(Data())).event.ourMessageID == ours)
        let other = try JSONValue.parse(Data(#"{"id":"wamid.P2","status":"delivered","timestamp":"1739321024","recipient_id":"1","biz_opaque_callback_data":"campaign-7"}"#.utf8))
        #expect(WhatsAppChannelAdapter.status(other, raw: .json(Data())).event.ourMessageID == nil, "someone else's callback data")
    }

    @Test func coexistenceEchoesAreEchoesToTheCustomer() throws {
        let body = Array(#"""
            {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"smb_message_echoes","value":{
              "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
              "message_echoes":[{"from":"15550783881","to":"16505551234","id":"wamid.ECHO1","timestamp":"1739321024","type":"text","text":{"body":"Sent from the app"}},
                                {"from":"15550783881","to":"16505551234","id":"wamid.ECHO2","timestamp":"1739321025","type":"reaction","reaction":{"message_id":"wamid.IN9","emoji":"👍"}}]}}]},
             {"id":"102290129340398","changes":[{"field":"user_preferences","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},
              "user_preferences":[{"wa_id":"16505551234","category":"marketing_messages","value":"stop","timestamp":1739321024}]}}]}]}
            """#.utf8)
        var notes: [String] = []
        let items = WhatsAppChannelAdapter.translate(try JSONValue.parse(Data(body)), rawBody: body, phoneNumberID: WAFixture.phoneID, note: { notes.append($0) })
        #expect(items.count == 2)
        let item = try #require(items.first)
        guard case .message(let m) = item.event.kind else { Issue.record("echo"); return }
        #expect(m.origin == .echo && m.externalID == "wamid.ECHO1" && m.parts == [.text("Sent from the app")])
        #expect(item.event.peer.channelUserID == "16505551234")
        // A reaction the business sent from the app is an echo too, not the customer's reaction.
        guard case .message(let r) = items[1].event.kind else { Issue.record("reaction echo: \(items[1].event.kind)"); return }
        #expect(r.origin == .echo && r.parts == [.reaction(Open(ReactionFields(emoji: "👍", action: "add", targetExternalID: "wamid.IN9")))])
        #expect(notes == ["webhook field user_preferences is not handled by this adapter"], "logged, not silently dropped")
    }

    /// Edits and deletions ("revoke"), the customer's and, as echoes, the business app's
    /// (pywa's shapes): `message.updated` with the new text, and `message.deleted`, both of the
    /// original wamid. A caption edit is not applied (it would replace the stored media).
    @Test func editsAndRevokesChangeTheOriginalMessage() throws {
        let edit = try WAFixture.one(WAFixture.message("edit", #"{"original_message_id":"wamid.ORIG","message":{"type":"text","text":{"body":"fixed typo"}}}"#, id: "wamid.EDIT1"))
        guard case .updated(let target, let parts) = edit.event.kind else { Issue.record("edit: \(edit.event.kind)"); return }
        #expect(target == "wamid.ORIG" && parts == [.text("fixed typo")])
        #expect(edit.event.dedupeKey == "edit:wamid.EDIT1" && edit.event.peer.channelUserID == WAFixture.customer && edit.media == nil)

        let revoke = try WAFixture.one(WAFixture.message("revoke", #"{"original_message_id":"wamid.ORIG"}"#, id: "wamid.REV1"))
        guard case .deleted(let gone) = revoke.event.kind else { Issue.record("revoke: \(revoke.event.kind)"); return }
        #expect(gone == "wamid.ORIG" && revoke.event.dedupeKey == "revoke:wamid.REV1")
        #expect(revoke.event.stateUpdates.map(\.key) == [WhatsAppMediaJob.key("wamid.ORIG")] && revoke.event.stateUpdates.first?.value == nil,
                "a pending download of the deleted message is called off")

        // A new caption on an image: kept as an unsupported message that says so, with the edit;
        // the stored image is left as it is, and nothing is downloaded again.
        let caption = try WAFixture.one(WAFixture.message("edit", #"{"original_message_id":"wamid.PIC","message":{"type":"image","image":{"id":"777","mime_type":"image/jpeg","caption":"new caption"}}}"#, id: "wamid.EDIT2"))
        guard case .message(let captionMessage) = caption.event.kind, case .unsupported(let u)? = captionMessage.parts.first else {
            Issue.record("caption edit: \(caption.event.kind)"); return
        }
        #expect(u.description.contains("image") && u.description.contains("new caption") && caption.media == nil)
        #expect(caption.event.channelData?["original_message_id"] == "wamid.PIC")

        // The business edited its message in the app (coexistence): about the customer it went to.
        let body = Array(#"""
            {"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"smb_message_echoes","value":{
              "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
              "message_echoes":[{"from":"15550783881","to":"16505551234","id":"wamid.EDIT3","timestamp":"1739321024","type":"edit",
                                 "edit":{"original_message_id":"wamid.ECHO1","message":{"type":"text","text":{"body":"Sent from the app, fixed"}}}}]}}]}]}
            """#.utf8)
        let echo = try #require(try WAFixture.translate(body).first)
        guard case .updated("wamid.ECHO1", let echoParts) = echo.event.kind else { Issue.record("echo edit: \(echo.event.kind)"); return }
        #expect(echoParts == [.text("Sent from the app, fixed")] && echo.event.peer.channelUserID == "16505551234")

        // Without the edited message there is nothing to apply: kept as unsupported, not dropped.
        let broken = try WAFixture.one(WAFixture.message("edit", #"{"original_message_id":"wamid.ORIG"}"#))
        guard case .unsupported? = WAFixture.parts(broken).first else { Issue.record("broken edit: \(broken.event.kind)"); return }
    }

    @Test func configDiagnosticsNameKeysAndNeverSecrets() {
        let d = ConfigDiagnostics()
        let env = AdapterEnvironment(httpClient: .shared, publicURL: "https://x", logger: testLogger)
        let cfg = ConfigLoader.load(text: """
            channels:
              - { id: w1, type: whatsapp, phone_number_id: "+1 555 0100", access_token: "EAAG-super-secret-token", verify_token: v,
                  app_secret: "0123456789abcdef0123456789abcdef", graph_api_version: "latest", acess_token: x }
            """, environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"), adapterKinds: ["whatsapp"], diagnostics: d)
        _ = WAFixture.registry().make(cfg.channels[0], env: env)
        let p = d.problems
        #expect(p.contains { $0.hasPrefix("channels[0].phone_number_id:") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].acess_token: unknown key (did you mean access_token?)") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("channels[0].graph_api_version:") }, "\(p)")
        #expect(!p.joined().contains("super-secret"))
        let d2 = ConfigDiagnostics()
        let cfg2 = ConfigLoader.load(text: "channels: [ { id: w2, type: whatsapp } ]", environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"),
                                     adapterKinds: ["whatsapp"], diagnostics: d2)
        #expect(WAFixture.registry().make(cfg2.channels[0], env: env) == nil)
        for key in ["phone_number_id", "access_token", "app_secret", "verify_token"] {
            #expect(d2.problems.contains { $0.hasPrefix("channels[0].\(key): missing") }, "\(key): \(d2.problems)")
        }
    }
}

// MARK: - webhooks through the daemon

@Suite struct WhatsAppWebhookTests {
    @Test func handshakeAndSignatures() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, _ in
            let url = d.publicBase + "/webhooks/\(channel)"
            let ok = try await http("GET", url + "?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=\(WAFixture.verifyToken)")
            #expect(ok.status == 200 && String(decoding: ok.body, as: UTF8.self) == "1158201444")
            #expect(try await http("GET", url + "?hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope").status == 403)

            let body = WAFixture.body(WAFixture.value(messages: [WAFixture.text("Caf\\u00e9 \\/ menu")]))
            #expect(try await http("POST", url, body: body, headers: ["content-type": "application/json"]).status == 401)
            #expect(try await WAFixture.post(d, channel, body, signature: MetaWebhook.sign(body, appSecret: "ffffffffffffffffffffffffffffffff")).status == 401)
            // The same JSON with "é" and "/" unescaped: Meta's signature no longer matches.
            let reencoded = Array(String(decoding: body, as: UTF8.self).replacingOccurrences(of: "\\u00e9", with: "é").replacingOccurrences(of: "\\/", with: "/").utf8)
            #expect(reencoded != body)
            #expect(try await WAFixture.post(d, channel, reencoded, signature: MetaWebhook.sign(body, appSecret: WAFixture.appSecret)).status == 401)
            #expect(try await d.runtime.store.counts().messages == 0, "nothing stored for a bad signature")
            let bad = try await WAFixture.post(d, channel, Array("not json".utf8))
            #expect(bad.status == 400 && bad.headers["content-type"] == "application/problem+json")
            #expect(try await WAFixture.post(d, channel, body).status == 200)
            let received = try await d.storedEvents("message.received")
            #expect(received.first?["data"]?["text_fallback"]?.stringValue == "Café / menu")
            // A Page (Messenger) payload on this URL is acknowledged and ignored.
            let page = Array(#"{"object":"page","entry":[]}"#.utf8)
            #expect(try await WAFixture.post(d, channel, page).status == 200)
        }
    }

    @Test func aBatchedPostStoresEveryItemAndRetriesAreStoredOnce() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, _ in
            let body = WAFixture.body(entries: [
                [WAFixture.value(messages: [WAFixture.text("one", id: "wamid.B1"), WAFixture.text("two", id: "wamid.B2")]),
                 WAFixture.value(messages: [WAFixture.text("three", id: "wamid.B3", from: "447700900123")],
                                 contacts: [#"{"profile":{"name":"Ann"},"wa_id":"447700900123"}"#])],
                [WAFixture.value(messages: [WAFixture.message("reaction", #"{"message_id":"wamid.B1","emoji":"👍"}"#, id: "wamid.B4")]),
                 WAFixture.value(messages: [WAFixture.text("elsewhere", id: "wamid.B5")], phone: "5550000")],
            ])
            #expect(try await WAFixture.post(d, channel, body).status == 200)
            #expect(try await d.runtime.store.counts().messages == 3)
            #expect(try await d.storedEvents("message.reaction").count == 1)
            // Meta retries the whole POST, and later sends one of its messages again in another batch.
            #expect(try await WAFixture.post(d, channel, body).status == 200)
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("two", id: "wamid.B2")]))).status == 200)
            #expect(try await d.runtime.store.counts().messages == 3)
            let received = try await d.storedEvents("message.received")
            #expect(received.compactMap { $0["data"]?["external_id"]?.stringValue }.sorted() == ["wamid.B1", "wamid.B2", "wamid.B3"])
            #expect(try await d.storedEvents("message.reaction").count == 1)
            let reaction = try #require(try await d.storedEvents("message.reaction").first?["data"])
            #expect(reaction["emoji"] == "👍" && reaction["target_external_id"] == "wamid.B1" && reaction["target_message_id"]?.stringValue != nil)
            let convs = try await d.runtime.store.conversations(channelID: channel, limit: 10, cursor: nil).0
            #expect(convs.count == 2)
        }
    }

    /// The customer edits, then deletes a message: the helpdesk gets `message.updated` and
    /// `message.deleted` on our message id, the stored message reads as edited, and Meta's
    /// retries of either change nothing.
    @Test func anEditAndARevokeReachTheStoredMessage() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, _ in
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("see you at 5", id: "wamid.E1")]))).status == 200)
            let ours = try #require(try await d.storedEvents("message.received").first?["data"]?["id"]?.stringValue)
            let edit = WAFixture.body(WAFixture.value(messages: [WAFixture.message("edit", #"{"original_message_id":"wamid.E1","message":{"type":"text","text":{"body":"see you at 6"}}}"#, id: "wamid.E2")]))
            let revoke = WAFixture.body(WAFixture.value(messages: [WAFixture.message("revoke", #"{"original_message_id":"wamid.E1"}"#, id: "wamid.E3")]))
            for body in [edit, edit, revoke, revoke] { #expect(try await WAFixture.post(d, channel, body).status == 200) }
            let updated = try await d.storedEvents("message.updated")
            #expect(updated.count == 1)
            #expect(updated.first?["data"]?["message_id"]?.stringValue == ours && updated.first?["data"]?["text_fallback"] == "see you at 6")
            let deleted = try await d.storedEvents("message.deleted")
            #expect(deleted.count == 1 && deleted.first?["data"]?["message_id"]?.stringValue == ours)
            #expect(try await d.runtime.store.counts().messages == 1, "no message made of the edit or the revoke")
            let stored = try await d.api("GET", "/v1/messages/\(ours)")
            #expect(stored.json?["parts"]?.arrayValue?.first?["text"] == "see you at 6")
        }
    }

    /// A message deleted for everyone while its media is still being fetched: the download is
    /// called off, so the file never reaches the helpdesk after the deletion.
    @Test func aRevokeCallsOffThePendingDownload() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, graph in
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + (0..<2000).map { UInt8($0 % 251) }
            graph.serveWhatsAppMedia(id: "3300001", bytes: jpeg, mimeType: "image/jpeg")
            // Graph takes its time to give the download URL: the revoke comes meanwhile.
            graph.queue("GET", "/v23.0/3300001", [FakeGraph.Answer(["messaging_product": "whatsapp", "url": .string(graph.base + "/whatsapp_business/attachments/3300001"),
                                                                    "mime_type": "image/jpeg", "sha256": "0f1e2d", "file_size": .int(Int64(jpeg.count)), "id": "3300001"],
                                                                   delay: .seconds(2))])
            let image = WAFixture.message("image", #"{"id":"3300001","mime_type":"image/jpeg","sha256":"x","caption":"oops"}"#, id: "wamid.OOPS")
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [image]))).status == 200)
            let revoke = WAFixture.message("revoke", #"{"original_message_id":"wamid.OOPS"}"#, id: "wamid.OOPS-R")
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [revoke]))).status == 200)
            #expect(try await d.storedEvents("message.deleted").count == 1)
            // The download itself went ahead (it was under way); what it fetched is not published.
            try await eventually("the file was fetched") { !graph.requests("GET", "/whatsapp_business/attachments/3300001").isEmpty }
            try await Task.sleep(for: .seconds(1))
            #expect(try await d.storedEvents("message.updated").isEmpty, "nothing published after the deletion")
            #expect(try await d.runtime.store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM adapter_state WHERE key LIKE 'media_job:%'") } == 0)
        }
    }

    /// The same while the download is failing and about to be put off: the revoke's clearing of
    /// the job is not undone by the retry's bookkeeping, so the later retry publishes nothing.
    @Test func aRevokeDuringAFailingDownloadIsNotUndoneByItsRetry() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, graph in
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + (0..<2000).map { UInt8($0 % 251) }
            graph.serveWhatsAppMedia(id: "3300002", bytes: jpeg, mimeType: "image/jpeg")
            // Three quick attempts fail (the last one slowly, while the revoke comes); the
            // deferred retry then finds Graph working again.
            let failing = FakeGraph.graphError(status: 500, code: 1, type: "OAuthException", message: "An unknown error occurred")
            var slow = failing
            slow.delay = .seconds(2)
            graph.queue("GET", "/v23.0/3300002", [failing, failing, slow])
            let image = WAFixture.message("image", #"{"id":"3300002","mime_type":"image/jpeg","sha256":"x"}"#, id: "wamid.OOPS2")
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [image]))).status == 200)
            try await eventually("the slow attempt is under way") { graph.requests("GET", "/v23.0/3300002").count == 3 }
            let revoke = WAFixture.message("revoke", #"{"original_message_id":"wamid.OOPS2"}"#, id: "wamid.OOPS2-R")
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [revoke]))).status == 200)
            try await eventually("the deferred retry fetched the file") { !graph.requests("GET", "/whatsapp_business/attachments/3300002").isEmpty }
            try await Task.sleep(for: .seconds(1))
            #expect(try await d.storedEvents("message.updated").isEmpty, "nothing published after the deletion")
            #expect(try await d.runtime.store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM adapter_state WHERE key LIKE 'media_job:%'") } == 0)
        }
    }

    @Test func mediaIsFetchedThroughGraphAfterTheCommit() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, graph in
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + (0..<5000).map { UInt8($0 % 251) }
            graph.serveWhatsAppMedia(id: "2754859441498128", bytes: jpeg, mimeType: "image/jpeg")
            graph.serveWhatsAppMedia(id: "9000001", bytes: Array(repeating: 1, count: 1_500_000), mimeType: "video/mp4")
            graph.serveWhatsAppMedia(id: "9000002", bytes: Array(repeating: 2, count: 1_200_000), mimeType: "application/pdf", contentLength: false)
            let body = WAFixture.body(WAFixture.value(messages: [
                WAFixture.message("image", #"{"id":"2754859441498128","mime_type":"image/jpeg","sha256":"x","caption":"the receipt"}"#, id: "wamid.IMG"),
                WAFixture.message("video", #"{"id":"9000001","mime_type":"video/mp4","sha256":"y"}"#, id: "wamid.BIG"),
                WAFixture.message("document", #"{"id":"9000002","mime_type":"application/pdf","sha256":"z","filename":"big.pdf"}"#, id: "wamid.BIGDOC"),
                WAFixture.message("audio", #"{"id":"404404","mime_type":"audio/ogg","sha256":"w","voice":true}"#, id: "wamid.GONE"),
            ]))
            let started = ContinuousClock.now
            #expect(try await WAFixture.post(d, channel, body).status == 200)
            #expect(ContinuousClock.now - started < .seconds(5), "answered before any download (generous: the full suite shares 2 cores)")
            let received = try await d.storedEvents("message.received")
            #expect(received.count == 4 && received.allSatisfy { $0["data"]?["parts"]?.arrayValue?.first?["unavailable"] == "pending" })
            try await eventually("four message.updated events") { try await d.storedEvents("message.updated").count == 4 }
            let updates = try await d.storedEvents("message.updated")
            func part(_ id: String) -> JSONValue? {
                updates.first { $0["data"]?["external_id"]?.stringValue == id }?["data"]?["parts"]?.arrayValue?.first
            }
            let image = try #require(part("wamid.IMG"))
            #expect(image["unavailable"] == nil && image["mime_type"] == "image/jpeg" && image["caption"] == "the receipt" && image["size"] == .int(Int64(jpeg.count)))
            let mediaID = try #require(image["media_id"]?.stringValue)
            #expect(try await d.api("GET", "/v1/media/\(mediaID)").body == Data(jpeg))
            #expect(updates.first { $0["data"]?["external_id"] == "wamid.IMG" }?["data"]?["message_id"]?.stringValue != nil)
            // Graph was asked for the URL with the phone number id; the lookaside download carried the token.
            #expect(graph.requests("GET", "/v23.0/2754859441498128").first?.query["phone_number_id"] == WAFixture.phoneID)
            #expect(graph.requests("GET", "/whatsapp_business/attachments/2754859441498128").first?.headers["authorization"] == "Bearer \(graph.token)")
            #expect(part("wamid.BIG")?["unavailable"] == "too_large", "file_size beyond media.max_bytes (1MB in tests): not even downloaded")
            #expect(graph.requests("GET", "/whatsapp_business/attachments/9000001").isEmpty)
            #expect(part("wamid.BIGDOC")?["unavailable"] == "too_large" && part("wamid.BIGDOC")?["filename"] == "big.pdf")
            #expect(part("wamid.GONE")?["unavailable"] == "expired", "Graph no longer knows the media id")
            try await eventually("jobs cleared") {
                try await d.runtime.store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM adapter_state WHERE key LIKE 'media_job:%'") } == 0
            }
        }
    }

    @Test func theSimulateSamplesAreSignedWhatsAppWebhooks() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, _ in
            for kind in WhatsAppChannelAdapter.SampleKind.allCases {
                let body = WhatsAppChannelAdapter.sampleWebhook(kind: kind, text: "simulated \(kind)", from: "simulated-customer", name: "Sam", phoneNumberID: WAFixture.phoneID)
                #expect(try await WAFixture.post(d, channel, body).status == 200)
            }
            let received = try await d.storedEvents("message.received")
            #expect(received.compactMap { $0["data"]?["parts"]?.arrayValue?.first?["type"]?.stringValue } == ["text", "media", "location", "interaction"])
            #expect(received.first?["data"]?["text_fallback"] == "simulated text")
            let sender = try #require(received.first?["data"]?["sender"])
            #expect(sender["display_name"] == "Sam" && sender["channel_user_id"]?.stringValue?.count == 11)
        }
    }
}

// MARK: - end to end: helpdesk, replies, window, errors

@Suite struct WhatsAppEndToEndTests {
    static func status(_ h: TestHelpdesk, _ id: String, _ s: String) -> CloudEvent? {
        h.events.first { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id && $0.data?["status"]?.stringValue == s }
    }

    @Test func webhookToHelpdeskReplyAndReceipts() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("wa")
            try await withWhatsApp({ graph in """
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ \(WAFixture.channelYAML(channel, graph: graph)) ]
                """ }) { d, graph in
                // 1. A signed webhook becomes a signed CloudEvent at the helpdesk.
                let body = WAFixture.body(WAFixture.value(messages: [WAFixture.text("Where is my order?", id: "wamid.IN1")]))
                #expect(try await WAFixture.post(d, channel, body).status == 200)
                try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                let signer = try WebhookSigner(secrets: testSecret)
                for delivery in helpdesk.deliveries {
                    #expect(signer.verify(id: delivery.headers["webhook-id"] ?? "", timestamp: Int64(delivery.headers["webhook-timestamp"] ?? "") ?? 0,
                                          body: delivery.body, header: delivery.headers["webhook-signature"] ?? "", now: Int64(Date().timeIntervalSince1970)))
                }
                let received = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" })
                #expect(received.data?["text_fallback"] == "Where is my order?" && received.data?["external_id"] == "wamid.IN1")
                #expect(received.data?["sender"]?["channel_user_id"] == "16505551234" && received.data?["sender"]?["display_name"] == "Sheena Nelson")
                #expect(received.data?["channel"]?["type"] == "whatsapp")
                let conversation = try #require(received.subject)

                // 2. A reply quoting the customer: the exact Graph body.
                let inboundID = try #require(received.data?["id"]?.stringValue)
                let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                        json: #"{"parts":[{"type":"text","text":"It ships today: https://track.example/A1"}],"reply_to":{"message_id":"\#(inboundID)"}}"#)
                #expect(r.status == 202)
                let id = try #require(r.json?["id"]?.stringValue)
                try await eventually("Graph send") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count == 1 }
                let sent = try #require(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").first)
                #expect(sent.headers["authorization"] == "Bearer \(graph.token)")
                #expect(sent.json == [
                    "messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", "type": "text",
                    "text": ["body": "It ships today: https://track.example/A1", "preview_url": true],
                    "context": ["message_id": "wamid.IN1"], "biz_opaque_callback_data": .string(id),
                ])
                try await eventually("sent") { Self.status(helpdesk, id, "sent") != nil }
                let wamid = try #require(Self.status(helpdesk, id, "sent")?.data?["external_ids"]?.arrayValue?.first?.stringValue)
                #expect(wamid.hasPrefix("wamid.FAKE"))

                // 3. Receipts for our message arrive as message.status on our id; a repeat is dropped.
                let receipts = WAFixture.body(WAFixture.value(statuses: [WAFixture.status(wamid, "delivered"), WAFixture.status(wamid, "read")]))
                #expect(try await WAFixture.post(d, channel, receipts).status == 200)
                #expect(try await WAFixture.post(d, channel, receipts).status == 200)
                try await eventually("read") { Self.status(helpdesk, id, "read") != nil }
                #expect(Self.status(helpdesk, id, "delivered") != nil)
                #expect(Self.status(helpdesk, id, "read")?.data?["final"] == true)
                try await Task.sleep(for: .milliseconds(200))
                #expect(helpdesk.events.filter { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id }.count == 3)
                // A receipt for a message that isn't ours creates nothing.
                #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(statuses: [WAFixture.status("wamid.SOMEONE_ELSE", "read")]))).status == 200)
                // Receipts out of order: `read` first, then the late `delivered`, which is dropped
                // (a status never goes back).
                let r3 = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"one more"}]}"#)
                let id3 = try #require(r3.json?["id"]?.stringValue)
                try await eventually("third sent") { Self.status(helpdesk, id3, "sent") != nil }
                let wamid3 = try #require(Self.status(helpdesk, id3, "sent")?.data?["external_ids"]?.arrayValue?.first?.stringValue)
                #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(statuses: [WAFixture.status(wamid3, "read")]))).status == 200)
                #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(statuses: [WAFixture.status(wamid3, "delivered")]))).status == 200)
                try await eventually("third read") { Self.status(helpdesk, id3, "read") != nil }
                try await Task.sleep(for: .milliseconds(300))
                #expect(Self.status(helpdesk, id3, "delivered") == nil)
                // An asynchronous failure (131026) on a later message.
                let r2 = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"hello?"}]}"#)
                let id2 = try #require(r2.json?["id"]?.stringValue)
                try await eventually("second sent") { Self.status(helpdesk, id2, "sent") != nil }
                let wamid2 = try #require(Self.status(helpdesk, id2, "sent")?.data?["external_ids"]?.arrayValue?.first?.stringValue)
                // Meta's own `sent` receipt after ours tells nothing new: dropped.
                #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(statuses: [WAFixture.status(wamid2, "sent")]))).status == 200)
                let failed = #"{"id":"\#(wamid2)","status":"failed","timestamp":"\#(WAFixture.now)","recipient_id":"16505551234","errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable","error_data":{"details":"Receiver is incapable of receiving this message"}}]}"#
                #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(statuses: [failed]))).status == 200)
                try await eventually("failed") { Self.status(helpdesk, id2, "failed") != nil }
                let err = Self.status(helpdesk, id2, "failed")?.data?["error"]
                #expect(err?["code"] == "recipient_unavailable" && err?["channel_code"] == "131026" && err?["retryable"] == false)
                // `failed` was final: a late `delivered`, `sent` or `read` for the same wamid changes nothing.
                #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(statuses: [
                    WAFixture.status(wamid2, "delivered"), WAFixture.status(wamid2, "sent"), WAFixture.status(wamid2, "read")]))).status == 200)
                try await Task.sleep(for: .milliseconds(300))
                #expect(helpdesk.events.filter { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == id2 }
                    .compactMap { $0.data?["status"]?.stringValue } == ["sent", "failed"])
                // A receipt naming the recipient otherwise than we addressed them (Brazil's ninth
                // digit) is about our message all the same: no new identity or conversation.
                #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(statuses: [
                    WAFixture.status(wamid3, "sent", recipient: "551112345678")]))).status == 200)
                try await Task.sleep(for: .milliseconds(300))
                #expect(!helpdesk.events.contains { $0.type == "switchboard.conversation.created" && $0.subject != conversation })
                let identities = try await d.runtime.store.pool.read { db in
                    try String.fetchAll(db, sql: "SELECT channel_user_id FROM identities WHERE channel_id = ?", arguments: [channel])
                }
                #expect(identities == ["16505551234"], "receipts create no identities")
                #expect(try await d.runtime.store.conversations(channelID: channel, limit: 10, cursor: nil).0.count == 1, "no stray conversations from receipts")

                // A reaction to the customer's message named by our id goes out on its wamid.
                let react = try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                            json: #"{"parts":[{"type":"reaction","emoji":"👍","target_message_id":"\#(inboundID)"}]}"#)
                #expect(react.status == 202)
                let reactID = try #require(react.json?["id"]?.stringValue)
                try await eventually("reaction sent") { Self.status(helpdesk, reactID, "sent") != nil }
                #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").last?.json?["reaction"] == ["message_id": "wamid.IN1", "emoji": "👍"])
                // A reaction to our own reply queued while that reply is still going out (Graph
                // answers late): its wamid is looked up again when the reaction is claimed.
                graph.queue("POST", "/v23.0/\(WAFixture.phoneID)/messages", [.init(["messaging_product": "whatsapp",
                    "contacts": [["input": "16505551234", "wa_id": "16505551234"]], "messages": [["id": "wamid.SLOW1"]]], delay: .milliseconds(800))])
                let slow = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"slow one"}]}"#)
                let slowID = try #require(slow.json?["id"]?.stringValue)
                try await eventually("the slow reply is under way") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").last?.json?["text"]?["body"] == "slow one" }
                let react2 = try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                             json: #"{"parts":[{"type":"reaction","emoji":"🎉","target_message_id":"\#(slowID)"}]}"#)
                let react2ID = try #require(react2.json?["id"]?.stringValue)
                try await eventually("second reaction sent") { Self.status(helpdesk, react2ID, "sent") != nil }
                #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").last?.json?["reaction"] == ["message_id": "wamid.SLOW1", "emoji": "🎉"])

                // 4. mark_read and typing use the latest inbound wamid.
                #expect(try await d.api("POST", "/v1/conversations/\(conversation)/activity", json: #"{"type":"mark_read"}"#).status == 204)
                #expect(try await d.api("POST", "/v1/conversations/\(conversation)/activity", json: #"{"type":"typing_start"}"#).status == 204)
                #expect(try await d.api("POST", "/v1/conversations/\(conversation)/activity", json: #"{"type":"typing_stop"}"#).status == 204)
                let activity = graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").suffix(2).map(\.json)
                #expect(activity == [["messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1"],
                                     ["messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1", "typing_indicator": ["type": "text"]]])
                #expect(graph.violations.isEmpty, "\(graph.violations)")
            }
        }
    }

    /// A customer keeps one identity and conversation whichever of their ids a webhook carries,
    /// and through a change of number; replies follow them to the new number, and the old
    /// number (which may be given to someone else) no longer finds them.
    @Test func aCustomerKeepsTheirConversationAcrossTheirWhatsAppIDs() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("wa")
            try await withWhatsApp({ graph in """
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ \(WAFixture.channelYAML(channel, graph: graph)) ]
                """ }) { d, graph in
                func post(_ message: String, contacts: [String]) async throws {
                    #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [message], contacts: contacts))).status == 200)
                }
                func received(_ wamid: String) async throws -> CloudEvent {
                    try await eventually("\(wamid) delivered") { helpdesk.events.contains { $0.data?["external_id"]?.stringValue == wamid } }
                    return try #require(helpdesk.events.first { $0.data?["external_id"]?.stringValue == wamid })
                }
                func reply(_ conversation: String, _ text: String) async throws -> JSONValue? {
                    let before = graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count
                    #expect(try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"\#(text)"}]}"#).status == 202)
                    try await eventually("\(text) sent") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count > before }
                    return graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").last?.json
                }
                // 1. Number and business-scoped id: keyed by the number.
                try await post(WAFixture.text("first", id: "wamid.ID1"), contacts: [WAFixture.contact])
                let first = try await received("wamid.ID1")
                let conversation = try #require(first.subject)
                // 2. The same customer as a username user: only the business-scoped id.
                try await post(#"{"from_user_id":"US.13491208655302741918","id":"wamid.ID2","timestamp":"\#(WAFixture.now)","type":"text","text":{"body":"second"}}"#,
                               contacts: [#"{"profile":{"name":"Sheena Nelson","username":"@sheena"},"user_id":"US.13491208655302741918"}"#])
                let second = try await received("wamid.ID2")
                #expect(second.subject == conversation, "the same conversation, not a new customer")
                #expect(second.data?["sender"]?["channel_user_id"] == "16505551234" && second.data?["sender"]?["identity_id"] == first.data?["sender"]?["identity_id"])
                // 3. A customer first met by business-scoped id only, later with a number too.
                try await post(#"{"from_user_id":"US.777","id":"wamid.K1","timestamp":"\#(WAFixture.now)","type":"text","text":{"body":"hello"}}"#,
                               contacts: [#"{"profile":{"name":"Kim"},"user_id":"US.777"}"#])
                let kim = try #require(try await received("wamid.K1").subject)
                #expect(kim != conversation)
                #expect(try await reply(kim, "to kim")?["recipient"] == "US.777")
                try await post(WAFixture.text("with number", id: "wamid.K2", from: "4915112345678"), contacts: [#"{"profile":{"name":"Kim"},"wa_id":"4915112345678","user_id":"US.777"}"#])
                #expect(try await received("wamid.K2").subject == kim)
                // 4. A new number: the notice re-keys the identity; replies go to the new number.
                try await post(WAFixture.message("system", #"{"type":"user_changed_number","body":"User Sheena changed from 16505551234 to 16505559999","wa_id":"16505559999","user_id":"US.2222","previous_user_id":"US.13491208655302741918"}"#, id: "wamid.SYS1"), contacts: [])
                #expect(try await received("wamid.SYS1").subject == conversation)
                try await eventually("identity.updated with the new number") {
                    helpdesk.events.contains { $0.type == "switchboard.identity.updated" && $0.data?["channel_user_id"] == "16505559999" }
                }
                let updated = try #require(helpdesk.events.last { $0.type == "switchboard.identity.updated" && $0.data?["channel_user_id"] == "16505559999" })
                #expect(updated.data?["profile"]?["wa_id"] == "16505559999" && updated.data?["profile"]?["user_id"] == "US.2222")
                #expect(try await reply(conversation, "after the move")?["to"] == "16505559999")
                // The new ids find the customer — the number, or the new business-scoped id alone.
                try await post(WAFixture.text("from the new phone", id: "wamid.ID3", from: "16505559999"),
                               contacts: [#"{"profile":{"name":"Sheena Nelson"},"wa_id":"16505559999","user_id":"US.2222"}"#])
                #expect(try await received("wamid.ID3").subject == conversation)
                try await post(#"{"from_user_id":"US.2222","id":"wamid.ID4","timestamp":"\#(WAFixture.now)","type":"text","text":{"body":"username now"}}"#,
                               contacts: [#"{"profile":{"name":"Sheena Nelson"},"user_id":"US.2222"}"#])
                #expect(try await received("wamid.ID4").subject == conversation)
                // The old number and old business-scoped id are someone else's now.
                try await post(WAFixture.text("new owner of the old number", id: "wamid.OLD", from: "16505551234"),
                               contacts: [#"{"profile":{"name":"Bob"},"wa_id":"16505551234","user_id":"US.3333"}"#])
                let stranger = try await received("wamid.OLD")
                #expect(stranger.subject != conversation && stranger.subject != kim)
                // 5. A new business-scoped id for a username user (the notice names it in its body).
                try await post(#"{"id":"wamid.SYS2","timestamp":"\#(WAFixture.now)","type":"system","system":{"type":"user_changed_user_id","body":"User Kim changed from US.777 to US.778","user_id":"US.778"}}"#, contacts: [])
                #expect(try await received("wamid.SYS2").subject == kim)
                #expect(try await reply(kim, "to kim again")?["recipient"] == "US.778")
                // 6. A move to ids another identity already has (their message came first): the
                // identities stay apart, but the old one gives up its number — replies to it fail,
                // and the number, given to someone else, opens a new conversation.
                try await post(WAFixture.message("system", #"{"type":"user_changed_number","body":"User Bob changed","wa_id":"16505559999"}"#, id: "wamid.SYS3", from: "16505551234"), contacts: [])
                #expect(try await received("wamid.SYS3").subject == stranger.subject)
                let bobConversation = try #require(stranger.subject)
                let toBob = try await d.api("POST", "/v1/conversations/\(bobConversation)/messages", json: #"{"parts":[{"type":"text","text":"hello Bob?"}]}"#)
                let toBobID = try #require(toBob.json?["id"]?.stringValue)
                try await eventually("reply to the moved customer failed") { Self.status(helpdesk, toBobID, "failed") != nil }
                #expect(Self.status(helpdesk, toBobID, "failed")?.data?["error"]?["code"] == "recipient_unavailable")
                #expect(try await reply(conversation, "still hers")?["to"] == "16505559999")
                let bob = try await d.runtime.store.pool.read { db in
                    try Row.fetchOne(db, sql: "SELECT channel_user_id, profile FROM identities WHERE id = ?", arguments: [stranger.data?["sender"]?["identity_id"]?.stringValue])
                }
                let bobKey: String? = bob?["channel_user_id"]
                let bobProfile: String? = bob?["profile"]
                #expect(bobKey?.hasPrefix("moved:") == true)
                #expect(bobProfile?.contains(#""wa_id":"16505551234""#) == true, "a refused move leaves the profile alone: \(bobProfile ?? "nil")")
                try await post(WAFixture.text("third owner", id: "wamid.THIRD", from: "16505551234"), contacts: [#"{"profile":{"name":"Carol"},"wa_id":"16505551234"}"#])
                let third = try await received("wamid.THIRD")
                #expect(third.subject != bobConversation && third.subject != conversation)
                let keys = try await d.runtime.store.pool.read { db in
                    try String.fetchAll(db, sql: "SELECT channel_user_id FROM identities WHERE channel_id = ? AND channel_user_id NOT LIKE 'moved:%' ORDER BY channel_user_id", arguments: [channel])
                }
                #expect(keys == ["16505551234", "16505559999", "US.778"])
                #expect(try await d.runtime.store.conversations(channelID: channel, limit: 10, cursor: nil).0.count == 4)
                // 7. Media fetched for a message after its customer moved goes to that message's
                // conversation; the old number gets no identity from it.
                let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + Array(repeating: 3, count: 500)
                graph.serveWhatsAppMedia(id: "7100001", bytes: jpeg, mimeType: "image/jpeg")
                graph.queue("GET", "/v23.0/7100001", [FakeGraph.Answer(status: 503, ["error": ["message": "busy", "code": 2]], delay: .milliseconds(800))])
                try await post(WAFixture.message("image", #"{"id":"7100001","mime_type":"image/jpeg","sha256":"z"}"#, id: "wamid.DANA1", from: "4930000001"),
                               contacts: [#"{"profile":{"name":"Dana"},"wa_id":"4930000001"}"#])
                let dana = try #require(try await received("wamid.DANA1").subject)
                try await post(WAFixture.message("system", #"{"type":"user_changed_number","body":"User Dana changed","wa_id":"4930000002"}"#, id: "wamid.SYS4", from: "4930000001"), contacts: [])
                #expect(try await received("wamid.SYS4").subject == dana)
                try await eventually("the media update") {
                    helpdesk.events.contains { $0.type == "switchboard.message.updated" && $0.data?["external_id"] == "wamid.DANA1" }
                }
                let update = try #require(helpdesk.events.first { $0.type == "switchboard.message.updated" && $0.data?["external_id"] == "wamid.DANA1" })
                #expect(update.subject == dana && update.data?["parts"]?.arrayValue?.first?["media_id"] != nil)
                let oldNumber = try await d.runtime.store.pool.read { db in
                    try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM identities WHERE channel_id = ? AND channel_user_id = '4930000001'", arguments: [channel])
                }
                #expect(oldNumber == 0, "no identity made again for the old number")
                #expect(graph.violations.isEmpty, "\(graph.violations)")
            }
        }
    }

    @Test func richPartsBecomeNativeWhatsAppMessages() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, graph in
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("hi", id: "wamid.IN7")]))).status == 200)
            let conversation = try #require(try await d.runtime.store.conversations(channelID: channel, limit: 1, cursor: nil).0.first?.id)
            let upload = try await http("POST", d.apiBase + "/v1/media?filename=terms.pdf", body: Array("%PDF-1.4 test".utf8),
                                        headers: ["authorization": "Bearer \(TestDaemon.token)", "content-type": "application/pdf"])
            let mediaID = try #require(upload.json?["id"]?.stringValue, "upload: \(upload.status) \(String(decoding: upload.body, as: UTF8.self))")
            let request = """
                {"parts":[
                  {"type":"buttons","text":"Keep or cancel?","actions":[{"type":"reply","title":"Keep","payload":"KEEP"},{"type":"reply","title":"Cancel","payload":"CANCEL"}]},
                  {"type":"quick_replies","text":"Rate us","options":[{"title":"Good","payload":"G"},{"title":"Bad","payload":"B"}]},
                  {"type":"list","text":"Pick shipping","button_text":"Shipping","sections":[{"title":"Fast","rows":[{"id":"express","title":"Priority Mail Express","description":"Next day"}]}]},
                  {"type":"location","lat":37.46,"long":-122.21,"name":"HQ","address":"1 Hacker Way"},
                  {"type":"contact_card","name":"Chandler Bing","phones":[{"value":"+15555555555","label":"CELL"}]},
                  {"type":"media","kind":"file","media_id":"\(mediaID)","caption":"Our terms"},
                  {"type":"media","kind":"image","url":"https://cdn.example/p.jpg","caption":"Photo"},
                  {"type":"card","title":"Blue shirt","subtitle":"$20","image_url":"https://cdn.example/s.jpg","actions":[{"type":"link","title":"Buy","url":"https://shop.example/s"}]},
                  {"type":"buttons","text":"Too many","actions":[{"type":"reply","title":"A"},{"type":"reply","title":"B"},{"type":"reply","title":"C"},{"type":"reply","title":"D"}]}
                ]}
                """
            let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: request)
            #expect(r.status == 202, "\(String(decoding: r.body, as: UTF8.self))")
            let degradations = r.json?["render"]?["degradations"]?.arrayValue ?? []
            #expect(degradations.map { "\($0["from"]?.stringValue ?? "")→\($0["to"]?.stringValue ?? "")" } == ["quick_replies→buttons", "buttons→numbered_text"])
            try await eventually("nine sends") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count == 9 }
            let bodies = graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").map { $0.json?.objectValue ?? [:] }
            func strip(_ o: JSONObject) -> JSONValue {
                var x = o
                for k in ["messaging_product", "recipient_type", "to", "biz_opaque_callback_data"] { x[k] = nil }
                return .object(x)
            }
            #expect(strip(bodies[0]) == ["type": "interactive", "interactive": ["type": "button", "body": ["text": "Keep or cancel?"], "action": ["buttons": [
                ["type": "reply", "reply": ["id": "KEEP", "title": "Keep"]], ["type": "reply", "reply": ["id": "CANCEL", "title": "Cancel"]]]]]])
            #expect(strip(bodies[1])["interactive"]?["action"]?["buttons"]?.arrayValue?.map { $0["reply"]?["id"] } == ["G", "B"])
            #expect(strip(bodies[2]) == ["type": "interactive", "interactive": ["type": "list", "body": ["text": "Pick shipping"], "action": [
                "button": "Shipping", "sections": [["title": "Fast", "rows": [["id": "express", "title": "Priority Mail Express", "description": "Next day"]]]]]]])
            #expect(strip(bodies[3]) == ["type": "location", "location": ["latitude": 37.46, "longitude": -122.21, "name": "HQ", "address": "1 Hacker Way"]])
            #expect(strip(bodies[4]) == ["type": "contacts", "contacts": [["name": ["formatted_name": "Chandler Bing", "first_name": "Chandler", "last_name": "Bing"],
                                                                          "phones": [["phone": "+15555555555", "type": "CELL"]]]]])
            let uploadReq = try #require(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/media").first)
            #expect(uploadReq.file == Array("%PDF-1.4 test".utf8) && uploadReq.form["type"] == "application/pdf")
            let uploadedID = try #require(bodies[5]["document"]?["id"]?.stringValue)
            #expect(strip(bodies[5]) == ["type": "document", "document": ["id": .string(uploadedID), "caption": "Our terms", "filename": "terms.pdf"]])
            #expect(strip(bodies[6]) == ["type": "image", "image": ["link": "https://cdn.example/p.jpg", "caption": "Photo"]])
            #expect(strip(bodies[7]) == ["type": "interactive", "interactive": ["type": "cta_url", "header": ["type": "image", "image": ["link": "https://cdn.example/s.jpg"]],
                "body": ["text": "Blue shirt\n$20"], "action": ["name": "cta_url", "parameters": ["display_text": "Buy", "url": "https://shop.example/s"]]]])
            #expect(strip(bodies[8]) == ["type": "text", "text": ["body": "Too many\n1. A\n2. B\n3. C\n4. D", "preview_url": false]])
            #expect(bodies.allSatisfy { $0["to"] == "16505551234" && $0["context"] == nil })
            #expect(graph.violations.isEmpty, "\(graph.violations)")

            // The same stored file again: uploaded once, its WhatsApp id reused.
            _ = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"media","kind":"file","media_id":"\#(mediaID)"}]}"#)
            try await eventually("tenth send") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count == 10 }
            #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/media").count == 1)
            // A reaction to the customer's message, addressed by its wamid.
            _ = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"reaction","emoji":"👍","target_external_id":"wamid.IN7"}]}"#)
            try await eventually("reaction") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count == 11 }
            #expect(strip(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").last?.json?.objectValue ?? [:])
                    == ["type": "reaction", "reaction": ["message_id": "wamid.IN7", "emoji": "👍"]])
            // A stored WebP sent as an image: WhatsApp's images are JPEG or PNG, so it goes as a
            // document. A GIF it does not take at all: failed before any upload.
            let uploads = graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/media").count
            let webp = try await http("POST", d.apiBase + "/v1/media?filename=photo.webp", body: Array("RIFF....WEBP".utf8),
                                      headers: ["authorization": "Bearer \(TestDaemon.token)", "content-type": "image/webp"])
            let webpID = try #require(webp.json?["id"]?.stringValue)
            _ = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"media","kind":"image","media_id":"\#(webpID)","caption":"Ta-da"}]}"#)
            try await eventually("the WebP") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count == 12 }
            let sentWebP = strip(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").last?.json?.objectValue ?? [:])
            #expect(sentWebP["type"] == "document" && sentWebP["document"]?["filename"] == "photo.webp" && sentWebP["document"]?["caption"] == "Ta-da", "\(sentWebP)")
            #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/media").count == uploads + 1)
            let gif = try await http("POST", d.apiBase + "/v1/media?filename=dance.gif", body: Array("GIF89a test".utf8),
                                     headers: ["authorization": "Bearer \(TestDaemon.token)", "content-type": "image/gif"])
            let gifID = try #require(gif.json?["id"]?.stringValue)
            let gifSend = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"media","kind":"image","media_id":"\#(gifID)"}]}"#)
            let gifMessage = try #require(gifSend.json?["id"]?.stringValue)
            try await eventually("the GIF failed") {
                try await d.storedEvents("message.status").contains { $0["data"]?["message_id"]?.stringValue == gifMessage && $0["data"]?["status"] == "failed" }
            }
            let gifFailed = try await d.storedEvents("message.status").first { $0["data"]?["message_id"]?.stringValue == gifMessage && $0["data"]?["status"] == "failed" }
            #expect(gifFailed?["data"]?["error"]?["code"] == "capability_unsupported")
            #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/media").count == uploads + 1, "no upload tried for the GIF")
        }
    }

    /// WhatsApp's list limits (row title ≤ 24, description ≤ 72, header ≤ 60) never cut what
    /// the agent wrote: a list that doesn't fit goes out as numbered text, reported; a long
    /// header moves into the body.
    @Test func listsTooLongForWhatsAppAreNotCut() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, graph in
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("hi", id: "wamid.IN8")]))).status == 200)
            let conversation = try #require(try await d.runtime.store.conversations(channelID: channel, limit: 1, cursor: nil).0.first?.id)
            let header = "Everything you can do with an order placed in our online shop"
            let longHeader = #"{"parts":[{"type":"list","header":"\#(header)","text":"Pick one","sections":[{"rows":[{"id":"a","title":"Track"}]}]}]}"#
            let r1 = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: longHeader)
            #expect(r1.status == 202 && r1.json?["render"]?["degradations"]?.arrayValue == [])
            let longRow = #"""
                {"parts":[{"type":"list","text":"Pick one","sections":[{"rows":[
                  {"id":"a","title":"Track"},{"id":"b","title":"Returns and exchanges for orders","description":"Send it back"}]}]}]}
                """#
            let r2 = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: longRow)
            #expect(r2.status == 202)
            #expect(r2.json?["render"]?["degradations"] == [["part": 0, "from": "list", "to": "numbered_text", "reason": "over_limit",
                                                              "detail": "a row or section title is longer than 24 characters"]])
            try await eventually("two sends") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count == 2 }
            let bodies = graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").map { $0.json ?? .null }
            #expect(bodies[0]["interactive"]?["header"] == nil)
            #expect(bodies[0]["interactive"]?["body"]?["text"] == .string(header + "\nPick one"))
            #expect(bodies[1]["type"] == "text")
            #expect(bodies[1]["text"]?["body"] == "Pick one\n1. Track\n2. Returns and exchanges for orders — Send it back")
            #expect(graph.violations.isEmpty, "\(graph.violations)")
        }
    }

    @Test func outsideTheWindowOnlyTemplatesGoOut() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, graph in
            let old = WAFixture.now - 25 * 3600
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("old news", at: old)]))).status == 200)
            let conversation = try #require(try await d.runtime.store.conversations(channelID: channel, limit: 1, cursor: nil).0.first?.id)
            let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"sorry for the wait"}]}"#)
            #expect(r.status == 422)
            #expect(r.json?["code"] == "window_closed")
            #expect(try await d.runtime.store.counts().messages == 1, "nothing queued")
            let template = #"""
                {"parts":[{"type":"template","channel":"whatsapp","name":"order_update_v1","language":"en_US","components":[
                  {"type":"body","parameters":[{"type":"text","text":"Alex"},{"type":"text","text":"A12345"}]}]}]}
                """#
            let noLanguage = #"{"parts":[{"type":"template","channel":"whatsapp","name":"order_update_v1"}]}"#
            #expect(try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: noLanguage).json?["code"] == "invalid_request")
            #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").isEmpty, "no Graph call for refused sends")
            let t = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: template)
            #expect(t.status == 202)
            let id = try #require(t.json?["id"]?.stringValue)
            try await eventually("template sent") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count == 1 }
            #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").first?.json == [
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", "type": "template",
                "template": ["name": "order_update_v1", "language": ["code": "en_US"], "components": [
                    ["type": "body", "parameters": [["type": "text", "text": "Alex"], ["type": "text", "text": "A12345"]]]]],
                "biz_opaque_callback_data": .string(id),
            ])
            // A native payload (overrides.whatsapp) is what goes out instead of the parts, so it
            // is what the window rule looks at: a native template is accepted, native text is not,
            // and a payload of the wrong shape is refused before anything is queued.
            let nativeText = #"{"parts":[],"overrides":{"whatsapp":{"type":"text","text":{"body":"late"}}}}"#
            let nativeClosed = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: nativeText)
            #expect(nativeClosed.status == 422 && nativeClosed.json?["code"] == "window_closed")
            let malformed = try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                            json: #"{"parts":[],"overrides":{"whatsapp":{"text":{"body":"no type"}}}}"#)
            #expect(malformed.status == 422 && malformed.json?["code"] == "invalid_request")
            #expect(try await d.runtime.store.counts().messages == 2, "refused native payloads are not queued")
            let nativeTemplate = #"""
                {"parts":[],"overrides":{"whatsapp":{"type":"template","template":{"name":"order_update_v1","language":{"code":"de"}}}}}
                """#
            let nt = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: nativeTemplate)
            #expect(nt.status == 202, "\(String(decoding: nt.body, as: UTF8.self))")
            let ntID = try #require(nt.json?["id"]?.stringValue)
            try await eventually("native template sent") { graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").count == 2 }
            #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").last?.json == [
                "messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", "type": "template",
                "template": ["name": "order_update_v1", "language": ["code": "de"]],
                "biz_opaque_callback_data": .string(ntID),
            ])
            // A fresh message from the customer reopens the window.
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("hi again")]))).status == 200)
            #expect(try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"welcome back"}]}"#).status == 202)
            // A proactive conversation (no customer message yet) is closed too.
            let open = try await d.api("POST", "/v1/conversations", json: #"{"channel_id":"\#(channel)","address":"+44 7700 900123"}"#)
            let proactive = try #require(open.json?["conversation"]?["id"]?.stringValue, "\(String(decoding: open.body, as: UTF8.self))")
            #expect(try await d.api("POST", "/v1/conversations/\(proactive)/messages", json: #"{"parts":[{"type":"text","text":"hello"}]}"#).json?["code"] == "window_closed")
            #expect(try await d.api("POST", "/v1/conversations", json: #"{"channel_id":"\#(channel)","address":"not a number"}"#).status == 422)
        }
    }

    /// A conversation last written by an earlier version keeps its window from that version's
    /// state row; of the row and the store's record, the later time counts.
    @Test func theWindowRecordedByAnEarlierVersionStillCounts() async throws {
        let channel = uniqueID("wa")
        try await withWhatsApp({ "channels: [ \(WAFixture.channelYAML(channel, graph: $0)) ]" }) { d, _ in
            let old = WAFixture.now - 25 * 3600
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("old news", at: old)]))).status == 200)
            let conversation = try #require(try await d.runtime.store.conversations(channelID: channel, limit: 1, cursor: nil).0.first?.id)
            func reply() async throws -> Int {
                try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"hello"}]}"#).status
            }
            #expect(try await reply() == 422)
            // As an earlier version left it: nothing on the conversation row, the state row recent.
            let recent = Timestamp.now().milliseconds - 3_600_000
            try await d.runtime.store.pool.write { db in
                try db.execute(sql: "UPDATE conversations SET last_inbound_sent_at = NULL, last_inbound_external_id = NULL WHERE id = ?", arguments: [conversation])
                try db.execute(sql: "INSERT INTO adapter_state (channel_id, key, value, updated_at) VALUES (?, ?, ?, ?)",
                               arguments: [channel, "last_inbound:\(conversation)", "\(recent) wamid.LEGACY", recent])
            }
            #expect(try await reply() == 202)
            // The first message after the upgrade is a late redelivery, older than the row's.
            #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("late", at: old + 60)]))).status == 200)
            #expect(try await d.runtime.store.conversation(conversation)?.fields.lastInbound?.sentAt == Timestamp(milliseconds: (old + 60) * 1000))
            #expect(try await reply() == 202, "the state row's later time still counts")
            try await d.runtime.store.pool.write { db in
                try db.execute(sql: "UPDATE adapter_state SET value = ? WHERE channel_id = ? AND key = ?",
                               arguments: ["\(old * 1000) wamid.LEGACY", channel, "last_inbound:\(conversation)"])
            }
            #expect(try await reply() == 422)
        }
    }

    @Test func graphErrorsBecomeStatusesAndAnExpiredTokenMarksTheChannel() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("wa")
            try await withWhatsApp({ graph in """
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ \(WAFixture.channelYAML(channel, graph: graph)) ]
                """ }) { d, graph in
                #expect(try await WAFixture.post(d, channel, WAFixture.body(WAFixture.value(messages: [WAFixture.text("hi")]))).status == 200)
                let conversation = try #require(try await d.runtime.store.conversations(channelID: channel, limit: 1, cursor: nil).0.first?.id)
                let path = "/v23.0/\(WAFixture.phoneID)/messages"
                func send(_ text: String) async throws -> String {
                    let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"\#(text)"}]}"#)
                    return try #require(r.json?["id"]?.stringValue)
                }

                // 131047 answered synchronously: failed at once, not retryable.
                graph.queue("POST", path, [FakeGraph.graphError(code: 131047, message: "(#131047) Re-engagement message",
                                                                details: "Message failed to send because more than 24 hours have passed since the customer last replied to this number.")])
                let a = try await send("one")
                try await eventually("131047 failed") { Self.status(helpdesk, a, "failed") != nil }
                let ea = Self.status(helpdesk, a, "failed")?.data?["error"]
                #expect(ea?["code"] == "window_closed" && ea?["channel_code"] == "131047" && ea?["retryable"] == false)
                #expect(Self.status(helpdesk, a, "failed")?.data?["final"] == true)
                #expect(graph.requests("POST", path).count == 1)

                // 130429: retried, then sent.
                graph.queue("POST", path, [FakeGraph.graphError(code: 130429, message: "(#130429) Rate limit hit", headers: ["Retry-After": "0"])])
                let b = try await send("two")
                try await eventually("sent after the rate limit") { Self.status(helpdesk, b, "sent") != nil }
                #expect(graph.requests("POST", path).count == 3)
                #expect(Self.status(helpdesk, b, "failed") == nil)

                // 190: the channel turns auth_expired, and the reply waits on the retry schedule
                // (not failed) — here the next attempt finds a working token.
                graph.queue("POST", path, [FakeGraph.graphError(status: 401, code: 190, subcode: 463,
                                                                message: "Error validating access token: Session has expired on Friday, 01-May-26 10:00:00 PDT.")])
                let c = try await send("three")
                try await eventually("channel.status auth_expired") {
                    helpdesk.events.contains { $0.type == "switchboard.channel.status" && $0.data?["state"] == "auth_expired" }
                }
                let channels = try await d.api("GET", "/v1/channels")
                #expect(channels.json?["channels"]?.arrayValue?.first { $0["id"]?.stringValue == channel }?["state"] == "auth_expired",
                        "\(String(decoding: channels.body, as: UTF8.self))")
                try await eventually("three sent on its retry") { Self.status(helpdesk, c, "sent") != nil }
                #expect(Self.status(helpdesk, c, "failed") == nil)
                #expect(graph.requests("POST", path).count == 5)
                // The success cleared it.
                let e = try await send("four")
                try await eventually("sent again") { Self.status(helpdesk, e, "sent") != nil }
                try await eventually("channel.status connected") {
                    helpdesk.events.contains { $0.type == "switchboard.channel.status" && $0.data?["state"] == "connected" }
                }
            }
        }
    }
}

extension WhatsAppEndToEndTests {
    /// A download that keeps failing for a transient reason (Graph 503) stays `pending` and is
    /// tried again later rather than given up after the quick retries; one that fails for
    /// longer than `media_retry_for` ends as `download_failed`.
    @Test func aMediaDownloadThatKeepsFailingIsTriedAgainLater() async throws {
        let channel = uniqueID("wa")
        // media_retry_for leaves room for a busy test machine: the second round of the download
        // that recovers must be put off within it (with 3 s, a slow CI host missed that).
        try await withWhatsApp({ graph in
            "channels: [ \(WAFixture.channelYAML(channel, graph: graph).replacingOccurrences(of: "media_retry_delays:", with: #"media_retry_for: "10s", media_retry_delays:"#)) ]"
        }) { d, graph in
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + (0..<2000).map { UInt8($0 % 251) }
            let outage = FakeGraph.graphError(status: 503, code: 2, type: "OAuthException", message: "Service temporarily unavailable")
            graph.serveWhatsAppMedia(id: "7000002", bytes: jpeg, mimeType: "image/jpeg")
            graph.queue("GET", "/v23.0/7000002", Array(repeating: outage, count: 6))
            graph.serveWhatsAppMedia(id: "7000003", bytes: jpeg, mimeType: "image/jpeg")
            graph.queue("GET", "/v23.0/7000003", Array(repeating: outage, count: 200))
            let body = WAFixture.body(WAFixture.value(messages: [
                WAFixture.message("image", #"{"id":"7000002","mime_type":"image/jpeg","sha256":"x"}"#, id: "wamid.LATER"),
                WAFixture.message("image", #"{"id":"7000003","mime_type":"image/jpeg","sha256":"y"}"#, id: "wamid.NEVER")]))
            #expect(try await WAFixture.post(d, channel, body).status == 200)
            // Three quick attempts (the first and two retries) fail; the download is put off, not given up.
            try await eventually("the quick retries") { graph.requests("GET", "/v23.0/7000002").count >= 3 }
            @Sendable func updates(_ wamid: String) async throws -> [JSONValue] {
                try await d.storedEvents("message.updated").filter { $0["data"]?["external_id"]?.stringValue == wamid }
            }
            try await eventually("stored after the outage") { try await !updates("wamid.LATER").isEmpty }
            let later = try await updates("wamid.LATER")
            #expect(later.count == 1, "published once, when stored")
            let part = later.first?["data"]?["parts"]?.arrayValue?.first
            #expect(part?["unavailable"] == nil && part?["size"] == .int(Int64(jpeg.count)) && part?["media_id"] != nil)
            #expect(graph.requests("GET", "/v23.0/7000002").count == 7, "two rounds of three attempts, then the one that worked")
            // The other one fails for longer than media_retry_for: given up as download_failed.
            try await eventually(timeout: 15, "given up") { try await !updates("wamid.NEVER").isEmpty }
            let never = try await updates("wamid.NEVER")
            #expect(never.count == 1 && never.first?["data"]?["parts"]?.arrayValue?.first?["unavailable"] == "download_failed")
            #expect(graph.requests("GET", "/v23.0/7000003").count > 3, "tried again after the first round")
            let kept = try await d.runtime.store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM adapter_state WHERE key LIKE 'media_job:%'") }
            #expect(kept == 0)
        }
    }

    /// An expired token during a media download does not lose the file: the download waits
    /// (the part stays pending) and runs when the channel starts again with a working token.
    @Test func aMediaDownloadRefusedForTheTokenWaitsForTheNextStart() async throws {
        let graph = try await FakeGraph.start()
        let channel = uniqueID("wa")
        let yaml = "channels: [ \(WAFixture.channelYAML(channel, graph: graph)) ]"
        do {
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + (0..<3000).map { UInt8($0 % 251) }
            graph.serveWhatsAppMedia(id: "7000001", bytes: jpeg, mimeType: "image/jpeg")
            graph.queue("GET", "/v23.0/7000001", [FakeGraph.graphError(status: 401, code: 190, subcode: 463, message: "Error validating access token: Session has expired")])
            let first = try await TestDaemon.start(yaml, registry: WAFixture.registry())
            let body = WAFixture.body(WAFixture.value(messages: [
                WAFixture.message("image", #"{"id":"7000001","mime_type":"image/jpeg","sha256":"x"}"#, id: "wamid.TOKEN")]))
            #expect(try await WAFixture.post(first, channel, body).status == 200)
            try await eventually("the refused lookup") { graph.requests("GET", "/v23.0/7000001").count == 1 }
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await first.storedEvents("message.updated").isEmpty, "not given up as download_failed")
            let kept = try await first.runtime.store.pool.read { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM adapter_state WHERE key LIKE 'media_job:%'")
            }
            #expect(kept == 1)
            await first.stop(keepFiles: true)
            // The next start (after the token was renewed) finishes it.
            let second = try await TestDaemon.start(yaml, registry: WAFixture.registry(), dir: first.dir)
            try await eventually("message.updated") { try await second.storedEvents("message.updated").count == 1 }
            let part = try await second.storedEvents("message.updated").first?["data"]?["parts"]?.arrayValue?.first
            #expect(part?["unavailable"] == nil && part?["size"] == .int(Int64(jpeg.count)))
            await second.stop()
        } catch {
            await graph.stop()
            throw error
        }
        await graph.stop()
    }
}
