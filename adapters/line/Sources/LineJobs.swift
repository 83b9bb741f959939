import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardCore
import SwitchboardRuntime

/// A profile as cached in the adapter state (`profile:<userId>`).
struct CachedProfile: Codable, Sendable {
    var name: String?
    var picture: String?
    var statusMessage: String?
    var language: String?
    /// When it was fetched (ms); a 404 is cached as well, with no name, for an hour.
    var at: Int64
    var missing: Bool?

    var profile: JSONObject? {
        var o: JSONObject = [:]
        if let p = picture { o["picture_url"] = .string(p) }
        if let s = statusMessage { o["status_message"] = .string(s) }
        if let l = language { o["language"] = .string(l) }
        return o.isEmpty ? nil : o
    }
}

enum ContentOutcome: Sendable {
    case stored(StoredMedia)
    case unavailable(String)
    /// The quick retries ran out on a problem that may pass (202, 429, 5xx, network): worth
    /// trying later; the reason is what to publish when it is given up.
    case later(String)
}

extension LineChannelAdapter {
    func request(_ url: String, method: HTTPMethod = .GET, json: JSONValue? = nil, headers: [(String, String)] = []) -> HTTPClientRequest {
        var req = HTTPClientRequest(url: url)
        req.method = method
        req.headers.add(name: "authorization", value: "Bearer \(token.value)")
        for (k, v) in headers { req.headers.add(name: k, value: v) }
        if let json {
            req.headers.add(name: "content-type", value: "application/json")
            req.body = .bytes(ByteBuffer(bytes: (try? JSON.encode(json)) ?? Data("{}".utf8)))
        }
        return req
    }

    // MARK: profiles

    /// The cached profile when it is fresh enough to use; nil means "look it up".
    func cachedProfile(_ user: String, context: any AdapterContext) async -> CachedProfile? {
        guard let s = try? await context.state.get(Self.profileKey(user)),
              let p = try? JSON.decode(CachedProfile.self, from: Data(s.utf8)) else { return nil }
        let age = Double(Timestamp.now().milliseconds - p.at) / 1000
        return age < (p.missing == true ? min(profileTTL, 3600) : profileTTL) ? p : nil
    }

    /// `GET /v2/bot/profile/{userId}` (1:1) or the group/room member profile; publishes the name
    /// as `identity.updated`. Best effort: failures are logged, a 404 is remembered for an hour.
    func fetchProfile(_ job: ProfileJob, context: any AdapterContext) async {
        if await cachedProfile(job.userID, context: context) != nil { return } // an earlier job got it
        let path: String
        if let g = job.groupID { path = "/v2/bot/group/\(Self.pathEscape(g))/member/\(Self.pathEscape(job.userID))" }
        else if let r = job.roomID { path = "/v2/bot/room/\(Self.pathEscape(r))/member/\(Self.pathEscape(job.userID))" }
        else { path = "/v2/bot/profile/\(Self.pathEscape(job.userID))" }
        let status: Int
        let body: JSONValue?
        do {
            let response = try await client.execute(request(apiBase + path), timeout: .seconds(10))
            status = Int(response.status.code)
            let bytes = try await response.body.collect(upTo: 256 * 1024)
            body = try? JSONValue.parse(Data(bytes.readableBytesView))
        } catch {
            context.logger.info("LINE profile look-up failed", metadata: ["channel": "\(channel.id)", "user": "\(job.userID)", "error": "\(error)"])
            return
        }
        let now = Timestamp.now().milliseconds
        guard status == 200, let body else {
            if status == 404 {
                let missing = CachedProfile(at: now, missing: true)
                try? await context.state.set(Self.profileKey(job.userID), String(decoding: (try? JSON.encode(missing)) ?? Data(), as: UTF8.self))
            } else {
                context.logger.info("LINE profile look-up refused", metadata: ["channel": "\(channel.id)", "user": "\(job.userID)", "status": "\(status)"])
            }
            return
        }
        let p = CachedProfile(name: body["displayName"]?.stringValue, picture: body["pictureUrl"]?.stringValue,
                              statusMessage: body["statusMessage"]?.stringValue, language: body["language"]?.stringValue, at: now)
        try? await context.state.set(Self.profileKey(job.userID), String(decoding: (try? JSON.encode(p)) ?? Data(), as: UTF8.self))
        guard let name = p.name else { return }
        let person = Peer(channelUserID: job.userID, displayName: name, profile: p.profile)
        if job.groupID == nil && job.roomID == nil {
            await emitLater(InboundEvent(.identityUpdated, peer: person, thread: job.thread), context: context)
        } else {
            // A group member is the `sender` of the group's conversation: the member identity is
            // refreshed through it (the event itself is about the group's conversation).
            await emitLater(InboundEvent(.identityUpdated, peer: job.peer, sender: person, thread: job.thread), context: context)
        }
    }

    static func pathEscape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
    }

    // MARK: media

    /// Downloads the content of an image/video/audio/file message into the media store and
    /// publishes the stored part as `message.updated` (or the part with `unavailable` set).
    func downloadMedia(_ job: MediaJob, context: any AdapterContext) async {
        var part = job.part
        switch await fetchContent(job.messageID, filename: part.filename, context: context) {
        case .stored(let media):
            part.mediaID = media.id
            part.mimeType = media.mimeType
            part.size = media.size
            part.sha256 = media.sha256
            part.filename = part.filename ?? media.filename
            part.url = nil
            part.unavailable = nil
        case .unavailable(let reason):
            part.unavailable = reason
        case .later(let reason):
            // The part stays `pending`; the job is kept (with its count, for a restart) and
            // runs again after a longer wait, until `media_retry_for` has passed.
            var later = job
            var retry = job.retry ?? DeferredRetry()
            if let delay = retry.next(lastQuickDelay: contentRetryDelays.last ?? 1, window: contentRetryFor) {
                later.retry = retry
                try? await context.state.set(MediaJob.key(job.messageID), JSON.string(later.persisted))
                context.logger.warning("LINE content download failed again; trying later", metadata: [
                    "channel": "\(channel.id)", "message": "\(job.messageID)", "attempt": "\(retry.count)", "in": "\(delay)"])
                jobs.push(.media(later), after: delay)
                return
            }
            context.logger.warning("LINE content download given up", metadata: ["channel": "\(channel.id)", "message": "\(job.messageID)"])
            part.unavailable = reason
        }
        if Task.isCancelled { return }
        await emitLater(InboundEvent(.updated(externalID: job.messageID, parts: [.media(part)]), peer: job.peer, sender: job.sender,
                                     thread: job.thread, dedupeKey: "content:\(job.messageID)"), context: context)
        try? await context.state.set(MediaJob.key(job.messageID), nil)
    }

    /// `GET {data_api_base}/v2/bot/message/{id}/content`: 202 (still preparing), 5xx, 429 and
    /// network errors are retried with backoff; 404/410/oversize end as `unavailable`.
    func fetchContent(_ messageID: String, filename: String?, context: any AdapterContext) async -> ContentOutcome {
        let url = dataAPIBase + "/v2/bot/message/\(Self.pathEscape(messageID))/content"
        let limit = context.media.maxBytes
        var attempt = 0
        var lastProblem = "download_failed"
        while true {
            var retry = false
            do {
                let response = try await client.execute(request(url), timeout: .seconds(120))
                let code = Int(response.status.code)
                switch code {
                case 200:
                    if let len = response.headers.first(name: "content-length").flatMap(Int64.init), len > limit {
                        return .unavailable("too_large")
                    }
                    let bytes: ByteBuffer
                    do { bytes = try await response.body.collect(upTo: Int(limit)) } catch is NIOTooManyBytesError {
                        return .unavailable("too_large")
                    }
                    let mime = response.headers.first(name: "content-type")?.split(separator: ";").first.map {
                        $0.trimmingCharacters(in: .whitespaces) } ?? "application/octet-stream"
                    do {
                        return .stored(try await context.media.put(Array(bytes.readableBytesView), mimeType: mime, filename: filename))
                    } catch is MediaTooLarge {
                        return .unavailable("too_large")
                    }
                case 202:
                    _ = try? await response.body.collect(upTo: 64 * 1024)
                    lastProblem = "still_processing"
                    retry = true
                case 404:
                    _ = try? await response.body.collect(upTo: 64 * 1024)
                    return .unavailable("not_found")
                case 410:
                    _ = try? await response.body.collect(upTo: 64 * 1024)
                    return .unavailable("expired")
                case 429, 500..<600:
                    _ = try? await response.body.collect(upTo: 64 * 1024)
                    retry = true
                default:
                    _ = try? await response.body.collect(upTo: 64 * 1024)
                    context.logger.warning("LINE content download refused", metadata: ["channel": "\(channel.id)", "message": "\(messageID)", "status": "\(code)"])
                    return .unavailable("download_failed")
                }
            } catch {
                context.logger.info("LINE content download failed", metadata: ["channel": "\(channel.id)", "message": "\(messageID)", "error": "\(error)"])
                retry = true
            }
            guard retry, attempt < contentRetryDelays.count, !Task.isCancelled else { return Task.isCancelled ? .unavailable(lastProblem) : .later(lastProblem) }
            do { try await Task.sleep(for: .milliseconds(Int64(contentRetryDelays[attempt] * 1000))) } catch { return .unavailable(lastProblem) }
            attempt += 1
        }
    }
}
