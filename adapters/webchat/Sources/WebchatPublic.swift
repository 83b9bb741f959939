import Foundation
import SwitchboardCore

/// The widget's files, read once from the bundle.
enum WebchatAssets {
    static let files: [String: [UInt8]] = {
        var out: [String: [UInt8]] = [:]
        for name in ["widget.js", "chat.html", "chat.js", "chat.css", "demo.html"] {
            let parts = name.split(separator: ".", maxSplits: 1)
            if let url = Bundle.module.url(forResource: String(parts[0]), withExtension: String(parts[1]), subdirectory: "Assets")
                ?? Bundle.module.url(forResource: String(parts[0]), withExtension: String(parts[1])),
               let data = try? Data(contentsOf: url) {
                out[name] = Array(data)
            }
        }
        return out
    }()

    static func get(_ name: String) -> [UInt8]? { files[name] }
}

extension WebchatChannelAdapter {
    static let securityHeaders = ["x-content-type-options": "nosniff", "referrer-policy": "no-referrer"]

    /// `frame-ancestors` for the chat page: the channel's allowed origins (or only ourselves).
    var frameAncestors: String {
        let list = settings.allowedOrigins
        if list.contains("*") { return "*" }
        return (["'self'"] + list).joined(separator: " ")
    }

    func asset(_ name: String, type: String, cache: String, extra: [String: String] = [:]) -> WebhookResponse {
        guard let bytes = WebchatAssets.get(name) else { return .text(500, "asset \(name) missing from the build") }
        var headers = Self.securityHeaders.merging(extra) { $1 }
        headers["content-type"] = type
        headers["cache-control"] = cache
        return WebhookResponse(status: 200, headers: headers, body: bytes)
    }

    func json(_ status: Int, _ o: JSONObject) -> WebhookResponse {
        WebhookResponse(status: status, headers: ["content-type": "application/json", "cache-control": "no-store"],
                        body: Array(JSON.string(JSONValue.object(o)).utf8))
    }

    func problem(_ status: Int, _ code: String, _ detail: String) -> WebhookResponse {
        json(status, ["code": .string(code), "detail": .string(detail)])
    }

    public func handlePublic(_ request: WebhookRequest, subpath: String, context: any AdapterContext) async -> WebhookResponse {
        switch (request.method, subpath) {
        case ("GET", "widget.js"):
            // Short cache: a new daemon version reaches sites within minutes.
            return asset("widget.js", type: "text/javascript; charset=utf-8", cache: "public, max-age=300",
                         extra: ["access-control-allow-origin": "*"])
        case ("GET", "chat"):
            // Pictures from https too: card images and media sent by URL.
            let csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https:; "
                + "connect-src 'self' ws: wss:; form-action 'none'; base-uri 'none'; frame-ancestors \(frameAncestors)"
            return asset("chat.html", type: "text/html; charset=utf-8", cache: "no-cache", extra: ["content-security-policy": csp])
        case ("GET", "chat.js"):
            return asset("chat.js", type: "text/javascript; charset=utf-8", cache: "public, max-age=3600")
        case ("GET", "chat.css"):
            return asset("chat.css", type: "text/css; charset=utf-8", cache: "public, max-age=3600")
        case ("GET", "config"):
            var c = publicConfig()
            c["position"] = .string(settings.position); c["color"] = .string(settings.color)
            if let l = settings.locale { c["locale"] = .string(l) }
            c["hours"] = hoursStatus()
            return json(200, c)
        case ("GET", "history"):
            return await history(request, context: context)
        case ("POST", "upload"):
            return await upload(request, context: context)
        case ("POST", "logout"):
            // SwitchboardChat.reset() at the site's sign-out: the token stops opening the chat
            // (over HTTP, so it works whether or not the widget's socket is up).
            guard let token = bearer(request) else { return problem(401, "unauthorized", "the visitor's token is required") }
            do {
                try await context.state.set(Self.tokenKey(token), nil)
                return WebhookResponse(status: 204, headers: [:], body: [])
            } catch {
                context.logger.error("webchat logout failed", metadata: ["error": "\(error)"])
                return problem(500, "internal", "try again later")
            }
        case ("GET", "ws"):
            return problem(400, "websocket_required", "this path takes a WebSocket upgrade from the widget's own origin")
        case ("GET", "demo") where settings.demoPage:
            return demoPage()
        default:
            return problem(404, "not_found", "no such webchat path")
        }
    }

    public func homePage(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse? {
        settings.demoPage ? demoPage() : nil
    }

    func demoPage() -> WebhookResponse {
        guard let bytes = WebchatAssets.get("demo.html") else { return .text(500, "demo page missing from the build") }
        let html = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "{{CHANNEL}}", with: channel.id)
        return WebhookResponse(status: 200, headers: ["content-type": "text/html; charset=utf-8", "cache-control": "no-cache"]
                                .merging(Self.securityHeaders) { $1 }, body: Array(html.utf8))
    }

    /// `GET history?after=<seq>&limit=<n>` with the visitor's token as a bearer token.
    func history(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse {
        do {
            guard let token = bearer(request), let peer = try await peer(forToken: token, context: context) else {
                return problem(401, "unauthorized", "send Authorization: Bearer <visitor token>")
            }
            let after = request.query["after"].flatMap { Int64($0) } ?? 0
            let limit = min(request.query["limit"].flatMap { Int($0) } ?? 100, settings.historyLimit)
            let entries = try await LogWriter.entries(peer: peer, after: after, limit: max(1, limit), context: context)
            let messages: [JSONValue] = entries.compactMap { try? JSONValue.parse(Array(frame($0, context: context).utf8)) }
            return json(200, ["messages": .array(messages), "last_seq": .int(try await log.lastSeq(peer: peer, context: context))])
        } catch {
            context.logger.error("webchat history failed", metadata: ["error": "\(error)"])
            return problem(500, "internal", "try again later")
        }
    }

    /// `POST upload` (raw body, `Content-Type` the file's type, optional `X-Filename`): into the
    /// media store; the answer's `media_id` goes into a `media` part of the next message.
    func upload(_ request: WebhookRequest, context: any AdapterContext) async -> WebhookResponse {
        do {
            guard let token = bearer(request), let peer = try await peer(forToken: token, context: context) else {
                return problem(401, "unauthorized", "send Authorization: Bearer <visitor token>")
            }
            let type = (request.header("content-type") ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
            guard settings.uploadTypes.contains(type) else {
                return problem(415, "unsupported_type", "allowed types: \(settings.uploadTypes.joined(separator: ", "))")
            }
            guard !request.body.isEmpty else { return problem(400, "empty", "the body is empty") }
            let limit = min(settings.uploadMaxBytes, context.media.maxBytes)
            guard request.body.count <= limit else { return problem(413, "payload_too_large", "files are limited to \(limit) bytes") }
            guard Self.sniff(request.body, matches: type) else { return problem(415, "type_mismatch", "the file's content is not \(type)") }
            if let wait = limits.message(peer: peer, ip: request.remoteAddress) {
                return WebhookResponse(status: 429, headers: ["retry-after": String(Int(wait.rounded(.up))), "content-type": "application/json"],
                                       body: Array(#"{"code":"slow_down","detail":"too many uploads"}"#.utf8))
            }
            // The widget sends the name percent-encoded (header values are ASCII).
            let filename = request.header("x-filename").map { raw in
                String((raw.removingPercentEncoding ?? raw).filter { $0 != "/" && $0 != "\\" && !$0.isNewline }.prefix(120))
            }
            let stored = try await context.media.put(request.body, mimeType: type, filename: filename)
            try await context.state.set("up:\(peer):\(stored.id)", JSON.string(stored))
            return json(200, ["media_id": .string(stored.id), "mime_type": .string(stored.mimeType), "size": .int(stored.size),
                              "url": .string(Self.mediaLink(stored.id, context: context))])
        } catch is MediaTooLarge {
            return problem(413, "payload_too_large", "file too large")
        } catch {
            context.logger.error("webchat upload failed", metadata: ["error": "\(error)"])
            return problem(500, "internal", "try again later")
        }
    }

    /// The first bytes must fit the claimed type, so an upload can't be HTML posing as an image.
    static func sniff(_ b: [UInt8], matches type: String) -> Bool {
        func starts(_ sig: [UInt8]) -> Bool { b.count >= sig.count && Array(b.prefix(sig.count)) == sig }
        switch type {
        case "image/png": return starts([0x89, 0x50, 0x4E, 0x47])
        case "image/jpeg": return starts([0xFF, 0xD8, 0xFF])
        case "image/gif": return starts(Array("GIF8".utf8))
        case "image/webp": return b.count > 12 && starts(Array("RIFF".utf8)) && Array(b[8..<12]) == Array("WEBP".utf8)
        case "application/pdf": return starts(Array("%PDF".utf8))
        default: return true
        }
    }
}
