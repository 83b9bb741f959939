import Foundation
import Logging
import SwitchboardCore

/// One open socket of the channel, as its long-lived loop (`serveLive`) holds it: one reference.
final class LiveVisit: Sendable {
    let request: WebhookRequest
    let connection: LiveHub.Connection
    let context: any AdapterContext
    init(request: WebhookRequest, connection: LiveHub.Connection, context: any AdapterContext) {
        self.request = request; self.connection = connection; self.context = context
    }
}

/// A visitor's session between frames, held by reference for the same reason.
final class SessionRef: Sendable {
    let value: VisitorSession
    init(_ value: VisitorSession) { self.value = value }
}

/// What one WebSocket knows about its visitor after `hello`.
struct VisitorSession: Sendable {
    var peer: String
    /// The token this connection holds (given in hello, or issued there): what `logout` revokes.
    var token: String? = nil
    /// When this connection last reported typing started (the throttle).
    var typingStartedAt: ContinuousClock.Instant? = nil
    var verifiedUserID: String?
    var profile: JSONObject
    var context: JSONObject
    var visits: Int64
    var ip: String?
    var userAgent: String?
    var awayNoticeSent = false
    var typing = false
}

extension WebchatChannelAdapter {
    // MARK: WebSocket

    public func acceptLive(_ request: WebhookRequest, subpath: String, context: any AdapterContext) async -> Bool {
        guard subpath == "ws" else { return false }
        // Browsers always send Origin on a WebSocket: it must be the daemon's own (the iframe's).
        // Non-browser clients send none, or (some libraries) a ws:// one no browser sends.
        let given = (request.header("origin") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("ws://") && !$0.hasPrefix("wss://") }
        let own = ownOrigins(request, context: context)
        return given.allSatisfy { own.contains($0) }
    }

    /// The origins the chat iframe can have: the public URL's, and the Host the request came to.
    func ownOrigins(_ request: WebhookRequest, context: any AdapterContext) -> Set<String> {
        var set: Set<String> = []
        if let u = URLComponents(string: context.publicURL), let scheme = u.scheme, let host = u.host {
            set.insert("\(scheme)://\(host)" + (u.port.map { ":\($0)" } ?? ""))
        }
        if let host = request.header("host") {
            set.insert("http://\(host)"); set.insert("https://\(host)")
        }
        return set
    }

    /// Runs one visitor's socket, in the connection's own task for as long as the socket is
    /// open. That task keeps the memory of the deepest point it ever reached until it ends, so
    /// its loop holds only references between frames (`LiveVisit`, `SessionRef`) and handles
    /// each frame in a child task (`onFrame`): hello's database calls go deep, and that memory
    /// is freed when the child ends. Answers go straight to the socket (`LiveSocket.send` never
    /// waits); there is no writer task.
    public func serveLive(_ request: WebhookRequest, subpath: String, incoming: AsyncStream<String>, socket: LiveSocket,
                          context: any AdapterContext) async {
        await serve(LiveVisit(request: request, connection: hub.open(socket), context: context), incoming: incoming)
    }

    /// A socket that hasn't said hello by then is closed (the channel's run loop sweeps them):
    /// open sockets cost memory, and a page that never speaks is not a visitor.
    static let helloDeadline: Duration = .seconds(10)

    func closeSilentSockets() {
        for c in hub.silentSockets(olderThan: Self.helloDeadline) {
            c.send(Frames.error("hello_required", "no hello within \(Self.helloDeadline)"))
            c.socket.close()
        }
    }

    @inline(never)
    func serve(_ visit: LiveVisit, incoming: AsyncStream<String>) async {
        let session = await frames(visit, incoming: incoming)
        hub.remove(visit.connection, peer: session?.value.peer)
        if let s = session?.value, s.typing, !hub.isOnline(s.peer) { await leftWhileTyping(s, context: visit.context) }
        // Returning closes the socket, after the frames already sent (a last error).
    }

    /// The socket's frames, one after another, until it closes; returns the session it ended with.
    func frames(_ visit: LiveVisit, incoming: AsyncStream<String>) async -> SessionRef? {
        var session: SessionRef? = nil
        for await text in incoming {
            let current = session
            let outcome = await withTaskGroup(of: FrameOutcome.self) { group in
                group.addTask { await self.onFrame(text, session: current, visit: visit) }
                return await group.next() ?? .close
            }
            switch outcome {
            case .session(let s):
                session = s
            case .close:
                return session
            }
        }
        return session
    }

    enum FrameOutcome: Sendable {
        /// Go on with this session (nil: no hello yet).
        case session(SessionRef?)
        /// Close the socket.
        case close
    }

    /// One frame from the visitor. Not inlined into `serve`, so its deep frames stay in the
    /// short-lived child task.
    @inline(never)
    func onFrame(_ text: String, session: SessionRef?, visit: LiveVisit) async -> FrameOutcome {
        let connection = visit.connection, context = visit.context
        if text.utf8.count > 32 * 1024 {
            connection.send(Frames.error("too_large", "frame larger than 32 KiB")); return .session(session)
        }
        guard let frame = try? JSONValue.parse(Array(text.utf8)), let type = frame["type"]?.stringValue else {
            connection.send(Frames.error("invalid_frame", "expected a JSON object with a type")); return .session(session)
        }
        if type == "ping" { connection.send(Frames.object(["type": "pong"])); return .session(session) }
        guard var s = session?.value else {
            guard type == "hello" else {
                connection.send(Frames.error("hello_required", "send hello first")); return .session(nil)
            }
            return await start(frame, request: visit.request, connection: connection, context: context)
        }
        await handle(type: type, frame: frame, session: &s, connectionID: connection.id, context: context, out: connection)
        return .session(SessionRef(s))
    }

    /// `hello`: the welcome, then the backlog after the visitor's `last_seq`, then `synced`;
    /// pushes to the visitor that arrive meanwhile follow the backlog.
    func start(_ frame: JSONValue, request: WebhookRequest, connection: LiveHub.Connection,
               context: any AdapterContext) async -> FrameOutcome {
        var attached: String? = nil
        do {
            guard let (s, welcome, fresh) = try await hello(frame, request: request, context: context, out: connection) else { return .close }
            connection.send(welcome)
            hub.attach(connection, peer: s.peer)
            attached = s.peer
            // A visitor new to this connection gets their log from the start, whatever the
            // browser saw as the visitor it was before.
            let after = fresh ? 0 : (frame["last_seq"]?.intValue ?? 0)
            let backlog = try await LogWriter.entries(peer: s.peer, after: after, limit: settings.historyLimit, context: context)
            for e in backlog { connection.send(self.frame(e, context: context)) }
            let last = backlog.last?.seq ?? after
            connection.send(Frames.object(["type": "synced", "last_seq": .int(last)]))
            connection.goLive(replayedUpTo: last)
            return .session(SessionRef(s))
        } catch {
            context.logger.error("webchat hello failed", metadata: ["error": "\(error)"])
            if let attached { hub.remove(connection, peer: attached) }
            connection.send(Frames.error("internal", "try again later"))
            return .close
        }
    }

    /// A visitor who leaves while typing has stopped typing.
    @inline(never)
    func leftWhileTyping(_ s: VisitorSession, context: any AdapterContext) async {
        _ = try? await context.emit(InboundEvent(.typing(started: false), peer: peerValue(s)))
    }

    /// A verified user's visitor id: `u:` and the site's user id with `%` and `:` escaped, so
    /// one user's keys (`log:u:<id>:<seq>`) are never a prefix of another's (`alice` and
    /// `alice:x`).
    static func peer(ofUser id: String) -> String {
        "u:" + id.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: ":", with: "%3A")
    }
    static func userID(ofPeer peer: String) -> String {
        String(peer.dropFirst(2)).replacingOccurrences(of: "%3A", with: ":").replacingOccurrences(of: "%25", with: "%")
    }

    /// Validates `hello`: resumes the token's visitor, or verifies an identity, or starts a new
    /// visitor. Returns nil (after sending an error) when the connection must close. `fresh`:
    /// the connection now belongs to another visitor than its token's (new, or a user who just
    /// identified): what it saw before says nothing about this visitor's log.
    func hello(_ frame: JSONValue, request: WebhookRequest, context: any AdapterContext,
               out: LiveHub.Connection) async throws -> (session: VisitorSession, welcome: String, fresh: Bool)? {
        var peer: String? = nil
        var issuedToken: String? = nil
        var verified: String? = nil
        if let token = frame["token"]?.stringValue, !token.isEmpty {
            peer = try await self.peer(forToken: token, context: context)
            if peer == nil && frame["identity"] == nil {
                out.send(Frames.error("invalid_token", "unknown visitor token; start again without one"))
                return nil
            }
            if let p = peer, p.hasPrefix("u:") { verified = Self.userID(ofPeer: p) }
        }
        var verifiedProfile: JSONObject = [:]
        if let identity = frame["identity"], !identity.isNull {
            let userID: String
            if let jwt = identity["jwt"]?.stringValue {
                guard let (sub, claims) = verifyJWT(jwt) else {
                    out.send(Frames.error("identity_unverified", secret == nil
                        ? "this channel does not verify identities" : "the JWT is invalid, expired or not signed with the channel's secret"))
                    return nil
                }
                userID = sub
                verifiedProfile = claims
            } else {
                guard let id = identity["user_id"]?.stringValue, let hash = identity["user_hash"]?.stringValue,
                      verifyIdentity(userID: id, hash: hash) else {
                    out.send(Frames.error("identity_unverified", secret == nil
                        ? "this channel does not verify identities" : "user_hash does not match user_id"))
                    return nil
                }
                userID = id
            }
            let verifiedPeer = Self.peer(ofUser: userID)
            if peer != verifiedPeer {
                // A verified user: the same visitor (and history) on every device.
                peer = verifiedPeer
                issuedToken = Self.newToken()
            }
            verified = userID
        } else if settings.requireIdentity && verified == nil {
            out.send(Frames.error("identity_required", "this chat needs a verified identity (user_id and user_hash)"))
            return nil
        }
        if peer == nil {
            if let wait = limits.newVisitor(ip: request.remoteAddress) {
                out.send(Frames.object(["type": "slow_down", "retry_after": .int(Int64(wait.rounded(.up))),
                                         "message": "too many new chats from this address"]))
                return nil
            }
            peer = Self.newVisitorID()
            issuedToken = Self.newToken()
        }
        guard let peer else { return nil }
        if let issuedToken { try await context.state.set(Self.tokenKey(issuedToken), peer) }

        var record = (try await context.state.get("vis:\(peer)")).flatMap { try? JSONValue.parse(Array($0.utf8)).objectValue } ?? [:]
        var visits = record["visits"]?.intValue ?? 0
        if frame["new_visit"]?.boolValue == true || visits == 0 { visits += 1 }
        record["visits"] = .int(visits)
        var profile = record["profile"]?.objectValue ?? [:]
        if let given = frame["profile"]?.objectValue {
            if let problem = mergeProfile(given, into: &profile) {
                out.send(Frames.error("invalid_profile", problem))
            }
        }
        // Claims signed by the site win over what the visitor typed.
        for (k, v) in verifiedProfile { profile[k] = v }
        record["profile"] = .object(profile)
        let pageContext = sanitizeContext(frame["context"]?.objectValue ?? [:])
        // Where and in which language they chat, for an email follow-up's link and words.
        if let url = pageContext["url"] { record["page_url"] = url }
        if let locale = pageContext["locale"] { record["locale"] = locale }
        try await context.state.set("vis:\(peer)", JSON.string(JSONValue.object(record)))

        var session = VisitorSession(peer: peer, verifiedUserID: verified, profile: profile,
                                     context: pageContext, visits: visits,
                                     ip: request.remoteAddress, userAgent: request.header("user-agent").map { String($0.prefix(400)) })
        session.token = issuedToken ?? frame["token"]?.stringValue
        var welcome: JSONObject = ["type": "welcome", "visitor": .object([
            "id": .string(peer), "verified": .bool(verified != nil), "profile": .object(profile),
        ])]
        if let issuedToken { welcome["token"] = .string(issuedToken) }
        welcome["last_seq"] = .int(try await log.lastSeq(peer: peer, context: context))
        welcome["agent_read_seq"] = .int(Int64(try await context.state.get("agentread:\(peer)") ?? "0") ?? 0)
        welcome["config"] = .object(publicConfig())
        welcome["hours"] = hoursStatus()
        return (session, Frames.object(welcome), issuedToken != nil)
    }

    func publicConfig() -> JSONObject {
        var c: JSONObject = [
            "title": .string(settings.title), "color": .string(settings.color), "max_text_length": .int(Int64(settings.maxTextLength)),
            "upload_max_bytes": .int(settings.uploadMaxBytes), "upload_types": .array(settings.uploadTypes.map { .string($0) }),
            "prechat": .array(settings.prechat.map { .object(["name": .string($0.name), "required": .bool($0.required)]) }),
        ]
        if let g = settings.greeting { c["greeting"] = .string(g) }
        if let a = settings.awayMessage { c["away_message"] = .string(a) }
        return c
    }

    func hoursStatus(now: Date = Date()) -> JSONValue {
        guard let hours = settings.hours else { return .object(["open": true]) }
        let (open, next) = hours.status(at: now)
        var o: JSONObject = ["open": .bool(open), "time_zone": .string(hours.timeZone.identifier)]
        if let next { o["next_open"] = .string(next.rfc3339) }
        return .object(o)
    }

    /// Pre-chat answers: known fields only, bounded, email checked for shape. Returns a problem.
    func mergeProfile(_ given: JSONObject, into profile: inout JSONObject) -> String? {
        for key in ["name", "email", "phone"] {
            guard let v = given[key]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else { continue }
            guard v.count <= 200 else { return "\(key) is longer than 200 characters" }
            if key == "email", v.range(of: "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", options: .regularExpression) == nil { return "email is not an address" }
            if key == "phone", v.range(of: "^[+0-9 ()./-]{3,40}$", options: .regularExpression) == nil { return "phone is not a phone number" }
            profile[key] = .string(v)
        }
        return nil
    }

    /// Page context from the widget: known keys only, strings bounded.
    func sanitizeContext(_ c: JSONObject) -> JSONObject {
        var out: JSONObject = [:]
        for key in ["url", "title", "referrer", "locale", "time_zone"] {
            if let v = c[key]?.stringValue { out[key] = .string(String(v.prefix(1000))) }
        }
        if let pages = c["pages"]?.arrayValue {
            out["pages"] = .array(pages.suffix(20).compactMap { $0.stringValue.map { .string(String($0.prefix(1000))) } })
        }
        return out
    }

    func peerValue(_ s: VisitorSession) -> Peer {
        var profile = s.profile
        profile["verified"] = .bool(s.verifiedUserID != nil)
        if let u = s.verifiedUserID { profile["user_id"] = .string(u) }
        return Peer(channelUserID: s.peer, displayName: s.profile["name"]?.stringValue, profile: profile)
    }

    func channelData(_ s: VisitorSession) -> JSONObject {
        var d: JSONObject = ["visit_count": .int(s.visits)]
        let map = ["url": "page_url", "title": "page_title", "referrer": "referrer", "locale": "locale", "time_zone": "time_zone", "pages": "pages"]
        for (k, v) in map { if let x = s.context[k] { d[v] = x } }
        if let ua = s.userAgent { d["user_agent"] = .string(ua) }
        return d
    }

    // MARK: frames after hello

    func handle(type: String, frame: JSONValue, session s: inout VisitorSession, connectionID: Int?, context: any AdapterContext,
                out: LiveHub.Connection) async {
        do {
            switch type {
            case "message":
                try await visitorMessage(frame, session: &s, connectionID: connectionID, context: context, out: out)
            case "typing":
                let on = frame["on"]?.boolValue ?? false
                guard on != s.typing else { return }
                // At most one "started" every 2 s: a visitor toggling it can't flood the helpdesk.
                let now = ContinuousClock.now
                if on, let last = s.typingStartedAt, now - last < .seconds(2) { return }
                if on { s.typingStartedAt = now }
                s.typing = on
                _ = try await context.emit(InboundEvent(.typing(started: on), peer: peerValue(s)))
            case "read", "delivered":
                guard let upTo = frame["seq"]?.intValue else { out.send(Frames.error("invalid_frame", "\(type) needs seq")); return }
                try await receipt(type == "read" ? .read : .delivered, upTo: upTo, session: s, context: context)
            case "profile":
                var profile = s.profile
                if let problem = mergeProfile(frame["profile"]?.objectValue ?? [:], into: &profile) {
                    out.send(Frames.error("invalid_profile", problem)); return
                }
                s.profile = profile
                var record = (try await context.state.get("vis:\(s.peer)")).flatMap { try? JSONValue.parse(Array($0.utf8)).objectValue } ?? [:]
                record["profile"] = .object(profile)
                try await context.state.set("vis:\(s.peer)", JSON.string(JSONValue.object(record)))
                _ = try await context.emit(InboundEvent(.identityUpdated, peer: peerValue(s), channelData: channelData(s)))
                out.send(Frames.object(["type": "profile", "profile": .object(profile)]))
            case "context":
                s.context = sanitizeContext(frame["context"]?.objectValue ?? [:])
            case "logout":
                // The site's user signed out (SwitchboardChat.reset()): the token no longer
                // opens this conversation, on any device that kept it.
                if let token = s.token { try await context.state.set(WebchatChannelAdapter.tokenKey(token), nil) }
                s.token = nil
                out.send(Frames.object(["type": "logged_out"]))
            case "history":
                let after = frame["after"]?.intValue ?? 0
                let entries = try await LogWriter.entries(peer: s.peer, after: after, limit: settings.historyLimit, context: context)
                for e in entries { out.send(self.frame(e, context: context)) }
                out.send(Frames.object(["type": "synced", "last_seq": .int(entries.last?.seq ?? after)]))
            default:
                out.send(Frames.error("unknown_type", "unknown frame type \(type)"))
            }
        } catch {
            context.logger.error("webchat frame failed", metadata: ["type": "\(type)", "error": "\(error)"])
            out.send(Frames.error("internal", "try again later", clientID: frame["client_id"]?.stringValue))
        }
    }

    /// Delivered/read receipts for our (outbound) messages up to `upTo`, each reported once.
    func receipt(_ status: DeliveryStatus, upTo: Int64, session s: VisitorSession, context: any AdapterContext) async throws {
        let key = "\(status.rawValue):\(s.peer)"
        let done = Int64(try await context.state.get(key) ?? "0") ?? 0
        guard upTo > done else { return }
        let entries = try await LogWriter.entries(peer: s.peer, after: done, limit: 10_000, context: context)
        var newest = done
        for e in entries where e.seq <= upTo {
            newest = e.seq
            guard e.direction == "out" else { continue }
            _ = try await context.emit(InboundEvent(.status(externalID: e.externalID, status: status, error: nil), peer: peerValue(s),
                                                    dedupeKey: "\(status.rawValue):\(e.externalID)"))
            if status == .read {
                // Read implies delivered.
                let d = "delivered:\(s.peer)"
                if (Int64(try await context.state.get(d) ?? "0") ?? 0) < e.seq { try await context.state.set(d, String(e.seq)) }
            }
        }
        try await context.state.set(key, String(newest))
    }

    func visitorMessage(_ frame: JSONValue, session s: inout VisitorSession, connectionID: Int?, context: any AdapterContext,
                        out: LiveHub.Connection) async throws {
        guard let clientID = frame["client_id"]?.stringValue, !clientID.isEmpty, clientID.count <= 64 else {
            out.send(Frames.error("invalid_frame", "message needs a client_id (at most 64 characters)")); return
        }
        // A message sent again after a reconnect is acknowledged again, not stored twice.
        if let seq = try await context.state.get("cid:\(s.peer):\(clientID)") {
            out.send(Frames.object(["type": "ack", "client_id": .string(clientID), "seq": .int(Int64(seq) ?? 0), "duplicate": true]))
            return
        }
        let parts: [Part]
        switch try await visitorParts(frame, peer: s.peer, context: context) {
        case .failure(let problem):
            out.send(Frames.error(problem.code, problem.detail, clientID: clientID)); return
        case .success(let p): parts = p
        }
        for field in settings.prechat where field.required && s.profile[field.name] == nil {
            out.send(Frames.error("prechat_required", "fill in the form first (\(field.name))", clientID: clientID)); return
        }
        if let wait = limits.message(peer: s.peer, ip: s.ip) {
            out.send(Frames.object(["type": "slow_down", "client_id": .string(clientID), "retry_after": .int(Int64(wait.rounded(.up))),
                                     "message": "you are sending messages too fast"]))
            return
        }
        let externalID = "wci_" + Self.newVisitorID().dropFirst(2)
        let result = try await context.emit(InboundEvent(.message(InboundMessage(externalID: externalID, parts: parts)), peer: peerValue(s),
                                                         dedupeKey: "in:\(s.peer):\(clientID)", channelData: channelData(s)))
        s.typing = false
        var ack: JSONObject = ["type": "ack", "client_id": .string(clientID)]
        if case .committed(_, let messageID, _) = result, let messageID { ack["message_id"] = .string(messageID) }
        let entry = try await log.append(peer: s.peer, direction: "in", externalID: externalID, parts: parts, text: parts.textFallback,
                                         clientID: clientID, context: context)
        ack["seq"] = .int(entry.seq)
        out.send(Frames.object(ack))
        // The visitor's other tabs and devices show it too.
        hub.push(peer: s.peer, seq: entry.seq, frame: self.frame(entry, context: context), except: connectionID)
        if !s.awayNoticeSent, case .object(let h) = hoursStatus(), h["open"]?.boolValue == false {
            s.awayNoticeSent = true
            var notice: JSONObject = ["type": "notice", "kind": "away"]
            if let a = settings.awayMessage { notice["text"] = .string(a) }
            if let n = h["next_open"] { notice["next_open"] = n }
            // "We'll also answer by email" only when unread answers really go by email.
            notice["email"] = .bool(settings.emailFollowup != nil && s.profile["email"] != nil)
            out.send(Frames.object(notice))
        }
    }

    /// The parts a visitor may send: text, an uploaded file of theirs, or an interaction.
    func visitorParts(_ frame: JSONValue, peer: String, context: any AdapterContext) async throws -> Result<[Part], SendRejection> {
        var parts: [Part] = []
        if let text = frame["text"]?.stringValue {
            let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if !t.isEmpty { parts.append(.text(Open(TextFields(text: t)))) }
        }
        for p in frame["parts"]?.arrayValue ?? [] {
            switch p["type"]?.stringValue {
            case "text":
                if let t = p["text"]?.stringValue, !t.isEmpty { parts.append(.text(Open(TextFields(text: t)))) }
            case "media":
                guard let id = p["media_id"]?.stringValue, let info = try await context.state.get("up:\(peer):\(id)"),
                      let meta = try? JSON.decode(StoredMedia.self, from: Array(info.utf8)) else {
                    return .failure(SendRejection(code: "invalid_media", detail: "media_id is not one of your uploads"))
                }
                let kind: MediaKind = meta.mimeType.hasPrefix("image/") ? .image : meta.mimeType.hasPrefix("video/") ? .video
                    : meta.mimeType.hasPrefix("audio/") ? .audio : .file
                var f = MediaFields(kind: kind)
                f.mediaID = meta.id; f.mimeType = meta.mimeType; f.size = meta.size; f.sha256 = meta.sha256; f.filename = meta.filename
                parts.append(.media(Open(f)))
            case "interaction":
                let kindName = p["kind"]?.stringValue ?? "button_reply"
                guard ["button_reply", "quick_reply", "list_reply", "postback"].contains(kindName) else {
                    return .failure(SendRejection(code: "invalid_frame", detail: "unknown interaction kind"))
                }
                var f = InteractionFields(kind: InteractionKind(rawValue: kindName))
                f.payload = p["payload"]?.stringValue.map { String($0.prefix(1000)) }
                f.title = p["title"]?.stringValue.map { String($0.prefix(200)) }
                f.sourceMessageID = p["source_message_id"]?.stringValue.map { String($0.prefix(100)) }
                parts.append(.interaction(Open(f)))
            default:
                return .failure(SendRejection(code: "invalid_frame", detail: "visitors may send text, media and interaction parts"))
            }
        }
        guard !parts.isEmpty else { return .failure(SendRejection(code: "empty_message", detail: "nothing to send")) }
        let length = parts.reduce(0) { n, p in if case .text(let t) = p { return n + t.text.count }; return n }
        if length > settings.maxTextLength {
            return .failure(SendRejection(code: "too_long", detail: "messages are limited to \(settings.maxTextLength) characters"))
        }
        if parts.count > 10 { return .failure(SendRejection(code: "too_many_parts", detail: "at most 10 parts")) }
        return .success(parts)
    }
}
