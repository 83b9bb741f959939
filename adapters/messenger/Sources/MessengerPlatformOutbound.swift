import Foundation
import SwitchboardCore

extension MessengerPlatform {
    /// The Send API's limits (Messenger Platform reference; Instagram where it differs).
    public enum Limits {
        /// Text "must be UTF-8 and < 2000 characters" (Instagram: < 1000): 1,999 and 999 at most.
        public static let messengerText = 1999
        public static let instagramText = 999
        /// "image 8 MB when sent by URL" (uploads take up to 25 MB).
        public static let imageByLink: Int64 = 8 * 1024 * 1024
        public static let buttonTemplateText = 640
        public static let buttons = 3
        public static let buttonTitle = 20
        public static let quickReplies = 13
        public static let quickReplyTitle = 20
        public static let payload = 1000
        public static let genericElements = 10
        public static let elementTitle = 80
        public static let elementSubtitle = 80
        public static let metadata = 1000
    }

    /// What each product shows natively. Buttons are Messenger's button template (≤ 3, titles
    /// ≤ 20; on Instagram a one-element generic template), quick replies ≤ 13, cards and
    /// carousels the generic template (≤ 10 elements, ≤ 3 buttons each), lists a text with
    /// quick replies (≤ 13 rows). Neither sends locations or contact cards; Instagram sends no
    /// files and no phone-number buttons.
    public static func capabilities(_ flavor: Flavor) -> ChannelCapabilities {
        switch flavor {
        case .messenger:
            return ChannelCapabilities(
                textFormats: [.plain], maxTextLength: Limits.messengerText, mediaKinds: [.image, .video, .audio, .voice, .file, .sticker],
                maxButtons: Limits.buttons, maxButtonTitle: Limits.buttonTitle, buttonActions: [.reply, .postback, .link, .call],
                maxQuickReplies: Limits.quickReplies, cards: true, maxCarouselCards: Limits.genericElements, maxListRows: Limits.quickReplies,
                location: false, contactCard: false, reactions: true, typing: true, markRead: true,
                // Rows become quick replies; descriptions go into the text.
                maxListRowTitle: Limits.quickReplyTitle, maxPayload: Limits.payload)
        case .instagram:
            return ChannelCapabilities(
                textFormats: [.plain], maxTextLength: Limits.instagramText, mediaKinds: [.image, .video, .audio, .voice],
                maxButtons: Limits.buttons, maxButtonTitle: Limits.buttonTitle, buttonActions: [.reply, .postback, .link],
                maxQuickReplies: Limits.quickReplies, cards: true, maxCarouselCards: Limits.genericElements, maxListRows: Limits.quickReplies,
                location: false, contactCard: false, reactions: true, typing: true, markRead: true,
                // Rows become quick replies; descriptions go into the text.
                maxListRowTitle: Limits.quickReplyTitle, maxPayload: Limits.payload)
        }
    }

    /// One Send API request's content, in order.
    public enum Outgoing: Sendable, Hashable {
        /// A `message` object (`text`, `attachment`, `quick_replies`, `sticker_id`).
        case message(JSONObject)
        /// A stored file with no public link: upload it first, then send it as an attachment of
        /// this `attachment.type`.
        case upload(type: String, mediaID: String)
        /// A sender action with a payload: `react` / `unreact`.
        case action(String, payload: JSONObject)
    }

    /// Renders parts (already within `capabilities(flavor)`, by the core renderer) as Send API
    /// message objects. `mediaLink` turns a stored media id into a public https link (nil when
    /// there is none: the file is uploaded instead); `reactionTarget` finds the `mid` a reaction
    /// part is about. Throws a permanent `SendError` for what cannot be sent.
    public static func render(_ parts: [Part], flavor: Flavor, mediaLink: (String) -> String?,
                              reactionTarget: (Open<ReactionFields>) -> String?) throws -> [Outgoing] {
        var out: [Outgoing] = []
        let maxText = flavor == .messenger ? Limits.messengerText : Limits.instagramText
        func text(_ s: String) {
            for chunk in Renderer.split(s, max: maxText) where !chunk.isEmpty { out.append(.message(["text": .string(chunk)])) }
        }
        /// Sends all but the last `max`-sized chunk as text and returns the last one.
        func lead(_ s: String, max: Int) -> String {
            let chunks = Renderer.split(s, max: max)
            for c in chunks.dropLast() { text(c) }
            return chunks.last ?? ""
        }
        for part in parts {
            switch part {
            case .text(let t):
                text(t.text)
            case .media(let m):
                try media(m, flavor: flavor, mediaLink: mediaLink, into: &out)
                if let caption = m.caption, !caption.isEmpty { text(caption) }
            case .quickReplies(let q):
                let body = lead(q.text.isEmpty ? "Please choose:" : q.text, max: maxText)
                out.append(.message(["text": .string(body), "quick_replies": .array(q.options.prefix(Limits.quickReplies).map(quickReply))]))
            case .list(let l):
                // No list template any more: the text (with the rows' descriptions) and one quick reply per row.
                let rows = l.sections.flatMap(\.rows)
                var lines = [l.header, l.text].compactMap { $0 }.filter { !$0.isEmpty }
                if rows.contains(where: { $0.description?.isEmpty == false }) {
                    lines += rows.map { r in r.description.map { "• \(r.title): \($0)" } ?? "• \(r.title)" }
                }
                let body = lead(lines.isEmpty ? (l.buttonText ?? "Please choose:") : lines.joined(separator: "\n"), max: maxText)
                let options = rows.prefix(Limits.quickReplies).map { QuickReplyOption(title: $0.title, payload: $0.id) }
                out.append(.message(["text": .string(body), "quick_replies": .array(options.map(quickReply))]))
            case .buttons(let b):
                let buttons = b.actions.prefix(Limits.buttons).compactMap { button($0, flavor: flavor) }
                if flavor == .messenger {
                    let body = lead(b.text.isEmpty ? "Please choose:" : b.text, max: Limits.buttonTemplateText)
                    out.append(.message(template(["template_type": "button", "text": .string(body), "buttons": .array(buttons)])))
                } else {
                    // Instagram has no button template: a generic template with one element.
                    var title = b.text.isEmpty ? "Please choose:" : b.text
                    if title.count > Limits.elementTitle { text(title); title = truncate(title, Limits.elementTitle) }
                    out.append(.message(template(["template_type": "generic",
                                                  "elements": [["title": .string(title), "buttons": .array(buttons)]]])))
                }
            case .card(let c):
                out.append(.message(template(["template_type": "generic", "elements": [element(c, flavor: flavor, mediaLink: mediaLink)]])))
            case .carousel(let car):
                let elements = car.cards.prefix(Limits.genericElements).map { element($0, flavor: flavor, mediaLink: mediaLink) }
                out.append(.message(template(["template_type": "generic", "elements": .array(Array(elements))])))
            case .reaction(let r):
                guard let target = reactionTarget(r) else {
                    throw SendError(code: "invalid_request",
                                    message: "a reaction needs target_external_id (the mid) or target_message_id of a message sent or received on this channel",
                                    retryable: false)
                }
                if r.action == "remove" {
                    out.append(.action("unreact", payload: ["message_id": .string(target)]))
                } else {
                    out.append(.action("react", payload: ["message_id": .string(target), "reaction": .string(try reactionName(r.emoji, flavor: flavor))]))
                }
            case .interaction, .unsupported:
                continue
            default:
                if let t = part.textFallback, !t.isEmpty { text(t) }
            }
        }
        return out
    }

    /// `overrides.messenger` / `overrides.instagram`: a `message` object, an array of them, or
    /// `{"message": {...}}`.
    public static func overrideMessages(_ v: JSONValue, flavor: Flavor) throws -> [Outgoing] {
        // Each message must have content the Send API takes; anything else would only fail
        // later at Graph (error 100), after the helpdesk was told 202.
        func message(_ v: JSONValue) throws -> Outgoing {
            guard let o = v.objectValue, o["text"] != nil || o["attachment"] != nil || o["sticker_id"] != nil || o["attachments"] != nil
            else { throw badOverride(flavor) }
            return .message(o)
        }
        if let a = v.arrayValue, !a.isEmpty { return try a.map(message) }
        if let m = v["message"] { return [try message(m)] }
        return [try message(v)]
    }

    static func badOverride(_ flavor: Flavor) -> SendError {
        SendError(code: "invalid_request", message: "overrides.\(flavor.channelType) must be a Send API message object, an array of them, or {\"message\": {...}}",
                  retryable: false)
    }

    /// An attachment `message` object.
    public static func attachment(type: String, payload: JSONObject) -> JSONObject {
        ["attachment": ["type": .string(type), "payload": .object(payload)]]
    }

    static func template(_ payload: JSONObject) -> JSONObject { attachment(type: "template", payload: payload) }

    /// The Send API attachment type for a media kind.
    public static func attachmentType(_ kind: MediaKind) -> String {
        switch kind {
        case .image, .sticker: return "image"
        case .video: return "video"
        case .audio, .voice: return "audio"
        default: return "file"
        }
    }

    static func media(_ m: Open<MediaFields>, flavor: Flavor, mediaLink: (String) -> String?, into out: inout [Outgoing]) throws {
        if m.kind == .sticker, flavor == .messenger, let id = m.extra["sticker_id"], let n = id.intValue {
            out.append(.message(["sticker_id": .int(n)]))
            return
        }
        let type = attachmentType(m.kind)
        if let reusable = m.extra["attachment_id"]?.stringValue {
            out.append(.message(attachment(type: type, payload: ["attachment_id": .string(reusable)])))
        } else if let url = m.url, url.hasPrefix("https://") || url.hasPrefix("http://") {
            out.append(.message(attachment(type: type, payload: ["url": .string(url), "is_reusable": true])))
        } else if let id = m.mediaID {
            // Meta fetches an image from a link only up to 8 MB; an upload takes up to 25 MB.
            if let link = mediaLink(id), !(type == "image" && (m.size ?? 0) > Limits.imageByLink) {
                out.append(.message(attachment(type: type, payload: ["url": .string(link), "is_reusable": true])))
            } else {
                out.append(.upload(type: type, mediaID: id))
            }
        } else {
            throw SendError(code: "invalid_request", message: "a media part needs a media_id or an http(s) url", retryable: false)
        }
    }

    static func quickReply(_ o: QuickReplyOption) -> JSONValue {
        var q: JSONObject = ["content_type": "text", "title": .string(truncate(o.title, Limits.quickReplyTitle)),
                             "payload": .string(truncate(o.payload ?? o.id ?? o.title, Limits.payload))]
        if let img = o.imageURL, img.hasPrefix("https://") { q["image_url"] = .string(img) }
        return .object(q)
    }

    static func button(_ a: Action, flavor: Flavor) -> JSONValue? {
        let title = JSONValue.string(truncate(a.title, Limits.buttonTitle))
        switch a.type {
        case .link:
            guard let url = a.url else { return nil }
            return ["type": "web_url", "title": title, "url": .string(url)]
        case .call:
            guard flavor == .messenger, let phone = a.phone else { return nil }
            return ["type": "phone_number", "title": title, "payload": .string(phone)]
        default:
            // reply and postback: the title is shown as the customer's answer and the payload comes back as a postback.
            return ["type": "postback", "title": title, "payload": .string(truncate(a.payload ?? a.id ?? a.title, Limits.payload))]
        }
    }

    static func element(_ c: Card, flavor: Flavor, mediaLink: (String) -> String?) -> JSONValue {
        var el: JSONObject = ["title": .string(truncate(c.title.isEmpty ? (c.subtitle ?? "-") : c.title, Limits.elementTitle))]
        if let s = c.subtitle, !s.isEmpty, !c.title.isEmpty { el["subtitle"] = .string(truncate(s, Limits.elementSubtitle)) }
        if let url = c.imageURL, url.hasPrefix("https://") || url.hasPrefix("http://") {
            el["image_url"] = .string(url)
        } else if let id = c.mediaID, let link = mediaLink(id) {
            el["image_url"] = .string(link)
        }
        if let d = c.defaultAction, d.type == .link, let url = d.url {
            el["default_action"] = ["type": "web_url", "url": .string(url)]
        }
        let buttons = (c.actions ?? []).prefix(Limits.buttons).compactMap { button($0, flavor: flavor) }
        if !buttons.isEmpty { el["buttons"] = .array(buttons) }
        return .object(el)
    }

    /// The Send API reaction name for an emoji (Messenger: smile, angry, sad, wow, love, like,
    /// dislike; Instagram: love only). Names are accepted as they are.
    static func reactionName(_ emoji: String, flavor: Flavor) throws -> String {
        let e = emoji.trimmingCharacters(in: .whitespaces)
        var name: String? = reactionEmoji.keys.contains(e) ? e : nil
        if name == nil {
            let base = String(e.unicodeScalars.filter { $0.value != 0xFE0F && !(0x1F3FB...0x1F3FF).contains($0.value) }.map(Character.init))
            let table: [String: String] = ["😆": "smile", "😄": "smile", "😀": "smile", "😂": "smile", "😠": "angry", "😡": "angry",
                                           "😢": "sad", "😭": "sad", "😮": "wow", "😲": "wow", "❤": "love", "😍": "love", "♥": "love",
                                           "👍": "like", "👎": "dislike"]
            name = table[base]
        }
        guard let name, flavor == .messenger || name == "love" else {
            let allowed = flavor == .messenger ? "😆 😠 😢 😮 ❤️ 👍 👎" : "❤️"
            throw SendError(code: "capability_unsupported", message: "\(flavor.label) reactions can only be \(allowed), not \(emoji)", retryable: false)
        }
        return name
    }

    static func truncate(_ s: String, _ max: Int) -> String {
        guard s.count > max else { return s }
        var cut = String(s.prefix(max - 1))
        while cut.last?.isWhitespace == true { cut.removeLast() }
        return cut + "…"
    }
}
