import AsyncHTTPClient
import Foundation
import MetaAdapter
import NIOCore
import SwitchboardCore

extension MessagingChannel {
    /// Where a reply may go, by the time since the customer's last message (or postback,
    /// reaction, referral): within 24 h a normal `RESPONSE`; 24 h – 7 d only with the
    /// `HUMAN_AGENT` tag (when the channel enables it); later, nothing.
    public enum Window: Sendable, Equatable {
        case response
        case humanAgent
        case closed(String)
    }

    public func window(for conversation: Conversation, context: any AdapterContext, now: Timestamp = .now()) async -> Window {
        let recorded = (try? await context.state.get(Self.windowKey(conversation.id))).flatMap { $0.flatMap { Int64($0) } }
        guard let last = recorded ?? conversation.lastInboundAt?.milliseconds else {
            return .closed("the customer has not written on this \(flavor.label) channel yet; \(flavor.label) only allows replies to customers who wrote first")
        }
        let age = Double(now.milliseconds - last) / 1000
        if age <= Self.standardWindow { return .response }
        if settings.humanAgentTag && age <= Self.humanAgentWindow { return .humanAgent }
        let hours = Int(age / 3600)
        let rule = settings.humanAgentTag
            ? "\(flavor.label) allows replies within 24 hours, and human-agent replies within 7 days"
            : "\(flavor.label) allows replies within 24 hours (7 days for human agents with human_agent_tag: true)"
        return .closed("the customer last wrote \(hours >= 48 ? "\(hours / 24) days" : "\(hours) hours") ago; \(rule)")
    }

    public func validateSend(parts: [Part], override: JSONValue?, conversation: Conversation, context: any AdapterContext) async throws {
        // A native payload of the wrong shape is refused now, not failed after queueing.
        if let override {
            do { _ = try MessengerPlatform.overrideMessages(override, flavor: flavor) } catch let e as SendError {
                throw SendRejection(code: e.code, status: 422, detail: e.message)
            }
        }
        // The window holds for native payloads too: since April 2026 Meta accepts no message
        // tag but HUMAN_AGENT, which `send` adds itself.
        if case .closed(let why) = await window(for: conversation, context: context) {
            throw SendRejection(code: "window_closed", status: 422, detail: why)
        }
    }

    /// `{"messaging_type": "RESPONSE"}` or `{"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}`.
    static func messagingType(_ w: Window) -> JSONObject {
        w == .humanAgent ? ["messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"] : ["messaging_type": "RESPONSE"]
    }

    struct Progress: Codable { var done: Int; var ids: [String] }

    public func send(_ out: OutboundMessage, context: any AdapterContext) async throws -> SendResult {
        let w = await window(for: out.conversation, context: context)
        if case .closed(let why) = w {
            throw SendError(code: "window_closed", message: why, retryable: false)
        }
        let outgoing: [MessengerPlatform.Outgoing]
        if let override = out.rendered.override {
            outgoing = try MessengerPlatform.overrideMessages(override, flavor: flavor)
        } else {
            // Reactions to one of our sends by its message id: the mids we got back for it.
            var targets: [String: String] = [:]
            for case .reaction(let r) in out.rendered.parts where r.targetExternalID == nil {
                if let id = r.targetMessageID, let s = try? await context.state.get(Self.ourMIDsKey(id)),
                   let mid = s.split(separator: " ").first { targets[id] = String(mid) }
            }
            let publicHTTPS = context.publicURL.hasPrefix("https://")
            outgoing = try MessengerPlatform.render(
                out.rendered.parts, flavor: flavor,
                mediaLink: { publicHTTPS ? context.publicMediaURL($0, validFor: 7 * 86_400) : nil },
                reactionTarget: { r in r.targetExternalID ?? r.targetMessageID.flatMap { targets[$0] } ?? out.replyToExternalID })
        }
        guard !outgoing.isEmpty else {
            throw SendError(code: "invalid_request", message: "nothing to send on \(flavor.label)", retryable: false)
        }
        let customer = out.recipient.channelUserID
        let recipient: JSONValue = customer.hasPrefix("user_ref:")
            ? ["user_ref": .string(String(customer.dropFirst("user_ref:".count)))] : ["id": .string(customer)]
        let path = "\(settings.sendNode)/messages"
        let kind = Self.messagingType(w)
        // A retry after a partial success resumes after the requests that already went out.
        var progress = Progress(done: 0, ids: [])
        if outgoing.count > 1, let s = try? await context.state.get(Self.progressKey(out.message.id)),
           let p = try? JSON.decode(Progress.self, from: Data(s.utf8)) { progress = p }
        let firstMessage = outgoing.firstIndex { if case .action = $0 { return false } else { return true } }

        inflight.withLock { $0[customer, default: 0] += 1 }
        func finish() {
            inflight.withLock { $0[customer] = max(0, ($0[customer] ?? 1) - 1); if $0[customer] == 0 { $0[customer] = nil } }
        }
        do {
            for (i, o) in outgoing.enumerated() where i >= progress.done {
                var body: JSONObject = ["recipient": recipient]
                switch o {
                case .message(var m):
                    if flavor == .messenger && m["metadata"] == nil {
                        m["metadata"] = .string(MessengerPlatform.metadataPrefix + out.message.id)
                    }
                    body["message"] = .object(m)
                    body.merge(kind) { a, _ in a }
                case .upload(let type, let mediaID):
                    let attachmentID = try await uploadAttachment(type: type, mediaID: mediaID, context: context)
                    var m = MessengerPlatform.attachment(type: type, payload: ["attachment_id": .string(attachmentID)])
                    if flavor == .messenger { m["metadata"] = .string(MessengerPlatform.metadataPrefix + out.message.id) }
                    body["message"] = .object(m)
                    body.merge(kind) { a, _ in a }
                case .action(let name, let payload):
                    body["sender_action"] = .string(name)
                    body["payload"] = .object(payload)
                }
                if i == firstMessage, let quoted = out.replyToExternalID, body["message"] != nil {
                    body["reply_to"] = ["mid": .string(quoted)]
                }
                let started = Timestamp.now().milliseconds
                let answer = try await call(path, body: body)
                if let mid = answer["message_id"]?.stringValue {
                    progress.ids.append(mid)
                    // In the customer's book at once (for receipts and echoes): the echo of this
                    // request can arrive while the next ones are still going out, and an
                    // Instagram echo is known as ours only by its mid.
                    let record = SentRecord(m: mid, t: started, s: 0)
                    await updateBook(customer: customer, context: context) { current in
                        if !current.contains(where: { $0.m == record.m }) { current.append(record) }
                    }
                }
                progress.done = i + 1
                if outgoing.count > 1 && i < outgoing.count - 1 {
                    try? await context.state.set(Self.progressKey(out.message.id), JSON.string(progress))
                }
            }
        } catch {
            finish()
            throw error
        }
        finish()
        if outgoing.count > 1 { try? await context.state.set(Self.progressKey(out.message.id), nil) }
        if !progress.ids.isEmpty { try? await context.state.set(Self.ourMIDsKey(out.message.id), progress.ids.joined(separator: " ")) }
        await clearProblem(context: context)
        var data: JSONObject = kind
        data["requests"] = .int(Int64(outgoing.count))
        return SendResult(externalIDs: progress.ids, channelData: data)
    }

    /// A Graph POST whose failure becomes the classified `SendError` (190 also marks the channel).
    func call(_ path: String, body: JSONObject) async throws -> JSONValue {
        do {
            return try await graph.post(path, json: .object(body))
        } catch let e as GraphError {
            if e.isAuthExpired { problem.withLock { $0 = true } }
            throw e.sendError
        }
    }

    func clearProblem(context: any AdapterContext) async {
        let had = problem.withLock { p -> Bool in defer { p = false }; return p }
        if had { await context.reportStatus(.connected, detail: nil) }
    }

    /// The Attachment Upload API: `POST /<node>/message_attachments`, multipart with `message`
    /// (`{"attachment": {"type", "payload": {"is_reusable": true}}}`) and the file as `filedata`
    /// → `{"attachment_id"}`. Used for stored media when there is no public https link for Meta
    /// to fetch.
    func uploadAttachment(type: String, mediaID: String, context: any AdapterContext) async throws -> String {
        guard let (stored, bytes) = try await context.media.get(mediaID) else {
            throw SendError(code: "invalid_request", message: "media \(mediaID) is not in the media store", retryable: false)
        }
        let message: JSONObject = ["attachment": ["type": .string(type), "payload": ["is_reusable": true]]]
        let boundary = "switchboard-" + Hex.encode((0..<12).map { _ in UInt8.random(in: 0...255) })
        var body: [UInt8] = []
        func line(_ s: String) { body += Array(s.utf8) + [13, 10] }
        line("--\(boundary)")
        line("Content-Disposition: form-data; name=\"message\"")
        line("")
        line(JSON.string(message))
        line("--\(boundary)")
        let filename = (stored.filename ?? "\(type).\(Self.fileExtension(stored.mimeType))").map { $0 == "\"" || $0 == "\r" || $0 == "\n" ? "_" : $0 }
        line("Content-Disposition: form-data; name=\"filedata\"; filename=\"\(String(filename))\"")
        line("Content-Type: \(stored.mimeType)")
        line("")
        body += bytes
        body += [13, 10]
        line("--\(boundary)--")
        var req = HTTPClientRequest(url: graph.url("\(settings.sendNode)/message_attachments"))
        req.method = .POST
        req.headers.add(name: "authorization", value: "Bearer \(settings.accessToken.value)")
        req.headers.add(name: "content-type", value: "multipart/form-data; boundary=\(boundary)")
        req.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        do { response = try await client.execute(req, timeout: .seconds(120)) } catch {
            throw GraphError.network(error).sendError
        }
        let status = Int(response.status.code)
        let answer = (try? await response.body.collect(upTo: 1024 * 1024)).flatMap { try? JSONValue.parse(Data($0.readableBytesView)) }
        guard (200..<300).contains(status), answer?["error"] == nil, let id = answer?["attachment_id"]?.stringValue ?? answer?["attachment_id"]?.intValue.map({ String($0) }) else {
            let e = GraphError(httpStatus: status, body: answer, retryAfter: response.headers.first(name: "retry-after").flatMap(Double.init))
            if e.isAuthExpired { problem.withLock { $0 = true } }
            throw e.sendError
        }
        return id
    }

    static func fileExtension(_ mime: String) -> String {
        ["image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "video/mp4": "mp4", "audio/mpeg": "mp3", "audio/mp4": "m4a",
         "audio/aac": "aac", "application/pdf": "pdf"][mime] ?? "bin"
    }

    // MARK: activity and addresses

    /// Sender actions: `typing_on`, `typing_off`, `mark_seen`.
    public func activity(_ kind: ActivityKind, conversation: Conversation, recipient: Identity, context: any AdapterContext) async throws {
        let action: String
        switch kind {
        case .typingStart: action = "typing_on"
        case .typingStop: action = "typing_off"
        case .markRead: action = "mark_seen"
        }
        let who = recipient.channelUserID
        let to: JSONValue = who.hasPrefix("user_ref:") ? ["user_ref": .string(String(who.dropFirst(9)))] : ["id": .string(who)]
        _ = try await call("\(settings.sendNode)/messages", body: ["recipient": to, "sender_action": .string(action)])
    }

    /// A PSID / IGSID (digits), as `POST /v1/conversations` gives it. The customer must have
    /// written first for a message to go out (the window check says so).
    public func resolveAddress(_ address: String, context: any AdapterContext) async throws -> (peer: Peer, thread: String) {
        let a = address.trimmingCharacters(in: .whitespaces)
        guard !a.isEmpty, a.allSatisfy(\.isNumber) else {
            throw SendRejection(code: "invalid_request", status: 422,
                                detail: "a \(flavor.label) address is the customer's \(flavor == .messenger ? "page-scoped id (PSID)" : "Instagram-scoped id (IGSID)"), digits only")
        }
        return (Peer(channelUserID: a), "*")
    }
}
