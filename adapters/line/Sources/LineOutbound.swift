import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardCore

extension LineChannelAdapter {
    static let maxMessagesPerCall = 5
    static let maxTextUTF16 = 5000
    static let maxLabel = 20
    static let maxAltText = 400

    // MARK: send

    public func send(_ out: OutboundMessage, context: any AdapterContext) async throws -> SendResult {
        let to = Self.chatID(for: out.recipient.channelUserID)
        let objects: [JSONValue]
        if let override = out.rendered.override {
            objects = try Self.overrideMessages(override)
        } else {
            objects = try Self.messages(for: out.rendered.parts, publicURL: context.publicURL, mediaLink: { context.publicMediaURL($0, validFor: 30 * 86400) })
        }
        guard !objects.isEmpty else {
            throw SendError(code: "invalid_request", message: "nothing to send on LINE", retryable: false)
        }
        let batches = stride(from: 0, to: objects.count, by: Self.maxMessagesPerCall).map {
            Array(objects[$0..<min($0 + Self.maxMessagesPerCall, objects.count)])
        }
        // A retry after a partial success resumes after the calls that already went out.
        let progressKey = "progress:\(out.message.id)"
        var progress = Progress(done: 0, ids: [], via: [])
        if batches.count > 1, let s = try? await context.state.get(progressKey),
           let p = try? JSON.decode(Progress.self, from: Data(s.utf8)) { progress = p }
        for (i, batch) in batches.enumerated() where i >= progress.done {
            var ids: [String]? = nil
            var via = "push"
            if let replyToken = await claimReplyToken(chat: to, context: context) {
                do {
                    ids = try await call("/v2/bot/message/reply", body: ["replyToken": .string(replyToken), "messages": .array(batch)])
                    via = "reply"
                } catch let e as SendError where e.channelCode == "400" && e.message.lowercased().contains("reply token") {
                    context.logger.info("LINE reply token refused; pushing instead", metadata: ["channel": "\(channel.id)", "message": "\(out.message.id)"])
                }
            }
            if ids == nil {
                ids = try await call("/v2/bot/message/push", body: ["to": .string(to), "messages": .array(batch)],
                                     retryKey: Self.retryKey(messageID: out.message.id, batch: i))
            }
            progress.done = i + 1
            progress.ids += ids ?? []
            progress.via.append(via)
            if batches.count > 1 && i < batches.count - 1 {
                try? await context.state.set(progressKey, String(decoding: (try? JSON.encode(progress)) ?? Data(), as: UTF8.self))
            }
        }
        if batches.count > 1 { try? await context.state.set(progressKey, nil) }
        await clearProblem(context: context)
        return SendResult(externalIDs: progress.ids,
                          channelData: ["line_via": .array(progress.via.map { .string($0) }), "line_calls": .int(Int64(batches.count))])
    }

    struct Progress: Codable { var done: Int; var ids: [String]; var via: [String] }

    /// Takes the chat's reply token if it is still fresh; it is single-use, so it is removed
    /// whether or not the reply then succeeds.
    func claimReplyToken(chat: String, context: any AdapterContext) async -> String? {
        guard replyTokenTTL > 0, let s = try? await context.state.get(Self.replyKey(chat)) else { return nil }
        try? await context.state.set(Self.replyKey(chat), nil)
        let fields = s.split(separator: " ", maxSplits: 1)
        guard fields.count == 2, let at = Int64(fields[0]) else { return nil }
        let age = Double(Timestamp.now().milliseconds - at) / 1000
        return age < replyTokenTTL ? String(fields[1]) : nil
    }

    /// A UUID derived from our message id and the call's index: the same on every retry, so LINE
    /// delivers a retried push once (409 on the repeat).
    public static func retryKey(messageID: String, batch: Int) -> String {
        var b = Array(SHA256.hash(data: Array("switchboard-line-push:\(messageID):\(batch)".utf8)).prefix(16))
        b[6] = (b[6] & 0x0F) | 0x40 // version 4 layout
        b[8] = (b[8] & 0x3F) | 0x80 // RFC 4122 variant
        let hex = Hex.encode(b)
        let c = Array(hex)
        return [String(c[0..<8]), String(c[8..<12]), String(c[12..<16]), String(c[16..<20]), String(c[20..<32])].joined(separator: "-")
    }

    /// POSTs to the API; returns the sent message ids, or throws a classified `SendError`.
    func call(_ path: String, body: JSONObject, retryKey: String? = nil) async throws -> [String] {
        var headers: [(String, String)] = []
        if let retryKey { headers.append(("x-line-retry-key", retryKey)) }
        let req = request(apiBase + path, method: .POST, json: .object(body), headers: headers)
        let response: HTTPClientResponse
        do { response = try await client.execute(req, timeout: timeout) } catch {
            throw SendError(code: "channel_unreachable", message: "LINE API: \(error)", retryable: true)
        }
        let code = Int(response.status.code)
        let bytes = try? await response.body.collect(upTo: 1024 * 1024)
        let answer = bytes.flatMap { try? JSONValue.parse(Data($0.readableBytesView)) }
        if (200..<300).contains(code) {
            return answer?["sentMessages"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
        }
        if code == 409, retryKey != nil {
            // Already accepted under this retry key: the earlier attempt went out.
            return response.headers.first(name: "x-line-accepted-request-id").map { ["accepted:\($0)"] } ?? []
        }
        let error = Self.classify(status: code, body: answer, retryAfter: response.headers.first(name: "retry-after"))
        if error.channelState != nil { problem.set(true) }
        throw error
    }

    /// LINE's error answers as `SendError`s: a monthly-quota 429 is permanent, a rate-limit 429
    /// and 5xx are retried (honouring Retry-After), 400 is permanent with LINE's message, 401
    /// marks the channel `auth_expired`.
    static func classify(status code: Int, body: JSONValue?, retryAfter: String?) -> SendError {
        var message = body?["message"]?.stringValue ?? "LINE API answered \(code)"
        let details = (body?["details"]?.arrayValue ?? []).compactMap { d -> String? in
            guard let m = d["message"]?.stringValue else { return nil }
            return d["property"]?.stringValue.map { "\($0): \(m)" } ?? m
        }
        if !details.isEmpty { message += " (" + details.joined(separator: "; ") + ")" }
        let after = retryAfter.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        let channelCode = String(code)
        switch code {
        case 400:
            return SendError(code: "rejected", channelCode: channelCode, message: message, retryable: false)
        case 401:
            return SendError(code: "auth_expired", channelCode: channelCode, message: "channel access token refused: \(message)",
                             retryable: true, retryAfter: after ?? 60, channelState: .authExpired)
        case 403:
            return SendError(code: "forbidden", channelCode: channelCode, message: message, retryable: false)
        case 413:
            return SendError(code: "too_large", channelCode: channelCode, message: message, retryable: false)
        case 429 where message.lowercased().contains("monthly limit"):
            return SendError(code: "quota_exceeded", channelCode: channelCode, message: message, retryable: false)
        case 429:
            return SendError(code: "rate_limited", channelCode: channelCode, message: message, retryable: true, retryAfter: after)
        case 500..<600:
            return SendError(code: "channel_error", channelCode: channelCode, message: message, retryable: true, retryAfter: after)
        default:
            return SendError(code: "rejected", channelCode: channelCode, message: message, retryable: false)
        }
    }

    func clearProblem(context: any AdapterContext) async {
        let had = problem.exchange(false)
        if had { await context.reportStatus(.connected, detail: nil) }
    }

    // MARK: activity

    public func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws {
        let to = Self.chatID(for: recipient.channelUserID)
        switch kind {
        case .typingStart:
            guard to.hasPrefix("U"), !recipient.channelUserID.hasPrefix("group:"), !recipient.channelUserID.hasPrefix("room:") else {
                throw SendRejection(code: "capability_unsupported", status: 422, detail: "LINE shows the loading animation in 1:1 chats only")
            }
            _ = try await call("/v2/bot/chat/loading/start", body: ["chatId": .string(to), "loadingSeconds": 20])
        case .typingStop:
            // LINE has no stop call: the animation ends with our next message or after its time.
            return
        case .markRead:
            guard let token = try await context.state.get(Self.readKey(to)) else {
                throw SendRejection(code: "invalid_request", status: 409, detail: "no message of this chat carried a markAsReadToken yet")
            }
            _ = try await call("/v2/bot/chat/markAsRead", body: ["markAsReadToken": .string(token)])
        }
    }

    // MARK: message objects

    /// `overrides.line`: one message object, an array of them, or `{"messages": [...]}`.
    static func overrideMessages(_ v: JSONValue) throws -> [JSONValue] {
        if let a = v.arrayValue { return a }
        if let a = v["messages"]?.arrayValue { return a }
        if v["type"]?.stringValue != nil { return [v] }
        throw SendError(code: "invalid_request", message: "overrides.line must be a LINE message object, an array of them, or {\"messages\": [...]}",
                        retryable: false)
    }

    /// Renders parts (already within our declared capabilities) as LINE message objects.
    static func messages(for parts: [Part], publicURL: String, mediaLink: (String) -> String) throws -> [JSONValue] {
        var out: [JSONValue] = []
        func text(_ s: String) { for chunk in splitUTF16(s, max: maxTextUTF16) where !chunk.isEmpty { out.append(["type": "text", "text": .string(chunk)]) } }
        for part in parts {
            switch part {
            case .text(let t):
                text(t.text)
            case .media(let m):
                let label = m.caption ?? m.filename ?? m.kind.rawValue
                if m.kind == .sticker {
                    if let p = m.extra["package_id"].flatMap(idString), let s = m.extra["sticker_id"].flatMap(idString) {
                        out.append(["type": "sticker", "packageId": .string(p), "stickerId": .string(s)])
                    } else {
                        text("[sticker: \(label)]")
                    }
                    continue
                }
                let url = try mediaURL(m, publicURL: publicURL, mediaLink: mediaLink)
                switch m.kind {
                case .image:
                    let preview = m.extra["preview_url"]?.stringValue.flatMap { $0.hasPrefix("https://") ? $0 : nil } ?? url
                    out.append(["type": "image", "originalContentUrl": .string(url), "previewImageUrl": .string(preview)])
                case .video:
                    if let preview = m.extra["preview_url"]?.stringValue, preview.hasPrefix("https://") {
                        out.append(["type": "video", "originalContentUrl": .string(url), "previewImageUrl": .string(preview)])
                    } else {
                        // LINE needs a preview image for a video; without one, send the link.
                        text("\(label): \(url)")
                        continue
                    }
                case .audio, .voice:
                    let duration = m.extra["duration_ms"]?.intValue ?? 60_000
                    out.append(["type": "audio", "originalContentUrl": .string(url), "duration": .int(duration)])
                default:
                    text("\(label): \(url)")
                    continue
                }
                if let caption = m.caption, !caption.isEmpty { text(caption) }
            case .location(let l):
                let title = truncate(l.name ?? "Location", 100)
                let address = truncate(l.address ?? String(format: "%.6f, %.6f", l.lat, l.long), 100)
                out.append(["type": "location", "title": .string(title), "address": .string(address),
                            "latitude": .double(l.lat), "longitude": .double(l.long)])
            case .quickReplies(let q):
                let items: [JSONValue] = q.options.map { o in
                    var item: JSONObject = ["type": "action", "action": quickReplyAction(o)]
                    if let img = o.imageURL, img.hasPrefix("https://") { item["imageUrl"] = .string(img) }
                    return .object(item)
                }
                let chunks = splitUTF16(q.text.isEmpty ? "Please choose:" : q.text, max: maxTextUTF16)
                for chunk in chunks.dropLast() { text(chunk) }
                out.append(["type": "text", "text": .string(chunks.last ?? "Please choose:"), "quickReply": ["items": .array(items)]])
            case .buttons(let b):
                out.append(buttonsMessage(b))
            case .card(let c):
                out.append(["type": "flex", "altText": .string(truncate(c.title, maxAltText)),
                            "contents": bubble(c, image: heroImage(c, publicURL: publicURL, mediaLink: mediaLink))])
            case .carousel(let car):
                let bubbles = car.cards.prefix(12).map { bubble($0, image: heroImage($0, publicURL: publicURL, mediaLink: mediaLink)) }
                let alt = car.cards.map(\.title).joined(separator: " / ")
                out.append(["type": "flex", "altText": .string(truncate(alt.isEmpty ? "Carousel" : alt, maxAltText)),
                            "contents": ["type": "carousel", "contents": .array(Array(bubbles))]])
            case .reaction, .interaction, .unsupported:
                continue
            default:
                if let t = part.textFallback, !t.isEmpty { text(t) }
            }
        }
        return quickReplyLast(out)
    }

    /// LINE shows the quick reply of the last message of a call only: whatever follows the
    /// quick replies (an image after the question), they move to the very last object (the
    /// last one asked for, when there are several).
    static func quickReplyLast(_ objects: [JSONValue]) -> [JSONValue] {
        var out = objects
        guard let last = out.lastIndex(where: { $0["quickReply"] != nil }), last != out.count - 1,
              case .object(var from) = out[last], case .object(var to) = out[out.count - 1] else { return out }
        to["quickReply"] = from["quickReply"]
        from["quickReply"] = nil
        out[last] = .object(from)
        out[out.count - 1] = .object(to)
        return out
    }

    /// A card's picture as LINE fetches it: its own https URL, or our stored copy as a signed
    /// public link (needs an https `server.public_url`).
    static func heroImage(_ c: Card, publicURL: String, mediaLink: (String) -> String) -> String? {
        publicLink(url: c.imageURL, mediaID: c.mediaID, publicURL: publicURL, mediaLink: mediaLink)
    }

    /// An https URL LINE can fetch: the given one, else a signed link to our stored copy.
    static func publicLink(url: String?, mediaID: String?, publicURL: String, mediaLink: (String) -> String) -> String? {
        if let u = url, u.hasPrefix("https://") { return u }
        if let id = mediaID, publicURL.hasPrefix("https://") { return mediaLink(id) }
        return nil
    }

    static func idString(_ v: JSONValue) -> String? { v.stringValue ?? v.intValue.map { String($0) } }

    /// LINE fetches media itself, over public HTTPS: the part's own https URL, or our stored copy
    /// as a signed, expiring link on the public listener (needs an https `server.public_url`).
    static func mediaURL(_ m: Open<MediaFields>, publicURL: String, mediaLink: (String) -> String) throws -> String {
        if let link = publicLink(url: m.url, mediaID: m.mediaID, publicURL: publicURL, mediaLink: mediaLink) { return link }
        throw SendError(code: "media_unreachable",
                        message: "LINE downloads media from public https URLs only: give the part an https url, or serve media publicly under an https server.public_url",
                        retryable: false)
    }

    static func truncate(_ s: String, _ max: Int) -> String {
        if s.utf16.count <= max { return s }
        var out = ""
        for ch in s {
            if out.utf16.count + ch.utf16.count > max - 1 { break }
            out.append(ch)
        }
        return out + "…"
    }

    /// Splits at line or word boundaries into chunks of at most `max` UTF-16 units (LINE's count),
    /// never inside a grapheme cluster.
    static func splitUTF16(_ text: String, max: Int) -> [String] {
        var chunks: [String] = []
        var rest = Substring(text)
        while rest.utf16.count > max {
            var end = rest.startIndex
            var units = 0
            var lastBreak: String.Index? = nil
            var i = rest.startIndex
            while i < rest.endIndex {
                let ch = rest[i]
                if units + ch.utf16.count > max { break }
                units += ch.utf16.count
                i = rest.index(after: i)
                end = i
                if ch == "\n" || ch == " " { lastBreak = i }
            }
            if end == rest.startIndex { end = rest.index(after: rest.startIndex) } // a single oversized grapheme
            let cut = lastBreak ?? end
            chunks.append(String(rest[rest.startIndex..<cut]).trimmingCharacters(in: .whitespacesAndNewlines))
            rest = rest[cut...].drop { $0 == " " || $0 == "\n" }
        }
        if !rest.isEmpty { chunks.append(String(rest)) }
        return chunks.filter { !$0.isEmpty }
    }

    static func quickReplyAction(_ o: QuickReplyOption) -> JSONValue {
        let label = truncate(o.title, maxLabel)
        if let payload = o.payload ?? o.id {
            return ["type": "postback", "label": .string(label), "data": .string(truncate(payload, 300)),
                    "displayText": .string(truncate(o.title, 300))]
        }
        return ["type": "message", "label": .string(label), "text": .string(truncate(o.title, 300))]
    }

    static func action(_ a: Action) -> JSONValue {
        let label = truncate(a.title, maxLabel)
        switch a.type {
        case .link:
            return ["type": "uri", "label": .string(label), "uri": .string(a.url ?? "https://line.me")]
        case .call:
            return ["type": "uri", "label": .string(label), "uri": .string("tel:" + (a.phone ?? ""))]
        case .postback:
            return ["type": "postback", "label": .string(label), "data": .string(truncate(a.payload ?? a.id ?? a.title, 300))]
        default: // reply: the title shows as the customer's answer, the payload comes back as postback data
            if let payload = a.payload ?? a.id {
                return ["type": "postback", "label": .string(label), "data": .string(truncate(payload, 300)),
                        "displayText": .string(truncate(a.title, 300))]
            }
            return ["type": "message", "label": .string(label), "text": .string(truncate(a.title, 300))]
        }
    }

    /// A buttons template when the text fits (≤ 160 characters, ≤ 4 actions), else a Flex bubble.
    static func buttonsMessage(_ b: Open<ButtonsFields>) -> JSONValue {
        let alt = truncate(b.text.isEmpty ? "Please choose" : b.text, maxAltText)
        if !b.text.isEmpty && b.text.utf16.count <= 160 && (1...4).contains(b.actions.count) {
            return ["type": "template", "altText": .string(alt),
                    "template": ["type": "buttons", "text": .string(b.text), "actions": .array(b.actions.map(action))]]
        }
        var body: [JSONValue] = []
        if !b.text.isEmpty { body.append(["type": "text", "text": .string(b.text), "wrap": true]) }
        return ["type": "flex", "altText": .string(alt), "contents": flexBubble(hero: nil, body: body, actions: b.actions)]
    }

    static func bubble(_ c: Card, image: String?) -> JSONValue {
        var body: [JSONValue] = [["type": "text", "text": .string(c.title.isEmpty ? " " : c.title), "weight": "bold", "size": "lg", "wrap": true]]
        if let s = c.subtitle, !s.isEmpty { body.append(["type": "text", "text": .string(s), "size": "sm", "color": "#666666", "wrap": true]) }
        return flexBubble(hero: image, body: body, actions: c.actions ?? [])
    }

    static func flexBubble(hero: String?, body: [JSONValue], actions: [Action]) -> JSONValue {
        var bubble: JSONObject = ["type": "bubble"]
        if let hero {
            bubble["hero"] = ["type": "image", "url": .string(hero), "size": "full", "aspectMode": "cover", "aspectRatio": "20:13"]
        }
        bubble["body"] = ["type": "box", "layout": "vertical", "spacing": "sm",
                          "contents": .array(body.isEmpty ? [["type": "text", "text": " "]] : body)]
        if !actions.isEmpty {
            bubble["footer"] = ["type": "box", "layout": "vertical", "spacing": "sm",
                                "contents": .array(actions.map { ["type": "button", "style": "link", "height": "sm", "action": action($0)] })]
        }
        return .object(bubble)
    }
}
