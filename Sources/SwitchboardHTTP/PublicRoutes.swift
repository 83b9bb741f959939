import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import SwitchboardCore
import SwitchboardRuntime

/// The public listener: platform webhooks (`/webhooks/{channel id}`), a health check for
/// load balancers, and the pages and WebSockets a channel serves itself under
/// `/<area>/{channel id}/…` (`ChannelAdapter.publicArea`; the web chat widget uses `webchat`).
/// Nothing here is authenticated by us — each adapter verifies its platform's signature on the
/// raw bytes, or its own visitor tokens.
public enum PublicRoutes {
    /// Webhook bodies larger than this are refused before reaching an adapter.
    static let maxWebhookBytes = 4 * 1024 * 1024

    static func register(on router: Router<SwitchboardRequestContext>, runtime: Runtime) {
        router.get("healthz") { _, _ in
            try await runtime.store.ping()
            return Respond.raw(Data("ok\n".utf8), contentType: "text/plain")
        }
        // Stored media for platforms that fetch it themselves: only with a valid, unexpired
        // signature (made by AdapterContext.publicMediaURL), so ids alone reveal nothing.
        router.get("media/:id") { req, ctx in
            let id = try ctx.parameters.require("id")
            guard let exp = req.query("exp").flatMap(Int64.init), let sig = req.query("sig"),
                  runtime.mediaSigner.verify(mediaID: id, expires: exp, signature: sig) else {
                throw APIProblem(403, "forbidden", "missing, invalid or expired media signature")
            }
            guard let (info, bytes) = try await runtime.media.get(id) else { throw APIProblem.notFound("media \(id)") }
            let maxAge = max(0, exp - Int64(Date().timeIntervalSince1970))
            // Served from our own origin (the web chat's): never as a page that runs script.
            // Pictures, sound and video show inline; anything else is a download.
            var headers: HTTPFields = [.contentType: info.mimeType, .cacheControl: "public, max-age=\(maxAge)",
                                       .xContentTypeOptions: "nosniff",
                                       .contentSecurityPolicy: "default-src 'none'; sandbox"]
            if !Self.showsInline(info.mimeType) {
                headers[.contentDisposition] = Self.attachment(filename: info.filename)
            }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        let handler: @Sendable (Request, SwitchboardRequestContext) async throws -> Response = { req, ctx in
            let id = try ctx.parameters.require("channel")
            guard let entry = runtime.hub.entry(id) else { throw APIProblem.notFound("channel \(id)") }
            let webhook = try await webhookRequest(req, ctx, runtime: runtime)
            return response(await entry.adapter.handleWebhook(webhook, context: entry.context))
        }
        router.get("webhooks/:channel", use: handler)
        router.post("webhooks/:channel", use: handler)
        // `GET /`: a channel may serve a home page (the webchat demo page); otherwise 404.
        router.get("/") { req, ctx in
            let request = try await webhookRequest(req, ctx, runtime: runtime)
            for entry in runtime.hub.all where entry.adapter.publicArea != nil {
                if let answer = await entry.adapter.homePage(request, context: entry.context) { return response(answer) }
            }
            throw APIProblem.notFound("page /")
        }
    }

    /// Media types a browser shows without running anything: raster images, audio, video.
    static func showsInline(_ mimeType: String) -> Bool {
        let t = mimeType.lowercased()
        return ["image/png", "image/jpeg", "image/gif", "image/webp"].contains(t) || t.hasPrefix("audio/") || t.hasPrefix("video/")
    }

    /// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266), the name cleaned of quotes
    /// and line breaks.
    static func attachment(filename: String?) -> String {
        guard let name = filename, !name.isEmpty else { return "attachment" }
        let ascii = String(name.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0 != "\"" && $0 != "\\" ? Character($0) : "_" })
        let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ascii
        return "attachment; filename=\"\(ascii)\"; filename*=UTF-8''\(encoded)"
    }

    static func webhookRequest(_ req: Request, _ ctx: SwitchboardRequestContext, runtime: Runtime,
                               limit: Int = maxWebhookBytes) async throws -> WebhookRequest {
        let body: [UInt8]
        do { body = try await req.collect(limit: limit) } catch {
            throw APIProblem(413, "payload_too_large", "request body larger than \(limit) bytes")
        }
        var headers: [String: String] = [:]
        // Repeated fields are joined (RFC 9110): every X-Forwarded-For hop counts.
        for field in req.headers { headers[field.name.canonicalName] = headers[field.name.canonicalName].map { $0 + ", " + field.value } ?? field.value }
        if headers["host"] == nil, let authority = req.head.authority { headers["host"] = authority }
        var query: [String: String] = [:]
        for (k, v) in req.uri.queryParameters { query[String(k)] = String(v) }
        return WebhookRequest(method: req.method.rawValue, path: req.uri.path, query: query, headers: headers, body: body,
                              remoteAddress: clientAddress(peer: ctx.remoteAddress, headers: headers, runtime: runtime))
    }

    /// The client's address: the peer's, or the one a trusted proxy forwarded (lower-cased
    /// header names).
    static func clientAddress(peer: String?, headers: [String: String], runtime: Runtime) -> String? {
        // Only requests carrying a forwarding header need the (locked) proxy settings.
        guard TrustedProxies.Header.allCases.contains(where: { headers[$0.rawValue] != nil }) else { return peer }
        return runtime.trustedProxies.clientAddress(peer: peer, headers: headers)
    }

    static func response(_ answer: WebhookResponse) -> Response {
        var fields = HTTPFields()
        for (k, v) in answer.headers { if let name = HTTPField.Name(k) { fields[name] = v } }
        return Response(status: .init(code: answer.status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// Splits `/<area>/<channel id>/<subpath>` and finds a channel serving that area.
    static func publicTarget(path: String, runtime: Runtime) -> (entry: ChannelHub.Entry, subpath: String)? {
        let segments = path.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).dropFirst()
        guard segments.count >= 2, let area = segments.first, !area.isEmpty else { return nil }
        let id = String(segments[segments.startIndex + 1])
        guard let entry = runtime.hub.entry(id), let served = entry.adapter.publicArea, served == area else { return nil }
        let subpath = segments.count > 2 ? String(segments[segments.startIndex + 2]) : ""
        return (entry, subpath)
    }

    /// The HTTP/1.1 server of the public listener, with WebSocket upgrades offered to the channel
    /// that serves the path (`acceptLive`); every other request is ordinary HTTP.
    static func server(runtime: Runtime) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in PublicChildChannel(responder: responder, runtime: runtime) }
    }
}

/// Routes `/<area>/<channel id>/…` to the channel that serves that area (before the router, so
/// any method and any depth of path reach it); everything else passes through.
struct PublicAreaMiddleware: RouterMiddleware {
    typealias Context = SwitchboardRequestContext
    let runtime: Runtime

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let (entry, subpath) = PublicRoutes.publicTarget(path: request.uri.path, runtime: runtime) else {
            return try await next(request, context)
        }
        // A channel's upload path takes files up to media.max_bytes; every other path, the
        // webhook limit (a bigger body is buffered before the adapter checks anything).
        let limit = subpath == "upload" ? max(PublicRoutes.maxWebhookBytes, Int(clamping: runtime.media.maxBytes) + 64 * 1024)
            : PublicRoutes.maxWebhookBytes
        let webhook = try await PublicRoutes.webhookRequest(request, context, runtime: runtime, limit: limit)
        return PublicRoutes.response(await entry.adapter.handlePublic(webhook, subpath: subpath, context: entry.context))
    }
}
