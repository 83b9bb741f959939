import Foundation

/// What a channel can show natively. The renderer reads this to decide, part by part, whether to
/// send a part as it is, convert it to another native part, or fall back to numbered text.
public struct ChannelCapabilities: Codable, Sendable, Hashable {
    public var textFormats: Set<TextFormat>
    /// The longest text one message may carry, in characters (nil: no limit we enforce).
    public var maxTextLength: Int?
    public var mediaKinds: Set<MediaKind>
    /// Reply buttons per message (0: none).
    public var maxButtons: Int
    public var maxButtonTitle: Int?
    /// Which action types native buttons carry (WhatsApp reply buttons: reply/postback only).
    public var buttonActions: Set<ActionType>
    public var maxQuickReplies: Int
    public var cards: Bool
    /// Which action types a card carries without loss, when that differs from `buttonActions`
    /// plus `link` (WhatsApp writes a card's call and extra link actions into its body).
    public var cardActions: Set<ActionType>?
    public var maxCarouselCards: Int
    public var maxListRows: Int
    /// The longest payload a button, quick reply or list row carries back (WhatsApp: 200,
    /// LINE: 300, Messenger: 1000); a longer one makes the renderer use numbered text, whose
    /// answer is matched here and carries any payload. nil: no limit.
    public var maxPayload: Int?
    /// The longest list row title, and section title, the channel shows (WhatsApp: 24).
    public var maxListRowTitle: Int?
    /// The longest list row description the channel shows (WhatsApp: 72; nil: no limit, or
    /// descriptions written out as text).
    public var maxListRowDescription: Int?
    public var location: Bool
    public var contactCard: Bool
    public var reactions: Bool
    public var typing: Bool
    public var markRead: Bool
    /// Channel types whose `template` parts this channel sends (`["whatsapp"]`).
    public var templates: Set<String>

    public init(textFormats: Set<TextFormat> = [.plain], maxTextLength: Int? = nil, mediaKinds: Set<MediaKind> = [],
                maxButtons: Int = 0, maxButtonTitle: Int? = nil, buttonActions: Set<ActionType> = [.reply, .postback],
                maxQuickReplies: Int = 0, cards: Bool = false, maxCarouselCards: Int = 0, maxListRows: Int = 0,
                location: Bool = false, contactCard: Bool = false, reactions: Bool = false, typing: Bool = false,
                markRead: Bool = false, templates: Set<String> = [], cardActions: Set<ActionType>? = nil,
                maxListRowTitle: Int? = nil, maxListRowDescription: Int? = nil, maxPayload: Int? = nil) {
        self.maxPayload = maxPayload
        self.cardActions = cardActions
        self.maxListRowTitle = maxListRowTitle; self.maxListRowDescription = maxListRowDescription
        self.textFormats = textFormats; self.maxTextLength = maxTextLength; self.mediaKinds = mediaKinds
        self.maxButtons = maxButtons; self.maxButtonTitle = maxButtonTitle; self.buttonActions = buttonActions
        self.maxQuickReplies = maxQuickReplies; self.cards = cards; self.maxCarouselCards = maxCarouselCards
        self.maxListRows = maxListRows; self.location = location; self.contactCard = contactCard
        self.reactions = reactions; self.typing = typing; self.markRead = markRead; self.templates = templates
    }

    /// Plain text only: everything rich becomes numbered text.
    public static let textOnly = ChannelCapabilities()

    enum CodingKeys: String, CodingKey {
        case location, cards, reactions, typing, templates
        case textFormats = "text_formats", maxTextLength = "max_text_length", mediaKinds = "media_kinds"
        case maxButtons = "max_buttons", maxButtonTitle = "max_button_title", buttonActions = "button_actions"
        case maxQuickReplies = "max_quick_replies", maxCarouselCards = "max_carousel_cards", maxListRows = "max_list_rows"
        case contactCard = "contact_card", markRead = "mark_read", cardActions = "card_actions"
        case maxListRowTitle = "max_list_row_title", maxListRowDescription = "max_list_row_description", maxPayload = "max_payload"
    }
}
