import Foundation
import SwitchboardCore
import SwitchboardRuntime

/// One webhook event translated: the event to commit plus what the adapter does after the commit.
struct Translation: Sendable {
    var event: InboundEvent
    /// Where replies go: the user, group or room id.
    var chatID: String
    var replyToken: String?
    var markAsReadToken: String?
    /// The LINE user who caused the event, for a profile look-up.
    var speakerID: String?
    var groupID: String?
    var roomID: String?
    var media: MediaJob?
}

struct MediaJob: Sendable {
    var messageID: String
    var part: Open<MediaFields>
    var peer: Peer
    var sender: Peer?
    var thread: String
    /// Put off after its quick retries failed on a transient problem.
    var retry: DeferredRetry?

    /// The job as kept in the adapter state until it is done (`media_job:<LINE message id>`),
    /// so downloads pending at a restart are resumed instead of leaving the part `pending`.
    struct Persisted: Codable {
        var messageID: String
        var part: Open<MediaFields>
        var peerID: String
        var peerName: String?
        var senderID: String?
        var senderName: String?
        var thread: String
        var retry: DeferredRetry?
    }
    var persisted: Persisted {
        Persisted(messageID: messageID, part: part, peerID: peer.channelUserID, peerName: peer.displayName,
                  senderID: sender?.channelUserID, senderName: sender?.displayName, thread: thread, retry: retry)
    }
    init(messageID: String, part: Open<MediaFields>, peer: Peer, sender: Peer?, thread: String) {
        self.messageID = messageID; self.part = part; self.peer = peer; self.sender = sender; self.thread = thread
    }
    init(_ p: Persisted) {
        self.init(messageID: p.messageID, part: p.part, peer: Peer(channelUserID: p.peerID, displayName: p.peerName),
                  sender: p.senderID.map { Peer(channelUserID: $0, displayName: p.senderName) }, thread: p.thread)
        retry = p.retry
    }
    static func key(_ messageID: String) -> String { "media_job:\(messageID)" }
}

struct ProfileJob: Sendable {
    var userID: String
    var groupID: String?
    var roomID: String?
    var peer: Peer
    var thread: String
}

extension LineChannelAdapter {
    /// Turns one LINE webhook event into the common format. Pure: no I/O.
    ///
    /// Conversations: a 1:1 chat is the user (`thread "*"`); a group or room is the peer
    /// `group:<groupId>` / `room:<roomId>` with the group/room id as thread, and the speaking
    /// user as `sender`. Follow, unfollow, join, leave, memberJoined and memberLeft become
    /// `conversation.followed|unfollowed|joined|left|member_joined|member_left` events; unknown
    /// types become a message with an `unsupported` part (the raw event kept).
    static func translate(_ e: JSONValue, raw: [UInt8], rawParsed: JSONValue? = nil, destination: String? = nil) -> Translation {
        let type = e["type"]?.stringValue ?? "unknown"
        let source = e["source"]
        let userID = source?["userId"]?.stringValue
        let groupID = source?["groupId"]?.stringValue
        let roomID = source?["roomId"]?.stringValue
        var peer: Peer
        var sender: Peer? = nil
        var thread = "*"
        let chatID: String
        if let g = groupID {
            peer = Peer(channelUserID: "group:" + g); thread = g; chatID = g
            sender = userID.map { Peer(channelUserID: $0) }
        } else if let r = roomID {
            peer = Peer(channelUserID: "room:" + r); thread = r; chatID = r
            sender = userID.map { Peer(channelUserID: $0) }
        } else if let u = userID {
            peer = Peer(channelUserID: u); chatID = u
        } else {
            // accountLink with a failed link, module events…: no source. Keep it on a channel-level identity.
            let who = destination ?? "unknown"
            peer = Peer(channelUserID: "line:" + who); chatID = who
        }
        let webhookEventID = e["webhookEventId"]?.stringValue
        let timestamp = e["timestamp"]?.intValue.map { Timestamp(milliseconds: $0) }
        var channelData: JSONObject = ["line_event_type": .string(type)]
        if let w = webhookEventID { channelData["webhook_event_id"] = .string(w) }
        if let m = e["mode"]?.stringValue { channelData["mode"] = .string(m) }
        if e["deliveryContext"]?["isRedelivery"]?.boolValue == true { channelData["redelivery"] = true }
        if let s = source?.objectValue { channelData["source"] = .object(s) }
        // Standby mode: another module owns the chat; its token must not be used.
        let replyToken = e["mode"]?.stringValue == "standby" ? nil : e["replyToken"]?.stringValue
        let dedupe = webhookEventID.map { "evt:\($0)" }
        let rawPayload = RawPayload(format: "json", bytes: raw, parsed: rawParsed ?? e)
        var t = Translation(event: InboundEvent(.identityUpdated, peer: peer), chatID: chatID, replyToken: replyToken,
                            speakerID: userID, groupID: groupID, roomID: roomID)

        func message(_ parts: [Part], externalID: String?, replyTo: String? = nil) -> InboundEvent {
            InboundEvent(.message(InboundMessage(externalID: externalID, parts: parts, replyToExternalID: replyTo)), peer: peer,
                         sender: sender, thread: thread, dedupeKey: dedupe, occurredAt: timestamp, raw: rawPayload, channelData: channelData)
        }
        func custom(_ name: String, _ data: JSONObject) -> InboundEvent {
            var d = data
            d["line_event_type"] = .string(type)
            if let u = userID { d["user_id"] = .string(u) }
            if let g = groupID { d["group_id"] = .string(g) }
            if let r = roomID { d["room_id"] = .string(r) }
            return InboundEvent(.custom(EventType(rawValue: name), d), peer: peer, sender: sender, thread: thread, dedupeKey: dedupe,
                                occurredAt: timestamp, raw: rawPayload, channelData: channelData)
        }
        func members(_ v: JSONValue?) -> JSONValue {
            .array((v?["members"]?.arrayValue ?? []).compactMap { $0["userId"].map { .string($0.stringValue ?? "") } })
        }

        switch type {
        case "message":
            let m = e["message"] ?? .object([:])
            let id = m["id"]?.stringValue ?? m["id"]?.intValue.map { String($0) }
            if let q = m["quoteToken"]?.stringValue { channelData["quote_token"] = .string(q) }
            if let r = m["markAsReadToken"]?.stringValue { channelData["mark_as_read_token"] = .string(r); t.markAsReadToken = r }
            let quoted = m["quotedMessageId"]?.stringValue
            var parts: [Part] = []
            switch m["type"]?.stringValue ?? "" {
            case "text":
                var extra: JSONObject = [:]
                // Emoji and mention ranges (UTF-16 offsets into `text`) stay with the text part.
                if let emojis = m["emojis"] { extra["emojis"] = emojis; channelData["emojis"] = emojis }
                if let mention = m["mention"] { extra["mention"] = mention; channelData["mention"] = mention }
                parts = [.text(Open(TextFields(text: m["text"]?.stringValue ?? ""), extra: extra))]
            case let kind where ["image", "video", "audio", "file"].contains(kind):
                var fields = MediaFields(kind: MediaKind(rawValue: kind))
                var extra: JSONObject = ["line_message_id": .string(id ?? "")]
                if let d = m["duration"]?.intValue { extra["duration_ms"] = .int(d) }
                if let set = m["imageSet"] { extra["image_set"] = set }
                if kind == "file" {
                    fields.filename = m["fileName"]?.stringValue
                    fields.size = m["fileSize"]?.intValue
                }
                let provider = m["contentProvider"]?["type"]?.stringValue ?? "line"
                if provider == "external" {
                    // Hosted by a third party: LINE's content API can't serve it; keep the links.
                    fields.url = m["contentProvider"]?["originalContentUrl"]?.stringValue
                    if let p = m["contentProvider"]?["previewImageUrl"]?.stringValue { extra["preview_url"] = .string(p) }
                    fields.unavailable = fields.url == nil ? "not_downloadable" : nil
                    parts = [.media(Open(fields, extra: extra))]
                } else if let id {
                    // Committed at once; the content follows as message.updated once downloaded.
                    fields.url = "line-content:\(id)"
                    fields.unavailable = "pending"
                    let part = Open(fields, extra: extra)
                    parts = [.media(part)]
                    t.media = MediaJob(messageID: id, part: part, peer: peer, sender: sender, thread: thread)
                } else {
                    fields.unavailable = "download_failed"
                    parts = [.media(Open(fields, extra: extra))]
                }
            case "location":
                let lat = m["latitude"]?.doubleValue ?? 0, long = m["longitude"]?.doubleValue ?? 0
                parts = [.location(Open(LocationFields(lat: lat, long: long, name: m["title"]?.stringValue, address: m["address"]?.stringValue)))]
            case "sticker":
                var extra: JSONObject = [:]
                for (from, to) in [("packageId", "package_id"), ("stickerId", "sticker_id"), ("stickerResourceType", "sticker_resource_type"),
                                   ("keywords", "keywords"), ("text", "text")] {
                    if let v = m[from] { extra[to] = v }
                }
                // Not downloaded (the image belongs to its creator and has no content API); the
                // sticker CDN link is the conventional way to show it.
                let stickerID = m["stickerId"]?.stringValue ?? m["stickerId"]?.intValue.map { String($0) }
                var fields = MediaFields(kind: .sticker, caption: m["text"]?.stringValue
                                         ?? m["keywords"]?.arrayValue?.compactMap(\.stringValue).first)
                if let s = stickerID { fields.url = "https://stickershop.line-scdn.net/stickershop/v1/sticker/\(s)/android/sticker.png" }
                parts = [.media(Open(fields, extra: extra))]
            default:
                parts = [.unsupported(Open(UnsupportedFields(description: "LINE \(m["type"]?.stringValue ?? "unknown") message",
                                                             channelType: Self.type), extra: ["line_message": m]))]
            }
            t.event = message(parts, externalID: id, replyTo: quoted)
        case "messageEdited":
            let m = e["message"] ?? .object([:])
            let id = m["id"]?.stringValue ?? ""
            var extra: JSONObject = [:]
            if let emojis = m["emojis"] { extra["emojis"] = emojis }
            if let mention = m["mention"] { extra["mention"] = mention }
            let part = Part.text(Open(TextFields(text: m["text"]?.stringValue ?? ""), extra: extra))
            t.event = InboundEvent(.updated(externalID: id, parts: [part]), peer: peer, sender: sender, thread: thread, dedupeKey: dedupe,
                                   occurredAt: timestamp, raw: rawPayload, channelData: channelData)
        case "unsend":
            let id = e["unsend"]?["messageId"]?.stringValue ?? ""
            t.event = InboundEvent(.deleted(externalID: id), peer: peer, sender: sender, thread: thread, dedupeKey: dedupe,
                                   occurredAt: timestamp, raw: rawPayload, channelData: channelData)
        case "postback":
            let pb = e["postback"]
            var values: JSONObject? = pb?["params"]?.objectValue
            if values?.isEmpty == true { values = nil }
            let interaction = InteractionFields(kind: .postback, payload: pb?["data"]?.stringValue, values: values)
            t.event = message([.interaction(Open(interaction))], externalID: nil)
        case "follow":
            t.event = custom("conversation.followed", ["is_unblocked": .bool(e["follow"]?["isUnblocked"]?.boolValue ?? false)])
        case "unfollow":
            t.event = custom("conversation.unfollowed", [:])
            t.speakerID = nil // a blocked account's profile can't be read
        case "join":
            t.event = custom("conversation.joined", [:])
        case "leave":
            t.event = custom("conversation.left", [:])
        case "memberJoined":
            t.event = custom("conversation.member_joined", ["members": members(e["joined"])])
            t.speakerID = nil
        case "memberLeft":
            t.event = custom("conversation.member_left", ["members": members(e["left"])])
            t.speakerID = nil
        default:
            // beacon, accountLink, videoPlayComplete, membership, module, delivery, things and
            // anything LINE adds later: kept whole, never dropped.
            var detail: JSONObject = ["line_event": e]
            detail["line_event_type"] = .string(type)
            t.event = message([.unsupported(Open(UnsupportedFields(description: "LINE \(type) event", channelType: Self.type), extra: detail))],
                              externalID: nil)
        }
        return t
    }
}
