import Foundation
import MetaAdapter
import SwitchboardCore
import SwitchboardRuntime

/// One webhook item translated: the event to commit and what follows the commit.
struct WhatsAppItem: Sendable {
    var event: InboundEvent
    var media: WhatsAppMediaJob?
}

/// A media download queued after the commit, kept in the adapter state until done
/// (`media_job:<wamid>`) so a restart resumes it.
struct WhatsAppMediaJob: Codable, Sendable {
    var wamid: String
    /// Graph's media id (valid 7 days for inbound media).
    var mediaID: String
    var part: Open<MediaFields>
    var peerID: String
    var peerName: String?
    var origin: String?
    /// Put off after its quick retries failed (absent in jobs stored by earlier versions).
    var retry: DeferredRetry?

    static let keyPrefix = "media_job:"
    static func key(_ wamid: String) -> String { keyPrefix + wamid }
}

extension WhatsAppChannelAdapter {
    /// Turns a verified webhook payload into events, in order: every entry, every change, every
    /// message (oldest first within a change) and status. Pure: no I/O. Changes for another
    /// phone number are reported through `skipped` and left out; payloads without a message
    /// or status (value-level `errors`, other fields) through `note`.
    static func translate(_ root: JSONValue, rawBody: [UInt8], phoneNumberID: String,
                          skipped: (String) -> Void = { _ in }, note: (String) -> Void = { _ in }) -> [WhatsAppItem] {
        var items: [WhatsAppItem] = []
        let entries = root["entry"]?.arrayValue ?? []
        // Count the items of the whole POST: a lone item keeps Meta's exact bytes as its raw payload.
        let total = entries.reduce(0) { n, e in
            n + (e["changes"]?.arrayValue ?? []).reduce(0) { m, c in
                m + (c["value"]?["messages"]?.arrayValue?.count ?? 0) + (c["value"]?["statuses"]?.arrayValue?.count ?? 0)
                    + (c["value"]?["message_echoes"]?.arrayValue?.count ?? 0) + (c["value"]?["user_id_update"]?.arrayValue?.count ?? 0)
            }
        }
        for entry in entries {
            let wabaID = entry["id"]?.stringValue
            for change in entry["changes"]?.arrayValue ?? [] {
                let field = change["field"]?.stringValue ?? ""
                guard let value = change["value"] else { continue }
                if let pnid = value["metadata"]?["phone_number_id"]?.stringValue ?? value["metadata"]?["phone_number_id"]?.intValue.map({ String($0) }),
                   pnid != phoneNumberID {
                    skipped(pnid)
                    continue
                }
                let contacts = value["contacts"]?.arrayValue ?? []
                for error in value["errors"]?.arrayValue ?? [] {
                    note("value-level error \(error["code"]?.intValue.map { String($0) } ?? "?"): \(error["title"]?.stringValue ?? error["message"]?.stringValue ?? "")")
                }
                func raw(_ key: String, _ item: JSONValue) -> RawPayload {
                    if total == 1 { return RawPayload(format: "json", bytes: rawBody, parsed: root) }
                    var v: JSONObject = ["object": .string(webhookObject), "field": .string(field), key: .array([item])]
                    if let m = value["metadata"] { v["metadata"] = m }
                    if let w = wabaID { v["waba_id"] = .string(w) }
                    if !contacts.isEmpty { v["contacts"] = .array(contacts) }
                    let parsed = JSONValue.object(v)
                    return RawPayload(format: "json", bytes: Array((try? JSON.encode(parsed)) ?? Data()), parsed: parsed)
                }
                switch field {
                case "messages":
                    let messages = (value["messages"]?.arrayValue ?? []).enumerated().sorted { a, b in
                        let ta = a.element["timestamp"]?.intValue ?? 0, tb = b.element["timestamp"]?.intValue ?? 0
                        return ta == tb ? a.offset < b.offset : ta < tb
                    }.map(\.element)
                    for m in messages {
                        items.append(message(m, contacts: contacts, raw: raw("messages", m), wabaID: wabaID, echo: false))
                    }
                    for s in value["statuses"]?.arrayValue ?? [] {
                        items.append(status(s, raw: raw("statuses", s)))
                    }
                    if (value["messages"]?.arrayValue ?? []).isEmpty && (value["statuses"]?.arrayValue ?? []).isEmpty && (value["errors"]?.arrayValue ?? []).isEmpty {
                        note("messages change without messages or statuses")
                    }
                case "user_id_update":
                    // The first form of the notice of a new business-scoped id (Meta has since
                    // moved it to `user_changed_user_id` system messages); still honoured.
                    for u in value["user_id_update"]?.arrayValue ?? [] {
                        if let item = userIDUpdate(u, raw: raw("user_id_update", u)) { items.append(item) }
                        else { note("user_id_update without a current user id") }
                    }
                case "smb_message_echoes":
                    // Coexistence: messages the business sent from the WhatsApp Business app.
                    for m in value["message_echoes"]?.arrayValue ?? [] {
                        items.append(message(m, contacts: contacts, raw: raw("message_echoes", m), wabaID: wabaID, echo: true))
                    }
                default:
                    note("webhook field \(field) is not handled by this adapter")
                }
            }
        }
        return items
    }

    /// The customer for an inbound message (or the recipient of an echo): keyed by wa_id, else
    /// the business-scoped user id; name and ids from the matching `contacts[]` entry. The
    /// business-scoped ids are aliases, so a customer who later arrives without a phone number
    /// (a username user) keeps their identity.
    static func peer(waID: String?, userID: String?, contacts: [JSONValue]) -> Peer {
        let matched: JSONValue? = contacts.first { c in
            (waID != nil && c["wa_id"]?.stringValue == waID) || (userID != nil && c["user_id"]?.stringValue == userID)
        }
        // A lone contact that names someone else than the message (a number written otherwise,
        // Brazil's ninth digit) gives a name, not ids: an alias is for good.
        let contact: JSONValue? = matched ?? (contacts.count == 1 ? contacts[0] : Optional<JSONValue>.none)
        let idSource: JSONValue? = matched ?? (waID == nil && userID == nil ? contact : Optional<JSONValue>.none)
        let wa = waID ?? idSource?["wa_id"]?.stringValue
        let bsuid = userID ?? idSource?["user_id"]?.stringValue
        let parent = idSource?["parent_user_id"]?.stringValue
        var profile: JSONObject = [:]
        if let wa { profile["wa_id"] = .string(wa) }
        if let bsuid { profile["user_id"] = .string(bsuid) }
        if let u = contact?["profile"]?["username"]?.stringValue { profile["username"] = .string(u) }
        if let parent { profile["parent_user_id"] = .string(parent) }
        var name = contact?["profile"]?["name"]?.stringValue
        if name?.allSatisfy(\.isWhitespace) == true || name == "~" { name = nil }
        let key = wa ?? bsuid ?? "unknown"
        let aliases = [bsuid, parent].compactMap { $0 }.filter { $0 != key }
        return Peer(channelUserID: key, displayName: name, profile: profile.isEmpty ? nil : profile, aliases: aliases)
    }

    /// The customer of a notice that their ids changed: found by the old ids, moved to the new
    /// ones. `user_changed_number` (a new phone number, which also brings a new business-scoped
    /// id) names the new number in `wa_id`; `user_changed_user_id` (a new business-scoped id
    /// and no number to share) names none. The old business-scoped id is `previous_user_id`,
    /// or — in the earlier form of the notice — only in the body ("… changed from <old> to <new>").
    /// Nil when the notice names no new id.
    static func movedPeer(oldWA: String?, oldUserID: String?, system s: JSONValue?) -> Peer? {
        let newWA = s?["wa_id"]?.stringValue ?? s?["new_wa_id"]?.stringValue
        let newUser = s?["user_id"]?.stringValue
        let newParent = s?["parent_user_id"]?.stringValue
        guard let newKey = newWA ?? newUser else { return nil }
        var previousUser = s?["previous_user_id"]?.stringValue
        if previousUser == nil, s?["type"]?.stringValue == "user_changed_user_id", let body = s?["body"]?.stringValue,
           let from = body.range(of: " changed from "), let to = body.range(of: " to ", range: from.upperBound..<body.endIndex) {
            let old = String(body[from.upperBound..<to.lowerBound]).trimmingCharacters(in: .whitespaces)
            if isBSUID(old) { previousUser = old }
        }
        let newIDs = [newKey, newUser, newParent].compactMap { $0 }
        let old = [oldWA, oldUserID, previousUser, s?["previous_parent_user_id"]?.stringValue].compactMap { $0 }
            .filter { !newIDs.contains($0) }
        // The stale ids are cleared from the profile: a number no longer theirs must not be shown.
        var profile: JSONObject = ["wa_id": newWA.map(JSONValue.string) ?? .null, "user_id": newUser.map(JSONValue.string) ?? .null]
        if let newParent { profile["parent_user_id"] = .string(newParent) }
        let moved = Peer.IDs(channelUserID: newKey, aliases: [newUser, newParent].compactMap { $0 }.filter { $0 != newKey })
        return movingPeer(from: old, to: moved, profile: profile)
    }

    /// A peer found by its `old` ids and moving to `moved`; with no old ids, simply the new ones.
    static func movingPeer(from old: [String], to moved: Peer.IDs, profile: JSONObject) -> Peer {
        guard let first = old.first else { return Peer(channelUserID: moved.channelUserID, profile: profile, aliases: moved.aliases) }
        return Peer(channelUserID: first, profile: profile, aliases: Array(old.dropFirst()), movedTo: moved)
    }

    /// One `user_id_update[]` element: `user_id` and `parent_user_id` as `{previous, current}`,
    /// `wa_id` when the number may be shared. The customer's identity takes the current ids.
    static func userIDUpdate(_ u: JSONValue, raw: RawPayload) -> WhatsAppItem? {
        guard let current = u["user_id"]?["current"]?.stringValue else { return nil }
        let wa = u["wa_id"]?.stringValue
        let previous = u["user_id"]?["previous"]?.stringValue
        let currentParent = u["parent_user_id"]?["current"]?.stringValue
        let key = wa ?? current
        let moved = Peer.IDs(channelUserID: key, aliases: [current, currentParent].compactMap { $0 }.filter { $0 != key })
        var profile: JSONObject = ["user_id": .string(current)]
        if let currentParent { profile["parent_user_id"] = .string(currentParent) }
        let old = [wa, previous, u["parent_user_id"]?["previous"]?.stringValue].compactMap { $0 }
        return WhatsAppItem(event: InboundEvent(.identityUpdated, peer: movingPeer(from: old, to: moved, profile: profile), dedupeKey: "user_id_update:\(previous ?? "-")>\(current)",
                                                occurredAt: MetaWebhook.seconds(u["timestamp"]), raw: raw))
    }

    static func mediaKind(_ type: String, _ body: JSONValue?) -> MediaKind {
        switch type {
        case "image": return .image
        case "video": return .video
        case "audio": return body?["voice"]?.boolValue == true ? .voice : .audio
        case "sticker": return .sticker
        default: return .file
        }
    }

    static func idString(_ v: JSONValue?) -> String? { v?.stringValue ?? v?.intValue.map { String($0) } }

    /// One `messages[]` (or `message_echoes[]`) element.
    static func message(_ m: JSONValue, contacts: [JSONValue], raw: RawPayload, wabaID: String?, echo: Bool) -> WhatsAppItem {
        let type = m["type"]?.stringValue ?? "unknown"
        let wamid = m["id"]?.stringValue
        var peer = echo ? Self.peer(waID: m["to"]?.stringValue, userID: m["to_user_id"]?.stringValue, contacts: contacts)
                        : Self.peer(waID: m["from"]?.stringValue, userID: m["from_user_id"]?.stringValue, contacts: contacts)
        let at = MetaWebhook.seconds(m["timestamp"])
        var channelData: JSONObject = ["whatsapp_type": .string(type)]
        if let w = wabaID { channelData["waba_id"] = .string(w) }
        let context = m["context"]
        if context?["forwarded"]?.boolValue == true { channelData["forwarded"] = true }
        if context?["frequently_forwarded"]?.boolValue == true { channelData["frequently_forwarded"] = true }
        if let p = context?["referred_product"] { channelData["referred_product"] = p }
        if let r = m["referral"] { channelData["referral"] = r }
        if let e = m["errors"] { channelData["errors"] = e }
        if let g = m["group_id"] { channelData["group_id"] = g }
        let replyTo = context?["id"]?.stringValue
        let dedupe = wamid.map { "wamid:\($0)" }
        var item = WhatsAppItem(event: InboundEvent(.identityUpdated, peer: peer))
        var origin: Origin = echo ? .echo : .customer
        var parts: [Part] = []
        let body = m[type]

        switch type {
        case "text":
            parts = [.text(body?["body"]?.stringValue ?? "")]
        case "image", "video", "audio", "document", "sticker":
            var fields = MediaFields(kind: mediaKind(type, body), mimeType: body?["mime_type"]?.stringValue,
                                     filename: body?["filename"]?.stringValue, caption: body?["caption"]?.stringValue)
            var extra: JSONObject = [:]
            if let id = idString(body?["id"]) { extra["whatsapp_media_id"] = .string(id) }
            // WhatsApp's own digest of the file, as given (our `sha256` is set once we hold the bytes).
            if let s = body?["sha256"]?.stringValue { extra["whatsapp_sha256"] = .string(s) }
            if let a = body?["animated"]?.boolValue { extra["animated"] = .bool(a) }
            if let id = idString(body?["id"]), let wamid {
                fields.unavailable = "pending"
                let part = Open(fields, extra: extra)
                parts = [.media(part)]
                item.media = WhatsAppMediaJob(wamid: wamid, mediaID: id, part: part, peerID: peer.channelUserID,
                                              peerName: peer.displayName, origin: origin.rawValue)
            } else {
                fields.unavailable = "download_failed"
                parts = [.media(Open(fields, extra: extra))]
            }
        case "location":
            parts = [.location(Open(LocationFields(lat: body?["latitude"]?.doubleValue ?? 0, long: body?["longitude"]?.doubleValue ?? 0,
                                                   name: body?["name"]?.stringValue, address: body?["address"]?.stringValue,
                                                   url: body?["url"]?.stringValue)))]
        case "contacts":
            parts = (m["contacts"]?.arrayValue ?? []).map(contactCard)
            if parts.isEmpty { parts = [.unsupported(Open(UnsupportedFields(description: "WhatsApp contacts message without contacts", channelType: Self.type), extra: ["whatsapp_message": m]))] }
        case "interactive":
            parts = [interaction(body ?? .object([:]), message: m)]
        case "button":
            // A quick-reply button of a template we sent (not `interactive`).
            let b = m["button"]
            parts = [.interaction(Open(InteractionFields(kind: .quickReply, payload: b?["payload"]?.stringValue, title: b?["text"]?.stringValue)))]
        case "reaction" where echo:
            // The business reacted from the WhatsApp Business app (coexistence): an echo whose
            // part is the reaction, not the customer's `message.reaction`.
            let r = m["reaction"]
            let emoji = r?["emoji"]?.stringValue ?? ""
            parts = [.reaction(Open(ReactionFields(emoji: emoji, action: emoji.isEmpty ? "remove" : "add",
                                                   targetExternalID: r?["message_id"]?.stringValue)))]
        case "reaction":
            let r = m["reaction"]
            let emoji = r?["emoji"]?.stringValue ?? ""
            item.event = InboundEvent(.reaction(targetExternalID: r?["message_id"]?.stringValue ?? "", emoji: emoji, action: emoji.isEmpty ? "remove" : "add"),
                                      peer: peer, dedupeKey: dedupe, occurredAt: at, raw: raw, channelData: channelData)
            return item
        case "system":
            // user_changed_number, customer_identity_changed…: shown in the conversation as a system message.
            let s = m["system"]
            origin = .system
            if let t = s?["type"]?.stringValue { channelData["system_type"] = .string(t) }
            if let w = s?["wa_id"]?.stringValue ?? s?["new_wa_id"]?.stringValue { channelData["new_wa_id"] = .string(w) }
            if let u = s?["user_id"]?.stringValue { channelData["new_user_id"] = .string(u) }
            if let i = m["identity"] { channelData["identity"] = i }
            // A changed number or business-scoped id re-keys the customer's identity: replies go
            // to the new number, and the conversation goes on.
            if let t = s?["type"]?.stringValue, t == "user_changed_number" || t == "user_changed_user_id",
               let moved = movedPeer(oldWA: m["from"]?.stringValue, oldUserID: m["from_user_id"]?.stringValue, system: s) {
                peer = moved
            }
            parts = [.text(s?["body"]?.stringValue ?? "WhatsApp system notice: \(s?["type"]?.stringValue ?? "unknown")")]
        case "edit":
            // The customer (or, as an echo, the business in the WhatsApp Business app) edited
            // a message. A text edit becomes `message.updated` of the original with the new
            // text, which the stored message then shows. Anything else (a media caption) is kept
            // as an unsupported message with the edit: `message.updated` replaces the message's
            // parts, and a media part re-read from the edit would drop the file already stored
            // (or race the original's download), so it is not applied.
            let edited = body?["message"]
            guard let original = body?["original_message_id"]?.stringValue, edited?["type"]?.stringValue == "text",
                  let text = edited?["text"]?["body"]?.stringValue else {
                let what = edited?["type"]?.stringValue.map { "of a \($0) message" } ?? "without the edited message"
                var description = "WhatsApp edit \(what)"
                if let type = edited?["type"]?.stringValue, let caption = edited?[type]?["caption"]?.stringValue { description += "; new caption: \(caption)" }
                if let o = body?["original_message_id"]?.stringValue { channelData["original_message_id"] = .string(o) }
                parts = [.unsupported(Open(UnsupportedFields(description: description, channelType: Self.type), extra: ["whatsapp_message": m]))]
                break
            }
            item.event = InboundEvent(.updated(externalID: original, parts: [.text(text)]), peer: peer, dedupeKey: wamid.map { "edit:\($0)" },
                                      occurredAt: at, raw: raw, channelData: channelData)
            return item
        case "revoke":
            // A message deleted for everyone ("revoke"): `message.deleted` of the original.
            guard let original = body?["original_message_id"]?.stringValue else {
                parts = [.unsupported(Open(UnsupportedFields(description: "WhatsApp revoke without the deleted message's id", channelType: Self.type),
                                           extra: ["whatsapp_message": m]))]
                break
            }
            item.event = InboundEvent(.deleted(externalID: original), peer: peer, dedupeKey: wamid.map { "revoke:\($0)" } ?? "revoke:\(original)",
                                      occurredAt: at, raw: raw, channelData: channelData)
            // A download of the deleted message's media still pending is called off with it
            // (`downloadMedia` publishes only while its job is on record): what the customer
            // deleted for everyone does not reach the helpdesk after the deletion.
            item.event.stateUpdates = [StateUpdate(key: WhatsAppMediaJob.key(original), value: nil)]
            return item
        case "request_welcome":
            // The customer opened the chat for the first time (a welcome-message trigger).
            item.event = InboundEvent(.custom("conversation.welcome_requested", ["whatsapp_message_id": .string(wamid ?? "")]), peer: peer,
                                      dedupeKey: dedupe, occurredAt: at, raw: raw, channelData: channelData)
            return item
        case "order":
            let o = body
            let lines = (o?["product_items"]?.arrayValue ?? []).map { p in
                "\(p["quantity"]?.intValue ?? 1) × \(p["product_retailer_id"]?.stringValue ?? "?")"
                    + (p["item_price"]?.doubleValue.map { " (\(formatPrice($0)) \(p["currency"]?.stringValue ?? ""))" } ?? "")
            }
            var description = "WhatsApp order"
            if !lines.isEmpty { description += ": " + lines.joined(separator: ", ") }
            parts = [.unsupported(Open(UnsupportedFields(description: description, channelType: Self.type), extra: ["whatsapp_order": o ?? .null]))]
            if let t = o?["text"]?.stringValue, !t.isEmpty { parts.insert(.text(t), at: 0) }
        case "unsupported":
            let what = m["unsupported"]?["type"]?.stringValue
            let err = m["errors"]?.arrayValue?.first
            let reason = err?["error_data"]?["details"]?.stringValue ?? err?["title"]?.stringValue ?? "not supported by the Cloud API"
            parts = [.unsupported(Open(UnsupportedFields(description: "WhatsApp \(what ?? "unknown") message: \(reason)", channelType: Self.type),
                                       extra: ["whatsapp_message": m]))]
        default:
            parts = [.unsupported(Open(UnsupportedFields(description: "WhatsApp \(type) message", channelType: Self.type), extra: ["whatsapp_message": m]))]
        }
        // Keyed by the wamid itself: the stored message is the dedupe record (see `dedupeKey`).
        item.event = InboundEvent(.message(InboundMessage(origin: origin, externalID: wamid, parts: parts, replyToExternalID: replyTo)),
                                  peer: peer, dedupeKey: wamid, occurredAt: at, raw: raw, channelData: channelData)
        return item
    }

    static func formatPrice(_ d: Double) -> String { d == d.rounded() ? String(Int64(d)) : String(d) }

    static func contactCard(_ c: JSONValue) -> Part {
        let n = c["name"]
        let name = n?["formatted_name"]?.stringValue
            ?? [n?["first_name"]?.stringValue, n?["last_name"]?.stringValue].compactMap { $0 }.joined(separator: " ")
        let phones = (c["phones"]?.arrayValue ?? []).compactMap { p -> ContactCardFields.Item? in
            p["phone"]?.stringValue.map { ContactCardFields.Item(value: $0, label: p["type"]?.stringValue) }
        }
        let emails = (c["emails"]?.arrayValue ?? []).compactMap { e -> ContactCardFields.Item? in
            e["email"]?.stringValue.map { ContactCardFields.Item(value: $0, label: e["type"]?.stringValue) }
        }
        let fields = ContactCardFields(name: name.isEmpty ? (phones.first?.value ?? "Contact") : name,
                                       phones: phones.isEmpty ? nil : phones, emails: emails.isEmpty ? nil : emails,
                                       org: c["org"]?["company"]?.stringValue)
        // Addresses, URLs, birthday and the phones' wa_ids stay with the part.
        return .contactCard(Open(fields, extra: ["whatsapp_contact": c]))
    }

    /// `interactive` replies: a reply button, a list row, a Flow completion, or another kind.
    static func interaction(_ i: JSONValue, message m: JSONValue) -> Part {
        let kind = i["type"]?.stringValue ?? "unknown"
        switch kind {
        case "button_reply":
            let b = i["button_reply"]
            return .interaction(Open(InteractionFields(kind: .buttonReply, payload: b?["id"]?.stringValue, title: b?["title"]?.stringValue)))
        case "list_reply":
            let l = i["list_reply"]
            var values: JSONObject? = nil
            if let d = l?["description"]?.stringValue { values = ["description": .string(d)] }
            return .interaction(Open(InteractionFields(kind: .listReply, payload: l?["id"]?.stringValue, title: l?["title"]?.stringValue, values: values)))
        case "nfm_reply":
            // A WhatsApp Flow was completed; `response_json` is a JSON string.
            let f = i["nfm_reply"]
            let values = f?["response_json"]?.stringValue.flatMap { try? JSONValue.parse(Data($0.utf8)) }?.objectValue
            return .interaction(Open(InteractionFields(kind: .formResponse, payload: f?["name"]?.stringValue, title: f?["body"]?.stringValue,
                                                       values: values)))
        default:
            if let inner = i[kind]?.objectValue {
                return .interaction(Open(InteractionFields(kind: InteractionKind(rawValue: kind), payload: inner["id"]?.stringValue,
                                                           title: inner["title"]?.stringValue ?? inner["body"]?.stringValue, values: inner)))
            }
            return .unsupported(Open(UnsupportedFields(description: "WhatsApp interactive \(kind) message", channelType: Self.type),
                                     extra: ["whatsapp_message": m]))
        }
    }

    /// One `statuses[]` element: a receipt for one of our messages.
    static func status(_ s: JSONValue, raw: RawPayload) -> WhatsAppItem {
        let id = s["id"]?.stringValue ?? ""
        let name = s["status"]?.stringValue ?? "unknown"
        let status: DeliveryStatus
        switch name {
        case "sent": status = .sent
        case "delivered": status = .delivered
        case "read", "played": status = .read // a voice note played has been heard, i.e. read
        case "failed": status = .failed
        default: status = DeliveryStatus(rawValue: name)
        }
        var error: StatusError? = nil
        if status == .failed {
            // `retryable` tells the helpdesk whether sending again later can work (a rate limit) or
            // not (131047: only a template now); the runtime does not resend on its own.
            if let e = s["errors"]?.arrayValue?.first {
                error = GraphError.statusError(code: e["code"]?.intValue.map { Int($0) }, title: e["title"]?.stringValue,
                                               message: e["message"]?.stringValue, details: e["error_data"]?["details"]?.stringValue)
            } else {
                error = StatusError(code: "channel_error", message: "WhatsApp reported the message failed without an error", retryable: false)
            }
        }
        let peer = Peer(channelUserID: s["recipient_id"]?.stringValue ?? s["recipient_user_id"]?.stringValue ?? "unknown")
        var channelData: JSONObject = ["whatsapp_status": .string(name)]
        for k in ["pricing", "conversation", "biz_opaque_callback_data", "recipient_user_id"] { if let v = s[k] { channelData[k] = v } }
        var event = InboundEvent(.status(externalID: id, status: status, error: error), peer: peer,
                                 dedupeKey: "status:\(id):\(name)", occurredAt: MetaWebhook.seconds(s["timestamp"]),
                                 raw: raw, channelData: channelData)
        // We put our message id there on every send: it finds the message even before the
        // send that returned this wamid is recorded.
        if let ours = s["biz_opaque_callback_data"]?.stringValue, ID.isValid(ours, kind: .message) { event.ourMessageID = ours }
        return WhatsAppItem(event: event)
    }
}
