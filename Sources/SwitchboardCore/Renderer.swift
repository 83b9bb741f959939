import Foundation

/// One thing the renderer could not send as asked, and what it did instead. Returned to the
/// helpdesk in the send response, so an agent knows what the customer actually saw.
public struct Degradation: Codable, Sendable, Hashable {
    /// Index of the part in the request.
    public var part: Int
    public var from: String
    /// `numbered_text`, `text`, `link`, `split`, `dropped`, or the native type it became.
    public var to: String
    /// `channel_unsupported`, `over_limit`, `format_unsupported`.
    public var reason: String
    public var detail: String?
    public init(part: Int, from: String, to: String, reason: String, detail: String? = nil) {
        self.part = part; self.from = from; self.to = to; self.reason = reason; self.detail = detail
    }
}

/// A choice offered as numbered text; a later "2" from the customer maps back to it.
public struct NumberedOption: Codable, Sendable, Hashable {
    public var index: Int
    public var title: String
    public var payload: String?
    public init(index: Int, title: String, payload: String?) { self.index = index; self.title = title; self.payload = payload }
}

/// The renderer's output: what the adapter sends.
public struct RenderedMessage: Codable, Sendable, Hashable {
    /// Parts the channel shows natively, within its limits.
    public var parts: [Part]
    public var textFallback: String
    /// `overrides.<channel type>` from the request: the channel's native payload, sent as is.
    public var override: JSONValue?
    public var degradations: [Degradation]
    public var numberedOptions: [NumberedOption]
    public init(parts: [Part], textFallback: String, override: JSONValue? = nil, degradations: [Degradation] = [], numberedOptions: [NumberedOption] = []) {
        self.parts = parts; self.textFallback = textFallback; self.override = override
        self.degradations = degradations; self.numberedOptions = numberedOptions
    }
    enum CodingKeys: String, CodingKey {
        case parts, override, degradations
        case textFallback = "text_fallback", numberedOptions = "numbered_options"
    }
}

public struct RenderRejection: Error, Sendable, Hashable {
    public var code: String
    public var detail: String
}

/// Turns requested parts into what a channel can show: native when it can, converted to another
/// native part when that keeps the meaning (buttons ↔ quick replies, list → buttons, card →
/// image + text + buttons), otherwise numbered text — and says what it did in `degradations`.
public enum Renderer {
    public enum DegradePolicy: String, Sendable { case allow, deny }

    public static func render(parts: [Part], fallbackText: String?, override: JSONValue? = nil,
                              capabilities caps: ChannelCapabilities, channelType: String,
                              policy: DegradePolicy = .allow,
                              mediaLink: ((String) -> String?)? = nil) throws(RenderRejection) -> RenderedMessage {
        if let override {
            // The helpdesk spoke the channel's language itself: send it untouched.
            let text = fallbackText ?? parts.textFallback
            return RenderedMessage(parts: parts, textFallback: text, override: override)
        }
        var state = State(caps: caps, channelType: channelType)
        state.mediaLink = mediaLink
        for (i, part) in parts.enumerated() {
            try state.render(part, index: i)
        }
        if policy == .deny, let first = state.degradations.first {
            throw RenderRejection(code: "capability_unsupported",
                                  detail: "part \(first.part) (\(first.from)) cannot be sent natively on \(channelType): \(first.reason)")
        }
        state.flushText()
        var out = state.out
        let fallback = fallbackText ?? parts.textFallback
        if out.isEmpty {
            // Everything was dropped: send the helpdesk's own fallback text, or refuse rather
            // than send the customer something the agent didn't write.
            guard let explicit = fallbackText, !explicit.isEmpty else {
                throw RenderRejection(code: "capability_unsupported",
                                      detail: "nothing in this message can be shown on \(channelType); give fallback_text to send text instead")
            }
            out = [.text(explicit)]
        }
        return RenderedMessage(parts: out, textFallback: fallback, degradations: state.degradations, numberedOptions: state.options)
    }

    /// Maps a customer's text reply to a numbered option: the number itself ("2", "2.", "#2")
    /// or the option's exact title, case-insensitive.
    public static func matchReply(_ text: String, options: [NumberedOption]) -> NumberedOption? {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.hasPrefix("#") { t.removeFirst() }
        if t.hasSuffix(".") || t.hasSuffix(")") { t.removeLast() }
        if let n = Int(t.trimmingCharacters(in: .whitespaces)) { return options.first { $0.index == n } }
        let folded = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        return options.first { $0.title.lowercased() == folded }
    }

    private struct State {
        let caps: ChannelCapabilities
        let channelType: String
        var out: [Part] = []
        var degradations: [Degradation] = []
        var options: [NumberedOption] = []
        /// Consecutive text is merged into one text part, so numbered options and the question
        /// they answer arrive as one message.
        var pendingText: [String] = []

        /// A public link to a stored media file, for a customer to open (nil: the daemon has
        /// none to give, e.g. without an https `server.public_url`).
        var mediaLink: ((String) -> String?)? = nil

        init(caps: ChannelCapabilities, channelType: String) { self.caps = caps; self.channelType = channelType }

        mutating func degrade(_ i: Int, _ from: String, _ to: String, _ reason: String, _ detail: String? = nil) {
            degradations.append(Degradation(part: i, from: from, to: to, reason: reason, detail: detail))
        }

        mutating func emit(_ p: Part) { flushText(); out.append(p) }

        mutating func flushText() {
            guard !pendingText.isEmpty else { return }
            let text = pendingText.joined(separator: "\n")
            pendingText = []
            if let max = caps.maxTextLength, text.count > max {
                for chunk in Renderer.split(text, max: max) { out.append(.text(chunk)) }
            } else {
                out.append(.text(text))
            }
        }

        mutating func text(_ s: String) { if !s.isEmpty { pendingText.append(s) } }

        /// `notes`: a line's detail after its title (a list row's description), by choice.
        mutating func numbered(_ intro: String, _ choices: [(title: String, payload: String?)], extraLines: [String] = [],
                               notes: [String?] = []) {
            var lines = intro.isEmpty ? [] : [intro]
            for (k, c) in choices.enumerated() {
                let n = options.count + 1
                options.append(NumberedOption(index: n, title: c.title, payload: c.payload))
                let note = k < notes.count ? notes[k] ?? "" : ""
                lines.append(note.isEmpty ? "\(n). \(c.title)" : "\(n). \(c.title) — \(note)")
            }
            lines += extraLines
            text(lines.joined(separator: "\n"))
        }

        static func actionLine(_ a: Action) -> String? {
            switch a.type {
            case .link: return "\(a.title): \(a.url ?? "")"
            case .call: return "\(a.title): \(a.phone ?? "")"
            default: return nil
            }
        }

        /// Numbered text for actions: choices are numbered, links and phone numbers are listed.
        mutating func actionsAsText(_ intro: String, _ actions: [Action]) {
            var choices: [(String, String?)] = []
            var lines: [String] = []
            for a in actions {
                if let l = Self.actionLine(a) { lines.append(l) } else { choices.append((a.title, a.payload ?? a.id ?? a.title)) }
            }
            numbered(intro, choices, extraLines: lines)
        }

        /// A payload the channel carries back whole.
        func payloadFits(_ p: String?) -> Bool { caps.maxPayload.map { (p ?? "").count <= $0 } ?? true }
        func payloadFits(_ a: Action) -> Bool {
            a.type != .reply && a.type != .postback || payloadFits(a.payload ?? a.id ?? a.title)
        }

        func buttonsFit(_ actions: [Action]) -> Bool {
            guard caps.maxButtons > 0, actions.count <= caps.maxButtons else { return false }
            return actions.allSatisfy { a in
                caps.buttonActions.contains(a.type) && (caps.maxButtonTitle.map { a.title.count <= $0 } ?? true) && payloadFits(a)
            }
        }

        /// Why native buttons can't carry these actions, for the degradation report.
        func buttonsShortfall(_ actions: [Action]) -> (reason: String, detail: String?) {
            if caps.maxButtons == 0 { return ("channel_unsupported", nil) }
            if let bad = actions.first(where: { !caps.buttonActions.contains($0.type) }) {
                return ("channel_unsupported", "\(bad.type.rawValue) actions are not supported as buttons")
            }
            if actions.count > caps.maxButtons { return ("over_limit", "\(actions.count) actions; the channel allows \(caps.maxButtons)") }
            if !actions.allSatisfy(payloadFits) { return ("over_limit", "a payload is longer than \(caps.maxPayload ?? 0) characters") }
            return ("over_limit", "a title is longer than \(caps.maxButtonTitle ?? 0) characters")
        }

        func quickRepliesFit(_ options: [QuickReplyOption]) -> Bool {
            caps.maxQuickReplies > 0 && options.count <= caps.maxQuickReplies && options.allSatisfy { payloadFits($0.payload ?? $0.id ?? $0.title) }
        }

        /// Action types a card carries: the channel's own list, else its buttons' plus links
        /// (card templates carry URL buttons).
        var cardActions: Set<ActionType> { caps.cardActions ?? caps.buttonActions.union([.link]) }

        /// A card the channel shows as it is: cards at all, few enough actions, each of a kind
        /// it carries, titles that fit.
        func cardFits(_ c: Card) -> Bool {
            guard caps.cards else { return false }
            let actions = c.actions ?? []
            return actions.count <= max(caps.maxButtons, 3) && actions.allSatisfy { a in
                cardActions.contains(a.type) && (caps.maxButtonTitle.map { a.title.count <= $0 } ?? true) && payloadFits(a)
            }
        }

        /// Why a card can't go out as it is, for the degradation report.
        func cardShortfall(_ c: Card) -> (reason: String, detail: String?) {
            guard caps.cards else { return ("channel_unsupported", nil) }
            let actions = c.actions ?? []
            if let bad = actions.first(where: { !cardActions.contains($0.type) }) {
                return ("channel_unsupported", "\(bad.type.rawValue) actions are not supported on cards")
            }
            if actions.count > max(caps.maxButtons, 3) { return ("over_limit", "\(actions.count) actions on one card") }
            if !actions.allSatisfy(payloadFits) { return ("over_limit", "a payload is longer than \(caps.maxPayload ?? 0) characters") }
            return ("over_limit", "an action title is longer than \(caps.maxButtonTitle ?? 0) characters")
        }

        /// A list the channel shows as it is: lists at all, few enough rows, and every title
        /// (rows', sections', the opening button's) and description within the channel's limits.
        func listFits(_ l: Open<ListFields>) -> Bool { listShortfall(l).reason.isEmpty }

        /// Why a list can't go out as it is ("" when it can), for the degradation report.
        func listShortfall(_ l: Open<ListFields>) -> (reason: String, detail: String?) {
            let rows = l.sections.flatMap(\.rows)
            if caps.maxListRows == 0 { return ("channel_unsupported", nil) }
            if rows.count > caps.maxListRows { return ("over_limit", "\(rows.count) rows; the channel allows \(caps.maxListRows)") }
            if let max = caps.maxListRowTitle,
               rows.contains(where: { $0.title.count > max }) || l.sections.contains(where: { ($0.title ?? "").count > max }) {
                return ("over_limit", "a row or section title is longer than \(max) characters")
            }
            if let max = caps.maxListRowDescription, rows.contains(where: { ($0.description ?? "").count > max }) {
                return ("over_limit", "a row description is longer than \(max) characters")
            }
            if !rows.allSatisfy({ payloadFits($0.id) }) {
                return ("over_limit", "a row id is longer than \(caps.maxPayload ?? 0) characters")
            }
            if let max = caps.maxButtonTitle, let b = l.buttonText, b.count > max {
                return ("over_limit", "the button text is longer than \(max) characters")
            }
            return ("", nil)
        }

        /// A card that doesn't fit, as the parts that carry all of it.
        mutating func degradedCard(_ c: Card, index i: Int) {
            let actions = c.actions ?? []
            let to = actions.isEmpty ? "text" : (buttonsFit(actions) ? "buttons" : "numbered_text")
            let (reason, detail) = cardShortfall(c)
            degrade(i, "card", to, reason, detail)
            cardAsParts(c)
        }

        mutating func render(_ part: Part, index i: Int) throws(RenderRejection) {
            switch part {
            case .text(var t):
                let format = t.format ?? .plain
                if format != .plain && !caps.textFormats.contains(format) {
                    t.text = format == .html ? Renderer.htmlToText(t.text) : Renderer.markdownToText(t.text)
                    t.format = .plain
                    degrade(i, "text/\(format.rawValue)", "text/plain", "format_unsupported")
                }
                if t.format == nil || t.format == .plain {
                    if let max = caps.maxTextLength, t.text.count > max {
                        degrade(i, "text", "split", "over_limit", "longer than \(max) characters")
                    }
                    text(t.text)
                } else if let max = caps.maxTextLength, t.text.count > max {
                    degrade(i, "text", "split", "over_limit", "longer than \(max) characters")
                    for chunk in Renderer.split(t.text, max: max) {
                        var c = t
                        c.text = chunk
                        emit(.text(c))
                    }
                } else {
                    emit(.text(t))
                }
            case .media(var m):
                if caps.mediaKinds.contains(m.kind) {
                    emit(.media(m))
                } else if m.kind != .file && caps.mediaKinds.contains(.file) {
                    degrade(i, "media/\(m.kind.rawValue)", "media/file", "channel_unsupported")
                    m.kind = .file
                    emit(.media(m))
                } else {
                    let label = m.caption ?? m.filename ?? m.kind.rawValue
                    // A stored file goes out as a link to our copy; with no link to give, the
                    // customer gets its name and the helpdesk is told nothing was attached.
                    if let link = m.url ?? m.mediaID.flatMap({ mediaLink?($0) }) {
                        degrade(i, "media/\(m.kind.rawValue)", "link", "channel_unsupported")
                        text("\(label): \(link)")
                    } else {
                        degrade(i, "media/\(m.kind.rawValue)", "text", "channel_unsupported",
                                "a stored file has no public link to send (server.public_url is not https)")
                        text("[\(label)]")
                    }
                }
            case .location(let l):
                if caps.location { emit(.location(l)); return }
                degrade(i, "location", "text", "channel_unsupported")
                let name = [l.name, l.address].compactMap { $0 }.joined(separator: ", ")
                let link = l.url ?? "https://maps.google.com/?q=\(l.lat),\(l.long)"
                text((name.isEmpty ? "" : name + "\n") + link)
            case .contactCard(let c):
                if caps.contactCard { emit(.contactCard(c)); return }
                degrade(i, "contact_card", "text", "channel_unsupported")
                let lines = [c.name] + (c.phones ?? []).map(\.value) + (c.emails ?? []).map(\.value) + [c.org].compactMap { $0 }
                text(lines.joined(separator: "\n"))
            case .buttons(let b):
                if buttonsFit(b.actions) { emit(.buttons(b)); return }
                let replyOnly = b.actions.allSatisfy { $0.type == .reply || $0.type == .postback }
                let opts = b.actions.map { QuickReplyOption(title: $0.title, payload: $0.payload, id: $0.id) }
                if replyOnly && quickRepliesFit(opts) {
                    let (reason, detail) = buttonsShortfall(b.actions)
                    degrade(i, "buttons", "quick_replies", reason, detail)
                    emit(.quickReplies(Open(QuickRepliesFields(text: b.text, options: opts))))
                    return
                }
                let (reason, detail) = buttonsShortfall(b.actions)
                degrade(i, "buttons", "numbered_text", reason, detail)
                actionsAsText(b.text, b.actions)
            case .quickReplies(let q):
                if quickRepliesFit(q.options) { emit(.quickReplies(q)); return }
                let asActions = q.options.map { Action(ActionFields(type: .reply, title: $0.title, id: $0.id, payload: $0.payload)) }
                let tooLong = !q.options.allSatisfy { payloadFits($0.payload ?? $0.id ?? $0.title) }
                let detail = tooLong ? "a payload is longer than \(caps.maxPayload ?? 0) characters" : nil
                if buttonsFit(asActions) {
                    degrade(i, "quick_replies", "buttons", caps.maxQuickReplies == 0 ? "channel_unsupported" : "over_limit", detail)
                    emit(.buttons(Open(ButtonsFields(text: q.text, actions: asActions))))
                    return
                }
                degrade(i, "quick_replies", "numbered_text", caps.maxQuickReplies == 0 ? "channel_unsupported" : "over_limit", detail)
                numbered(q.text, q.options.map { ($0.title, $0.payload ?? $0.id ?? $0.title) })
            case .card(let c):
                if cardFits(c) { emit(.card(c)); return }
                degradedCard(c, index: i)
            case .carousel(let car):
                let fitting = car.cards.allSatisfy(cardFits)
                if caps.cards && caps.maxCarouselCards >= car.cards.count && fitting { emit(.carousel(car)); return }
                if !caps.cards {
                    degrade(i, "carousel", "text", "channel_unsupported")
                    for c in car.cards { cardAsParts(c) }
                    return
                }
                // One card at a time; each that doesn't fit either is reported on its own.
                degrade(i, "carousel", "card", "over_limit", caps.maxCarouselCards >= car.cards.count
                        ? "a card the channel can't show as it is" : "\(car.cards.count) cards; the channel allows \(caps.maxCarouselCards)")
                for c in car.cards {
                    if cardFits(c) { emit(.card(c)) } else { degradedCard(c, index: i) }
                }
            case .list(let l):
                if listFits(l) { emit(.list(l)); return }
                let rows = l.sections.flatMap(\.rows)
                let intro = [l.header, l.text].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: "\n")
                let (reason, detail) = listShortfall(l)
                let asActions = rows.map { Action(ActionFields(type: .reply, title: $0.title, id: $0.id, payload: $0.id)) }
                if buttonsFit(asActions) {
                    // Buttons have no room for a row's description: those go into the text, one
                    // line per row that has one.
                    let described = rows.compactMap { r in r.description.flatMap { $0.isEmpty ? nil : "• \(r.title): \($0)" } }
                    degrade(i, "list", "buttons", reason, detail)
                    emit(.buttons(Open(ButtonsFields(text: ([intro] + described).filter { !$0.isEmpty }.joined(separator: "\n"), actions: asActions))))
                    return
                }
                degrade(i, "list", "numbered_text", reason, detail)
                numbered(intro, rows.map { ($0.title, $0.id) }, notes: rows.map(\.description))
            case .template(let t):
                guard caps.templates.contains(t.channel) else {
                    throw RenderRejection(code: "capability_unsupported",
                                          detail: "a \(t.channel) template cannot be sent on a \(channelType) channel")
                }
                emit(.template(t))
            case .reaction(let r):
                if caps.reactions { emit(.reaction(r)); return }
                degrade(i, "reaction", "dropped", "channel_unsupported")
            case .interaction, .unsupported:
                throw RenderRejection(code: "invalid_request", detail: "part \(i): \(part.type) parts are inbound only")
            case .unknown(let type, let o):
                if let t = o["text"]?.stringValue {
                    degrade(i, type, "text", "channel_unsupported", "unknown part type")
                    text(t)
                } else {
                    degrade(i, type, "dropped", "channel_unsupported", "unknown part type")
                }
            }
        }

        mutating func cardAsParts(_ c: Card) {
            if let id = c.mediaID, caps.mediaKinds.contains(.image) {
                emit(.media(Open(MediaFields(kind: .image, mediaID: id))))
            } else if let url = c.imageURL, caps.mediaKinds.contains(.image) {
                emit(.media(Open(MediaFields(kind: .image, url: url))))
            }
            let intro = [c.title, c.subtitle].compactMap { $0 }.joined(separator: "\n")
            let actions = c.actions ?? []
            if actions.isEmpty { text(intro) } else if buttonsFit(actions) {
                emit(.buttons(Open(ButtonsFields(text: intro, actions: actions))))
            } else { actionsAsText(intro, actions) }
        }
    }

    /// Splits text at line or word boundaries into chunks of at most `max` characters.
    public static func split(_ text: String, max: Int) -> [String] {
        var chunks: [String] = []
        var rest = Substring(text)
        while rest.count > max {
            let window = rest.prefix(max)
            let cut = window.lastIndex(of: "\n") ?? window.lastIndex(of: " ") ?? window.endIndex
            let chunk = rest[rest.startIndex..<cut]
            chunks.append(String(chunk.isEmpty ? window : chunk))
            rest = rest[(chunk.isEmpty ? window.endIndex : cut)...].drop { $0 == " " || $0 == "\n" }
        }
        if !rest.isEmpty { chunks.append(String(rest)) }
        return chunks
    }

    public static func markdownToText(_ md: String) -> String {
        var s = md
        // [title](url) -> title (url)
        while let open = s.range(of: "["), let mid = s.range(of: "](", range: open.upperBound..<s.endIndex),
              let close = s.range(of: ")", range: mid.upperBound..<s.endIndex) {
            let title = s[open.upperBound..<mid.lowerBound]
            let url = s[mid.upperBound..<close.lowerBound]
            s.replaceSubrange(open.lowerBound..<close.upperBound, with: "\(title) (\(url))")
        }
        for marker in ["**", "__", "`"] { s = s.replacingOccurrences(of: marker, with: "") }
        return s.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var l = Substring(line)
            while l.hasPrefix("#") { l = l.dropFirst() }
            return String(l.drop(while: { $0 == " " && line.hasPrefix("#") }))
        }.joined(separator: "\n")
    }

    public static func htmlToText(_ html: String) -> String {
        var out = ""
        var inTag = false
        var tag = ""
        for ch in html {
            if inTag {
                if ch == ">" {
                    inTag = false
                    let name = tag.lowercased().split(whereSeparator: { $0 == " " || $0 == "/" }).first.map(String.init) ?? ""
                    if ["br", "p", "div", "li", "tr", "h1", "h2", "h3"].contains(name) || tag.lowercased().hasPrefix("/p") {
                        if !out.hasSuffix("\n") && !out.isEmpty { out.append("\n") }
                    }
                    tag = ""
                } else { tag.append(ch) }
            } else if ch == "<" { inTag = true } else { out.append(ch) }
        }
        // `&amp;` last, so "&amp;lt;" becomes the text "&lt;" and not "<".
        let entities = [("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&apos;", "'"), ("&amp;", "&")]
        for (k, v) in entities { out = out.replacingOccurrences(of: k, with: v) }
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
