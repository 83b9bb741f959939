import Foundation

// The part types of the message format (docs/format.md). Every part is an `Open<…Fields>` so
// fields this version doesn't know survive a round trip; `Part.unknown` does the same for
// whole part types.

public struct TextFormat: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let plain: TextFormat = "plain"
    public static let markdown: TextFormat = "markdown"
    public static let html: TextFormat = "html"
}

public struct TextFields: KnownFields {
    public var text: String
    public var format: TextFormat?
    public var lang: String?
    public init(text: String, format: TextFormat? = nil, lang: String? = nil) {
        self.text = text; self.format = format; self.lang = lang
    }
    public enum CodingKeys: String, CodingKey, CaseIterable { case text, format, lang }
    public typealias Keys = CodingKeys
}

public struct MediaKind: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let image: MediaKind = "image"
    public static let video: MediaKind = "video"
    public static let audio: MediaKind = "audio"
    public static let voice: MediaKind = "voice"
    public static let sticker: MediaKind = "sticker"
    public static let file: MediaKind = "file"
}

public struct MediaFields: KnownFields {
    public var kind: MediaKind
    /// Our copy in the media store (`med_…`), downloadable at `/v1/media/{id}`.
    public var mediaID: String?
    /// A URL instead of (outbound) or besides (inbound, the platform's) a stored copy.
    public var url: String?
    public var mimeType: String?
    public var size: Int64?
    public var sha256: String?
    public var filename: String?
    public var caption: String?
    /// Why the media is not in the store (`too_large`, `download_failed`, `expired`): the part
    /// is kept so the helpdesk knows something was sent.
    public var unavailable: String?
    public init(kind: MediaKind, mediaID: String? = nil, url: String? = nil, mimeType: String? = nil, size: Int64? = nil,
                sha256: String? = nil, filename: String? = nil, caption: String? = nil, unavailable: String? = nil) {
        self.kind = kind; self.mediaID = mediaID; self.url = url; self.mimeType = mimeType; self.size = size
        self.sha256 = sha256; self.filename = filename; self.caption = caption; self.unavailable = unavailable
    }
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, url, size, sha256, filename, caption, unavailable
        case mediaID = "media_id", mimeType = "mime_type"
    }
    public typealias Keys = CodingKeys
}

public struct LocationFields: KnownFields {
    public var lat: Double
    public var long: Double
    public var name: String?
    public var address: String?
    public var url: String?
    public init(lat: Double, long: Double, name: String? = nil, address: String? = nil, url: String? = nil) {
        self.lat = lat; self.long = long; self.name = name; self.address = address; self.url = url
    }
    public enum CodingKeys: String, CodingKey, CaseIterable { case lat, long, name, address, url }
    public typealias Keys = CodingKeys
}

public struct ContactCardFields: KnownFields {
    public struct Item: Codable, Sendable, Hashable {
        public var value: String
        public var label: String?
        public init(value: String, label: String? = nil) { self.value = value; self.label = label }
    }
    public var name: String
    public var phones: [Item]?
    public var emails: [Item]?
    public var org: String?
    public var vcard: String?
    public init(name: String, phones: [Item]? = nil, emails: [Item]? = nil, org: String? = nil, vcard: String? = nil) {
        self.name = name; self.phones = phones; self.emails = emails; self.org = org; self.vcard = vcard
    }
    public enum CodingKeys: String, CodingKey, CaseIterable { case name, phones, emails, org, vcard }
    public typealias Keys = CodingKeys
}

public struct ActionType: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    /// Sends `payload` back without showing text in the chat.
    public static let postback: ActionType = "postback"
    /// Sends the title as the customer's reply, with `payload`.
    public static let reply: ActionType = "reply"
    public static let link: ActionType = "link"
    public static let call: ActionType = "call"
    public static let locationRequest: ActionType = "location_request"
    public static let share: ActionType = "share"
}

public struct ActionFields: KnownFields {
    public var type: ActionType
    public var id: String?
    public var title: String
    public var payload: String?
    public var url: String?
    public var phone: String?
    public init(type: ActionType, title: String, id: String? = nil, payload: String? = nil, url: String? = nil, phone: String? = nil) {
        self.type = type; self.title = title; self.id = id; self.payload = payload; self.url = url; self.phone = phone
    }
    public enum CodingKeys: String, CodingKey, CaseIterable { case type, id, title, payload, url, phone }
    public typealias Keys = CodingKeys
}
public typealias Action = Open<ActionFields>

public struct ButtonsFields: KnownFields {
    public var text: String
    public var actions: [Action]
    public init(text: String, actions: [Action]) { self.text = text; self.actions = actions }
    public enum CodingKeys: String, CodingKey, CaseIterable { case text, actions }
    public typealias Keys = CodingKeys
}

public struct QuickReplyOption: Codable, Sendable, Hashable {
    public var id: String?
    public var title: String
    public var payload: String?
    public var imageURL: String?
    public init(title: String, payload: String? = nil, id: String? = nil, imageURL: String? = nil) {
        self.title = title; self.payload = payload; self.id = id; self.imageURL = imageURL
    }
    enum CodingKeys: String, CodingKey { case id, title, payload, imageURL = "image_url" }
}

public struct QuickRepliesFields: KnownFields {
    public var text: String
    public var options: [QuickReplyOption]
    public init(text: String, options: [QuickReplyOption]) { self.text = text; self.options = options }
    public enum CodingKeys: String, CodingKey, CaseIterable { case text, options }
    public typealias Keys = CodingKeys
}

public struct CardFields: KnownFields {
    public var title: String
    public var subtitle: String?
    public var mediaID: String?
    public var imageURL: String?
    public var actions: [Action]?
    public var defaultAction: Action?
    public init(title: String, subtitle: String? = nil, mediaID: String? = nil, imageURL: String? = nil,
                actions: [Action]? = nil, defaultAction: Action? = nil) {
        self.title = title; self.subtitle = subtitle; self.mediaID = mediaID; self.imageURL = imageURL
        self.actions = actions; self.defaultAction = defaultAction
    }
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case title, subtitle, actions
        case mediaID = "media_id", imageURL = "image_url", defaultAction = "default_action"
    }
    public typealias Keys = CodingKeys
}
public typealias Card = Open<CardFields>

public struct CarouselFields: KnownFields {
    public var cards: [Card]
    public init(cards: [Card]) { self.cards = cards }
    public enum CodingKeys: String, CodingKey, CaseIterable { case cards }
    public typealias Keys = CodingKeys
}

public struct ListRow: Codable, Sendable, Hashable {
    public var id: String
    public var title: String
    public var description: String?
    public init(id: String, title: String, description: String? = nil) { self.id = id; self.title = title; self.description = description }
}

public struct ListSection: Codable, Sendable, Hashable {
    public var title: String?
    public var rows: [ListRow]
    public init(title: String? = nil, rows: [ListRow]) { self.title = title; self.rows = rows }
}

public struct ListFields: KnownFields {
    public var header: String?
    public var text: String
    public var buttonText: String?
    public var sections: [ListSection]
    public init(text: String, sections: [ListSection], header: String? = nil, buttonText: String? = nil) {
        self.text = text; self.sections = sections; self.header = header; self.buttonText = buttonText
    }
    public enum CodingKeys: String, CodingKey, CaseIterable { case header, text, sections, buttonText = "button_text" }
    public typealias Keys = CodingKeys
}

public struct TemplateFields: KnownFields {
    /// The channel type the template belongs to (`whatsapp`).
    public var channel: String
    public var name: String
    public var language: String?
    /// The channel's own component structure, passed through.
    public var components: JSONValue?
    public init(channel: String, name: String, language: String? = nil, components: JSONValue? = nil) {
        self.channel = channel; self.name = name; self.language = language; self.components = components
    }
    public enum CodingKeys: String, CodingKey, CaseIterable { case channel, name, language, components }
    public typealias Keys = CodingKeys
}

public struct InteractionKind: OpenStringEnum {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let postback: InteractionKind = "postback"
    public static let quickReply: InteractionKind = "quick_reply"
    public static let buttonReply: InteractionKind = "button_reply"
    public static let listReply: InteractionKind = "list_reply"
    public static let formResponse: InteractionKind = "form_response"
    /// The customer answered a numbered-text fallback with the option's number.
    public static let indexReply: InteractionKind = "index_reply"
}

public struct InteractionFields: KnownFields {
    public var kind: InteractionKind
    public var payload: String?
    public var title: String?
    public var index: Int?
    public var values: JSONObject?
    /// Our message that offered the choice, when known.
    public var sourceMessageID: String?
    public init(kind: InteractionKind, payload: String? = nil, title: String? = nil, index: Int? = nil,
                values: JSONObject? = nil, sourceMessageID: String? = nil) {
        self.kind = kind; self.payload = payload; self.title = title; self.index = index
        self.values = values; self.sourceMessageID = sourceMessageID
    }
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, payload, title, index, values, sourceMessageID = "source_message_id"
    }
    public typealias Keys = CodingKeys
}

public struct ReactionFields: KnownFields {
    public var emoji: String
    public var action: String?
    public var targetMessageID: String?
    public var targetExternalID: String?
    public init(emoji: String, action: String? = "add", targetMessageID: String? = nil, targetExternalID: String? = nil) {
        self.emoji = emoji; self.action = action; self.targetMessageID = targetMessageID; self.targetExternalID = targetExternalID
    }
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case emoji, action, targetMessageID = "target_message_id", targetExternalID = "target_external_id"
    }
    public typealias Keys = CodingKeys
}

public struct UnsupportedFields: KnownFields {
    public var channelType: String?
    public var description: String
    public init(description: String, channelType: String? = nil) { self.description = description; self.channelType = channelType }
    public enum CodingKeys: String, CodingKey, CaseIterable { case description, channelType = "channel_type" }
    public typealias Keys = CodingKeys
}

/// One item of a message's content. A message is an ordered list of parts.
public enum Part: Sendable, Hashable {
    case text(Open<TextFields>)
    case media(Open<MediaFields>)
    case location(Open<LocationFields>)
    case contactCard(Open<ContactCardFields>)
    case buttons(Open<ButtonsFields>)
    case quickReplies(Open<QuickRepliesFields>)
    case card(Card)
    case carousel(Open<CarouselFields>)
    case list(Open<ListFields>)
    case template(Open<TemplateFields>)
    case interaction(Open<InteractionFields>)
    case reaction(Open<ReactionFields>)
    case unsupported(Open<UnsupportedFields>)
    /// A part type this version does not know; kept whole.
    case unknown(type: String, JSONObject)

    public var type: String {
        switch self {
        case .text: "text"
        case .media: "media"
        case .location: "location"
        case .contactCard: "contact_card"
        case .buttons: "buttons"
        case .quickReplies: "quick_replies"
        case .card: "card"
        case .carousel: "carousel"
        case .list: "list"
        case .template: "template"
        case .interaction: "interaction"
        case .reaction: "reaction"
        case .unsupported: "unsupported"
        case .unknown(let t, _): t
        }
    }

    public static func text(_ s: String, format: TextFormat? = nil) -> Part { .text(Open(TextFields(text: s, format: format))) }
    public static func unsupported(_ description: String, channelType: String?) -> Part {
        .unsupported(Open(UnsupportedFields(description: description, channelType: channelType)))
    }
}

extension Part: Codable {
    private enum TypeKey: String, CodingKey { case type }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: TypeKey.self)
        let type = try c.decode(String.self, forKey: .type)
        // The tag is the enum case, not an unknown member of the payload.
        func open<F: KnownFields>(_ t: Open<F>.Type) throws -> Open<F> {
            var o = try Open<F>(from: decoder)
            o.extra["type"] = nil
            return o
        }
        switch type {
        case "text": self = .text(try open(Open<TextFields>.self))
        case "media": self = .media(try open(Open<MediaFields>.self))
        case "location": self = .location(try open(Open<LocationFields>.self))
        case "contact_card": self = .contactCard(try open(Open<ContactCardFields>.self))
        case "buttons": self = .buttons(try open(Open<ButtonsFields>.self))
        case "quick_replies": self = .quickReplies(try open(Open<QuickRepliesFields>.self))
        case "card": self = .card(try open(Card.self))
        case "carousel": self = .carousel(try open(Open<CarouselFields>.self))
        case "list": self = .list(try open(Open<ListFields>.self))
        case "template": self = .template(try open(Open<TemplateFields>.self))
        case "interaction": self = .interaction(try open(Open<InteractionFields>.self))
        case "reaction": self = .reaction(try open(Open<ReactionFields>.self))
        case "unsupported": self = .unsupported(try open(Open<UnsupportedFields>.self))
        default:
            var o = try decoder.singleValueContainer().decode(JSONObject.self)
            o["type"] = nil
            self = .unknown(type: type, o)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .text(let p): try p.encode(to: encoder)
        case .media(let p): try p.encode(to: encoder)
        case .location(let p): try p.encode(to: encoder)
        case .contactCard(let p): try p.encode(to: encoder)
        case .buttons(let p): try p.encode(to: encoder)
        case .quickReplies(let p): try p.encode(to: encoder)
        case .card(let p): try p.encode(to: encoder)
        case .carousel(let p): try p.encode(to: encoder)
        case .list(let p): try p.encode(to: encoder)
        case .template(let p): try p.encode(to: encoder)
        case .interaction(let p): try p.encode(to: encoder)
        case .reaction(let p): try p.encode(to: encoder)
        case .unsupported(let p): try p.encode(to: encoder)
        case .unknown(_, let o):
            var d = encoder.container(keyedBy: AnyCodingKey.self)
            for (k, v) in o where k != "type" { try d.encode(v, forKey: AnyCodingKey(k)) }
        }
        // Written last, so a stray `type` in a payload's extra members can never replace it.
        var c = encoder.container(keyedBy: TypeKey.self)
        try c.encode(type, forKey: .type)
    }
}
