import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
@testable import SwitchboardCore

/// A fake LINE Messaging API (api.line.me and api-data.line.me on one loopback port). It records
/// every request, checks bodies against LINE's documented rules (≤ 5 messages, required fields,
/// https media URLs, UTF-16 text limit, labels ≤ 20, retry key only on push), serves content
/// (scripted: e.g. 202 then 200) and profiles, and answers push as the test scripts it.
final class FakeLineAPI: Sendable {
    struct Recorded: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: JSONValue?
    }
    enum PushMode: Sendable { case ok, monthlyLimit, rateLimited(retryAfter: Int), serverError }
    struct ContentAnswer: Sendable {
        var status: Int
        var bytes: [UInt8] = []
        var contentType: String = "image/jpeg"
    }
    struct State {
        var requests: [Recorded] = []
        var violations: [String] = []
        var pushMode: PushMode = .ok
        var usedReplyTokens: Set<String> = []
        var acceptedRetryKeys: Set<String> = []
        var content: [String: [ContentAnswer]] = [:]
        var profiles: [String: String] = [:]
        var nextID = 1000
    }
    private let state = Mutex(State())
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let base: String
    static let token = "fake-channel-access-token"

    var requests: [Recorded] { state.withLock { $0.requests } }
    var violations: [String] { state.withLock { $0.violations } }
    func requests(_ path: String) -> [Recorded] { requests.filter { $0.path == path } }
    func setPushMode(_ m: PushMode) { state.withLock { $0.pushMode = m } }
    /// Answers for `GET /v2/bot/message/{id}/content`, in order; the last one repeats.
    func setContent(_ id: String, _ answers: [ContentAnswer]) { state.withLock { $0.content[id] = answers } }
    func burnReplyToken(_ token: String) { _ = state.withLock { $0.usedReplyTokens.insert(token) } }
    func setProfile(_ userID: String, name: String) { state.withLock { $0.profiles[userID] = name } }

    static func start() async throws -> FakeLineAPI {
        let box = Mutex<FakeLineAPI?>(nil)
        let bound = AsyncStream<Int>.makeStream()
        let router = Router()
        func handler(_ f: @escaping @Sendable (FakeLineAPI, Recorded) -> (Int, JSONValue?, [String: String])) -> @Sendable (Request, BasicRequestContext) async throws -> Response {
            { req, _ in
                let api = box.withLock { $0 }!
                var r = req
                let bytes = try await r.collectBody(upTo: 4 * 1024 * 1024)
                var h: [String: String] = [:]
                for f in req.headers { h[f.name.canonicalName] = f.value }
                let body = bytes.readableBytes == 0 ? nil : try? JSONValue.parse(Data(bytes.readableBytesView))
                let rec = Recorded(method: req.method.rawValue, path: req.uri.path, headers: h, body: body)
                api.state.withLock { $0.requests.append(rec) }
                if h["authorization"] != "Bearer \(token)" { return json(401, ["message": "Authentication failed. Confirm that the access token in the authorization header is valid."]) }
                let (status, answer, headers) = f(api, rec)
                return json(status, answer ?? .object([:]), headers: headers)
            }
        }
        router.post("/v2/bot/message/reply", use: handler { api, r in api.reply(r) })
        router.post("/v2/bot/message/push", use: handler { api, r in api.push(r) })
        router.post("/v2/bot/chat/loading/start", use: handler { api, r in api.loading(r) })
        router.post("/v2/bot/chat/markAsRead", use: handler { api, r in
            r.body?["markAsReadToken"]?.stringValue?.isEmpty == false ? (200, [:], [:]) : (400, ["message": "The request body has 1 error(s)"], [:])
        })
        router.get("/v2/bot/profile/:user", use: handler { api, r in api.profile(String(r.path.split(separator: "/").last ?? "")) })
        router.get("/v2/bot/group/:group/member/:user", use: handler { api, r in api.profile(String(r.path.split(separator: "/").last ?? "")) })
        router.get("/v2/bot/room/:room/member/:user", use: handler { api, r in api.profile(String(r.path.split(separator: "/").last ?? "")) })
        router.get("/v2/bot/message/:id/content") { req, ctx -> Response in
            let api = box.withLock { $0 }!
            let id = ctx.parameters.get("id") ?? ""
            var h: [String: String] = [:]
            for f in req.headers { h[f.name.canonicalName] = f.value }
            api.state.withLock { $0.requests.append(Recorded(method: "GET", path: req.uri.path, headers: h, body: nil)) }
            guard h["authorization"] == "Bearer \(token)" else { return json(401, ["message": "Authentication failed."]) }
            let answer = api.state.withLock { s -> ContentAnswer? in
                guard var list = s.content[id], !list.isEmpty else { return nil }
                let first = list.count > 1 ? list.removeFirst() : list[0]
                s.content[id] = list
                return first
            }
            guard let answer else { return json(404, ["message": "Not found"]) }
            switch answer.status {
            case 200:
                return Response(status: .ok, headers: [.contentType: answer.contentType],
                                body: .init(byteBuffer: ByteBuffer(bytes: answer.bytes)))
            case 410: return json(410, ["message": "The content is gone"])
            default: return json(answer.status, [:])
            }
        }
        var logger = Logger(label: "fake-line")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), onServerRunning: { ch in
            bound.continuation.yield(ch.localAddress!.port!)
            bound.continuation.finish()
        }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var port = 0
        for await p in bound.stream { port = p }
        let api = FakeLineAPI(group: group, task: task, base: "http://127.0.0.1:\(port)")
        box.withLock { $0 = api }
        return api
    }

    private init(group: ServiceGroup, task: Task<Void, any Error>, base: String) { self.group = group; self.task = task; self.base = base }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    static func json(_ status: Int, _ body: JSONValue, headers: [String: String] = [:]) -> Response {
        var fields: HTTPFields = [.contentType: "application/json", HTTPField.Name("X-Line-Request-Id")!: UUID().uuidString]
        for (k, v) in headers { fields[HTTPField.Name(k)!] = v }
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: Array((try? JSON.encode(body)) ?? Data()))))
    }

    private func violation(_ s: String) { state.withLock { $0.violations.append(s) } }

    private func sentMessages(_ n: Int) -> JSONValue {
        state.withLock { s in
            .object(["sentMessages": .array((0..<n).map { _ in s.nextID += 1; return ["id": .string("line-\(s.nextID)"), "quoteToken": "qt"] })])
        }
    }

    func reply(_ r: Recorded) -> (Int, JSONValue?, [String: String]) {
        if r.headers["x-line-retry-key"] != nil {
            violation("reply with X-Line-Retry-Key")
            return (400, ["message": "The retry key is not supported for this endpoint"], [:])
        }
        guard let token = r.body?["replyToken"]?.stringValue, !token.isEmpty else {
            violation("reply without replyToken"); return (400, ["message": "The request body has 1 error(s)"], [:])
        }
        let messages = validateMessages(r.body?["messages"], endpoint: "reply")
        let fresh = state.withLock { $0.usedReplyTokens.insert(token).inserted }
        guard fresh else { return (400, ["message": "Invalid reply token"], [:]) }
        return (200, sentMessages(messages), [:])
    }

    func push(_ r: Recorded) -> (Int, JSONValue?, [String: String]) {
        guard let to = r.body?["to"]?.stringValue, ["U", "C", "R"].contains(to.first.map(String.init) ?? "") else {
            violation("push with a bad `to`: \(String(describing: r.body?["to"]))"); return (400, ["message": "The property, 'to', in the request body is invalid"], [:])
        }
        let messages = validateMessages(r.body?["messages"], endpoint: "push")
        if let key = r.headers["x-line-retry-key"] {
            if UUID(uuidString: key) == nil { violation("retry key is not a UUID: \(key)") }
        }
        switch state.withLock({ $0.pushMode }) {
        case .monthlyLimit: return (429, ["message": "You have reached your monthly limit."], [:])
        case .rateLimited(let after): return (429, ["message": "The API rate limit has been exceeded. Try again later."], ["Retry-After": String(after)])
        case .serverError: return (500, ["message": "An error occurred in the server"], [:])
        case .ok: break
        }
        if let key = r.headers["x-line-retry-key"], !state.withLock({ $0.acceptedRetryKeys.insert(key).inserted }) {
            return (409, ["message": "The retry key is already accepted"], ["X-Line-Accepted-Request-Id": "req-\(key.prefix(8))"])
        }
        return (200, sentMessages(messages), [:])
    }

    func loading(_ r: Recorded) -> (Int, JSONValue?, [String: String]) {
        guard let chat = r.body?["chatId"]?.stringValue, chat.hasPrefix("U") else {
            violation("loading animation for a non-user chat"); return (400, ["message": "Invalid chatId"], [:])
        }
        let secs = r.body?["loadingSeconds"]?.intValue ?? 20
        if secs < 5 || secs > 60 || secs % 5 != 0 { violation("loadingSeconds \(secs)") }
        return (202, [:], [:])
    }

    func profile(_ user: String) -> (Int, JSONValue?, [String: String]) {
        guard let name = state.withLock({ $0.profiles[user] }) else { return (404, ["message": "Not found"], [:]) }
        return (200, ["displayName": .string(name), "userId": .string(user), "pictureUrl": "https://profile.line-scdn.net/abc", "language": "ja"], [:])
    }

    /// Checks the message objects of a reply/push against LINE's rules; returns how many there are.
    func validateMessages(_ v: JSONValue?, endpoint: String) -> Int {
        guard let list = v?.arrayValue else { violation("\(endpoint): messages missing"); return 0 }
        if list.isEmpty || list.count > 5 { violation("\(endpoint): \(list.count) messages (1...5 allowed)") }
        func https(_ s: JSONValue?, _ what: String) {
            guard let u = s?.stringValue, u.hasPrefix("https://"), u.count <= 2000 else { violation("\(what) must be an https URL: \(String(describing: s))"); return }
        }
        func label(_ a: JSONValue?, _ what: String) {
            guard let a else { violation("\(what): action missing"); return }
            let l = a["label"]?.stringValue ?? ""
            if l.isEmpty || l.count > 20 { violation("\(what): label \(l) (1...20)") }
            switch a["type"]?.stringValue {
            case "postback"?: if (a["data"]?.stringValue ?? "").isEmpty { violation("\(what): postback without data") }
            case "message"?: if (a["text"]?.stringValue ?? "").isEmpty { violation("\(what): message action without text") }
            case "uri"?: if a["uri"]?.stringValue == nil { violation("\(what): uri action without uri") }
            default: violation("\(what): action type \(String(describing: a["type"]))")
            }
        }
        for (i, m) in list.enumerated() {
            let what = "\(endpoint).messages[\(i)]"
            switch m["type"]?.stringValue {
            case "text"?:
                let t = m["text"]?.stringValue ?? ""
                if t.isEmpty || t.utf16.count > 5000 { violation("\(what): text of \(t.utf16.count) UTF-16 units") }
            case "image"?, "video"?:
                https(m["originalContentUrl"], "\(what).originalContentUrl"); https(m["previewImageUrl"], "\(what).previewImageUrl")
            case "audio"?:
                https(m["originalContentUrl"], "\(what).originalContentUrl")
                if m["duration"]?.intValue == nil { violation("\(what): audio without duration") }
            case "location"?:
                for k in ["title", "address"] where (m[k]?.stringValue ?? "").isEmpty { violation("\(what): location without \(k)") }
                for k in ["latitude", "longitude"] where m[k]?.doubleValue == nil { violation("\(what): location without \(k)") }
            case "sticker"?:
                if m["packageId"]?.stringValue == nil || m["stickerId"]?.stringValue == nil { violation("\(what): sticker ids") }
            case "template"?:
                if (m["altText"]?.stringValue ?? "").isEmpty { violation("\(what): altText") }
                let t = m["template"]
                if t?["type"]?.stringValue == "buttons" {
                    let text = t?["text"]?.stringValue ?? ""
                    if text.isEmpty || text.count > 160 { violation("\(what): buttons text length \(text.count)") }
                    let actions = t?["actions"]?.arrayValue ?? []
                    if actions.isEmpty || actions.count > 4 { violation("\(what): \(actions.count) actions") }
                    for (j, a) in actions.enumerated() { label(a, "\(what).actions[\(j)]") }
                }
            case "flex"?:
                if (m["altText"]?.stringValue ?? "").isEmpty { violation("\(what): altText") }
                let type = m["contents"]?["type"]?.stringValue
                if type != "bubble" && type != "carousel" { violation("\(what): flex contents type \(String(describing: type))") }
                if type == "carousel", (m["contents"]?["contents"]?.arrayValue?.count ?? 0) > 12 { violation("\(what): > 12 bubbles") }
            default:
                violation("\(what): unknown type \(String(describing: m["type"]))")
            }
            if let items = m["quickReply"]?["items"]?.arrayValue {
                if items.isEmpty || items.count > 13 { violation("\(what): \(items.count) quick replies") }
                for (j, item) in items.enumerated() { label(item["action"], "\(what).quickReply.items[\(j)]") }
            }
        }
        return list.count
    }
}
