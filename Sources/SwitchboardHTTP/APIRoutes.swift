import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle
import SwitchboardCore
import SwitchboardRuntime
import SwitchboardStore

/// The helpdesk API (docs/api.md, docs/openapi.yaml), served identically over TCP and the Unix socket.
public enum APIRoutes {
    /// Every route, as `METHOD /path` with `{param}` placeholders: the OpenAPI test checks
    /// docs/openapi.yaml against this list, so the two can't drift apart.
    public static let all: [String] = [
        "GET /v1/health", "GET /v1/channels", "GET /v1/helpdesks", "POST /v1/helpdesks/{name}/recover",
        "GET /v1/conversations", "POST /v1/conversations", "GET /v1/conversations/{id}",
        "GET /v1/conversations/{id}/messages", "POST /v1/conversations/{id}/messages", "POST /v1/conversations/{id}/activity",
        "GET /v1/identities/{id}", "GET /v1/messages/{id}", "GET /v1/messages/{id}/raw",
        "POST /v1/media", "GET /v1/media/{id}", "GET /v1/events", "GET /v1/events/stream", "GET /metrics",
    ]

    static func register(on router: Router<SwitchboardRequestContext>, runtime: Runtime, metrics: @escaping @Sendable () -> String) {
        let started = Timestamp.now()
        let v1 = router.group("v1")

        v1.get("health") { _, _ in
            let channels = runtime.hub.all
            let body: JSONObject = [
                "status": "ok", "version": .string(SwitchboardVersion.current), "started_at": .string(started.rfc3339),
                "channels": .int(Int64(channels.count)),
                "channels_connected": .int(Int64(channels.filter { $0.info.state == .connected }.count)),
            ]
            try await runtime.store.ping()
            return try Respond.json(body)
        }

        v1.get("channels") { _, _ in
            try Respond.json(["channels": runtime.hub.all.map(\.info)])
        }

        v1.get("helpdesks") { _, _ in
            var out: [JSONValue] = []
            for h in runtime.config.helpdesks {
                let stats = try await runtime.store.sinkStats(h.name)
                var o = try JSONValue.from(stats).objectValue ?? [:]
                o["name"] = .string(h.name)
                o["events"] = .array(h.events.map { .string($0) })
                switch h.kind {
                case .console: o["type"] = "console"
                case .http(let url): o["type"] = "http"; o["url"] = .string(Self.redactURL(url))
                }
                out.append(.object(o))
            }
            return try Respond.json(["helpdesks": out])
        }

        v1.post("helpdesks/:name/recover") { req, ctx in
            let name = try ctx.parameters.require("name")
            guard runtime.config.helpdesks.contains(where: { $0.name == name }) else { throw APIProblem.notFound("helpdesk \(name)") }
            var since: Int64? = nil
            if let s = req.query("since") {
                guard let t = Timestamp(rfc3339: s) else { throw APIProblem.invalid("since: expected an RFC 3339 time") }
                since = t.milliseconds
            }
            let n = try await runtime.store.recoverSink(name, since: since)
            runtime.eventSignal.notify()
            return try Respond.json(["helpdesk": JSONValue.string(name), "requeued": .int(Int64(n))])
        }

        v1.get("conversations") { req, _ in
            let limit = try Self.limit(req)
            if let c = req.query("cursor"), c.split(separator: ":").count != 2 || Int64(c.split(separator: ":")[0]) == nil {
                throw APIProblem.invalid("cursor: not a cursor this API returned")
            }
            let (convs, next) = try await runtime.store.conversations(channelID: req.query("channel"), limit: limit, cursor: req.query("cursor"))
            var body: JSONObject = ["conversations": try JSONValue.from(convs)]
            if let next { body["next_cursor"] = .string(next) }
            return try Respond.json(body)
        }

        v1.post("conversations") { req, ctx in
            let body = try await req.collect(limit: ctx.maxUploadSize)
            let open = try JSON.decode(OpenConversationRequest.self, from: Data(body))
            let (conv, created) = try await runtime.openConversation(open)
            guard let first = open.message else {
                return try Respond.json(["conversation": conv], status: created ? .created : .ok)
            }
            let accepted = try await runtime.send(conversationID: conv.id, request: first, rawBody: body,
                                                  idempotencyKey: req.headers[.idempotencyKey], scope: ctx.principal ?? "")
            return try Respond.json(["conversation": try JSONValue.from(conv), "message": try JSONValue.from(accepted)], status: .accepted)
        }

        v1.get("conversations/:id") { _, ctx in
            let id = try ctx.parameters.require("id")
            guard let conv = try await runtime.store.conversation(id) else { throw APIProblem.notFound("conversation \(id)") }
            let identity = try await runtime.store.identity(conv.identityID)
            return try Respond.json(["conversation": try JSONValue.from(conv), "identity": try JSONValue.from(identity)])
        }

        v1.get("conversations/:id/messages") { req, ctx in
            let id = try ctx.parameters.require("id")
            guard try await runtime.store.conversation(id) != nil else { throw APIProblem.notFound("conversation \(id)") }
            let limit = try Self.limit(req)
            let msgs = try await runtime.store.messages(conversationID: id, after: req.query("after"), limit: limit)
            var body: JSONObject = ["messages": try JSONValue.from(msgs)]
            if msgs.count == limit, let last = msgs.last { body["next_after"] = .string(last.id) }
            return try Respond.json(body)
        }

        v1.post("conversations/:id/messages") { req, ctx in
            let id = try ctx.parameters.require("id")
            let body = try await req.collect(limit: ctx.maxUploadSize)
            let send = try JSON.decode(SendRequest.self, from: Data(body))
            let accepted = try await runtime.send(conversationID: id, request: send, rawBody: body,
                                                  idempotencyKey: req.headers[.idempotencyKey], scope: ctx.principal ?? "")
            return try Respond.json(accepted, status: .accepted)
        }

        v1.post("conversations/:id/activity") { req, ctx in
            let id = try ctx.parameters.require("id")
            struct Body: Decodable { var type: ActivityKind }
            let body = try JSON.decode(Body.self, from: Data(try await req.collect(limit: 64 * 1024)))
            try await runtime.activity(conversationID: id, kind: body.type)
            return Response(status: .noContent)
        }

        v1.get("identities/:id") { _, ctx in
            let id = try ctx.parameters.require("id")
            guard let identity = try await runtime.store.identity(id) else { throw APIProblem.notFound("identity \(id)") }
            return try Respond.json(identity)
        }

        v1.get("messages/:id") { _, ctx in
            let id = try ctx.parameters.require("id")
            guard let m = try await runtime.store.message(id) else { throw APIProblem.notFound("message \(id)") }
            return try Respond.json(m)
        }

        v1.get("messages/:id/raw") { _, ctx in
            let id = try ctx.parameters.require("id")
            guard let raw = try await runtime.store.rawPayload(messageID: id) else { throw APIProblem.notFound("raw payload of message \(id)") }
            let type = switch raw.format { case "json": "application/json"; case "rfc822": "message/rfc822"; default: "application/octet-stream" }
            return Respond.raw(Data(raw.bytes), contentType: type)
        }

        v1.post("media") { req, _ in
            let limit = Int(runtime.media.maxBytes)
            let bytes: [UInt8]
            do { bytes = try await req.collect(limit: limit) } catch {
                throw APIProblem(413, "payload_too_large", "media larger than media.max_bytes (\(limit) bytes)")
            }
            guard !bytes.isEmpty else { throw APIProblem.invalid("empty body: send the file's bytes with its Content-Type") }
            let type = req.headers[.contentType] ?? "application/octet-stream"
            let stored = try await runtime.media.put(bytes, mimeType: type, filename: req.query("filename"))
            var o = try JSONValue.from(stored).objectValue ?? [:]
            o["url"] = .string("/v1/media/\(stored.id)")
            return try Respond.json(o, status: .created)
        }

        v1.get("media/:id") { _, ctx in
            let id = try ctx.parameters.require("id")
            guard let (info, bytes) = try await runtime.media.get(id) else { throw APIProblem.notFound("media \(id)") }
            var headers: HTTPFields = [.contentType: info.mimeType, .cacheControl: "private, max-age=31536000, immutable", .eTag: "\"\(info.sha256)\""]
            if let name = info.filename {
                headers[.contentDisposition] = "attachment; filename=\"\(name.replacingOccurrences(of: "\"", with: ""))\""
            }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }

        v1.get("events") { req, _ in
            let after = try await Self.startSeq(req, runtime: runtime, defaultToEnd: false)
            let types = try Self.types(req)
            let events = try await runtime.store.events(afterSeq: after, limit: try Self.limit(req, max: 1000), types: types)
            // The stored CloudEvents are spliced in as they are: the same bytes every consumer gets.
            var body = Data("{\"events\":[".utf8)
            for (i, e) in events.enumerated() {
                if i > 0 { body.append(UInt8(ascii: ",")) }
                body.append(e.body)
            }
            body.append(Data("]".utf8))
            if let last = events.last { body.append(Data(",\"next_after\":\"\(last.id)\"".utf8)) }
            body.append(Data("}".utf8))
            return Respond.raw(body, contentType: "application/json")
        }

        v1.get("events/stream") { req, _ in
            let start = try await Self.startSeq(req, runtime: runtime, defaultToEnd: true)
            let types = try Self.types(req)
            let heartbeat = runtime.config.heartbeatSeconds
            let body = ResponseBody { writer in
                var seq = start
                var lastWrite = ContinuousClock.now
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    let generation = runtime.eventSignal.generation
                    let batch = try await runtime.store.events(afterSeq: seq, limit: 500, types: types)
                    if !batch.isEmpty {
                        var buf = ByteBuffer()
                        for e in batch {
                            buf.writeBytes(e.body)
                            buf.writeInteger(UInt8(ascii: "\n"))
                            seq = e.seq
                        }
                        try await writer.write(buf)
                        lastWrite = .now
                        if batch.count == 500 { continue }
                    }
                    if ContinuousClock.now - lastWrite >= .seconds(heartbeat) {
                        // Not an event and never stored: it only proves the connection is alive.
                        try await writer.write(ByteBuffer(string: "{\"type\":\"switchboard.heartbeat\",\"time\":\"\(Timestamp.now().rfc3339)\"}\n"))
                        lastWrite = .now
                    }
                    let remaining = max(0.05, heartbeat - (ContinuousClock.now - lastWrite).seconds)
                    // A stop ends the wait at once: a stream that waited for its next heartbeat
                    // held up `systemctl stop` for that long (15 s by default).
                    await cancelWhenGracefulShutdown { [generation] in
                        await runtime.eventSignal.wait(after: generation, timeout: .milliseconds(Int64(remaining * 1000)))
                    }
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"], body: body)
        }

        router.get("metrics") { _, _ in
            Respond.raw(Data(metrics().utf8), contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }

    /// `types=message.*,conversation.read`: `*`, a family (`message.*`) or an exact type, with or
    /// without the `switchboard.` prefix of the CloudEvent `type`.
    static func types(_ req: Request) throws -> [String]? {
        guard let q = req.query("types"), !q.isEmpty else { return nil }
        return try q.split(separator: ",").map { raw in
            var t = raw.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("switchboard.") { t.removeFirst("switchboard.".count) }
            guard EventType.isValidPattern(t) else {
                throw APIProblem.invalid("types: unknown event type \(raw) (use *, a family such as message.*, or a type such as message.status)")
            }
            return t
        }
    }

    static func limit(_ req: Request, max: Int = 200) throws -> Int {
        guard let s = req.query("limit") else { return min(50, max) }
        guard let n = Int(s), n >= 1, n <= max else { throw APIProblem.invalid("limit must be between 1 and \(max)") }
        return n
    }

    /// Where a replay starts: after the given event id (`after=evt_…`), from the beginning
    /// (`after=` empty or `after=0`), or — for streams without `after` — from now.
    static func startSeq(_ req: Request, runtime: Runtime, defaultToEnd: Bool) async throws -> Int64 {
        guard let after = req.query("after") else { return defaultToEnd ? try await runtime.store.lastEventSeq() : 0 }
        if after.isEmpty || after == "0" { return 0 }
        let seq = try await runtime.store.eventSeq(of: after)
        // Pruned (`storage.event_retention`): the client's place in the log, or events after
        // it, are gone; say so rather than skip them silently.
        if after.hasPrefix("evt_"), try await runtime.store.replayLostEvents(after: after, seq: seq) {
            throw APIProblem(410, "cursor_expired",
                             "events after \(after) were pruned from the log (storage.event_retention); start again with after=0, the oldest event kept")
        }
        guard let seq else { throw APIProblem(404, "not_found", "event \(after) is not in the event log") }
        return seq
    }

    /// Hides credentials that may sit in a sink URL.
    static func redactURL(_ url: String) -> String {
        guard var c = URLComponents(string: url) else { return url }
        if c.password != nil { c.password = "redacted" }
        // A query can carry a token (`?api_key=…`): names stay, values go.
        if let items = c.queryItems, !items.isEmpty {
            c.queryItems = items.map { URLQueryItem(name: $0.name, value: $0.value == nil ? nil : "redacted") }
        }
        return c.string ?? url
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
}
