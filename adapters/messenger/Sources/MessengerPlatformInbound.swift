import Foundation
import SwitchboardCore
import SwitchboardRuntime

/// The Messenger Platform's webhook shapes, shared by Messenger (`object: "page"`) and Instagram
/// messaging (`object: "instagram"`), which deliver the same `entry[].messaging[]` events. Pure
/// translation, no I/O: the adapters verify, commit, and do the slow work afterwards.
public enum MessengerPlatform {
    /// Which of the two products a payload or a send is for; they differ in details only
    /// (Instagram: read receipts by `mid`, story mentions and replies, no button template).
    public enum Flavor: String, Sendable, Hashable {
        case messenger, instagram
        public var channelType: String { rawValue }
        public var object: String { self == .messenger ? "page" : "instagram" }
        public var label: String { self == .messenger ? "Messenger" : "Instagram" }
    }

    /// One event of a webhook POST, with the entry it came in.
    public struct Item: Sendable {
        /// `entry[].id`: the Page id (Messenger) or the professional account id (Instagram).
        public var entryID: String
        public var event: JSONValue
        /// From `standby[]`: the thread is owned by another app (handover protocol).
        public var standby: Bool
        /// An App Dashboard test payload (`changes[]` instead of `messaging[]`, Instagram).
        public var test: Bool
        public init(entryID: String, event: JSONValue, standby: Bool = false, test: Bool = false) {
            self.entryID = entryID; self.event = event; self.standby = standby; self.test = test
        }
    }

    /// Every event of every entry: `messaging[]`, `standby[]`, and the `changes[].value` shape
    /// of dashboard test payloads — never only the first.
    public static func items(in root: JSONValue) -> [Item] {
        var out: [Item] = []
        for entry in root["entry"]?.arrayValue ?? [] {
            let id = entry["id"]?.stringValue ?? entry["id"]?.intValue.map { String($0) } ?? ""
            for e in entry["messaging"]?.arrayValue ?? [] { out.append(Item(entryID: id, event: e)) }
            for e in entry["standby"]?.arrayValue ?? [] { out.append(Item(entryID: id, event: e, standby: true)) }
            for change in entry["changes"]?.arrayValue ?? [] {
                guard let value = change["value"], value.objectValue != nil else { continue }
                // Test payloads carry one messaging-shaped event per change, keyed by field.
                if value["sender"] != nil || value["recipient"] != nil {
                    out.append(Item(entryID: id, event: value, test: true))
                }
            }
        }
        return out
    }

    /// Media to copy into the media store after the commit: the message's parts (with the
    /// downloadable ones marked `pending`) and which of them to fetch.
    public struct MediaFetch: Codable, Sendable, Hashable {
        public var externalID: String
        public var parts: [Part]
        public var indices: [Int]
        public var peerID: String
        public var echo: Bool
        /// Put off after its quick retries failed (absent in jobs stored by earlier versions).
        public var retry: DeferredRetry?
        public init(externalID: String, parts: [Part], indices: [Int], peerID: String, echo: Bool) {
            self.externalID = externalID; self.parts = parts; self.indices = indices; self.peerID = peerID; self.echo = echo
        }
        enum CodingKeys: String, CodingKey { case parts, indices, echo, retry, externalID = "external_id", peerID = "peer_id" }
    }

    /// A receipt for our messages; the adapter resolves it against the mids it sent.
    public enum Receipt: Sendable, Hashable {
        /// Messenger `delivery`: `mids` (optional) and a watermark (ms): everything sent before it arrived.
        case delivered(mids: [String], watermark: Int64?)
        /// Messenger `read` (watermark, ms) or Instagram `read` (the last read `mid`).
        case read(watermark: Int64?, mid: String?)
    }

    /// What an echo (`is_echo`, a message the business account sent) says about its sender, so
    /// the adapter can tell its own sends from the Page inbox, the Instagram app or another app.
    public struct Echo: Sendable, Hashable {
        public var mid: String?
        public var appID: String?
        public var metadata: String?
    }

    /// One event translated.
    public struct Translation: Sendable {
        /// The event to commit; nil for receipts (the adapter builds those) and for events
        /// addressed to another account.
        public var event: InboundEvent?
        /// The PSID / IGSID of the customer the event is about.
        public var customerID: String?
        public var media: MediaFetch?
        public var receipt: Receipt?
        public var echo: Echo?
        /// When the customer did something that opens or refreshes the messaging window
        /// (message, postback, reaction, referral, opt-in), by the platform's clock.
        public var customerActivity: Timestamp?
        public var occurredAt: Timestamp?
        /// Why nothing is committed (another account's event…), for the log.
        public var skipped: String?
        /// The Page / account the event is for, when it is another one than ours.
        public var otherAccount: String?
        /// Meta's `policy_enforcement` for our Page: `action` `warning`, `block` or `unblock`,
        /// and its `reason` (absent for `unblock`). About the channel, not a conversation.
        public var policy: (action: String, reason: String?)?
    }

    /// The marker we put in the Send API's `metadata`, so echoes of our own sends are recognised
    /// even when the echo arrives before the Send API's answer.
    public static let metadataPrefix = "switchboard:"

    /// Translates one event. `ownID` is the configured Page id / account id: an event for
    /// another one is skipped (`skipped` says why); dashboard test payloads (`entry.id` "0") pass.
    /// `forwarded`: the channel that received the POST handed this item on because its
    /// recipient is us; it is ours even though it came in under that channel's entry.
    public static func translate(_ item: Item, flavor: Flavor, ownID: String, raw: RawPayload, forwarded: Bool = false) -> Translation {
        let e = item.event
        let senderID = idString(e["sender"]?["id"]) ?? e["sender"]?["user_ref"]?.stringValue.map { "user_ref:" + $0 }
        let recipientID = idString(e["recipient"]?["id"])
        let at = MetaTimestamps.milliseconds(e["timestamp"])
        var t = Translation(occurredAt: at)
        let message = e["message"]
        let isEcho = message?["is_echo"]?.boolValue == true
        // Echoes come from us to the customer: sender and recipient are swapped.
        let customer = isEcho ? recipientID : senderID
        let business = isEcho ? senderID : recipientID
        t.customerID = customer

        let entryIsOurs = item.entryID == ownID || item.entryID == "0" || item.entryID.isEmpty || ownID.isEmpty
            || (forwarded && business == ownID)
        let businessIsOurs = business == nil || business == ownID || item.test || ownID.isEmpty
        guard entryIsOurs && businessIsOurs else {
            t.skipped = "event for \(flavor == .messenger ? "Page" : "account") \(business ?? item.entryID), not \(ownID)"
            t.otherAccount = entryIsOurs ? business : item.entryID
            return t
        }
        // (Documented with an underscore; older pages spell it with a hyphen.)
        if let p = e["policy_enforcement"] ?? e["policy-enforcement"] {
            t.policy = (p["action"]?.stringValue ?? "unknown", p["reason"]?.stringValue)
            return t
        }
        guard let customer, !customer.isEmpty else {
            t.skipped = "event without a sender"
            return t
        }

        var channelData: JSONObject = [:]
        if item.standby { channelData["standby"] = true }
        if item.test { channelData["test"] = true }
        let peer = Peer(channelUserID: customer)

        func event(_ kind: InboundEvent.Kind, dedupe: String?, data: JSONObject = channelData) -> InboundEvent {
            InboundEvent(kind, peer: peer, dedupeKey: dedupe, occurredAt: at, raw: raw, channelData: data.isEmpty ? nil : data)
        }
        let stamp = at.map { String($0.milliseconds) } ?? "0"

        if let m = message {
            let mid = m["mid"]?.stringValue
            if isEcho {
                t.echo = Echo(mid: mid, appID: idString(m["app_id"]), metadata: m["metadata"]?.stringValue)
            }
            if m["is_deleted"]?.boolValue == true, let mid {
                t.event = event(.deleted(externalID: mid), dedupe: "deleted:\(mid)")
                return t
            }
            var data = channelData
            var (parts, fetch) = messageParts(m, flavor: flavor, data: &data)
            var replyTo: String? = nil
            if let r = m["reply_to"] {
                replyTo = r["mid"]?.stringValue
                // An Instagram story reply: which story (id, CDN link that dies with the story).
                if let story = r["story"] { data["reply_to_story"] = story }
                if let selfReply = r["is_self_reply"] { data["is_self_reply"] = selfReply }
            }
            if let ref = m["referral"] { data["referral"] = ref }
            if parts.isEmpty {
                parts = [.unsupported(Open(UnsupportedFields(description: "\(flavor.label) message without content", channelType: flavor.channelType),
                                           extra: ["message": m]))]
            }
            let origin: Origin = isEcho ? .echo : .customer
            if isEcho {
                if let app = t.echo?.appID { data["app_id"] = .string(app) }
                if let meta = t.echo?.metadata { data["metadata"] = .string(meta) }
            }
            t.event = event(.message(InboundMessage(origin: origin, externalID: mid, parts: parts, replyToExternalID: replyTo)),
                            dedupe: mid, data: data)  // the mid itself: the stored message is the dedupe record
            if let mid, !fetch.isEmpty {
                t.media = MediaFetch(externalID: mid, parts: parts, indices: fetch, peerID: customer, echo: isEcho)
            }
            if !isEcho { t.customerActivity = at }
            return t
        }

        if let pb = e["postback"] {
            var data = channelData
            if let ref = pb["referral"] { data["referral"] = ref }
            let mid = pb["mid"]?.stringValue
            let interaction = InteractionFields(kind: .postback, payload: pb["payload"]?.stringValue, title: pb["title"]?.stringValue)
            t.event = event(.message(InboundMessage(externalID: mid, parts: [.interaction(Open(interaction))])),
                            dedupe: mid.map { "postback:\($0)" } ?? "postback:\(customer):\(stamp)", data: data)
            t.customerActivity = at
            return t
        }

        if let r = e["reaction"] {
            let target = r["mid"]?.stringValue ?? ""
            let action = r["action"]?.stringValue == "unreact" ? "remove" : "add"
            let emoji = r["emoji"]?.stringValue ?? reactionEmoji[r["reaction"]?.stringValue ?? ""] ?? ""
            var data = channelData
            if let name = r["reaction"]?.stringValue { data["reaction"] = .string(name) }
            t.event = event(.reaction(targetExternalID: target, emoji: emoji, action: action),
                            dedupe: "reaction:\(target):\(customer):\(stamp):\(action)", data: data)
            t.customerActivity = at
            return t
        }

        if let d = e["delivery"] {
            t.receipt = .delivered(mids: (d["mids"]?.arrayValue ?? []).compactMap(\.stringValue), watermark: d["watermark"]?.intValue)
            return t
        }

        if let r = e["read"] {
            t.receipt = .read(watermark: r["watermark"]?.intValue, mid: r["mid"]?.stringValue)
            return t
        }

        if let edit = e["message_edit"] {
            let mid = edit["mid"]?.stringValue ?? ""
            var data = channelData
            if let n = edit["num_edit"] { data["num_edit"] = n }
            let text = Part.text(edit["text"]?.stringValue ?? "")
            t.event = event(.updated(externalID: mid, parts: [text]), dedupe: "edit:\(mid):\(edit["num_edit"]?.intValue ?? 0)", data: data)
            return t
        }

        if let ref = e["referral"] {
            var d: JSONObject = ["referral": ref]
            for k in ["ref", "source", "type", "ad_id"] { if let v = ref[k] { d[k] = v } }
            t.event = event(.custom("conversation.referred", d), dedupe: "referral:\(customer):\(stamp)")
            t.customerActivity = at
            return t
        }

        if let optin = e["optin"] {
            t.event = event(.custom("conversation.opted_in", ["optin": optin]), dedupe: "optin:\(customer):\(stamp)")
            t.customerActivity = at
            return t
        }

        for key in ["pass_thread_control", "take_thread_control", "request_thread_control"] {
            if let h = e[key] {
                t.event = event(.custom("conversation.handover", ["handover": .string(key), "detail": h]), dedupe: "\(key):\(customer):\(stamp)")
                return t
            }
        }

        // account_linking, policy enforcement, feedback, anything newer: kept, never dropped.
        let key = (e.objectValue ?? [:]).keys.filter { !["sender", "recipient", "timestamp"].contains($0) }.sorted().first ?? "unknown"
        let part = Part.unsupported(Open(UnsupportedFields(description: "\(flavor.label) \(key) event", channelType: flavor.channelType),
                                         extra: ["event": e]))
        t.event = event(.message(InboundMessage(externalID: nil, parts: [part])), dedupe: "event:\(key):\(customer):\(stamp)")
        return t
    }

    /// Messenger's reaction names → the emoji shown, for payloads that omit `emoji`.
    public static let reactionEmoji: [String: String] = [
        "smile": "😆", "angry": "😠", "sad": "😢", "wow": "😮", "love": "❤️", "like": "👍", "dislike": "👎",
    ]

    static func idString(_ v: JSONValue?) -> String? { v?.stringValue ?? v?.intValue.map { String($0) } }

    /// The parts of a `message` object and the indices of the parts to download.
    static func messageParts(_ m: JSONValue, flavor: Flavor, data: inout JSONObject) -> ([Part], [Int]) {
        var parts: [Part] = []
        var fetch: [Int] = []
        let text = m["text"]?.stringValue
        if let qr = m["quick_reply"] {
            let interaction = InteractionFields(kind: .quickReply, payload: qr["payload"]?.stringValue, title: text)
            parts.append(.interaction(Open(interaction)))
        } else if let text, !text.isEmpty {
            parts.append(.text(text))
        }
        let attachments = m["attachments"]?.arrayValue ?? []
        // Until Meta drops it, a sticker arrives twice: as the new `sticker` attachment and as
        // the old `image` with `sticker_id`. Keep one.
        let hasStickerType = attachments.contains { $0["type"]?.stringValue == "sticker" }
        for a in attachments {
            let type = a["type"]?.stringValue ?? "unknown"
            let payload = a["payload"]
            let url = payload?["url"]?.stringValue ?? a["url"]?.stringValue
            var extra: JSONObject = ["attachment_type": .string(type)]
            switch type {
            case "image", "video", "audio", "file":
                if let sticker = payload?["sticker_id"] {
                    if hasStickerType { continue }
                    extra["sticker_id"] = sticker
                    parts.append(.media(Open(MediaFields(kind: .sticker, url: url), extra: extra)))
                    continue
                }
                guard let url, !url.isEmpty else {
                    parts.append(.media(Open(MediaFields(kind: MediaKind(rawValue: type), unavailable: "download_failed"), extra: extra)))
                    continue
                }
                var fields = MediaFields(kind: MediaKind(rawValue: type), url: url, unavailable: "pending")
                if type == "file" { fields.filename = filename(from: url) }
                if let title = a["title"]?.stringValue ?? payload?["title"]?.stringValue, !title.isEmpty { fields.caption = title }
                fetch.append(parts.count)
                parts.append(.media(Open(fields, extra: extra)))
            case "sticker":
                if let s = payload?["sticker_id"] { extra["sticker_id"] = s }
                parts.append(.media(Open(MediaFields(kind: .sticker, url: url), extra: extra)))
            case "location":
                let c = payload?["coordinates"]
                let lat = c?["lat"]?.doubleValue ?? 0, long = c?["long"]?.doubleValue ?? 0
                parts.append(.location(Open(LocationFields(lat: lat, long: long, name: a["title"]?.stringValue, url: a["url"]?.stringValue))))
            case "story_mention":
                // The customer mentioned us in their story. Story media must not be stored
                // (Meta's policy) and expires in 24 h: kept as the CDN link only.
                extra["story_mention"] = true
                if let id = payload?["id"] ?? payload?["story_id"] { extra["story_id"] = id }
                parts.append(.media(Open(MediaFields(kind: .image, url: url, caption: "Mentioned you in their story"), extra: extra)))
                data["story_mention"] = .object(["url": url.map(JSONValue.string) ?? .null])
            case "ig_reel", "reel", "ig_post", "post", "share":
                // Someone else's content shared into the chat: a link, not a copy.
                let isVideo = type.hasSuffix("reel")
                for k in ["reel_video_id", "ig_post_media_id", "title"] { if let v = payload?[k] { extra[k] = v } }
                extra["shared"] = true
                let caption = payload?["title"]?.stringValue ?? a["title"]?.stringValue
                parts.append(.media(Open(MediaFields(kind: isVideo ? .video : .image, url: url,
                                                     caption: caption?.isEmpty == false ? caption : nil,
                                                     unavailable: url == nil ? "not_downloadable" : nil), extra: extra)))
            case "fallback":
                let title = a["title"]?.stringValue ?? payload?["title"]?.stringValue
                if let url {
                    let text = [title, url].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: "\n")
                    parts.append(.text(Open(TextFields(text: text), extra: ["attachment_type": "fallback", "url": .string(url)])))
                } else {
                    parts.append(.unsupported(Open(UnsupportedFields(description: "\(flavor.label) shared content it cannot show (\(title ?? "fallback"))",
                                                                     channelType: flavor.channelType), extra: ["attachment": a])))
                }
            case "template":
                if let p = templatePart(payload) { parts.append(p) } else {
                    parts.append(.unsupported(Open(UnsupportedFields(description: "\(flavor.label) \(payload?["template_type"]?.stringValue ?? "") template",
                                                                     channelType: flavor.channelType), extra: ["attachment": a])))
                }
            default:
                parts.append(.unsupported(Open(UnsupportedFields(description: "\(flavor.label) \(type) attachment", channelType: flavor.channelType),
                                               extra: ["attachment": a])))
            }
        }
        if m["is_unsupported"]?.boolValue == true {
            parts.append(.unsupported(Open(UnsupportedFields(description: "\(flavor.label) content the API does not deliver (GIF, some stickers or shares)",
                                                             channelType: flavor.channelType), extra: ["message": m])))
        }
        // Text after a quick reply is the reply's title; a quick reply with no text keeps its payload only.
        return (parts, fetch)
    }

    /// Button and generic templates (seen in echoes of messages another app sent) as parts.
    static func templatePart(_ payload: JSONValue?) -> Part? {
        guard let p = payload else { return nil }
        func action(_ b: JSONValue) -> Action? {
            let title = b["title"]?.stringValue ?? ""
            switch b["type"]?.stringValue {
            case "web_url"?: return Action(ActionFields(type: .link, title: title, url: b["url"]?.stringValue))
            case "postback"?: return Action(ActionFields(type: .postback, title: title, payload: b["payload"]?.stringValue))
            case "phone_number"?: return Action(ActionFields(type: .call, title: title, phone: b["payload"]?.stringValue))
            default: return nil
            }
        }
        switch p["template_type"]?.stringValue {
        case "button"?:
            let actions = (p["buttons"]?.arrayValue ?? []).compactMap(action)
            return .buttons(Open(ButtonsFields(text: p["text"]?.stringValue ?? "", actions: actions)))
        case "generic"?:
            let cards: [Card] = (p["elements"]?.arrayValue ?? []).map { el in
                let actions = (el["buttons"]?.arrayValue ?? []).compactMap(action)
                return Card(CardFields(title: el["title"]?.stringValue ?? "", subtitle: el["subtitle"]?.stringValue,
                                       imageURL: el["image_url"]?.stringValue, actions: actions.isEmpty ? nil : actions,
                                       defaultAction: el["default_action"].flatMap(action)))
            }
            if cards.count == 1 { return .card(cards[0]) }
            return cards.isEmpty ? nil : .carousel(Open(CarouselFields(cards: cards)))
        default:
            return nil
        }
    }

    /// A file name from a CDN URL's last path segment (`…/invoice.pdf?…`), when it has an extension.
    static func filename(from url: String) -> String? {
        guard let u = URL(string: url) else { return nil }
        let last = u.lastPathComponent
        return last.contains(".") && last.count <= 200 ? last.removingPercentEncoding ?? last : nil
    }
}

/// Timestamp helpers that do not depend on the Meta module's (so the translation stays usable alone).
enum MetaTimestamps {
    /// Milliseconds (numbers); dashboard test payloads send Unix seconds as strings.
    static func milliseconds(_ v: JSONValue?) -> Timestamp? {
        guard let n = v?.intValue else { return nil }
        return Timestamp(milliseconds: n < 100_000_000_000 ? n * 1000 : n)
    }
}
