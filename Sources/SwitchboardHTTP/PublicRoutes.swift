import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwitchboardCore
import SwitchboardRuntime

/// The public listener: platform webhooks (`/webhooks/{channel id}`) and a health check for
/// load balancers. Nothing here is authenticated by us — each adapter verifies its platform's
/// signature on the raw bytes.
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
            return Response(status: .ok, headers: [.contentType: info.mimeType, .cacheControl: "public, max-age=\(maxAge)"],
                            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        let handler: @Sendable (Request, SwitchboardRequestContext) async throws -> Response = { req, ctx in
            let id = try ctx.parameters.require("channel")
            guard let entry = runtime.hub.entry(id) else { throw APIProblem.notFound("channel \(id)") }
            let body: [UInt8]
            do { body = try await req.collect(limit: maxWebhookBytes) } catch {
                throw APIProblem(413, "payload_too_large", "webhook body larger than \(maxWebhookBytes) bytes")
            }
            var headers: [String: String] = [:]
            for field in req.headers { headers[field.name.canonicalName] = field.value }
            var query: [String: String] = [:]
            for (k, v) in req.uri.queryParameters { query[String(k)] = String(v) }
            let webhook = WebhookRequest(method: req.method.rawValue, path: req.uri.path, query: query, headers: headers, body: body,
                                         remoteAddress: ctx.remoteAddress)
            let answer = await entry.adapter.handleWebhook(webhook, context: entry.context)
            var fields = HTTPFields()
            for (k, v) in answer.headers { if let name = HTTPField.Name(k) { fields[name] = v } }
            return Response(status: .init(code: answer.status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
        }
        router.get("webhooks/:channel", use: handler)
        router.post("webhooks/:channel", use: handler)
    }
}
