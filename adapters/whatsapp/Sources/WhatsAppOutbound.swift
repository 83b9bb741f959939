import Foundation
import MetaAdapter
import SwitchboardCore
import SwitchboardRuntime

extension WhatsAppChannelAdapter {
    static let maxBodyText = 1024
    static let maxButtonTitle = 20
    static let maxRowTitle = 24
    static let maxRowDescription = 72
    static let maxHeaderText = 60
    static let maxListBodyText = 4096
    static let maxCaption = 1024

    var messagesPath: String { "\(phoneNumberID)/messages" }

    // MARK: send

    /// One Graph call per WhatsApp message, in order; a retry after a partial success resumes
    /// after the calls that already went out (progress kept in the adapter state).
    public func send(_ out: OutboundMessage, context: any AdapterContext) async throws -> SendResult {
        try Self.checkNotMoved(out.recipient)
        let to = Self.recipientFields(out.recipient.channelUserID)
        var bodies: [JSONObject]
        if let override = out.rendered.override {
            bodies = try Self.overrideMessages(override)
        } else {
            bodies = []
            for part in out.rendered.parts { bodies += try await messages(for: part, out: out, context: context) }
        }
        guard !bodies.isEmpty else { throw SendError(code: "invalid_request", message: "nothing to send on WhatsApp", retryable: false) }
        // The quote goes on the first message only.
        let replyTarget = out.replyToExternalID
        let progressKey = "progress:\(out.message.id)"
        var progress = Progress(done: 0, ids: [])
        if bodies.count > 1, let s = try? await context.state.get(progressKey), let p = try? JSON.decode(Progress.self, from: Data(s.utf8)) {
            progress = p
        }
        for (i, b) in bodies.enumerated() where i >= progress.done {
            var body: JSONObject = ["messaging_product": "whatsapp", "recipient_type": "individual"]
            for (k, v) in to { body[k] = v }
            for (k, v) in b { body[k] = v }
            if i == 0, let replyTarget, body["type"]?.stringValue != "reaction" { body["context"] = ["message_id": .string(replyTarget)] }
            // Comes back in every status webhook of this message.
            body["biz_opaque_callback_data"] = .string(out.message.id)
            let answer: JSONValue
            do { answer = try await graph.post(messagesPath, json: .object(body)) } catch let e as GraphError {
                if e.isAuthExpired { problem.set(true) }
                throw e.sendError
            }
            guard let id = answer["messages"]?.arrayValue?.first?["id"]?.stringValue else {
                throw SendError(code: "channel_error", message: "WhatsApp accepted the message without returning its id", retryable: false)
            }
            progress.done = i + 1
            progress.ids.append(id)
            if bodies.count > 1 && i < bodies.count - 1 {
                try? await context.state.set(progressKey, JSON.string(progress))
            }
        }
        if bodies.count > 1 { try? await context.state.set(progressKey, nil) }
        await noteGraph(nil, context: context)
        return SendResult(externalIDs: progress.ids, channelData: ["whatsapp_calls": .int(Int64(bodies.count))])
    }

    struct Progress: Codable { var done: Int; var ids: [String] }

    /// `to` for a phone-number identity, `recipient` for a business-scoped user id.
    static func recipientFields(_ channelUserID: String) -> JSONObject {
        isBSUID(channelUserID) ? ["recipient": .string(channelUserID)] : ["to": .string(channelUserID)]
    }

    /// `overrides.whatsapp`: one message object (`{"type": …, …}`) or an array of them, without
    /// `messaging_product`/`to` (added here).
    static func overrideMessages(_ v: JSONValue) throws -> [JSONObject] {
        let list = v.arrayValue ?? [v]
        let objects = list.compactMap(\.objectValue)
        guard objects.count == list.count, !objects.isEmpty, objects.allSatisfy({ $0["type"]?.stringValue != nil }) else {
            throw SendError(code: "invalid_request", message: "overrides.whatsapp must be a WhatsApp message object with a type, or an array of them",
                            retryable: false)
        }
        return objects
    }

    /// The WhatsApp message objects for one rendered part (usually one; a caption that WhatsApp
    /// does not allow on audio/stickers follows as text).
    func messages(for part: Part, out: OutboundMessage, context: any AdapterContext) async throws -> [JSONObject] {
        switch part {
        case .text(let t):
            return Self.textMessages(t.text)
        case .media(let m):
            return try await mediaMessages(m, context: context)
        case .location(let l):
            var loc: JSONObject = ["latitude": .double(l.lat), "longitude": .double(l.long)]
            if let n = l.name { loc["name"] = .string(n) }
            if let a = l.address { loc["address"] = .string(a) }
            return [["type": "location", "location": .object(loc)]]
        case .contactCard(let c):
            return [["type": "contacts", "contacts": [Self.contact(c)]]]
        case .buttons(let b):
            return Self.buttonsMessages(text: b.text, actions: b.actions, header: nil)
        case .list(let l):
            return Self.listMessage(l)
        case .card(let c):
            return try await cardMessages(c, context: context)
        case .carousel(let car):
            var all: [JSONObject] = []
            for c in car.cards { all += try await cardMessages(c, context: context) }
            return all
        case .quickReplies(let q):
            // Not declared as native; kept for safety: reply buttons.
            let actions = q.options.map { Action(ActionFields(type: .reply, title: $0.title, id: $0.id, payload: $0.payload)) }
            return Self.buttonsMessages(text: q.text, actions: Array(actions.prefix(3)), header: nil)
        case .template(let t):
            return [Self.templateMessage(t)]
        case .reaction(let r):
            var target = r.targetExternalID
            if target == nil, let mid = r.targetMessageID, mid == out.message.replyTo?.messageID { target = out.replyToExternalID }
            if target == nil, r.targetMessageID == nil { target = out.replyToExternalID }
            guard let target else {
                throw SendError(code: "invalid_request", message: "a WhatsApp reaction needs target_external_id (the wamid), or reply_to the message reacted to",
                                retryable: false)
            }
            let emoji = r.action == "remove" ? "" : r.emoji
            return [["type": "reaction", "reaction": ["message_id": .string(target), "emoji": .string(emoji)]]]
        case .interaction, .unsupported:
            return []
        case .unknown:
            return part.textFallback.map { Self.textMessages($0) } ?? []
        }
    }

    static func textMessages(_ s: String) -> [JSONObject] {
        Renderer.split(s, max: 4096).filter { !$0.isEmpty }.map { chunk in
            let hasLink = chunk.contains("https://") || chunk.contains("http://")
            return ["type": "text", "text": ["body": .string(chunk), "preview_url": .bool(hasLink)]]
        }
    }

    static func truncate(_ s: String, _ max: Int) -> String {
        s.count <= max ? s : String(s.prefix(max - 1)) + "…"
    }

    static func contact(_ c: Open<ContactCardFields>) -> JSONValue {
        // Sent back as it came when it came from WhatsApp.
        if let original = c.extra["whatsapp_contact"], original.objectValue != nil { return original }
        let words = c.name.split(separator: " ", maxSplits: 1).map(String.init)
        var name: JSONObject = ["formatted_name": .string(c.name), "first_name": .string(words.first ?? c.name)]
        if words.count > 1 { name["last_name"] = .string(words[1]) }
        var o: JSONObject = ["name": .object(name)]
        if let p = c.phones, !p.isEmpty {
            o["phones"] = .array(p.map { item in
                var x: JSONObject = ["phone": .string(item.value)]
                if let l = item.label { x["type"] = .string(l) }
                return .object(x)
            })
        }
        if let e = c.emails, !e.isEmpty {
            o["emails"] = .array(e.map { item in
                var x: JSONObject = ["email": .string(item.value)]
                if let l = item.label { x["type"] = .string(l) }
                return .object(x)
            })
        }
        if let org = c.org { o["org"] = ["company": .string(org)] }
        return .object(o)
    }

    /// An interactive reply-button message (≤ 3 buttons, titles ≤ 20, body ≤ 1024), with an
    /// optional header (text or media object). A longer text goes first as text messages of its
    /// own, whole, and the buttons follow under a short prompt: nothing the agent wrote is cut.
    static func buttonsMessages(text: String, actions: [Action], header: JSONValue?) -> [JSONObject] {
        let (lead, body) = leadAndBody(text)
        let buttons: [JSONValue] = actions.prefix(3).map { a in
            ["type": "reply", "reply": ["id": .string(truncate(a.payload ?? a.id ?? a.title, 256)), "title": .string(truncate(a.title, maxButtonTitle))]]
        }
        var interactive: JSONObject = ["type": "button", "body": ["text": .string(body)], "action": ["buttons": .array(buttons)]]
        if let header { interactive["header"] = header }
        return lead + [["type": "interactive", "interactive": .object(interactive)]]
    }

    /// The body of an interactive message (≤ 1024 characters), and the text messages that go
    /// before it when the text is longer.
    static func leadAndBody(_ text: String) -> (lead: [JSONObject], body: String) {
        if text.isEmpty { return ([], "Please choose:") }
        if text.count <= maxBodyText { return ([], text) }
        return (textMessages(text), "Please choose:")
    }

    /// An interactive list (≤ 10 rows; button ≤ 20, row title ≤ 24, description ≤ 72, header ≤ 60).
    /// The renderer sends lists whose titles don't fit as numbered text, so the cuts below only
    /// guard the API's limits; a header too long for the header goes at the top of the body.
    static func listMessage(_ l: Open<ListFields>) -> [JSONObject] {
        let many = l.sections.count > 1
        let sections: [JSONValue] = l.sections.enumerated().map { i, s in
            var o: JSONObject = ["rows": .array(s.rows.map { r in
                var row: JSONObject = ["id": .string(truncate(r.id, 200)), "title": .string(truncate(r.title, maxRowTitle))]
                if let d = r.description, !d.isEmpty { row["description"] = .string(truncate(d, maxRowDescription)) }
                return .object(row)
            })]
            // Titles are required once there are several sections.
            if let t = s.title ?? (many ? "Options \(i + 1)" : nil) { o["title"] = .string(truncate(t, maxRowTitle)) }
            return .object(o)
        }
        var text = l.text
        let header = l.header ?? ""
        if header.count > maxHeaderText { text = text.isEmpty ? header : header + "\n" + text }
        // A body over the list's 4,096 characters goes first as text messages, whole.
        let lead = text.count > maxListBodyText ? textMessages(text) : []
        if !lead.isEmpty { text = "" }
        var interactive: JSONObject = [
            "type": "list", "body": ["text": .string(text.isEmpty ? "Please choose:" : text)],
            "action": ["button": .string(truncate(l.buttonText ?? "Choose", maxButtonTitle)), "sections": .array(sections)],
        ]
        if !header.isEmpty, header.count <= maxHeaderText { interactive["header"] = ["type": "text", "text": .string(header)] }
        return lead + [["type": "interactive", "interactive": .object(interactive)]]
    }

    static func templateMessage(_ t: Open<TemplateFields>) -> JSONObject {
        var template: JSONObject = ["name": .string(t.name), "language": ["code": .string(t.language ?? "en_US")]]
        if let c = t.components, !(c.arrayValue?.isEmpty ?? false), !c.isNull { template["components"] = c }
        return ["type": "template", "template": .object(template)]
    }

    /// A card: one interactive message — image header, title and subtitle as body, and either
    /// reply buttons (≤ 3) or one URL button (`cta_url`). Links and phone numbers that don't fit
    /// go into the body as text. Without actions: an image with a caption, or text.
    func cardMessages(_ c: Card, context: any AdapterContext) async throws -> [JSONObject] {
        var header: JSONObject? = nil
        if let id = c.mediaID {
            header = ["type": "image", "image": .object(try await mediaObject(mediaID: id, url: nil, context: context).0)]
        } else if let u = c.imageURL, u.hasPrefix("https://") || u.hasPrefix("http://") {
            header = ["type": "image", "image": ["link": .string(u)]]
        }
        let actions = c.actions ?? []
        let replies = actions.filter { $0.type == .reply || $0.type == .postback }
        let links = actions.filter { $0.type == .link }
        var lines = [c.title] + [c.subtitle].compactMap { $0 }
        if actions.isEmpty {
            if let h = header, let image = h["image"]?.objectValue {
                return Self.captioned(["type": "image", "image": .object(image)], type: "image", caption: lines.joined(separator: "\n"))
            }
            return Self.textMessages(lines.joined(separator: "\n"))
        }
        if replies.isEmpty && links.count == 1 {
            for a in actions where a.type == .call { lines.append("\(a.title): \(a.phone ?? "")") }
            let (lead, body) = Self.leadAndBody(lines.joined(separator: "\n"))
            var interactive: JSONObject = [
                "type": "cta_url", "body": ["text": .string(body)],
                "action": ["name": "cta_url", "parameters": ["display_text": .string(Self.truncate(links[0].title, Self.maxButtonTitle)),
                                                             "url": .string(links[0].url ?? "")]],
            ]
            if let header { interactive["header"] = .object(header) }
            return lead + [["type": "interactive", "interactive": .object(interactive)]]
        }
        for a in actions where a.type != .reply && a.type != .postback {
            if let l = a.type == .link ? a.url : a.phone { lines.append("\(a.title): \(l)") }
        }
        if replies.isEmpty {
            if let h = header, let image = h["image"]?.objectValue {
                return Self.captioned(["type": "image", "image": .object(image)], type: "image", caption: lines.joined(separator: "\n"))
            }
            return Self.textMessages(lines.joined(separator: "\n"))
        }
        return Self.buttonsMessages(text: lines.joined(separator: "\n"), actions: replies, header: header.map { .object($0) })
    }

    /// A customer who moved to a number that already had a conversation of its own keeps this
    /// identity without ids (see `IdentityFields.movedKeyPrefix`): nothing can reach them here.
    static func checkNotMoved(_ recipient: Identity) throws {
        guard recipient.channelUserID.hasPrefix(IdentityFields.movedKeyPrefix) else { return }
        throw SendError(code: "recipient_unavailable",
                        message: "this customer changed number and writes from another conversation now: reply there", retryable: false)
    }

    // MARK: media

    /// The `image`/`video`/`audio`/`document`/`sticker` message for a media part: our stored
    /// file uploaded to WhatsApp (`POST /<phone_number_id>/media`, cached for 29 days), or the
    /// part's own link.
    func mediaMessages(_ m: Open<MediaFields>, context: any AdapterContext) async throws -> [JSONObject] {
        let type = try Self.messageType(for: m)
        // A stored file goes up through the media endpoint, which refuses other types: say so
        // before trying (a link is Meta's to judge).
        if m.mediaID != nil, uploadMedia, let mime = Self.essence(m.mimeType), !Self.uploadTypes.contains(mime) {
            throw SendError(code: "capability_unsupported",
                            message: "WhatsApp does not take \(mime) files (it takes JPEG/PNG/WebP images, MP4/3GPP video, AAC/AMR/MP3/M4A/OGG audio, PDF, Office and text documents)",
                            retryable: false)
        }
        var (object, storedName) = try await mediaObject(mediaID: m.mediaID, url: m.url, context: context)
        if type == "document", let f = m.filename ?? storedName { object["filename"] = .string(f) }
        // A voice-note bubble needs OGG/Opus; other audio goes as an ordinary audio message.
        if m.kind == .voice, type == "audio", Self.essence(m.mimeType).map({ $0 == "audio/ogg" }) ?? true { object["voice"] = true }
        return Self.captioned(["type": .string(type), .init(stringLiteral: type): .object(object)], type: type, caption: m.caption ?? "")
    }

    /// The types and sizes WhatsApp takes for each kind of media message (reference §2.7).
    static let mediaRules: [String: (types: Set<String>, maxBytes: Int64)] = [
        "image": (["image/jpeg", "image/png"], 5 * 1024 * 1024),
        "video": (["video/mp4", "video/3gpp"], 16 * 1024 * 1024),
        "audio": (["audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"], 16 * 1024 * 1024),
        "sticker": (["image/webp"], 500 * 1024),
    ]
    static let maxDocumentBytes: Int64 = 100 * 1024 * 1024
    /// What `POST /<phone_number_id>/media` takes at all: anything else is refused there
    /// ("Param file must be a file with one of the following types").
    static let uploadTypes: Set<String> = [
        "audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg", "audio/opus",
        "text/plain", "application/pdf", "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "image/jpeg", "image/png", "image/webp", "video/mp4", "video/3gpp",
    ]

    /// The MIME type without parameters, lower-cased (`audio/ogg; codecs=opus` → `audio/ogg`).
    static func essence(_ mime: String?) -> String? {
        mime.map { $0.split(separator: ";").first.map(String.init) ?? $0 }?.trimmingCharacters(in: .whitespaces).lowercased()
    }

    /// The WhatsApp message type for a media part: its kind's, unless WhatsApp would refuse the
    /// file as that (a GIF image, a WebM video, a 20 MB photo): then a sticker falls back to an
    /// image, and anything else goes as a document (up to 100 MB), which WhatsApp delivers as a
    /// file the customer can open — rather than the send failing after the upload. A type or
    /// size we don't know (a link) is left to the kind. Over 100 MB nothing can carry it.
    static func messageType(for m: Open<MediaFields>) throws -> String {
        var type: String
        switch m.kind {
        case .image: type = "image"
        case .video: type = "video"
        case .audio, .voice: type = "audio"
        case .sticker: type = "sticker"
        default: type = "document"
        }
        func fits(_ t: String) -> Bool {
            guard let rule = mediaRules[t] else { return true }
            if let mime = essence(m.mimeType), !rule.types.contains(mime) { return false }
            if let size = m.size, size > rule.maxBytes { return false }
            return true
        }
        if type == "sticker", !fits("sticker") { type = "image" }
        if type != "document", !fits(type) { type = "document" }
        if let size = m.size, size > maxDocumentBytes {
            throw SendError(code: "too_large", message: "WhatsApp takes files up to 100 MB; this one is \(size) bytes", retryable: false)
        }
        return type
    }

    /// A media message with its caption: on the media when WhatsApp allows one there and it
    /// fits (≤ 1024), else as text messages right after it, whole.
    static func captioned(_ message: JSONObject, type: String, caption: String) -> [JSONObject] {
        guard !caption.isEmpty else { return [message] }
        guard type != "audio" && type != "sticker" && caption.count <= maxCaption, var object = message[type]?.objectValue else {
            return [message] + textMessages(caption)
        }
        object["caption"] = .string(caption)
        var out = message
        out[type] = .object(object)
        return [out]
    }

    /// `{"id": …}` (uploaded) or `{"link": …}`, and the stored file's name when known.
    func mediaObject(mediaID: String?, url: String?, context: any AdapterContext) async throws -> (JSONObject, String?) {
        if let mediaID {
            if uploadMedia {
                let (id, name) = try await uploadedID(mediaID, context: context)
                return (["id": .string(id)], name)
            }
            guard context.publicURL.hasPrefix("https://") else {
                throw SendError(code: "media_unreachable", message: "upload_media is off and server.public_url is not https: Meta cannot fetch the file",
                                retryable: false)
            }
            return (["link": .string(context.publicMediaURL(mediaID, validFor: 24 * 3600))], nil)
        }
        if let url, url.hasPrefix("https://") || url.hasPrefix("http://") { return (["link": .string(url)], nil) }
        throw SendError(code: "invalid_request", message: "a media part needs a media_id from /v1/media or an https url", retryable: false)
    }

    static func uploadKey(_ mediaID: String) -> String { "upload:\(mediaID)" }

    /// WhatsApp's id for one of our stored files (and the file's name), uploading it once (ids
    /// last 30 days; reused for 29). Kept as `upload:<med id>` = `<ms> <whatsapp id> <name>`.
    func uploadedID(_ mediaID: String, context: any AdapterContext) async throws -> (String, String?) {
        let now = Timestamp.now().milliseconds
        if let s = try? await context.state.get(Self.uploadKey(mediaID)) {
            let f = s.split(separator: " ", maxSplits: 2)
            if f.count >= 2, let at = Int64(f[0]), now - at < 29 * 86_400_000 { return (String(f[1]), f.count == 3 ? String(f[2]) : nil) }
        }
        guard let (stored, bytes) = try await context.media.get(mediaID) else {
            throw SendError(code: "invalid_request", message: "media \(mediaID) is not in the media store", retryable: false)
        }
        let answer: JSONValue
        do {
            answer = try await graph.upload("\(phoneNumberID)/media", fields: [("messaging_product", "whatsapp"), ("type", stored.mimeType)],
                                            file: bytes, mimeType: stored.mimeType, filename: stored.filename ?? mediaID)
        } catch let e as GraphError {
            if e.isAuthExpired { problem.set(true) }
            throw e.sendError
        }
        guard let id = Self.idString(answer["id"]) else {
            throw SendError(code: "channel_error", message: "WhatsApp media upload returned no id", retryable: true)
        }
        try? await context.state.set(Self.uploadKey(mediaID), "\(now) \(id)" + (stored.filename.map { " " + $0 } ?? ""))
        return (id, stored.filename)
    }

    // MARK: activity

    /// `mark_read`: marks the customer's latest message read (and, per WhatsApp, all before it).
    /// `typing_start`: the typing indicator (also marks read; WhatsApp hides it after 25 s or at
    /// our next message). `typing_stop`: nothing to call — WhatsApp has no stop.
    public func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws {
        try Self.checkNotMoved(recipient)
        if kind == .typingStop { return }
        guard let wamid = await lastInbound(conversation, context: context)?.wamid else {
            throw SendRejection(code: "invalid_request", status: 409, detail: "the customer has sent no message to mark read or answer yet")
        }
        var body: JSONObject = ["messaging_product": "whatsapp", "status": "read", "message_id": .string(wamid)]
        if kind == .typingStart { body["typing_indicator"] = ["type": "text"] }
        do {
            _ = try await graph.post(messagesPath, json: .object(body))
            await noteGraph(nil, context: context)
        } catch let e as GraphError {
            await noteGraph(e, context: context)
            throw e.sendError
        }
    }

    // MARK: inbound media

    /// `GET /<media id>` for a short-lived URL, then the authorised download into the media
    /// store; publishes the stored part as `message.updated` (or the part with `unavailable` set:
    /// `too_large`, `expired`, `download_failed`).
    func downloadMedia(_ job: WhatsAppMediaJob, context: any AdapterContext) async {
        var part = job.part
        switch await fetchMedia(job, context: context) {
        case .success(let media):
            part.mediaID = media.id
            part.mimeType = media.mimeType
            part.size = media.size
            part.sha256 = media.sha256
            part.filename = part.filename ?? media.filename
            part.unavailable = nil
        case .failure(let reason) where reason.reason == Unavailable.later:
            // Kept: the job stays in the adapter's state and runs again when the channel
            // starts (a reload with a new token restarts it). The media id stays valid for days.
            context.logger.warning("WhatsApp media download waits for a working access token; it resumes when the channel restarts",
                                   metadata: ["channel": "\(channel.id)", "message": "\(job.wamid)"])
            return
        case .failure(let reason) where reason.transient:
            // Graph or the network kept failing: the part stays `pending` and the download is
            // tried again later (in the state first, so a restart keeps the count), until
            // `media_retry_for` has passed.
            var later = job
            var retry = job.retry ?? DeferredRetry()
            if let delay = retry.next(lastQuickDelay: mediaRetryDelays.last ?? 1, window: mediaRetryFor) {
                later.retry = retry
                // Rewritten only while on record: a revoke that cleared it meanwhile stands.
                if let data = try? JSON.encode(later) {
                    let record = String(decoding: data, as: UTF8.self)
                    try? await context.state.update(WhatsAppMediaJob.key(job.wamid)) { old in old == nil ? nil : record }
                }
                context.logger.warning("WhatsApp media download failed again; trying later", metadata: [
                    "channel": "\(channel.id)", "message": "\(job.wamid)", "attempt": "\(retry.count)", "in": "\(delay)"])
                jobs.push(later, after: delay)
                return
            }
            context.logger.warning("WhatsApp media download given up", metadata: ["channel": "\(channel.id)", "message": "\(job.wamid)"])
            part.unavailable = reason.reason
        case .failure(let reason):
            part.unavailable = reason.reason
        }
        if Task.isCancelled { return }
        // Called off meanwhile: the message was deleted ("revoke" clears the job's record).
        // A state store that cannot be read does not stop the update.
        do {
            if try await context.state.get(WhatsAppMediaJob.key(job.wamid)) == nil {
                context.logger.info("WhatsApp media download dropped: its message was deleted", metadata: ["channel": "\(channel.id)", "message": "\(job.wamid)"])
                return
            }
        } catch {}
        let peer = Peer(channelUserID: job.peerID, displayName: job.peerName)
        let stored = await MetaWebhook.emitLater(InboundEvent(.updated(externalID: job.wamid, parts: [.media(part)]), peer: peer,
                                                              dedupeKey: "media:\(job.wamid)"), context: context)
        if stored { try? await context.state.set(WhatsAppMediaJob.key(job.wamid), nil) }
    }

    struct Unavailable: Error {
        var reason: String
        /// The quick retries ran out on errors that may pass (5xx, network): worth trying later.
        var transient = false
        /// Not a reason to publish: the download is tried again later.
        static let later = "later"
    }

    func fetchMedia(_ job: WhatsAppMediaJob, context: any AdapterContext) async -> Result<StoredMedia, Unavailable> {
        let limit = context.media.maxBytes
        var attempt = 0
        while true {
            do {
                let info = try await graph.get(job.mediaID, query: [("phone_number_id", phoneNumberID)])
                if let size = info["file_size"]?.intValue, size > limit { return .failure(Unavailable(reason: "too_large")) }
                guard let url = info["url"]?.stringValue else { return .failure(Unavailable(reason: "download_failed")) }
                let (bytes, mime) = try await graph.download(url: url, authorized: true, maxBytes: limit)
                let type = info["mime_type"]?.stringValue ?? job.part.mimeType ?? mime ?? "application/octet-stream"
                await noteGraph(nil, context: context)
                return .success(try await context.media.put(bytes, mimeType: type, filename: job.part.filename))
            } catch is MediaTooLarge {
                return .failure(Unavailable(reason: "too_large"))
            } catch let e as GraphError {
                await noteGraph(e, context: context)
                context.logger.info("WhatsApp media download failed", metadata: ["channel": "\(channel.id)", "message": "\(job.wamid)", "error": "\(e)"])
                // The file is still there; the token is not. Giving up would lose it for good.
                if e.isAuthExpired { return .failure(Unavailable(reason: Unavailable.later)) }
                // Webhook media ids expire after 7 days: Graph answers "not found" (100 / 404).
                if e.httpStatus == 404 || e.code == 100 { return .failure(Unavailable(reason: "expired")) }
                guard e.retryable else { return .failure(Unavailable(reason: "download_failed")) }
                guard attempt < mediaRetryDelays.count, !Task.isCancelled else { return .failure(Unavailable(reason: "download_failed", transient: !Task.isCancelled)) }
            } catch {
                context.logger.warning("cannot store WhatsApp media", metadata: ["channel": "\(channel.id)", "message": "\(job.wamid)", "error": "\(error)"])
                guard attempt < mediaRetryDelays.count, !Task.isCancelled else { return .failure(Unavailable(reason: "download_failed", transient: !Task.isCancelled)) }
            }
            do { try await Task.sleep(for: .milliseconds(Int64(mediaRetryDelays[attempt] * 1000))) } catch { return .failure(Unavailable(reason: "download_failed")) }
            attempt += 1
        }
    }
}
