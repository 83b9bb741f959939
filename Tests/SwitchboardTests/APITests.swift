import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import SwitchboardCore
@testable import SwitchboardRuntime

@Suite struct APITests {
    @Test func tcpNeedsATokenAndTheSocketDoesNot() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let none = try await d.api("GET", "/v1/channels", token: nil)
            #expect(none.status == 401)
            #expect(none.headers["content-type"] == "application/problem+json")
            #expect(none.headers["www-authenticate"] == "Bearer")
            #expect(none.json?["code"]?.stringValue == "unauthorized")
            #expect(try await d.api("GET", "/v1/channels", token: "wrong-token-0123456789").status == 401)
            let ok = try await d.api("GET", "/v1/channels")
            #expect(ok.status == 200)
            #expect(ok.json?["channels"]?.arrayValue?.first?["id"]?.stringValue == channel)
            #expect(ok.json?["channels"]?.arrayValue?.first?["state"]?.stringValue == "connected")
            let socket = try await d.api("GET", "/v1/health", socket: true)
            #expect(socket.status == 200 && socket.json?["status"]?.stringValue == "ok")
            let notFound = try await d.api("GET", "/v1/nothing-here")
            #expect(notFound.status == 404 && notFound.json?["code"]?.stringValue == "not_found")
            // A known path with a method it lacks: 405 naming the methods it has.
            let wrongMethod = try await d.api("DELETE", "/v1/conversations/conv_01ABC/messages")
            #expect(wrongMethod.status == 405 && wrongMethod.json?["code"]?.stringValue == "method_not_allowed")
            #expect(wrongMethod.headers["allow"] == "GET, POST")
            #expect(wrongMethod.headers["content-type"] == "application/problem+json")
            let viaSocket = try await d.api("PUT", "/v1/health", socket: true)
            #expect(viaSocket.status == 405 && viaSocket.headers["allow"] == "GET")
            #expect(try await d.api("GET", "/v1/conversations?limit=0").status == 400)
        }
    }

    @Test func conversationsMessagesAndRawPayloads() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let ctx = d.context(channel)
            for u in 0..<3 { _ = try await ctx.customerSays("hello \(u)", from: "user-\(u)", name: "User \(u)") }
            // A large raw payload is stored whole and referenced, not embedded in the event.
            let big = String(repeating: "x", count: 20_000)
            guard case .committed(_, let mid?, let conv?) = try await ctx.emit(InboundEvent(
                .message(InboundMessage(externalID: "big", parts: [.text("big one")])), peer: Peer(channelUserID: "user-0"),
                dedupeKey: "big", raw: .json(Data("{\"blob\":\"\(big)\"}".utf8)))) else { Issue.record("not committed"); return }

            let page1 = try await d.api("GET", "/v1/conversations?limit=2")
            #expect(page1.json?["conversations"]?.arrayValue?.count == 2)
            let cursor = try #require(page1.json?["next_cursor"]?.stringValue)
            let page2 = try await d.api("GET", "/v1/conversations?limit=2&cursor=\(cursor)")
            #expect(page2.json?["conversations"]?.arrayValue?.count == 1)
            #expect(page2.json?["next_cursor"] == nil)

            let one = try await d.api("GET", "/v1/conversations/\(conv)")
            #expect(one.json?["identity"]?["display_name"]?.stringValue == "User 0")
            let msgs = try await d.api("GET", "/v1/conversations/\(conv)/messages")
            #expect(msgs.json?["messages"]?.arrayValue?.map { $0["text_fallback"]?.stringValue } == ["hello 0", "big one"])
            let m = try await d.api("GET", "/v1/messages/\(mid)")
            #expect(m.json?["raw"]?["ref"]?.stringValue == "/v1/messages/\(mid)/raw")
            #expect(m.json?["raw"]?["inline"] == nil)
            let raw = try await d.api("GET", "/v1/messages/\(mid)/raw")
            #expect(raw.body.count == 20_011)
            let small = try #require(msgs.json?["messages"]?.arrayValue?.first)
            #expect(small["raw"]?["inline"]?["text"]?.stringValue == "hello 0")
        }
    }

    @Test func mediaUploadAndDownload() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let png = [UInt8](repeating: 7, count: 5000)
            let up = try await http("POST", d.apiBase + "/v1/media?filename=photo.png", body: png,
                                    headers: ["authorization": "Bearer \(TestDaemon.token)", "content-type": "image/png"])
            #expect(up.status == 201)
            let id = try #require(up.json?["id"]?.stringValue)
            #expect(up.json?["size"]?.intValue == 5000)
            let down = try await d.api("GET", "/v1/media/\(id)")
            #expect(down.status == 200 && down.body == Data(png))
            #expect(down.headers["content-type"] == "image/png")
            #expect(down.headers["content-disposition"]?.contains("photo.png") == true)
            // Same bytes again: a new id, one file on disk (content-addressed).
            let again = try await http("POST", d.apiBase + "/v1/media", body: png,
                                       headers: ["authorization": "Bearer \(TestDaemon.token)", "content-type": "image/png"])
            #expect(again.json?["sha256"] == up.json?["sha256"] && again.json?["id"] != up.json?["id"])
            let files = try FileManager.default.subpathsOfDirectory(atPath: d.dir.file("media")).filter { !$0.contains("/") == false }
            #expect(files.count == 1)
            // Over media.max_bytes (1 MB in tests): 413 problem.
            let tooBig = try await http("POST", d.apiBase + "/v1/media", body: [UInt8](repeating: 1, count: 1_100_000),
                                        headers: ["authorization": "Bearer \(TestDaemon.token)", "content-type": "application/octet-stream"])
            #expect(tooBig.status == 413)
            #expect(try await d.api("GET", "/v1/media/med_01M81SCQHA03BB129VE588XTBY").status == 404)
            // The public listener serves it only through a signed, unexpired link.
            let link = d.context(channel).publicMediaURL(id, validFor: 60)
            let path = String(link.dropFirst("http://127.0.0.1:1".count))
            #expect(path.hasPrefix("/media/\(id)?exp="))
            let pub = try await http("GET", d.publicBase + path)
            #expect(pub.status == 200 && pub.body == Data(png))
            #expect(try await http("GET", d.publicBase + path.replacingOccurrences(of: "sig=", with: "sig=0")).status == 403)
            #expect(try await http("GET", d.publicBase + "/media/\(id)").status == 403)
            let expired = d.runtime.mediaSigner.url(base: "", mediaID: id, validFor: -10)
            #expect(try await http("GET", d.publicBase + expired).status == 403)
            // A reply naming the upload by its id alone goes out (and is stored) with its type,
            // size and name, for the channel to choose by.
            let r = try await d.api("POST", "/v1/conversations/\(try await Self.conversationOf(d, channel))/messages",
                                    json: #"{"parts":[{"type":"media","kind":"image","media_id":"\#(id)"}]}"#)
            #expect(r.status == 202)
            let adapter = TestRegistry.adapter(channel)
            try await eventually("sent") { adapter.sent.count == 1 }
            guard case .media(let m)? = adapter.sent.first?.message.parts.first else { Issue.record("\(adapter.sent)"); return }
            #expect(m.size == 5000 && m.mimeType == "image/png" && m.filename == "photo.png")
        }
    }

    /// A conversation on a recording channel, opened by a customer's message.
    static func conversationOf(_ d: TestDaemon, _ channel: String) async throws -> String {
        guard case .committed(_, _, let conversation?) = try await d.context(channel).customerSays("hello", from: "media-user") else {
            throw CancellationError()
        }
        return conversation
    }

    @Test func eventReplayAfterACursor() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            for i in 0..<5 { _ = try await d.context(channel).customerSays("m\(i)", from: "u1") }
            let all = try await d.api("GET", "/v1/events?after=")
            let events = try #require(all.json?["events"]?.arrayValue)
            #expect(events.count == 6)
            #expect(events.first?["type"]?.stringValue == "switchboard.conversation.created")
            let third = try #require(events[2]["id"]?.stringValue)
            let rest = try await d.api("GET", "/v1/events?after=\(third)&types=message.received")
            #expect(rest.json?["events"]?.arrayValue?.map { $0["data"]?["text_fallback"]?.stringValue } == ["m2", "m3", "m4"])
            #expect(rest.json?["next_after"] == events.last?["id"])
            let page = try await d.api("GET", "/v1/events?after=0&limit=2")
            #expect(page.json?["events"]?.arrayValue?.count == 2)
            let unknown = try await d.api("GET", "/v1/events?after=evt_01M81SCQHA03BB129VE588XTBY")
            #expect(unknown.status == 404)
            // Filters: the CloudEvent type with its prefix works too; a malformed filter is a 400, not a 500.
            let prefixed = try await d.api("GET", "/v1/events?after=0&types=switchboard.conversation.created")
            #expect(prefixed.json?["events"]?.arrayValue?.count == 1)
            #expect(try await d.api("GET", "/v1/events?types=message*").status == 400)
            #expect(try await d.api("GET", "/v1/events?types=nonsense.thing").status == 400)
            #expect(try await d.api("GET", "/v1/events?types=mesage.*").status == 400, "a typo'd family")
            #expect(try await d.api("GET", "/v1/events?types=message.recieved").status == 400, "a typo'd type")
            // A type an adapter adds to a known family (Messenger's conversation.referred) can be asked for by name.
            _ = try await d.context(channel).emit(InboundEvent(.custom("conversation.referred", ["ref": "ad-7"]), peer: Peer(channelUserID: "u1"), dedupeKey: "ref-1"))
            let referred = try await d.api("GET", "/v1/events?after=&types=conversation.referred")
            #expect(referred.status == 200 && referred.json?["events"]?.arrayValue?.count == 1, "\(String(decoding: referred.body, as: UTF8.self))")
        }
    }

    /// The NDJSON stream: live events, resume after a disconnect with nothing lost or repeated,
    /// and heartbeats on an idle connection.
    @Test func eventStreamResumesAndBeats() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]", heartbeat: "300ms") { d in
            let ctx = d.context(channel)
            _ = try await ctx.customerSays("before", from: "u1")
            // Read the whole log from the start, then live events, then a heartbeat.
            var lines = try await Self.readStream(d.socketBase + "/v1/events/stream?after=0", count: 4, skippingHeartbeats: true) {
                _ = try await ctx.customerSays("live-1", from: "u1")
                _ = try await ctx.customerSays("live-2", from: "u1")
            }
            #expect(lines.prefix(4).map { $0["type"]?.stringValue } == [
                "switchboard.conversation.created", "switchboard.message.received", "switchboard.message.received", "switchboard.message.received"])
            let last = try #require(lines[3]["id"]?.stringValue)
            // Disconnected; more happens; resume from the last id seen.
            _ = try await ctx.customerSays("missed-while-away", from: "u1")
            lines = try await Self.readStream(d.socketBase + "/v1/events/stream?after=\(last)", count: 2) {}
            #expect(lines[0]["data"]?["text_fallback"]?.stringValue == "missed-while-away")
            #expect(lines[1]["type"]?.stringValue == "switchboard.heartbeat")
            // Without `after`: only new events (what `switchboard tail` shows).
            lines = try await Self.readStream(d.apiBase + "/v1/events/stream", count: 1, token: TestDaemon.token, skippingHeartbeats: true) {
                try await Task.sleep(for: .milliseconds(50))
                _ = try await ctx.customerSays("new", from: "u1")
            }
            #expect(lines[0]["data"]?["text_fallback"]?.stringValue == "new")
        }
    }

    /// Reads `count` NDJSON lines from a stream, running `during` once connected. With
    /// `skippingHeartbeats`, heartbeats are neither returned nor counted: on a loaded machine one
    /// may come before the events a test waits for.
    static func readStream(_ url: String, count: Int, token: String? = nil, skippingHeartbeats: Bool = false,
                           during: @escaping @Sendable () async throws -> Void) async throws -> [JSONValue] {
        var req = HTTPClientRequest(url: url)
        if let token { req.headers.add(name: "authorization", value: "Bearer \(token)") }
        let resp = try await HTTPClient.shared.execute(req, timeout: .seconds(10))
        #expect(resp.status.code == 200)
        #expect(resp.headers.first(name: "content-type") == "application/x-ndjson")
        let duringTask = Task { try await during() }
        var lines: [JSONValue] = []
        var pending = Data()
        outer: for try await chunk in resp.body {
            pending.append(contentsOf: chunk.readableBytesView)
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = try JSONValue.parse(pending[pending.startIndex..<nl])
                pending = Data(pending[(nl + 1)...])
                if skippingHeartbeats && line["type"]?.stringValue == "switchboard.heartbeat" { continue }
                lines.append(line)
                if lines.count == count { break outer }
            }
        }
        try await duringTask.value
        return lines
    }

    /// Bound by the daemon itself (no switchboard.socket), the API socket goes to
    /// api.socket_group with api.socket_mode, so the helpdesk's user can connect.
    @Test(.enabled(if: getuid() == 0, "chown to another group needs root"))
    func theAPISocketGoesToItsGroup() async throws {
        let d = try await TestDaemon.start("", apiExtra: "socket_group: daemon")
        defer { Task { await d.stop() } }
        let attributes = try FileManager.default.attributesOfItem(atPath: d.dir.file("api.sock"))
        #expect((attributes[.groupOwnerAccountID] as? NSNumber)?.intValue == Int(getgrnam("daemon")!.pointee.gr_gid))
        #expect(((attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0) & 0o777 == 0o660)
    }

    /// Credentials in a sink URL — a password, or a token in the query — never show in
    /// `GET /v1/helpdesks`.
    @Test func helpdeskURLsAreShownWithoutCredentials() async throws {
        try await withDaemon("""
            helpdesks: [ { name: desk, url: "https://bot:hunter2@desk.example/hook?api_key=sekrit-token&tenant=acme", secret: "\(testSecret)" } ]
            """) { d in
            let r = try await d.api("GET", "/v1/helpdesks")
            let text = String(decoding: r.body, as: UTF8.self)
            #expect(r.status == 200)
            #expect(!text.contains("hunter2") && !text.contains("sekrit-token") && !text.contains("acme"), "\(text)")
            #expect(r.json?["helpdesks"]?.arrayValue?.first?["url"] == "https://bot:redacted@desk.example/hook?api_key=redacted&tenant=redacted")
        }
    }

    @Test func metricsAreExposed() async throws {
        let channel = uniqueID("wh")
        try await withHelpdesk { helpdesk in
            try await withDaemon("""
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ { id: \(channel), type: webhook, secret: "metrics-secret-0123456789" } ]
                """) { d in
                let body = Array(#"{"id":"e1","from":{"id":"u"},"text":"hi"}"#.utf8)
                let bad = try await http("POST", d.publicBase + "/webhooks/\(channel)", body: body, headers: ["x-switchboard-signature": "sha256=00"])
                #expect(bad.status == 401)
                _ = try await d.context(channel).customerSays("hello", from: "u")
                try await eventually { helpdesk.deliveries.count == 2 }
                try await Task.sleep(for: .milliseconds(100))
                let m = try await d.api("GET", "/metrics")
                let text = String(decoding: m.body, as: UTF8.self)
                #expect(m.status == 200)
                #expect(text.contains("switchboard_events_in_total{channel=\"\(channel)\",type=\"message.received\",result=\"committed\"} 1"))
                #expect(text.contains("switchboard_webhook_signature_failures_total{channel=\"\(channel)\"} 1"))
                #expect(text.contains("switchboard_events_out_total{sink=\"desk\""))
                #expect(text.contains("switchboard_delivery_latency_seconds_bucket{sink=\"desk\""))
                #expect(text.contains("switchboard_outbox_depth{sink=\"desk\"}"))
                #expect(text.contains("switchboard_ingest_commit_seconds_bucket"))
                #expect(text.contains("switchboard_ingest_batch_events_bucket{le=\"1.0\"}") || text.contains("switchboard_ingest_batch_events_bucket{le=\"1\"}"), "\(text)")
                #expect(try await d.api("GET", "/metrics", token: nil).status == 401)
            }
        }
    }
}
