import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SwitchboardCore
import SwitchboardRuntime

/// The request context of both listeners: who the caller is (an API token's name, or the Unix
/// socket) and where they came from.
public struct SwitchboardRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The authenticated principal: a token name, or `unix-socket`.
    public var principal: String?
    public var remoteAddress: String?
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress.flatMap { $0.ipAddress }
    }
    /// Uploads (`POST /v1/media`) are bounded by `media.max_bytes`; this is only the JSON limit.
    public var maxUploadSize: Int { 8 * 1024 * 1024 }
}

enum Respond {
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSON.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func raw(_ data: Data, contentType: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// RFC 9457 problem details with our stable `code`.
    static func problem(_ p: APIProblem, headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        headers.append(contentsOf: extra)
        return Response(status: .init(code: p.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: problemBody(p))))
    }

    /// The `application/problem+json` document for `p`.
    static func problemBody(_ p: APIProblem) -> [UInt8] {
        let body: JSONObject = [
            "type": .string("urn:switchboard:problem:\(p.code)"),
            "title": .string(title(p.code)),
            "status": .int(Int64(p.status)),
            "detail": .string(p.detail),
            "code": .string(p.code),
        ]
        return (try? JSON.bytes(body)) ?? []
    }

    static func title(_ code: String) -> String {
        switch code {
        case "not_found": "Not found"
        case "invalid_request": "Invalid request"
        case "unauthorized": "Unauthorized"
        case "window_closed": "Outside the channel's reply window"
        case "capability_unsupported": "Not supported by the channel"
        case "rate_limited": "Too many requests"
        case "idempotency_key_reused": "Idempotency key reused"
        case "method_not_allowed": "Method not allowed"
        case "payload_too_large": "Payload too large"
        case "channel_unavailable": "Channel unavailable"
        default: code.replacingOccurrences(of: "_", with: " ").capitalized
        }
    }
}

/// Turns every error into problem+json, so clients never see an HTML page or an empty 500.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = SwitchboardRequestContext
    let logger: Logger
    /// The listener's routes ("GET /v1/conversations/{id}"): a known path asked with another
    /// method gets 405 with `Allow` instead of 404.
    var routes: [String] = []

    /// The methods `routes` serve `path` with.
    static func allowedMethods(_ path: String, routes: [String]) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var methods: [String] = []
        for route in routes {
            let parts = route.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let template = parts[1].split(separator: "/", omittingEmptySubsequences: true)
            guard template.count == segments.count else { continue }
            let matches = zip(template, segments).allSatisfy { t, s in (t.hasPrefix("{") && t.hasSuffix("}")) || t == s }
            if matches && !methods.contains(String(parts[0])) { methods.append(String(parts[0])) }
        }
        return methods
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let p as APIProblem {
            return Respond.problem(p)
        } catch let e as DecodingError {
            return Respond.problem(.invalid(Self.describe(e)))
        } catch let e as JSONSyntaxError {
            return Respond.problem(.invalid("the body is not valid JSON (\(e.reason) at byte \(e.offset))"))
        } catch let e as HTTPError {
            switch e.status.code {
            case 404:
                let allowed = Self.allowedMethods(request.uri.path, routes: routes)
                if !allowed.isEmpty && !allowed.contains(request.method.rawValue) {
                    return Respond.problem(APIProblem(405, "method_not_allowed", "\(request.method) is not allowed on \(request.uri.path); use \(allowed.joined(separator: " or "))"),
                                           headers: [.allow: allowed.joined(separator: ", ")])
                }
                return Respond.problem(APIProblem(404, "not_found", "no route for \(request.method) \(request.uri.path)"))
            case 405: return Respond.problem(APIProblem(405, "method_not_allowed", "\(request.method) is not allowed on \(request.uri.path)"))
            case 413: return Respond.problem(APIProblem(413, "payload_too_large", e.body ?? "request body too large"))
            case 400..<500: return Respond.problem(APIProblem(Int(e.status.code), "invalid_request", e.body ?? e.status.reasonPhrase))
            default:
                logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(e)"])
                return Respond.problem(APIProblem(Int(e.status.code), "internal", e.status.reasonPhrase))
            }
        } catch {
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return Respond.problem(APIProblem(500, "internal", "internal error; see the daemon's log"))
        }
    }

    /// A decoding error as a readable sentence with the JSON path of the bad value.
    static func describe(_ e: DecodingError) -> String {
        func path(_ p: [any CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
        }
        switch e {
        case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): missing"
        case .typeMismatch(let t, let c): return "\(path(c.codingPath)): expected \(t)"
        case .valueNotFound(let t, let c): return "\(path(c.codingPath)): expected \(t), got null"
        case .dataCorrupted(let c):
            return c.codingPath.isEmpty ? "body is not valid JSON" : "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "invalid JSON"
        }
    }
}

/// Bearer-token authentication for the TCP API. The Unix socket is authorised by its file
/// permissions instead, so it installs this with `required: false`.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = SwitchboardRequestContext
    let tokens: @Sendable () -> [APIToken]
    let required: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        guard required else {
            context.principal = "unix-socket"
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else {
            return Respond.problem(APIProblem(401, "unauthorized", "send Authorization: Bearer <token>"), headers: [.wwwAuthenticate: "Bearer"])
        }
        let presented = Array(header.dropFirst(7).trimmingCharacters(in: .whitespaces).utf8)
        // Compare against every token in constant time, so timing reveals nothing.
        var match: String? = nil
        for t in tokens() where constantTimeEqual(Array(t.token.utf8), presented) { match = t.name }
        guard let match else {
            return Respond.problem(APIProblem(401, "unauthorized", "unknown token"), headers: [.wwwAuthenticate: "Bearer"])
        }
        context.principal = match
        return try await next(request, context)
    }
}

extension Request {
    func query(_ name: String) -> String? { uri.queryParameters.get(name) }

    func collect(limit: Int) async throws -> [UInt8] {
        var req = self
        let buffer = try await req.collectBody(upTo: limit)
        return Array(buffer.readableBytesView)
    }
}
