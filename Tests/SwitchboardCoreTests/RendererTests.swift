import Foundation
import Testing
@testable import SwitchboardCore

/// Channel profiles for the renderer tests.
enum Caps {
    /// Everything native (a web widget).
    static let rich = ChannelCapabilities(
        textFormats: [.plain, .markdown, .html], maxTextLength: 4096, mediaKinds: [.image, .video, .audio, .voice, .sticker, .file],
        maxButtons: 3, maxButtonTitle: 20, buttonActions: [.reply, .postback, .link, .call], maxQuickReplies: 13, cards: true,
        maxCarouselCards: 10, maxListRows: 10, location: true, contactCard: true, reactions: true, typing: true, markRead: true,
        templates: ["whatsapp"])
    /// Up to 3 reply buttons, no quick replies, no lists, no cards (like WhatsApp without its list message).
    static let threeButtons = ChannelCapabilities(maxTextLength: 4096, mediaKinds: [.image, .file], maxButtons: 3, maxButtonTitle: 20)
    /// 3 buttons and 13 quick replies (like Messenger).
    static let buttonsAndQuickReplies = ChannelCapabilities(mediaKinds: [.image, .file], maxButtons: 3, maxQuickReplies: 13,
                                                            cards: true, maxCarouselCards: 2)
}

private func render(_ parts: [Part], _ caps: ChannelCapabilities, fallback: String? = nil,
                    policy: Renderer.DegradePolicy = .allow) throws(RenderRejection) -> RenderedMessage {
    try Renderer.render(parts: parts, fallbackText: fallback, capabilities: caps, channelType: "test", policy: policy)
}

private func rejection(_ parts: [Part], _ caps: ChannelCapabilities, policy: Renderer.DegradePolicy = .allow) -> RenderRejection? {
    do {
        _ = try render(parts, caps, policy: policy)
        return nil
    } catch {
        return error
    }
}

private func texts(_ r: RenderedMessage) -> [String] {
    r.parts.compactMap { if case .text(let t) = $0 { t.text } else { nil } }
}

@Suite("Renderer")
struct RendererTests {
    @Test func nativeWhenTheChannelCanShowEverything() throws {
        let parts: [Part] = [.text("Hello"), Sample.markdown, Sample.media, Sample.location, Sample.contactCard, Sample.buttons,
                             Sample.quickReplies, Sample.card, Sample.carousel, Sample.list, Sample.template, Sample.reaction]
        let r = try render(parts, Caps.rich)
        #expect(r.degradations.isEmpty)
        #expect(r.numberedOptions.isEmpty)
        #expect(r.parts == parts)
        #expect(r.textFallback == parts.textFallback)
        #expect(r.override == nil)
    }

    @Test func buttonsOverTheLimitBecomeQuickRepliesWhenTheyFit() throws {
        let actions = ["XS", "S", "M", "L"].map { Sample.reply($0, "SIZE_\($0)", id: $0.lowercased()) }
        let r = try render([.buttons(Open(ButtonsFields(text: "Which size?", actions: actions)))], Caps.buttonsAndQuickReplies)
        #expect(r.parts == [.quickReplies(Open(QuickRepliesFields(text: "Which size?", options: [
            QuickReplyOption(title: "XS", payload: "SIZE_XS", id: "xs"), QuickReplyOption(title: "S", payload: "SIZE_S", id: "s"),
            QuickReplyOption(title: "M", payload: "SIZE_M", id: "m"), QuickReplyOption(title: "L", payload: "SIZE_L", id: "l"),
        ])))])
        #expect(r.degradations == [Degradation(part: 0, from: "buttons", to: "quick_replies", reason: "over_limit",
                                               detail: "4 actions; the channel allows 3")])
        #expect(r.numberedOptions.isEmpty)
    }

    @Test func buttonsOverTheLimitBecomeNumberedTextOtherwise() throws {
        let actions = [Sample.reply("Small", "SIZE_S"), Sample.reply("Medium", "SIZE_M"), Sample.reply("Large", "SIZE_L"),
                       Action(ActionFields(type: .link, title: "Size guide", url: "https://shop.example/sizes"))]
        let r = try render([.buttons(Open(ButtonsFields(text: "Choose a size", actions: actions)))], Caps.threeButtons)
        #expect(texts(r) == ["Choose a size\n1. Small\n2. Medium\n3. Large\nSize guide: https://shop.example/sizes"])
        #expect(r.numberedOptions == [NumberedOption(index: 1, title: "Small", payload: "SIZE_S"),
                                      NumberedOption(index: 2, title: "Medium", payload: "SIZE_M"),
                                      NumberedOption(index: 3, title: "Large", payload: "SIZE_L")])
        // The first reason found is the one reported: a link can't be a reply button at all.
        #expect(r.degradations == [Degradation(part: 0, from: "buttons", to: "numbered_text", reason: "channel_unsupported",
                                               detail: "link actions are not supported as buttons")])
    }

    @Test func buttonsOnATextOnlyChannel() throws {
        let r = try render([Sample.buttons], .textOnly)
        #expect(texts(r) == ["Was this helpful?\n1. Yes\n2. No\nFAQ: https://shop.example/faq"])
        // The payload falls back to the action id, then the title.
        #expect(r.numberedOptions == [NumberedOption(index: 1, title: "Yes", payload: "HELPFUL_YES"),
                                      NumberedOption(index: 2, title: "No", payload: "HELPFUL_NO")])
        #expect(r.degradations == [Degradation(part: 0, from: "buttons", to: "numbered_text", reason: "channel_unsupported")])
    }

    @Test func buttonsWithinTheLimitStayButtons() throws {
        let part = Part.buttons(Open(ButtonsFields(text: "OK?", actions: [Sample.reply("Yes", "Y"), Sample.reply("No", "N")])))
        let r = try render([part], Caps.threeButtons)
        #expect(r.parts == [part])
        #expect(r.degradations.isEmpty)
    }

    @Test func quickRepliesBecomeButtonsOrNumberedText() throws {
        let q = Part.quickReplies(Open(QuickRepliesFields(text: "Size?", options: [QuickReplyOption(title: "S", payload: "SIZE_S"),
                                                                                   QuickReplyOption(title: "M", payload: "SIZE_M")])))
        let asButtons = try render([q], Caps.threeButtons)
        #expect(asButtons.parts == [.buttons(Open(ButtonsFields(text: "Size?", actions: [
            Action(ActionFields(type: .reply, title: "S", payload: "SIZE_S")), Action(ActionFields(type: .reply, title: "M", payload: "SIZE_M")),
        ])))])
        #expect(asButtons.degradations == [Degradation(part: 0, from: "quick_replies", to: "buttons", reason: "channel_unsupported")])

        let asText = try render([q], .textOnly)
        #expect(texts(asText) == ["Size?\n1. S\n2. M"])
        #expect(asText.numberedOptions.map(\.payload) == ["SIZE_S", "SIZE_M"])
        #expect(asText.degradations == [Degradation(part: 0, from: "quick_replies", to: "numbered_text", reason: "channel_unsupported")])
    }

    @Test func listBecomesButtonsWhenTheRowsFit() throws {
        let list = Part.list(Open(ListFields(text: "Pick a topic", sections: [
            ListSection(rows: [ListRow(id: "billing", title: "Billing"), ListRow(id: "shipping", title: "Shipping")]),
            ListSection(rows: [ListRow(id: "other", title: "Other")]),
        ])))
        let r = try render([list], Caps.threeButtons)
        #expect(r.parts == [.buttons(Open(ButtonsFields(text: "Pick a topic", actions: [
            Action(ActionFields(type: .reply, title: "Billing", id: "billing", payload: "billing")),
            Action(ActionFields(type: .reply, title: "Shipping", id: "shipping", payload: "shipping")),
            Action(ActionFields(type: .reply, title: "Other", id: "other", payload: "other")),
        ])))])
        #expect(r.degradations == [Degradation(part: 0, from: "list", to: "buttons", reason: "channel_unsupported")])
    }

    @Test func listBecomesNumberedTextWhenTheRowsDoNotFit() throws {
        let r = try render([Sample.list], .textOnly)
        #expect(texts(r) == ["Support\nWhat do you need help with?\n1. Track my order — Where is my parcel?\n2. Return an item\n3. Something else"])
        #expect(r.numberedOptions == [NumberedOption(index: 1, title: "Track my order", payload: "track"),
                                      NumberedOption(index: 2, title: "Return an item", payload: "return"),
                                      NumberedOption(index: 3, title: "Something else", payload: "other")])
        #expect(r.degradations == [Degradation(part: 0, from: "list", to: "numbered_text", reason: "channel_unsupported")])

        // Over a native row limit: numbered text too, reported as over_limit.
        var caps = ChannelCapabilities.textOnly
        caps.maxListRows = 2
        let over = try render([Sample.list], caps)
        #expect(over.degradations == [Degradation(part: 0, from: "list", to: "numbered_text", reason: "over_limit",
                                                  detail: "3 rows; the channel allows 2")])
    }

    /// A list whose titles or descriptions are longer than the channel shows is not cut: it goes
    /// out as numbered text with every word, reported.
    @Test func listWithTextTooLongForTheChannelIsNotCut() throws {
        var caps = ChannelCapabilities.textOnly
        caps.maxListRows = 10; caps.maxListRowTitle = 24; caps.maxListRowDescription = 72; caps.maxButtonTitle = 20
        let longTitle = "Returns and exchanges for orders"
        let longDescription = String(repeating: "Everything about sending an item back. ", count: 3)
        func list(title: String = "Returns", description: String? = nil, section: String? = nil, button: String? = nil) -> Part {
            .list(Open(ListFields(text: "Pick a topic", sections: [ListSection(title: section, rows: [
                ListRow(id: "billing", title: "Billing"), ListRow(id: "returns", title: title, description: description)])],
                buttonText: button)))
        }
        // Within the limits: native.
        let fits = try render([list(description: "Send an item back")], caps)
        #expect(fits.parts == [list(description: "Send an item back")] && fits.degradations.isEmpty)

        let cases: [(Part, String)] = [
            (list(title: longTitle), "a row or section title is longer than 24 characters"),
            (list(section: "Everything about your orders"), "a row or section title is longer than 24 characters"),
            (list(description: longDescription), "a row description is longer than 72 characters"),
            (list(button: "See all of the options"), "the button text is longer than 20 characters"),
        ]
        for (part, detail) in cases {
            let r = try render([part], caps)
            #expect(r.degradations == [Degradation(part: 0, from: "list", to: "numbered_text", reason: "over_limit", detail: detail)])
            guard case .list(let l) = part else { continue }
            let row = l.sections[0].rows[1]
            let line = row.description.map { "2. \(row.title) — \($0)" } ?? "2. \(row.title)"
            #expect(texts(r) == ["Pick a topic\n1. Billing\n\(line)"])
        }
    }

    /// A payload longer than the channel carries back is never cut (the helpdesk would get a
    /// different one back): those choices go out as numbered text, whose answer maps back to
    /// the whole payload here.
    @Test func payloadsTooLongForTheChannelBecomeNumberedText() throws {
        var caps = Caps.threeButtons
        caps.maxQuickReplies = 13
        caps.maxPayload = 10
        let long = "ORDER-12345-RETURN-REQUEST"
        let buttons = Part.buttons(Open(ButtonsFields(text: "Return it?", actions: [Sample.reply("Yes", long), Sample.reply("No", "NO")])))
        let r = try render([buttons], caps)
        #expect(texts(r) == ["Return it?\n1. Yes\n2. No"])
        #expect(r.numberedOptions.first?.payload == long)
        #expect(r.degradations == [Degradation(part: 0, from: "buttons", to: "numbered_text", reason: "over_limit",
                                               detail: "a payload is longer than 10 characters")])
        let quick = Part.quickReplies(Open(QuickRepliesFields(text: "Rate", options: [QuickReplyOption(title: "Good", payload: long)])))
        #expect(try render([quick], caps).degradations.first?.to == "numbered_text")
        let list = Part.list(Open(ListFields(text: "Pick", sections: [ListSection(rows: [ListRow(id: long, title: "Return")])])))
        caps.maxListRows = 10
        #expect(try render([list], caps).degradations.first?.detail == "a row id is longer than 10 characters")
        // Short payloads, and link actions (no payload), stay native.
        let fine = Part.buttons(Open(ButtonsFields(text: "Return it?", actions: [Sample.reply("Yes", "YES")])))
        #expect(try render([fine], caps).degradations.isEmpty)
    }

    /// Reply buttons in place of a list keep the header, and the rows' descriptions as lines.
    @Test func listAsButtonsKeepsHeaderAndDescriptions() throws {
        let r = try render([Sample.list], Caps.threeButtons)
        #expect(r.parts == [.buttons(Open(ButtonsFields(text: "Support\nWhat do you need help with?\n• Track my order: Where is my parcel?", actions: [
            Action(ActionFields(type: .reply, title: "Track my order", id: "track", payload: "track")),
            Action(ActionFields(type: .reply, title: "Return an item", id: "return", payload: "return")),
            Action(ActionFields(type: .reply, title: "Something else", id: "other", payload: "other")),
        ])))])
    }

    @Test func cardBecomesImageAndButtonsWithoutNativeCards() throws {
        let card = Part.card(Card(CardFields(title: "Blue chair", subtitle: "€129", mediaID: Sample.mediaID,
                                             actions: [Sample.reply("Buy", "BUY"), Sample.reply("Save", "SAVE")])))
        let r = try render([card], Caps.threeButtons)
        #expect(r.parts == [
            .media(Open(MediaFields(kind: .image, mediaID: Sample.mediaID))),
            .buttons(Open(ButtonsFields(text: "Blue chair\n€129", actions: [Sample.reply("Buy", "BUY"), Sample.reply("Save", "SAVE")]))),
        ])
        #expect(r.degradations == [Degradation(part: 0, from: "card", to: "buttons", reason: "channel_unsupported")])
    }

    @Test func cardBecomesNumberedTextOnATextOnlyChannel() throws {
        let r = try render([Sample.card], .textOnly)
        #expect(texts(r) == ["Blue chair\n€129\n1. Buy\nCall us: +4930123456"])
        #expect(r.numberedOptions == [NumberedOption(index: 1, title: "Buy", payload: "BUY_CHAIR")])
        #expect(r.degradations.map(\.from) == ["card"])
    }

    @Test func carouselOverTheCardLimitBecomesSeparateCards() throws {
        let cards = (1...3).map { Card(CardFields(title: "Chair \($0)", actions: [Sample.reply("Buy", "BUY_\($0)")])) }
        let r = try render([.carousel(Open(CarouselFields(cards: cards)))], Caps.buttonsAndQuickReplies)
        #expect(r.parts == cards.map { .card($0) })
        #expect(r.degradations == [Degradation(part: 0, from: "carousel", to: "card", reason: "over_limit",
                                               detail: "3 cards; the channel allows 2")])
    }

    @Test func carouselOnATextOnlyChannelNumbersAcrossCards() throws {
        let cards = [Card(CardFields(title: "Card A", actions: [Sample.reply("Pick A", "A")])),
                     Card(CardFields(title: "Card B", subtitle: "cheaper", actions: [Sample.reply("Pick B", "B")]))]
        let r = try render([.carousel(Open(CarouselFields(cards: cards)))], .textOnly)
        #expect(texts(r) == ["Card A\n1. Pick A\nCard B\ncheaper\n2. Pick B"])
        #expect(r.numberedOptions.map(\.index) == [1, 2])
        #expect(r.numberedOptions.map(\.payload) == ["A", "B"])
        #expect(r.degradations == [Degradation(part: 0, from: "carousel", to: "text", reason: "channel_unsupported")])
    }

    @Test func markdownBecomesPlainText() throws {
        let md = Part.text(Open(TextFields(text: "# Update\n**Order** shipped: see [tracking](https://t.example/1) `now`", format: .markdown)))
        let r = try render([md], .textOnly)
        #expect(texts(r) == ["Update\nOrder shipped: see tracking (https://t.example/1) now"])
        #expect(r.degradations == [Degradation(part: 0, from: "text/markdown", to: "text/plain", reason: "format_unsupported")])
        if case .text(let t) = r.parts.first { #expect(t.format == nil || t.format == .plain) }
    }

    @Test func htmlBecomesPlainText() throws {
        let html = Part.text(Open(TextFields(text: "<p>Hello &amp; welcome</p><p>Line<br/>two &lt;3</p>", format: .html)))
        let r = try render([html], .textOnly)
        #expect(texts(r) == ["Hello & welcome\nLine\ntwo <3"])
        #expect(r.degradations == [Degradation(part: 0, from: "text/html", to: "text/plain", reason: "format_unsupported")])
    }

    @Test func markdownStaysWhenSupported() throws {
        var caps = ChannelCapabilities.textOnly
        caps.textFormats = [.plain, .markdown]
        let r = try render([Sample.markdown], caps)
        #expect(r.parts == [Sample.markdown])
        #expect(r.degradations.isEmpty)
    }

    @Test func longTextIsSplitAtMaxTextLength() throws {
        var caps = ChannelCapabilities.textOnly
        caps.maxTextLength = 20
        let text = "The quick brown fox jumps over the lazy dog again"
        let r = try render([.text(text)], caps)
        #expect(texts(r) == ["The quick brown fox", "jumps over the lazy", "dog again"])
        #expect(texts(r).allSatisfy { $0.count <= 20 })
        #expect(r.degradations == [Degradation(part: 0, from: "text", to: "split", reason: "over_limit", detail: "longer than 20 characters")])
        // Without a space to cut at, the split is hard.
        let hard = try render([.text(String(repeating: "x", count: 45))], caps)
        #expect(texts(hard).map(\.count) == [20, 20, 5])
        // Under the limit nothing is reported.
        #expect(try render([.text("short")], caps).degradations.isEmpty)
    }

    @Test func splitPrefersLineBreaks() {
        #expect(Renderer.split("line one\nline two is long", max: 12) == ["line one", "line two is", "long"])
        #expect(Renderer.split("fits", max: 10) == ["fits"])
        let long = String(repeating: "word ", count: 500)
        let chunks = Renderer.split(long, max: 100)
        #expect(chunks.allSatisfy { $0.count <= 100 })
        #expect(chunks.joined(separator: " ").trimmingCharacters(in: .whitespaces) == long.trimmingCharacters(in: .whitespaces))
    }

    @Test func templateOnAChannelWithoutTemplatesIsRejected() throws {
        let error = rejection([.text("Hi"), Sample.template], Caps.threeButtons)
        #expect(error?.code == "capability_unsupported")
        #expect(error?.detail.contains("whatsapp") == true)
        // With template support it goes out as is.
        var caps = Caps.threeButtons
        caps.templates = ["whatsapp"]
        #expect(try render([Sample.template], caps).parts == [Sample.template])
    }

    @Test func denyPolicyRejectsAnyDegradation() throws {
        let error = rejection([.text("Hi"), Sample.buttons], .textOnly, policy: .deny)
        #expect(error?.code == "capability_unsupported")
        #expect(error?.detail.contains("part 1 (buttons)") == true)
        // Nothing to degrade: deny changes nothing.
        let ok = try render([.text("Hi"), Sample.buttons], Caps.rich, policy: .deny)
        #expect(ok.degradations.isEmpty)
        #expect(ok.parts.count == 2)
    }

    @Test func inboundOnlyPartsAreRejected() {
        #expect(rejection([Sample.interaction], Caps.rich)?.code == "invalid_request")
        #expect(rejection([Sample.unsupported], Caps.rich)?.code == "invalid_request")
    }

    @Test func mediaFallsBackToFileThenLink() throws {
        let voice = Part.media(Open(MediaFields(kind: .voice, mediaID: Sample.mediaID, mimeType: "audio/ogg")))
        let asFile = try render([voice], Caps.threeButtons)
        #expect(asFile.parts == [.media(Open(MediaFields(kind: .file, mediaID: Sample.mediaID, mimeType: "audio/ogg")))])
        #expect(asFile.degradations == [Degradation(part: 0, from: "media/voice", to: "media/file", reason: "channel_unsupported")])

        let image = Part.media(Open(MediaFields(kind: .image, url: "https://files.example/receipt.png", caption: "Receipt")))
        let asLink = try render([image], .textOnly)
        #expect(texts(asLink) == ["Receipt: https://files.example/receipt.png"])
        #expect(asLink.degradations == [Degradation(part: 0, from: "media/image", to: "link", reason: "channel_unsupported")])

        // A stored file (media_id only) goes out as a link to our copy when the daemon can give
        // one; without, its name, and the helpdesk is told no link went out.
        let file = Part.media(Open(MediaFields(kind: .file, mediaID: Sample.mediaID, filename: "invoice.pdf")))
        let linked = try Renderer.render(parts: [file], fallbackText: nil, capabilities: .textOnly, channelType: "test",
                                         mediaLink: { "https://sb.example/media/\($0)?sig=x" })
        #expect(texts(linked) == ["invoice.pdf: https://sb.example/media/\(Sample.mediaID)?sig=x"])
        #expect(linked.degradations == [Degradation(part: 0, from: "media/file", to: "link", reason: "channel_unsupported")])
        let unlinked = try Renderer.render(parts: [file], fallbackText: nil, capabilities: .textOnly, channelType: "test", mediaLink: { _ in nil })
        #expect(texts(unlinked) == ["[invoice.pdf]"])
        #expect(unlinked.degradations == [Degradation(part: 0, from: "media/file", to: "text", reason: "channel_unsupported",
                                                      detail: "a stored file has no public link to send (server.public_url is not https)")])
    }

    @Test func locationAndContactCardBecomeText() throws {
        let r = try render([Sample.location, Sample.contactCard], .textOnly)
        #expect(texts(r) == ["Alexanderplatz, 10178 Berlin\nhttps://maps.example/?q=52.52,13.40\nMax Mustermann\n+49 30 1234567\nmax@example.com\nExample GmbH"])
        #expect(r.degradations == [Degradation(part: 0, from: "location", to: "text", reason: "channel_unsupported"),
                                   Degradation(part: 1, from: "contact_card", to: "text", reason: "channel_unsupported")])
        let bare = try render([.location(Open(LocationFields(lat: 1.5, long: -2.25)))], .textOnly)
        #expect(texts(bare) == ["https://maps.google.com/?q=1.5,-2.25"])
    }

    @Test func unknownPartTypes() throws {
        let withText = try render([.unknown(type: "poll", ["text": "Vote: morning or afternoon?"])], .textOnly)
        #expect(texts(withText) == ["Vote: morning or afternoon?"])
        #expect(withText.degradations == [Degradation(part: 0, from: "poll", to: "text", reason: "channel_unsupported", detail: "unknown part type")])
        let without = try render([.text("Hi"), .unknown(type: "sparkles", ["level": 3])], .textOnly)
        #expect(texts(without) == ["Hi"])
        #expect(without.degradations == [Degradation(part: 1, from: "sparkles", to: "dropped", reason: "channel_unsupported", detail: "unknown part type")])
    }

    @Test func everyDegradationIsReportedWithItsPartIndex() throws {
        let parts: [Part] = [
            .text("Thanks for waiting."),                                                                   // 0 native
            .buttons(Open(ButtonsFields(text: "Rate us", actions: (1...4).map { Sample.reply("\($0)★", "RATE_\($0)") }))), // 1
            Sample.location,                                                                                // 2
            Sample.reaction,                                                                                // 3
            .media(Open(MediaFields(kind: .voice, mediaID: Sample.mediaID))),                               // 4
            .media(Open(MediaFields(kind: .image, mediaID: Sample.mediaID))),                               // 5 native
            Sample.quickReplies,                                                                            // 6
        ]
        let r = try render(parts, Caps.threeButtons)
        #expect(r.degradations.map(\.part) == [1, 2, 3, 4, 6])
        #expect(r.degradations.map(\.from) == ["buttons", "location", "reaction", "media/voice", "quick_replies"])
        #expect(r.degradations.map(\.to) == ["numbered_text", "text", "dropped", "media/file", "buttons"])
        #expect(r.degradations.map(\.reason) == ["over_limit", "channel_unsupported", "channel_unsupported", "channel_unsupported",
                                                 "channel_unsupported"])
        // Consecutive text merges into one message: the question and its numbered options arrive together.
        #expect(r.parts.map(\.type) == ["text", "media", "media", "buttons"])
        #expect(texts(r).first?.hasPrefix("Thanks for waiting.\nRate us\n1. 1★\n2. 2★") == true)
        #expect(r.numberedOptions.count == 4)
    }

    @Test func fallbackTextReplacesAnEmptyResult() throws {
        let r = try render([Sample.reaction], .textOnly, fallback: "Thanks!")
        #expect(texts(r) == ["Thanks!"])
        #expect(r.textFallback == "Thanks!")
        #expect(r.degradations == [Degradation(part: 0, from: "reaction", to: "dropped", reason: "channel_unsupported")])
    }

    @Test func overrideIsSentUntouched() throws {
        let override: JSONValue = ["messages": [["type": "flex", "altText": "Order", "contents": [:]]]]
        let r = try Renderer.render(parts: [Sample.carousel], fallbackText: "Our chairs", override: override,
                                    capabilities: .textOnly, channelType: "line")
        #expect(r.override == override)
        #expect(r.parts == [Sample.carousel])
        #expect(r.degradations.isEmpty)
        #expect(r.textFallback == "Our chairs")
    }
}

@Suite("Renderer.matchReply")
struct MatchReplyTests {
    static let options = [NumberedOption(index: 1, title: "Small", payload: "SIZE_S"),
                          NumberedOption(index: 2, title: "Medium", payload: "SIZE_M"),
                          NumberedOption(index: 3, title: "Large", payload: "SIZE_L")]

    @Test(arguments: ["2", "2.", "#2", " 2 ", "2)", "Medium", "medium", "MEDIUM", "  Medium\n"])
    func matchesTheSecondOption(_ reply: String) {
        #expect(Renderer.matchReply(reply, options: Self.options) == Self.options[1])
    }

    @Test(arguments: ["7", "0", "-1", "hello", "", "Med", "2 please", "#", "Medium size"])
    func rejects(_ reply: String) {
        #expect(Renderer.matchReply(reply, options: Self.options) == nil)
    }

    @Test func aNumberedReplyBecomesAnIndexReplyInteraction() throws {
        // The render of an outbound prompt remembers its options …
        let prompt = try render([Sample.quickReplies], .textOnly)
        #expect(texts(prompt) == ["Which size?\n1. S\n2. M"])
        // … and the customer's "2" maps back to the option, delivered as an interaction part.
        let match = try #require(Renderer.matchReply("2", options: prompt.numberedOptions))
        let part = Part.interaction(Open(InteractionFields(kind: .indexReply, payload: match.payload, title: match.title,
                                                           index: match.index, sourceMessageID: Sample.outboundMessageID)))
        #expect(JSON.string(part) == #"{"index":2,"kind":"index_reply","payload":"SIZE_M","source_message_id":"msg_01JTB2M0A1B2C3D4E5F6G7H8J9","title":"M","type":"interaction"}"#)
    }
}

/// Cards are checked action by action, in a carousel too: nothing is dropped without a report.
@Suite struct CardLimitTests {
    static let caps = ChannelCapabilities(mediaKinds: [.image], maxButtons: 3, maxButtonTitle: 20, buttonActions: [.reply, .postback, .link],
                                          maxQuickReplies: 13, cards: true, maxCarouselCards: 10)

    @Test func aCarouselCardWithTooManyActionsIsReported() throws {
        let four = Card(CardFields(title: "Chair", actions: (1...4).map { Sample.reply("Option \($0)", "O\($0)") }))
        let fine = Card(CardFields(title: "Table", actions: [Sample.reply("Buy", "BUY")]))
        let r = try Renderer.render(parts: [.carousel(Open(CarouselFields(cards: [fine, four])))], fallbackText: nil,
                                    capabilities: Self.caps, channelType: "test")
        #expect(r.parts.first == .card(fine))
        #expect(!r.parts.contains(.card(four)), "the 4-action card is not sent as a card the channel would cut")
        #expect(r.parts.textFallback.contains("Option 4"), "\(r.parts)")
        #expect(r.degradations.map(\.from) == ["carousel", "card"])
    }

    @Test func aChannelThatCarriesCallsOnCardsKeepsTheCard() throws {
        var caps = Self.caps
        caps.cardActions = [.reply, .postback, .link, .call]
        let call = Card(CardFields(title: "Chair", actions: [Sample.reply("Buy", "BUY"),
                                                            Action(ActionFields(type: .call, title: "Call us", phone: "+4930123456"))]))
        let r = try Renderer.render(parts: [.card(call)], fallbackText: nil, capabilities: caps, channelType: "test")
        #expect(r.parts == [.card(call)] && r.degradations.isEmpty)
    }

    @Test func anActionTheChannelHasNoButtonForBecomesText() throws {
        let call = Card(CardFields(title: "Chair", actions: [Sample.reply("Buy", "BUY"),
                                                            Action(ActionFields(type: .call, title: "Call us", phone: "+4930123456"))]))
        let r = try Renderer.render(parts: [.card(call)], fallbackText: nil, capabilities: Self.caps, channelType: "test")
        #expect(!r.parts.contains(.card(call)))
        #expect(r.parts.textFallback.contains("+4930123456"), "\(r.parts)")
        #expect(r.degradations.first?.reason == "channel_unsupported")
    }
}
