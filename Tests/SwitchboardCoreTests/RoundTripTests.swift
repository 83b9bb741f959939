import Foundation
import Testing
@testable import SwitchboardCore

@Suite("Round trips: encode → decode → encode is byte-identical")
struct RoundTripTests {
    @Test("every part type", arguments: Sample.allParts)
    func part(_ part: Part) throws {
        let (first, second) = try roundTrip(part)
        #expect(first == second)
        // The tag is written, and decoding gives back the same case.
        let decoded = try JSON.decode(Part.self, from: Data(first.utf8))
        #expect(decoded.type == part.type)
        #expect(try tree(first)["type"] == .string(part.type))
    }

    @Test func allKnownPartTypesAreCovered() {
        let covered = Set(Sample.allParts.map(\.type))
        #expect(covered == ["text", "media", "location", "contact_card", "buttons", "quick_replies", "card", "carousel",
                            "list", "template", "interaction", "reaction", "unsupported"])
    }

    @Test func fullInboundMessage() throws {
        let (first, second) = try roundTrip(Sample.inboundMessage)
        #expect(first == second)
        let decoded = try JSON.decode(Message.self, from: Data(first.utf8))
        #expect(decoded.parts.map(\.type) == Sample.inboundParts.map(\.type))
        #expect(decoded.receivedAt == Sample.t0)
        #expect(decoded.sender == Sample.customer)
        #expect(decoded.raw?.inline?["object"] == "whatsapp_business_account")
    }

    @Test func fullOutboundMessage() throws {
        let (first, second) = try roundTrip(Sample.outboundMessage)
        #expect(first == second)
    }

    @Test func keysAreSnakeCaseAndNilFieldsAreOmitted() throws {
        let json = try tree(of: Sample.inboundMessage)
        let keys = Set(json.objectValue?.keys.map { $0 } ?? [])
        #expect(keys == ["id", "conversation_id", "direction", "origin", "channel", "sender", "external_id", "reply_to",
                         "sent_at", "received_at", "parts", "text_fallback", "channel_data", "raw"])
        #expect(json["received_at"] == "2025-05-01T10:15:30.123Z")
        #expect(json["sender"]?["identity_id"] == .string(Sample.identityID))
        #expect(json["metadata"] == nil) // nil: absent, not null

        let minimal = Message(MessageFields(id: Sample.messageID, conversationID: Sample.conversationID, direction: .inbound,
                                            origin: .customer, channel: Sample.channel, receivedAt: Sample.t0,
                                            parts: [.text("hi")], textFallback: "hi"))
        let text = JSON.string(minimal)
        #expect(text == #"{"channel":{"id":"wa-sales","type":"whatsapp"},"conversation_id":"conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0","direction":"inbound","id":"msg_01JTB2K3M4N5P6Q7R8S9TAVBWC","origin":"customer","parts":[{"text":"hi","type":"text"}],"received_at":"2025-05-01T10:15:30.123Z","text_fallback":"hi"}"#)
        #expect(!text.contains("null"))
    }

    @Test func conversationAndIdentity() throws {
        let c = try roundTrip(Sample.conversation)
        #expect(c.first == c.second)
        let i = try roundTrip(Sample.identity)
        #expect(i.first == i.second)
        #expect(try tree(c.first)["identity_id"] == .string(Sample.identityID))
        #expect(try tree(i.first)["channel_user_id"] == "4915112345678")
    }

    @Test("every event type, as data and wrapped in a CloudEvent", arguments: EventType.all)
    func event(_ type: EventType) throws {
        let event = try Sample.event(type)
        let (first, second) = try roundTrip(event)
        #expect(first == second)
        let decoded = try JSON.decode(CloudEvent.self, from: Data(first.utf8))
        #expect(decoded.eventType == type)
        #expect(decoded.type == "switchboard." + type.rawValue)
        #expect(decoded.specversion == "1.0")
        #expect(decoded.datacontenttype == "application/json")
    }

    @Test func eventDataTypes() throws {
        func check<T: Codable>(_ value: T) throws {
            let (first, second) = try roundTrip(value)
            #expect(first == second, "\(T.self)")
        }
        try check(Sample.delivered)
        try check(Sample.failed)
        try check(Sample.reactionEvent)
        try check(Sample.updated)
        try check(Sample.deleted)
        try check(Sample.read)
        try check(Sample.typing)
        try check(Sample.channelStatus)
        let failed = try tree(of: Sample.failed)
        #expect(failed["error"]?["channel_code"] == "131047")
        #expect(failed["error"]?["retryable"] == false)
        #expect(failed["final"] == true)
    }

    @Test func sequenceIsZeroPaddedToTwentyDigits() throws {
        #expect(CloudEvent.sequenceString(42) == "00000000000000000042")
        #expect(CloudEvent.sequenceString(0).count == 20)
        #expect(CloudEvent.sequenceString(Int64.max) == "09223372036854775807")
        // As strings they sort like the numbers.
        let numbers: [Int64] = [1, 9, 10, 99, 100, 12345, 1_000_000_000]
        #expect(numbers.map(CloudEvent.sequenceString) == numbers.map(CloudEvent.sequenceString).sorted())
        let event = try tree(of: Sample.event(.messageReceived, sequence: 7))
        #expect(event["sequence"] == "00000000000000000007")
        #expect(event["partitionkey"] == .string(Sample.conversationID))
        #expect(event["subject"] == .string(Sample.conversationID))
        #expect(event["channel"] == "wa-sales")
    }

    @Test func renderedMessageRoundTrips() throws {
        let rendered = try Renderer.render(parts: [Sample.buttons, Sample.location], fallbackText: nil,
                                           capabilities: .textOnly, channelType: "email")
        let (first, second) = try roundTrip(rendered)
        #expect(first == second)
        #expect(try tree(first)["numbered_options"]?.arrayValue?.count == 2)
    }
}

@Suite("Forward compatibility: what this version doesn't know survives")
struct ForwardCompatibilityTests {
    /// Decodes `json` as `T`, encodes it again, and expects the same JSON tree back.
    func survives<T: Codable>(_ json: String, as type: T.Type) throws -> T {
        let value = try JSON.decode(T.self, from: Data(json.utf8))
        #expect(try tree(of: value) == tree(json))
        // And a second pass changes nothing.
        let (first, second) = try roundTrip(value)
        #expect(first == second)
        return value
    }

    @Test func unknownFieldsOnAMessage() throws {
        let json = """
            {"id":"msg_01JTB2K3M4N5P6Q7R8S9TAVBWC","conversation_id":"conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0","direction":"inbound",
             "origin":"customer","channel":{"type":"whatsapp","id":"wa-sales"},"received_at":"2025-05-01T10:15:30.123Z",
             "parts":[{"type":"text","text":"hi"}],"text_fallback":"hi",
             "priority":"high","labels":["vip",3,null,1.5],"routing":{"queue":"returns","weight":9007199254740993}}
            """
        let m = try survives(json, as: Message.self)
        #expect(m.extra["priority"] == "high")
        #expect(m.extra["routing"]?["weight"] == .int(9_007_199_254_740_993)) // large integers stay exact
        #expect(m.extra["labels"] == [.string("vip"), .int(3), .null, .double(1.5)])
        #expect(m.textFallback == "hi")
    }

    @Test func unknownFieldsOnAPart() throws {
        let json = #"{"type":"media","kind":"image","media_id":"med_01JTB2K3M4N5P6Q7R8S9TAVBWD","width":1024,"height":768,"blurhash":"LKO2?U%2Tw=w"}"#
        let part = try survives(json, as: Part.self)
        guard case .media(let m) = part else { Issue.record("expected a media part, got \(part.type)"); return }
        #expect(m.kind == .image)
        #expect(m.extra["width"] == 1024)
        #expect(m.extra["blurhash"] == "LKO2?U%2Tw=w")
    }

    @Test func unknownFieldsOnAnAction() throws {
        let json = """
            {"type":"buttons","text":"Open the shop?","actions":[
              {"type":"link","title":"Shop","url":"https://shop.example","webview":"tall","fallback_url":"https://m.shop.example"},
              {"type":"reply","title":"Later","payload":"LATER","style":{"color":"grey"}}]}
            """
        let part = try survives(json, as: Part.self)
        guard case .buttons(let b) = part else { Issue.record("expected buttons, got \(part.type)"); return }
        #expect(b.actions[0].extra["webview"] == "tall")
        #expect(b.actions[1].extra["style"]?["color"] == "grey")
        #expect(b.actions[1].payload == "LATER")
    }

    @Test func unknownFieldsOnACardInACarousel() throws {
        let json = #"{"type":"carousel","cards":[{"title":"A","badge":"new","actions":[{"type":"reply","title":"Pick","payload":"A","x":1}]}],"aspect":"square"}"#
        let part = try survives(json, as: Part.self)
        guard case .carousel(let c) = part else { Issue.record("expected a carousel"); return }
        #expect(c.extra["aspect"] == "square")
        #expect(c.cards[0].extra["badge"] == "new")
    }

    @Test func unknownPartType() throws {
        let json = #"{"type":"poll","question":"Best time to call?","options":[{"id":"am","title":"Morning"},{"id":"pm","title":"Afternoon"}],"multi":false}"#
        let part = try survives(json, as: Part.self)
        guard case .unknown(let type, let body) = part else { Issue.record("expected an unknown part"); return }
        #expect(type == "poll")
        #expect(body["question"] == "Best time to call?")
        #expect(body["type"] == nil) // the tag lives in the case, not twice
        #expect(part.type == "poll")
        // Inside a message too, next to known parts.
        let message = """
            {"id":"msg_01JTB2K3M4N5P6Q7R8S9TAVBWC","conversation_id":"conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0","direction":"inbound",
             "origin":"customer","channel":{"type":"webchat","id":"site"},"received_at":"2025-05-01T10:15:30.123Z",
             "parts":[{"type":"text","text":"see poll"},\(json)],"text_fallback":"see poll"}
            """
        let m = try survives(message, as: Message.self)
        #expect(m.parts.map(\.type) == ["text", "poll"])
    }

    @Test func unknownEventType() throws {
        let json = """
            {"specversion":"1.0","id":"evt_01JTB2K3M4N5P6Q7R8S9TAVBWE","source":"urn:switchboard:gw-2","type":"switchboard.line.follow",
             "subject":"conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0","time":"2025-05-01T10:15:30.123Z","datacontenttype":"application/json",
             "sequence":"00000000000000000003","partitionkey":"conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0","channel":"line-jp",
             "traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
             "data":{"conversation_id":"conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0","follower":{"since":"2025-05-01"}}}
            """
        let event = try survives(json, as: CloudEvent.self)
        #expect(event.eventType == EventType(rawValue: "line.follow"))
        #expect(!EventType.all.contains(event.eventType))
        #expect(event.eventType.matches("line.*"))
        #expect(event.extra["traceparent"] != nil)
        #expect(event.data?["follower"]?["since"] == "2025-05-01")
        // An unknown value of an open enum decodes and encodes as itself.
        let status = try JSON.decode(DeliveryStatus.self, from: Data(#""queued""#.utf8))
        #expect(status.rawValue == "queued")
        #expect(JSON.string(status) == #""queued""#)
    }

    @Test func unknownFieldsOnEventData() throws {
        let json = """
            {"message_id":"msg_01JTB2M0A1B2C3D4E5F6G7H8J9","conversation_id":"conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0","status":"delivered",
             "final":false,"at":"2025-05-01T10:15:30.123Z","pricing":{"billable":true,"category":"service"}}
            """
        let status = try survives(json, as: MessageStatus.self)
        #expect(status.extra["pricing"]?["category"] == "service")
    }

    // Regressions for model bugs found while writing these tests.

    @Test func decodedKnownPartEqualsTheConstructedOne() throws {
        let decoded = try JSON.decode(Part.self, from: Data(#"{"type":"text","text":"hi"}"#.utf8))
        #expect(decoded == Part.text("hi"))
    }

    @Test func partTagCannotBeOverriddenByExtra() throws {
        let part = Part.text(Open(TextFields(text: "hi"), extra: ["type": "poll"]))
        let encoded = try tree(of: part)
        #expect(encoded["type"] == "text")
    }

    @Test func unknownFieldsOnNestedPlainStructs() throws {
        // ChannelRef, Participant, MessageRef and StatusError are Open<…> too.
        let json = """
            {"id":"msg_01JTB2K3M4N5P6Q7R8S9TAVBWC","conversation_id":"conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0","direction":"inbound",
             "origin":"customer","channel":{"type":"whatsapp","id":"wa-sales","account_id":"acct_1"},
             "sender":{"role":"customer","avatar_url":"https://cdn.example/a.png"},
             "received_at":"2025-05-01T10:15:30.123Z","parts":[],"text_fallback":""}
            """
        let m = try JSON.decode(Message.self, from: Data(json.utf8))
        let (reencoded, original) = (try tree(of: m), try tree(json))
        #expect(reencoded == original)
    }
}
