import Foundation
import Testing
@testable import SwitchboardCore

/// Realistic values of every model type, shared by the round-trip and schema tests.
enum Sample {
    // Fixed ids (prefix + 26 Crockford base32 characters) so encoded output is reproducible.
    static let messageID = "msg_01JTB2K3M4N5P6Q7R8S9TAVBWC"
    static let outboundMessageID = "msg_01JTB2M0A1B2C3D4E5F6G7H8J9"
    static let conversationID = "conv_01JTB1Z9Y8X7W6V5T4S3R2Q1P0"
    static let identityID = "ident_01JTB1Z9Y8X7W6V5T4S3R2Q1PA"
    static let mediaID = "med_01JTB2K3M4N5P6Q7R8S9TAVBWD"
    static let eventID = "evt_01JTB2K3M4N5P6Q7R8S9TAVBWE"

    static let t0 = Timestamp(milliseconds: 1_746_094_530_123) // 2025-05-01T10:15:30.123Z
    static let channel = ChannelRef(type: "whatsapp", id: "wa-sales")
    static let customer = Participant(role: "customer", identityID: identityID, channelUserID: "4915112345678", displayName: "Jane D.")

    static func reply(_ title: String, _ payload: String, id: String? = nil) -> Action {
        Action(ActionFields(type: .reply, title: title, id: id, payload: payload))
    }

    // MARK: parts, one of each type with every field set

    static let text = Part.text(Open(TextFields(text: "Hi, my order #1234 arrived broken", format: .plain, lang: "en")))
    static let markdown = Part.text(Open(TextFields(text: "**Sorry!** See [our returns page](https://shop.example/returns).", format: .markdown)))
    static let media = Part.media(Open(MediaFields(
        kind: .image, mediaID: mediaID, url: "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1", mimeType: "image/jpeg",
        size: 183_422, sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", filename: "hinge.jpg",
        caption: "broken hinge")))
    static let unavailableMedia = Part.media(Open(MediaFields(kind: .video, mimeType: "video/mp4", size: 80_000_000, unavailable: "too_large")))
    static let location = Part.location(Open(LocationFields(
        lat: 52.520008, long: 13.404954, name: "Alexanderplatz", address: "10178 Berlin", url: "https://maps.example/?q=52.52,13.40")))
    static let contactCard = Part.contactCard(Open(ContactCardFields(
        name: "Max Mustermann", phones: [.init(value: "+49 30 1234567", label: "work")],
        emails: [.init(value: "max@example.com", label: "home")], org: "Example GmbH",
        vcard: "BEGIN:VCARD\nVERSION:3.0\nFN:Max Mustermann\nEND:VCARD")))
    static let buttons = Part.buttons(Open(ButtonsFields(text: "Was this helpful?", actions: [
        reply("Yes", "HELPFUL_YES", id: "yes"),
        Action(ActionFields(type: .postback, title: "No", id: "no", payload: "HELPFUL_NO")),
        Action(ActionFields(type: .link, title: "FAQ", url: "https://shop.example/faq")),
    ])))
    static let quickReplies = Part.quickReplies(Open(QuickRepliesFields(text: "Which size?", options: [
        QuickReplyOption(title: "S", payload: "SIZE_S", id: "s", imageURL: "https://shop.example/s.png"),
        QuickReplyOption(title: "M", payload: "SIZE_M"),
    ])))
    static let cardValue = Card(CardFields(
        title: "Blue chair", subtitle: "€129", mediaID: mediaID, imageURL: "https://shop.example/chair.jpg",
        actions: [reply("Buy", "BUY_CHAIR"), Action(ActionFields(type: .call, title: "Call us", phone: "+4930123456"))],
        defaultAction: Action(ActionFields(type: .link, title: "Open", url: "https://shop.example/chair"))))
    static let card = Part.card(cardValue)
    static let carousel = Part.carousel(Open(CarouselFields(cards: [
        cardValue,
        Card(CardFields(title: "Red chair", subtitle: "€119", actions: [reply("Buy", "BUY_RED")])),
    ])))
    static let list = Part.list(Open(ListFields(text: "What do you need help with?", sections: [
        ListSection(title: "Orders", rows: [ListRow(id: "track", title: "Track my order", description: "Where is my parcel?"),
                                            ListRow(id: "return", title: "Return an item")]),
        ListSection(rows: [ListRow(id: "other", title: "Something else")]),
    ], header: "Support", buttonText: "Choose")))
    static let template = Part.template(Open(TemplateFields(
        channel: "whatsapp", name: "order_update", language: "en_US",
        components: [["type": "body", "parameters": [["type": "text", "text": "#1234"]]]])))
    static let interaction = Part.interaction(Open(InteractionFields(
        kind: .indexReply, payload: "SIZE_M", title: "M", index: 2, values: ["note": "fits well"], sourceMessageID: outboundMessageID)))
    static let reaction = Part.reaction(Open(ReactionFields(emoji: "👍", action: "add", targetMessageID: outboundMessageID,
                                                            targetExternalID: "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjA=")))
    static let unsupported = Part.unsupported("order (a WhatsApp catalog order)", channelType: "whatsapp")

    /// One part of every known type.
    static let allParts: [Part] = [text, markdown, media, unavailableMedia, location, contactCard, buttons, quickReplies, card,
                                   carousel, list, template, interaction, reaction, unsupported]

    // MARK: messages, conversation, identity

    static let inboundParts: [Part] = [media, text, location, contactCard, interaction, reaction, unsupported]
    static let inboundMessage = Message(MessageFields(
        id: messageID, conversationID: conversationID, direction: .inbound, origin: .customer, channel: channel,
        sender: customer, externalID: "wamid.HBgLNDkxNTExMjM0NTY3OBUCABIYFjNFQjBDMA==",
        replyTo: MessageRef(messageID: outboundMessageID, externalID: "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjA="),
        sentAt: Timestamp(milliseconds: 1_746_094_529_000), receivedAt: t0, parts: inboundParts,
        textFallback: inboundParts.textFallback, channelData: ["whatsapp": ["forwarded": false]],
        raw: RawRef(format: "json", inline: ["object": "whatsapp_business_account", "entry": []])))

    static let outboundParts: [Part] = [markdown, buttons, quickReplies, card, carousel, list, template,
                                        .media(Open(MediaFields(kind: .file, mediaID: mediaID, mimeType: "application/pdf", filename: "invoice.pdf")))]
    static let outboundMessage = Message(MessageFields(
        id: outboundMessageID, conversationID: conversationID, direction: .outbound, origin: .helpdesk, channel: channel,
        sender: Participant(role: "agent", displayName: "Ana"), receivedAt: t0, parts: outboundParts,
        textFallback: outboundParts.textFallback, metadata: ["ticket": "T-8812"],
        raw: RawRef(format: "json", ref: "/v1/messages/\(outboundMessageID)/raw", size: 40_211,
                    sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")))

    static let conversation = Conversation(ConversationFields(
        id: conversationID, channel: channel, identityID: identityID, thread: "*", createdAt: Timestamp(milliseconds: 1_746_000_000_000),
        updatedAt: t0, lastInboundAt: t0, metadata: ["ticket": "T-8812"]))
    static let identity = Identity(IdentityFields(
        id: identityID, channel: channel, channelUserID: "4915112345678", displayName: "Jane D.",
        profile: ["name": "Jane Doe", "wa_id": "4915112345678"], createdAt: Timestamp(milliseconds: 1_746_000_000_000), updatedAt: t0))

    // MARK: event data

    static let delivered = MessageStatus(MessageStatusFields(
        messageID: outboundMessageID, conversationID: conversationID, status: .delivered,
        externalIDs: ["wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjA="], final: false, attempt: 1, metadata: ["ticket": "T-8812"], at: t0))
    static let failed = MessageStatus(MessageStatusFields(
        messageID: outboundMessageID, conversationID: conversationID, status: .failed,
        error: StatusError(code: "window_closed", channelCode: "131047",
                           message: "More than 24 hours have passed since the customer last replied", retryable: false),
        final: true, attempt: 1, metadata: ["ticket": "T-8812"], at: t0))
    static let reactionEvent = Open(ReactionEventFields(
        conversationID: conversationID, targetMessageID: outboundMessageID, targetExternalID: "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjA=",
        emoji: "❤️", action: "add", sender: customer, at: t0))
    static let updated = Open(MessageChangeFields(
        conversationID: conversationID, messageID: messageID, externalID: "m_1a2b3c",
        parts: [.text("Hi, my order #1235 arrived broken")], textFallback: "Hi, my order #1235 arrived broken", at: t0))
    static let deleted = Open(MessageChangeFields(conversationID: conversationID, messageID: messageID, externalID: "m_1a2b3c", at: t0))
    static let read = Open(ConversationReadFields(conversationID: conversationID, upTo: t0, messageIDs: [outboundMessageID]))
    static let typing = Open(TypingFields(conversationID: conversationID, sender: customer))
    static let channelStatus = Open(ChannelStatusFields(
        channel: channel, state: .authExpired, detail: "Graph API error 190: access token expired", at: t0))

    /// The event data of every known event type.
    static func data(for type: EventType) -> any Encodable {
        switch type {
        case .messageReceived: inboundMessage
        case .messageEcho: echoMessage
        case .messageStatus: delivered
        case .messageReaction: reactionEvent
        case .messageUpdated: updated
        case .messageDeleted: deleted
        case .conversationCreated: conversation
        case .conversationRead: read
        case .typingStarted, .typingStopped: typing
        case .identityUpdated: identity
        case .channelStatus: channelStatus
        default: JSONValue.object(["conversation_id": .string(conversationID)])
        }
    }

    static let echoMessage: Message = {
        var m = outboundMessage
        m.origin = .echo
        m.sender = Participant(role: "business")
        m.metadata = nil
        m.parts = [.text("We have shipped a replacement.")]
        m.textFallback = "We have shipped a replacement."
        return m
    }()

    /// A CloudEvent as the event log writes it.
    static func event(_ type: EventType, sequence: Int64 = 42) throws -> CloudEvent {
        let conversationScoped = type != .channelStatus
        return CloudEvent(CloudEventFields(
            id: eventID, source: "urn:switchboard:helpdesk-gw-1", type: type.cloudEventType,
            subject: conversationScoped ? conversationID : nil, time: t0,
            sequence: conversationScoped ? CloudEvent.sequenceString(sequence) : nil,
            partitionkey: conversationScoped ? conversationID : nil, channel: channel.id,
            data: try JSONValue.from(data(for: type))))
    }
}

/// Encodes, decodes and encodes again; returns both encodings.
func roundTrip<T: Codable>(_ value: T, as type: T.Type = T.self) throws -> (first: String, second: String) {
    let first = try JSON.encode(value)
    let second = try JSON.encode(JSON.decode(T.self, from: first))
    return (String(decoding: first, as: UTF8.self), String(decoding: second, as: UTF8.self))
}

/// Parses JSON text into a tree, for comparisons that ignore key order and whitespace.
func tree(_ json: String) throws -> JSONValue {
    try JSONValue.parse(Data(json.utf8))
}

func tree<T: Encodable>(of value: T) throws -> JSONValue {
    try JSONValue.parse(JSON.encode(value))
}
