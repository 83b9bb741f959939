import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
@testable import SwitchboardCore

/// A fake Graph API (graph.facebook.com / graph.instagram.com and the media CDN/lookaside hosts,
/// all on one loopback port) for the WhatsApp, Messenger and Instagram tests.
///
/// - Records every request: method, path, query, headers (lower-cased), raw body, parsed JSON,
///   and for multipart uploads the text fields and the file.
/// - Checks the access token (`Authorization: Bearer` or `access_token=`): anything else gets
///   Graph's documented 190 answer.
/// - Answers by default like the documented API: `POST …/messages` (WhatsApp when the body has
///   `messaging_product`, else Messenger/Instagram), `POST …/media` and `…/message_attachments`
///   uploads, `GET /<media id>` for media registered with `serveWhatsAppMedia`.
/// - Serves files at paths a test chooses (`serveFile`), with or without the bearer token.
/// - Lets a test queue canned answers per method+path (`queue`), e.g. documented Graph error
///   bodies (`FakeGraph.graphError`); queued answers are used first, in order.
/// - Notes WhatsApp Send-API rule violations (`violations`), e.g. > 3 buttons or a title > 20.
final class FakeGraph: Sendable {
    struct Recorded: Sendable {
        var method: String
        var path: String
        var query: [String: String]
        var headers: [String: String]
        var bytes: [UInt8]
        var json: JSONValue?
        /// Multipart uploads: the text fields, and the file part's bytes, type and filename.
        var form: [String: String] = [:]
        var file: [UInt8]?
        var fileType: String?
        var fileName: String?
    }
    struct Answer: Sendable {
        var status: Int
        var body: JSONValue
        var headers: [String: String] = [:]
        /// Answered after this long (a slow Graph call).
        var delay: Duration? = nil
        init(status: Int = 200, _ body: JSONValue, headers: [String: String] = [:], delay: Duration? = nil) {
            self.status = status; self.body = body; self.headers = headers; self.delay = delay
        }
    }
    struct File: Sendable {
        var bytes: [UInt8]
        var contentType: String
        var requireToken: Bool
        /// Send `Content-Length` (a chunked answer makes the client read to find the size).
        var contentLength: Bool = true
    }
    struct State {
        var requests: [Recorded] = []
        var violations: [String] = []
        var queued: [String: [Answer]] = [:]
        var files: [String: File] = [:]
        var media: [String: (path: String, mime: String, size: Int)] = [:]
        var nextID = 1000
    }
    private let state = Mutex(State())
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let base: String
    let token: String
    let version: String

    static let defaultToken = "EAAG-fake-graph-token"

    var requests: [Recorded] { state.withLock { $0.requests } }
    var violations: [String] { state.withLock { $0.violations } }
    func requests(_ method: String, _ path: String) -> [Recorded] { requests.filter { $0.method == method && $0.path == path } }
    /// `/<version>/<path>` for a Graph path like `123/messages`.
    func graphPath(_ p: String) -> String { "/\(version)/\(p)" }

    /// Answers for `method path` (full path, e.g. `/v23.0/123/messages`), used in order before the default.
    func queue(_ method: String, _ path: String, _ answers: [Answer]) {
        state.withLock { $0.queued["\(method) \(path)", default: []] += answers }
    }

    /// Graph's error envelope, as documented (§1.5 of the reference).
    static func graphError(status: Int = 400, code: Int, subcode: Int? = nil, type: String = "OAuthException", message: String,
                           details: String? = nil, headers: [String: String] = [:]) -> Answer {
        var e: JSONObject = ["message": .string(message), "type": .string(type), "code": .int(Int64(code)), "fbtrace_id": "AZfakeTrace123"]
        if let subcode { e["error_subcode"] = .int(Int64(subcode)) }
        if let details { e["error_data"] = ["messaging_product": "whatsapp", "details": .string(details)] }
        return Answer(status: status, ["error": .object(e)], headers: headers)
    }

    /// Serves `bytes` at `path` (e.g. `/cdn/a.jpg`); returns the full URL.
    @discardableResult
    func serveFile(_ path: String, bytes: [UInt8], contentType: String, requireToken: Bool = false, contentLength: Bool = true) -> String {
        state.withLock { $0.files[path] = File(bytes: bytes, contentType: contentType, requireToken: requireToken, contentLength: contentLength) }
        return base + path
    }

    /// Registers a WhatsApp media id: `GET /<version>/<id>` answers with a lookaside URL on this
    /// server, which serves `bytes` only with the bearer token.
    func serveWhatsAppMedia(id: String, bytes: [UInt8], mimeType: String, contentLength: Bool = true) {
        let path = "/whatsapp_business/attachments/\(id)"
        serveFile(path, bytes: bytes, contentType: mimeType, requireToken: true, contentLength: contentLength)
        state.withLock { $0.media[id] = (path, mimeType, bytes.count) }
    }

    static func start(token: String = defaultToken, version: String = "v23.0") async throws -> FakeGraph {
        let box = Mutex<FakeGraph?>(nil)
        let bound = AsyncStream<Int>.makeStream()
        let responder = CallbackResponder<BasicRequestContext> { req, _ in
            let graph = box.withLock { $0 }!
            var r = req
            let bytes = try await r.collectBody(upTo: 64 * 1024 * 1024)
            var response = graph.handle(req, body: Array(bytes.readableBytesView))
            if let ms = response.headers[FakeGraph.delayHeader].flatMap(Double.init) {
                response.headers[FakeGraph.delayHeader] = nil
                try await Task.sleep(for: .milliseconds(Int64(ms)))
            }
            return response
        }
        var logger = Logger(label: "fake-graph")
        logger.logLevel = .critical
        let app = Application(responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: 0)), onServerRunning: { ch in
            bound.continuation.yield(ch.localAddress!.port!)
            bound.continuation.finish()
        }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var port = 0
        for await p in bound.stream { port = p }
        let graph = FakeGraph(group: group, task: task, base: "http://127.0.0.1:\(port)", token: token, version: version)
        box.withLock { $0 = graph }
        return graph
    }

    private init(group: ServiceGroup, task: Task<Void, any Error>, base: String, token: String, version: String) {
        self.group = group; self.task = task; self.base = base; self.token = token; self.version = version
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    // MARK: answering

    static let delayHeader = HTTPField.Name("x-fake-graph-delay-ms")!

    static func response(_ a: Answer) -> Response {
        var fields: HTTPFields = [.contentType: "application/json"]
        for (k, v) in a.headers { fields[HTTPField.Name(k)!] = v }
        return Response(status: .init(code: a.status), headers: fields,
                        body: .init(byteBuffer: ByteBuffer(bytes: Array((try? JSON.encode(a.body)) ?? Data()))))
    }

    private func handle(_ req: Request, body: [UInt8]) -> Response {
        var headers: [String: String] = [:]
        for f in req.headers { headers[f.name.canonicalName.lowercased()] = f.value }
        var query: [String: String] = [:]
        for (k, v) in req.uri.queryParameters { query[String(k)] = String(v) }
        let path = req.uri.path
        var rec = Recorded(method: req.method.rawValue, path: path, query: query, headers: headers, bytes: body,
                           json: body.isEmpty ? nil : try? JSONValue.parse(Data(body)))
        if let ct = headers["content-type"], ct.hasPrefix("multipart/form-data"), let b = ct.components(separatedBy: "boundary=").last {
            Self.parseMultipart(body, boundary: b, into: &rec)
        }
        state.withLock { $0.requests.append(rec) }
        let authorized = headers["authorization"] == "Bearer \(token)" || query["access_token"] == token

        if let file = state.withLock({ $0.files[path] }), rec.method == "GET" {
            // A scripted answer for the file comes first (a CDN that fails for a while).
            if let queued = popQueued("GET \(path)") { return respond(queued) }
            if file.requireToken && !authorized { return Self.response(Self.graphError(status: 401, code: 190, message: "Invalid OAuth access token - Cannot parse access token")) }
            let fields: HTTPFields = [.contentType: file.contentType]
            if !file.contentLength {
                // Streamed without Content-Length: the size is only known by reading.
                let bytes = file.bytes
                return Response(status: .ok, headers: fields, body: ResponseBody { writer in
                    var i = 0
                    while i < bytes.count {
                        try await writer.write(ByteBuffer(bytes: bytes[i..<min(i + 65536, bytes.count)]))
                        i += 65536
                    }
                    try await writer.finish(nil)
                })
            }
            return Response(status: .ok, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
        }
        guard authorized else {
            return Self.response(Self.graphError(status: 401, code: 190, message: "Invalid OAuth access token - Cannot parse access token"))
        }
        if let queued = popQueued("\(rec.method) \(path)") { return respond(queued) }
        return Self.response(defaultAnswer(rec))
    }

    /// The next scripted answer for `method path`, if any.
    private func popQueued(_ key: String) -> Answer? {
        state.withLock { s -> Answer? in
            guard var list = s.queued[key], !list.isEmpty else { return nil }
            let first = list.removeFirst()
            s.queued[key] = list
            return first
        }
    }

    private func respond(_ queued: Answer) -> Response {
        var response = Self.response(queued)
        // Slept in the responder (this function is synchronous); the header never leaves.
        if let delay = queued.delay { response.headers[Self.delayHeader] = String(delay / .milliseconds(1)) }
        return response
    }

    private func nextID() -> Int { state.withLock { s in s.nextID += 1; return s.nextID } }

    private func defaultAnswer(_ r: Recorded) -> Answer {
        let segments = r.path.split(separator: "/").map(String.init)
        guard segments.first == version else {
            return Self.graphError(code: 100, message: "Unknown path components: \(r.path)")
        }
        let rest = Array(segments.dropFirst())
        switch (r.method, rest.count, rest.last) {
        case ("POST", 2, "messages"?):
            guard let body = r.json?.objectValue else { return Self.graphError(code: 100, message: "(#100) The parameter messaging_product is required.") }
            if body["messaging_product"] != nil { return whatsappMessages(body) }
            let recipient = body["recipient"]?["id"]?.stringValue ?? ""
            if body["sender_action"] != nil { return Answer(["recipient_id": .string(recipient)]) }
            return Answer(["recipient_id": .string(recipient), "message_id": .string("m_FAKE\(nextID())")])
        case ("POST", 2, "media"?):
            if r.form["messaging_product"] != "whatsapp" { violation("media upload without messaging_product=whatsapp") }
            if r.form["type"] == nil { violation("media upload without type") }
            if r.file == nil { violation("media upload without a file part") }
            // Meta's upload takes only the types WhatsApp can send.
            let accepted: Set<String> = ["audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg", "audio/opus", "application/vnd.ms-powerpoint",
                                         "application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                                         "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                                         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/pdf", "text/plain",
                                         "application/vnd.ms-excel", "image/jpeg", "image/png", "image/webp", "video/mp4", "video/3gpp"]
            if let t = r.form["type"], !accepted.contains(String(t.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces).lowercased()) {
                return Self.graphError(code: 100, message: "(#100) Param file must be a file with one of the following types: audio/aac, audio/mp4, audio/mpeg, audio/amr, audio/ogg, audio/opus, application/vnd.ms-powerpoint, application/msword, application/vnd.openxmlformats-officedocument.wordprocessingml.document, application/vnd.openxmlformats-officedocument.presentationml.presentation, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet, application/pdf, text/plain, application/vnd.ms-excel, image/jpeg, image/png, image/webp, video/mp4, video/3gpp. Received file of type '\(t)'.")
            }
            return Answer(["id": .string(String(nextID()))])
        case ("POST", 2, "message_attachments"?):
            return Answer(["attachment_id": .string(String(nextID()))])
        case ("GET", 1, let id?):
            if let m = state.withLock({ $0.media[id] }) {
                return Answer(["messaging_product": "whatsapp", "url": .string(base + m.path), "mime_type": .string(m.mime),
                               "sha256": "0f1e2d", "file_size": .int(Int64(m.size)), "id": .string(id)])
            }
            return Self.graphError(code: 100, subcode: 33, type: "GraphMethodException",
                                   message: "Unsupported get request. Object with ID '\(id)' does not exist, cannot be loaded due to missing permissions, or does not support this operation.")
        default:
            return Self.graphError(code: 100, message: "Unsupported \(r.method.lowercased()) request.")
        }
    }

    private func violation(_ s: String) { state.withLock { $0.violations.append(s) } }

    /// Checks a WhatsApp send against the documented rules (reference §2.8) and answers like Meta.
    private func whatsappMessages(_ b: JSONObject) -> Answer {
        if b["messaging_product"]?.stringValue != "whatsapp" { violation("messaging_product must be whatsapp") }
        if b["status"]?.stringValue == "read" {
            if b["message_id"]?.stringValue == nil { violation("read receipt without message_id") }
            if b["to"] != nil { violation("read receipt with a `to`") }
            if let t = b["typing_indicator"], t["type"]?.stringValue != "text" { violation("typing_indicator.type must be text") }
            return Answer(["success": true])
        }
        let to = b["to"]?.stringValue ?? b["recipient"]?.stringValue
        guard let to, !to.isEmpty else { violation("message without to/recipient"); return Self.graphError(code: 100, message: "(#100) The parameter to is required.") }
        guard let type = b["type"]?.stringValue else { violation("message without type"); return Self.graphError(code: 100, message: "(#100) Param type is required") }
        if type != "reaction" && b[type] == nil { violation("type \(type) without its \(type) object") }
        let o = b[type]
        func len(_ v: JSONValue?, _ max: Int, _ what: String, required: Bool = true) {
            guard let s = v?.stringValue else { if required { violation("\(what) missing") }; return }
            if s.isEmpty || s.count > max { violation("\(what): \(s.count) characters (1...\(max))") }
        }
        switch type {
        case "text":
            len(o?["body"], 4096, "text.body")
        case "image", "video", "audio", "document", "sticker":
            if (o?["id"] == nil) == (o?["link"] == nil) { violation("\(type): exactly one of id and link") }
            if (type == "audio" || type == "sticker") && o?["caption"] != nil { violation("\(type) with a caption") }
        case "location":
            if o?["latitude"]?.doubleValue == nil || o?["longitude"]?.doubleValue == nil { violation("location without coordinates") }
        case "contacts":
            for c in b["contacts"]?.arrayValue ?? [] where c["name"]?["formatted_name"]?.stringValue == nil { violation("contact without name.formatted_name") }
        case "template":
            if o?["name"]?.stringValue == nil || o?["language"]?["code"]?.stringValue == nil { violation("template without name or language.code") }
        case "reaction":
            if o?["message_id"]?.stringValue == nil || o?["emoji"]?.stringValue == nil { violation("reaction without message_id or emoji") }
        case "interactive":
            len(o?["body"]?["text"], o?["type"]?.stringValue == "list" ? 4096 : 1024, "interactive.body.text")
            switch o?["type"]?.stringValue {
            case "button"?:
                let buttons = o?["action"]?["buttons"]?.arrayValue ?? []
                if buttons.isEmpty || buttons.count > 3 { violation("\(buttons.count) reply buttons (1...3)") }
                for btn in buttons {
                    len(btn["reply"]?["title"], 20, "button title")
                    len(btn["reply"]?["id"], 256, "button id")
                }
            case "list"?:
                len(o?["action"]?["button"], 20, "list button")
                let sections = o?["action"]?["sections"]?.arrayValue ?? []
                let rows = sections.flatMap { $0["rows"]?.arrayValue ?? [] }
                if sections.isEmpty || sections.count > 10 || rows.isEmpty || rows.count > 10 { violation("list: \(sections.count) sections, \(rows.count) rows") }
                if sections.count > 1 { for s in sections { len(s["title"], 24, "section title") } }
                for row in rows {
                    len(row["title"], 24, "row title"); len(row["id"], 200, "row id")
                    len(row["description"], 72, "row description", required: false)
                }
                len(o?["header"]?["text"], 60, "list header", required: false)
            case "cta_url"?:
                if o?["action"]?["parameters"]?["url"]?.stringValue == nil { violation("cta_url without url") }
            default:
                violation("interactive type \(String(describing: o?["type"]))")
            }
        default:
            violation("unknown message type \(type)")
        }
        let id = "wamid.FAKE\(nextID())"
        return Answer(["messaging_product": "whatsapp", "contacts": [["input": .string(to), "wa_id": .string(to)]],
                       "messages": [["id": .string(id)]]])
    }

    /// A minimal multipart/form-data reader (text fields and one file part).
    static func parseMultipart(_ body: [UInt8], boundary: String, into rec: inout Recorded) {
        let delimiter = Array("--\(boundary)".utf8)
        var parts: [[UInt8]] = []
        var i = 0
        var start: Int? = nil
        while i + delimiter.count <= body.count {
            if Array(body[i..<(i + delimiter.count)]) == delimiter {
                if let s = start { parts.append(Array(body[s..<max(s, i - 2)])) } // drop the CRLF before the delimiter
                i += delimiter.count
                if i + 2 <= body.count && body[i] == 45 && body[i + 1] == 45 { break } // closing "--"
                i += 2 // CRLF after the delimiter
                start = i
                continue
            }
            i += 1
        }
        let crlf2: [UInt8] = [13, 10, 13, 10]
        for p in parts {
            guard let sep = (0..<max(0, p.count - 3)).first(where: { Array(p[$0..<($0 + 4)]) == crlf2 }) else { continue }
            let head = String(decoding: p[0..<sep], as: UTF8.self)
            let content = Array(p[(sep + 4)...])
            func attr(_ name: String) -> String? {
                guard let r = head.range(of: "\(name)=\"") else { return nil }
                let rest = head[r.upperBound...]
                return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
            }
            guard let name = attr("name") else { continue }
            if let filename = attr("filename") {
                rec.file = content
                rec.fileName = filename
                rec.fileType = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-type:") }
                    .map { $0.dropFirst("content-type:".count).trimmingCharacters(in: .whitespaces) }
                rec.form[name] = filename
            } else {
                rec.form[name] = String(decoding: content, as: UTF8.self)
            }
        }
    }
}
