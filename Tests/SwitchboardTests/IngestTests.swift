import Foundation
import GRDB
import Logging
import Testing
@testable import SwitchboardCore
import SwitchboardDelivery
@testable import SwitchboardRuntime
@testable import SwitchboardStore
import WebhookAdapter

@Suite struct IngestTests {
    @Test func duplicatesAreDroppedByTheChannelsID() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let ctx = d.context(channel)
            let first = try await ctx.customerSays("once", from: "u1", id: "wamid.1")
            let again = try await ctx.customerSays("once", from: "u1", id: "wamid.1")
            if case .committed = first {} else { Issue.record("first not committed") }
            #expect(again == .duplicate)
            let events = try await d.runtime.store.events(afterSeq: 0, limit: 100)
            #expect(events.filter { $0.type == "message.received" }.count == 1)
        }
    }

    @Test("an event names another channel's conversation only when its channel has a message in it (a relayed one)")
    func foreignConversationsNeedALink() async throws {
        let a = uniqueID("rec"), b = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(a), type: recording }, { id: \(b), type: recording } ]") { d in
            guard case .committed(_, _, let theirs?) = try await d.context(b).customerSays("mine", from: "u-b") else {
                Issue.record("not committed"); return
            }
            func say(_ text: String) async throws -> String? {
                var event = InboundEvent(.message(InboundMessage(externalID: "ext-" + UUID().uuidString, parts: [.text(text)])),
                                         peer: Peer(channelUserID: "u-a"))
                event.conversationID = theirs
                guard case .committed(_, _, let conversation) = try await d.context(a).emit(event) else { return nil }
                return conversation
            }
            // No link: the event goes to the peer's own conversation on its own channel.
            let unlinked = try await say("let me in")
            #expect(unlinked != nil && unlinked != theirs)
            // Once channel a has relayed a message into that conversation, its answer may follow it there.
            let relayed = try await d.runtime.store.enqueueRelay(
                conversation: try #require(try await d.runtime.store.conversation(theirs)), via: ChannelRef(type: "recording", id: a),
                recipient: Peer(channelUserID: "u-a"), parts: [.text("relayed")], rendered: RenderedMessage(parts: [.text("relayed")], textFallback: "relayed"),
                metadata: nil, idempotencyKey: "k1")
            #expect(try await say("answer") == theirs)
            // A read watermark on channel b covers b's messages, not the one relayed through a.
            _ = try await d.context(b).emit(InboundEvent(.read(upTo: Timestamp(milliseconds: Timestamp.now().milliseconds + 1000)),
                                                         peer: Peer(channelUserID: "u-b")))
            let status = try await d.runtime.store.pool.read { db in
                try String.fetchOne(db, sql: "SELECT status FROM messages WHERE id = ?", arguments: [relayed])
            }
            // Not read. (Channel a's send worker may have sent it meanwhile: its next poll is up
            // to 5 s away, and on a slow machine the test can take that long.)
            #expect(status == "accepted" || status == "sent", "\(status ?? "nil")")
        }
    }

    @Test func concurrentEmitsAreGroupCommitted() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let ctx = d.context(channel)
            let results = try await withThrowingTaskGroup(of: EmitResult.self) { group in
                for i in 0..<300 { group.addTask { try await ctx.customerSays("m\(i)", from: "u\(i % 30)") } }
                return try await group.reduce(into: [EmitResult]()) { $0.append($1) }
            }
            #expect(results.allSatisfy { if case .committed = $0 { true } else { false } })
            let counts = try await d.runtime.store.counts()
            #expect(counts.conversations == 30 && counts.messages == 300)
        }
    }

    @Test func statusesReadsAndReactionsMapToOurMessages() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let ctx = d.context(channel)
            let conv = try await OutboundTests.conversation(d, channel)
            let r = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"x"}],"metadata":{"t":"1"}}"#)
            let id = try #require(r.json?["id"]?.stringValue)
            try await eventually { try await d.runtime.store.message(id)?.externalID != nil }
            let peer = Peer(channelUserID: "u1")
            #expect(try await ctx.emit(InboundEvent(.status(externalID: "ext-\(id)", status: .delivered, error: nil), peer: peer, dedupeKey: "s1")) != .duplicate)
            let conversationsBefore = try await d.runtime.store.counts().conversations
            let unknown = try await ctx.emit(InboundEvent(.status(externalID: "nope", status: .read, error: nil), peer: Peer(channelUserID: "stranger"), dedupeKey: "s2"))
            if case .ignored = unknown {} else { Issue.record("a status for an unknown message is ignored, got \(unknown)") }
            #expect(try await d.runtime.store.counts().conversations == conversationsBefore, "an ignored receipt creates nothing")
            _ = try await ctx.emit(InboundEvent(.reaction(targetExternalID: "ext-\(id)", emoji: "👍", action: "add"), peer: peer, dedupeKey: "r1"))
            _ = try await ctx.emit(InboundEvent(.read(upTo: .now()), peer: peer, dedupeKey: "w1"))
            _ = try await ctx.emit(InboundEvent(.typing(started: true), peer: peer))
            let events = try await d.runtime.store.events(afterSeq: 0, limit: 100)
            let byType = Dictionary(grouping: events, by: \.type)
            let delivered = try JSONValue.parse(byType["message.status"]!.first { String(decoding: $0.body, as: UTF8.self).contains("delivered") }!.body)
            #expect(delivered["data"]?["message_id"]?.stringValue == id)
            #expect(delivered["data"]?["metadata"]?["t"]?.stringValue == "1")
            let reaction = try JSONValue.parse(try #require(byType["message.reaction"]?.first).body)
            #expect(reaction["data"]?["target_message_id"]?.stringValue == id)
            let read = try JSONValue.parse(try #require(byType["conversation.read"]?.first).body)
            #expect(read["data"]?["message_ids"]?.arrayValue?.first?.stringValue == id)
            #expect(byType["typing.started"]?.count == 1)
        }
    }

    @Test func groupThreadsKeepTheSpeakerAsSender() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let ctx = d.context(channel)
            let group = Peer(channelUserID: "group:G1", displayName: "Team")
            var convs = Set<String>()
            for (speaker, text) in [("alice", "hi"), ("bob", "yo")] {
                let r = try await ctx.emit(InboundEvent(.message(InboundMessage(externalID: text, parts: [.text(text)])), peer: group,
                                                        sender: Peer(channelUserID: speaker, displayName: speaker.capitalized), thread: "G1", dedupeKey: text))
                if case .committed(_, _, let c?) = r { convs.insert(c) }
            }
            #expect(convs.count == 1, "one conversation for the group")
            let msgs = try await d.runtime.store.messages(conversationID: convs.first!, after: nil, limit: 10)
            #expect(msgs.compactMap { $0.sender?.displayName } == ["Alice", "Bob"])
        }
    }
}

@Suite struct WebhookChannelTests {
    static let secret = "webhook-secret-0123456789"

    @Test("a webhook is handled on its connection's event loop, not handed to another thread and back")
    func webhooksAreHandledOnTheirConnectionsEventLoop() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            for _ in 0..<3 {
                let r = try await http("POST", d.publicBase + "/webhooks/\(channel)", body: Array("{}".utf8))
                #expect(r.status == 200)
                #expect(String(decoding: r.body, as: UTF8.self) == "event loop")
            }
        }
    }

    @Test func signedWebhooksAreCommittedAndBadOnesRefused() async throws {
        let channel = uniqueID("wh")
        try await withDaemon("channels: [ { id: \(channel), type: webhook, secret: \"\(Self.secret)\" } ]") { d in
            let url = d.publicBase + "/webhooks/\(channel)"
            let body = Array(#"{"id":"m-1","from":{"id":"42","name":"Ann"},"text":"Hi there"}"#.utf8)
            let sig = WebhookChannelAdapter.sign(body, secret: Array(Self.secret.utf8))
            // Missing, wrong, and right signature over a body re-encoded with other spacing.
            #expect(try await http("POST", url, body: body).status == 401)
            #expect(try await http("POST", url, body: body, headers: ["x-switchboard-signature": "sha256=" + String(repeating: "0", count: 64)]).status == 401)
            let reencoded = Array(#"{"id": "m-1", "from": {"id": "42", "name": "Ann"}, "text": "Hi there"}"#.utf8)
            #expect(try await http("POST", url, body: reencoded, headers: ["x-switchboard-signature": sig]).status == 401)
            #expect(try await d.runtime.store.counts().messages == 0, "nothing stored for a bad signature")
            let ok = try await http("POST", url, body: body, headers: ["X-Switchboard-Signature": sig])
            #expect(ok.status == 200 && ok.json?["result"]?.stringValue == "committed")
            let dup = try await http("POST", url, body: body, headers: ["x-switchboard-signature": sig])
            #expect(dup.json?["result"]?.stringValue == "duplicate")
            // A batch, and one malformed item refusing the request with a clear message.
            let batch = Array(#"{"events":[{"id":"m-2","from":{"id":"42"},"text":"two"},{"id":"m-3","from":{"id":"43"},"parts":[{"type":"location","lat":1.5,"long":2.5}]}]}"#.utf8)
            let b = try await http("POST", url, body: batch, headers: ["x-switchboard-signature": WebhookChannelAdapter.sign(batch, secret: Array(Self.secret.utf8))])
            #expect(b.json?["results"]?.arrayValue?.count == 2)
            let broken = Array(#"{"id":"m-4","text":"no sender"}"#.utf8)
            let r = try await http("POST", url, body: broken, headers: ["x-switchboard-signature": WebhookChannelAdapter.sign(broken, secret: Array(Self.secret.utf8))])
            #expect(r.status == 400 && String(decoding: r.body, as: UTF8.self).contains("from.id"))
            #expect(try await http("POST", d.publicBase + "/webhooks/nope", body: body).status == 404)
            #expect(try await d.runtime.store.counts().messages == 3)
        }
    }

    /// A customer's message is deduplicated on its own id (the stored message is the record),
    /// but an id that already names one of our messages — an echo here; the integrator may
    /// number each direction on its own — does not make a new customer message a duplicate.
    @Test func aCustomerMessageWhoseIdIsOneOfOursIsStoredOnce() async throws {
        let channel = uniqueID("wh")
        try await withDaemon("channels: [ { id: \(channel), type: webhook, secret: \"\(Self.secret)\" } ]") { d in
            let url = d.publicBase + "/webhooks/\(channel)"
            func post(_ json: String) async throws -> String? {
                let body = Array(json.utf8)
                return try await http("POST", url, body: body, headers: ["x-switchboard-signature": WebhookChannelAdapter.sign(body, secret: Array(Self.secret.utf8))])
                    .json?["result"]?.stringValue
            }
            #expect(try await post(#"{"id":"7","from":{"id":"42"},"text":"sent from the app","echo":true}"#) == "committed")
            #expect(try await post(#"{"id":"7","from":{"id":"42"},"text":"a customer's message 7"}"#) == "committed")
            #expect(try await post(#"{"id":"7","from":{"id":"42"},"text":"a customer's message 7"}"#) == "duplicate")
            #expect(try await post(#"{"id":"8","from":{"id":"42"},"text":"eight"}"#) == "committed")
            #expect(try await post(#"{"id":"8","from":{"id":"42"},"text":"eight"}"#) == "duplicate")
            #expect(try await d.runtime.store.counts().messages == 3)
            let keys = try await d.runtime.store.pool.read { db in try String.fetchAll(db, sql: "SELECT key FROM dedupe_keys ORDER BY key") }
            // The echo's key, and the colliding customer message's; none for message 8, which
            // is its own record.
            #expect(keys == ["inbound:7", "msg:7"])
        }
    }

    @Test func repliesArePostedSignedToTheOutboundURL() async throws {
        try await withHelpdesk { receiver in
            let channel = uniqueID("wh")
            try await withDaemon("channels: [ { id: \(channel), type: webhook, secret: \"\(Self.secret)\", outbound_url: \"\(receiver.url)\", rich: false } ]") { d in
                guard case .committed(_, _, let conv?) = try await d.context(channel).customerSays("hi", from: "42") else { return }
                let r = try await d.api("POST", "/v1/conversations/\(conv)/messages",
                                        json: #"{"parts":[{"type":"quick_replies","text":"Size?","options":[{"title":"S"},{"title":"M"}]}]}"#)
                #expect(r.status == 202)
                try await eventually { receiver.deliveries.count == 1 }
                let delivery = receiver.deliveries[0]
                #expect(delivery.headers["x-switchboard-signature"] == WebhookChannelAdapter.sign(Array(delivery.body), secret: Array(Self.secret.utf8)))
                let body = try JSONValue.parse(delivery.body)
                #expect(body["to"]?["id"]?.stringValue == "42")
                #expect(body["text"]?.stringValue == "Size?")
                #expect(body["parts"]?.arrayValue?.first?["text"]?.stringValue == "Size?\n1. S\n2. M")
                #expect(delivery.headers["idempotency-key"] == r.json?["id"]?.stringValue)
                // A receiver that refuses our signature: the channel turns `auth_expired` and the
                // reply waits on the retry schedule; once the secret is fixed it goes out.
                receiver.setMode(.refuse(401))
                let refused = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"again"}]}"#)
                let refusedID = try #require(refused.json?["id"]?.stringValue)
                try await eventually("channel auth_expired") {
                    try await d.storedEvents("channel.status").contains { $0["data"]?["state"] == "auth_expired" }
                }
                receiver.setMode(.up)
                try await eventually("sent on a retry") { receiver.deliveries.count == 2 }
                #expect(receiver.deliveries[1].headers["idempotency-key"] == refusedID)
                #expect(try await !d.storedEvents("message.status").contains { $0["data"]?["message_id"]?.stringValue == refusedID && $0["data"]?["status"] == "failed" })
            }
        }
    }
}

@Suite struct ConfigTests {
    static func problems(_ yaml: String, env: [String: String] = [:]) -> [String] {
        let d = ConfigDiagnostics()
        _ = ConfigLoader.load(text: yaml, environment: ConfigEnvironment(variables: env, baseDirectory: "/tmp"),
                              adapterKinds: ["webhook"], diagnostics: d)
        return d.problems
    }

    @Test func diagnosticsNameTheKeyPath() {
        let p = Self.problems("""
            api: { socket: /run/x.sock, socket_mode: 0660, tokenz: [] }
            server: { listen_file: x }
            outbound: { retry: { schedule: [5s, soon], jitter: 3 } }
            helpdesks: [ { name: a, url: "https://x", secret: "${MISSING}", events: ["conversation.handover", "mesage.*", "message.recieved"] } ]
            """)
        #expect(p.contains { $0.hasPrefix("api.socket_mode: quote the mode") })
        #expect(p.contains("api.tokenz: unknown key (did you mean tokens?)"))
        #expect(p.contains { $0.hasPrefix("server.listen_file: unknown key") }, "_file only for secrets")
        #expect(p.contains { $0.hasPrefix("outbound.retry.schedule[1]: expected a duration") })
        #expect(p.contains { $0.hasPrefix("helpdesks[0].events[1]: unknown event type mesage.*") }, "a typo'd family matches nothing")
        #expect(!p.contains { $0.hasPrefix("helpdesks[0].events[0]") }, "an adapter's type in a known family is fine")
        #expect(p.contains { $0.hasPrefix("helpdesks[0].events[2]: unknown event type message.recieved") }, "a typo'd type matches nothing")
        #expect(p.contains { $0.hasPrefix("outbound.retry.jitter:") })
        #expect(p.contains("helpdesks[0].secret: environment variable MISSING is not set"))
    }

    /// Values that used to pass check-config and then trap, or fail at every delivery for days:
    /// each is now a problem naming its key.
    @Test func outOfRangeValuesAreProblemsNotCrashes() {
        let p = Self.problems("""
            instance: ""
            server: { listen: "127.0.0.1:0", public_url: "https://", shutdown_grace: 0s }
            storage: { path: "" }
            media: { max_bytes: "10000000000GB" }
            outbound: { retry: { schedule: [1, "2s", "inf", "-1s", "400d"] } }
            helpdesks:
              - { name: a, url: "", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", timeout: 1e17 }
              - { name: b, url: "http+unix:///run/desk/hooks.sock/x", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
              - { name: c, url: "http+unix://%2Frun%2Fdesk.sock/hooks", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
              - { name: "", url: "https://desk.example/hooks", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
            """)
        #expect(p.contains { $0.hasPrefix("instance: must not be empty") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("server.public_url:") })
        #expect(p.contains { $0.hasPrefix("server.shutdown_grace:") })
        #expect(p.contains { $0.hasPrefix("storage.path: must not be empty") })
        #expect(p.contains { $0.hasPrefix("media.max_bytes: expected a size") })
        #expect(p.contains { $0.hasPrefix("outbound.retry.schedule[2]:") } && p.contains { $0.hasPrefix("outbound.retry.schedule[3]:") }
                && p.contains { $0.hasPrefix("outbound.retry.schedule[4]:") } && !p.contains { $0.hasPrefix("outbound.retry.schedule[0]") })
        #expect(p.contains { $0.hasPrefix("helpdesks[0].url:") } && p.contains { $0.hasPrefix("helpdesks[0].timeout:") })
        #expect(p.contains { $0.hasPrefix("helpdesks[1].url:") && $0.contains("percent-encoded") })
        #expect(!p.contains { $0.hasPrefix("helpdesks[2]") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("helpdesks[3].name: must not be empty") })
        #expect(ConfigNode.parseBytes("25MiB") == 26_214_400 && ConfigNode.parseBytes("-1") == nil && ConfigNode.parseBytes("9999999999999GB") == nil)
        // A single duration where a list is expected is a list of one, as it always was.
        let d = ConfigDiagnostics()
        let single = ConfigLoader.load(text: "outbound: { retry: { schedule: 30s } }", environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"),
                                       adapterKinds: ["webhook"], diagnostics: d)
        #expect(d.problems.isEmpty && single.sendRetry.delays == [30], "\(d.problems)")
    }

    @Test func envAndCredentialFilesResolve() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let secret = "whsec_" + Data((0..<32).map { UInt8($0 + 1) }).base64EncodedString()
        try (secret + "\n").write(toFile: dir.file("desk"), atomically: true, encoding: .utf8)
        let d = ConfigDiagnostics()
        let c = ConfigLoader.load(text: """
            server: { listen: "${HOST}:9000" }
            api: { socket: /run/x.sock, socket_mode: "0640" }
            helpdesks: [ { name: desk, url: "https://x", secret_file: desk } ]
            """, environment: ConfigEnvironment(variables: ["HOST": "127.0.0.2", "CREDENTIALS_DIRECTORY": dir.path], baseDirectory: "/"),
            adapterKinds: [], diagnostics: d)
        #expect(d.problems.isEmpty, "\(d.problems)")
        #expect(c.listen == HostPort(host: "127.0.0.2", port: 9000))
        #expect(c.apiSocketMode == 0o640)
        #expect(c.helpdesks.first?.secret == secret)
    }

    static let secret = "whsec_" + Data((0..<32).map { UInt8($0 + 1) }).base64EncodedString()

    /// A helpdesk header may come from a credential file (an API token kept out of the config);
    /// problems name the key, never the value.
    @Test func helpdeskHeadersFromFiles() throws {
        let dir = TempDir()
        defer { dir.remove() }
        try "Token token=s3cr3t-value\n".write(toFile: dir.file("desk-auth"), atomically: true, encoding: .utf8)
        try "two\nlines\n".write(toFile: dir.file("broken"), atomically: true, encoding: .utf8)
        let env = ConfigEnvironment(variables: ["CREDENTIALS_DIRECTORY": dir.path, "TENANT": "t-1"], baseDirectory: "/")
        let d = ConfigDiagnostics()
        let c = ConfigLoader.load(text: """
            helpdesks: [ { name: desk, url: "https://x", secret: "\(Self.secret)", headers: { Authorization: { file: desk-auth }, X-Tenant: "${TENANT}" } } ]
            """, environment: env, adapterKinds: [], diagnostics: d)
        #expect(d.problems.isEmpty, "\(d.problems)")
        #expect(c.helpdesks.first?.headers.map { "\($0.0)=\($0.1)" } == ["Authorization=Token token=s3cr3t-value", "X-Tenant=t-1"])

        let bad = ConfigDiagnostics()
        _ = ConfigLoader.load(text: """
            helpdesks: [ { name: desk, url: "https://x", secret: "\(Self.secret)", headers: { A: { file: missing }, B: { path: x }, C: { file: broken }, D: "a\\nb" } } ]
            """, environment: env, adapterKinds: [], diagnostics: bad)
        let p = bad.problems
        #expect(p.contains { $0.hasPrefix("helpdesks[0].headers.A.file:") && $0.contains("missing") }, "\(p)")
        #expect(p.contains("helpdesks[0].headers.B.path: unknown key"), "\(p)")
        #expect(p.contains("helpdesks[0].headers.B: expected a header value, or { file: <path> }"), "\(p)")
        #expect(p.contains("helpdesks[0].headers.C.file: the file's value has a line break inside"), "\(p)")
        #expect(p.contains("helpdesks[0].headers.D: a header value cannot contain a line break"), "\(p)")
        #expect(!p.joined().contains("two") && !p.joined().contains("lines"), "never the file's content")

        let reserved = ConfigDiagnostics()
        _ = ConfigLoader.load(text: """
            helpdesks: [ { name: desk, url: "https://x", secret: "\(Self.secret)", headers: { Content-Length: "5", Webhook-Signature: "v1,x", Host: "desk.internal", Content-Type: "application/json" } } ]
            """, environment: env, adapterKinds: [], diagnostics: reserved)
        #expect(reserved.problems.sorted() == ["helpdesks[0].headers.Content-Length: set by the daemon for every request; it cannot be configured",
                                               "helpdesks[0].headers.Webhook-Signature: set by the daemon for every request; it cannot be configured"])
    }
}

@Suite struct StoreDurabilityTests {
    /// An event's sequence number comes from the cursor ingest keeps when the cursor is right,
    /// and is read back from the conversation when it is not: never a number twice.
    @Test func aStaleSequenceCursorFallsBackToTheStoredNumber() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("s.sqlite"))
        defer { try? store.pool.close() }
        let sequences = try store.pool.writeWithoutTransaction { db -> [String?] in
            try db.execute(sql: "PRAGMA foreign_keys = OFF")
            try db.execute(sql: """
                INSERT INTO conversations (id, channel_id, channel_type, identity_id, thread, created_at, updated_at, last_sequence)
                VALUES ('c1', 'ch', 'webhook', 'i1', '*', 0, 0, 5)
                """)
            let cursor = Store.SequenceCursor(3)  // stale: the conversation is at 5
            var out: [String?] = []
            for touch in [Store.Touch(lastInboundAt: 1), nil, Store.Touch(lastInboundAt: 2)] {
                let id = try Store.appendEvent(db, cursor: cursor, ctx: EventContext(source: "urn:t"), type: .messageReceived, conversationID: "c1",
                                               channel: nil, dataJSON: Data("{}".utf8), now: 10, touch: touch)
                let body = try #require(try Data.fetchOne(db, sql: "SELECT body FROM events WHERE id = ?", arguments: [id]))
                out.append(try JSON.decode(CloudEvent.self, from: body).sequence)
            }
            #expect(cursor.last == 8)
            #expect(try Int64.fetchOne(db, sql: "SELECT last_sequence FROM conversations WHERE id = 'c1'") == 8)
            return out
        }
        #expect(sequences == [6, 7, 8].map { CloudEvent.sequenceString($0) })
    }

    /// Ingest looks for a numbered prompt only once one may exist; a store reopened on a
    /// database that holds one knows it from the start.
    @Test func numberedPromptsAreLookedForOnceOneWasStored() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("s.sqlite")
        let fresh = try Store(path: path)
        #expect(fresh.numberedPromptsMayExist.load(ordering: .relaxed) == false)
        try fresh.pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA foreign_keys = OFF")
            try db.execute(sql: "INSERT INTO numbered_options (conversation_id, message_id, options, expires_at) VALUES ('c', 'm', '[]', 0)")
        }
        try fresh.pool.close()
        let reopened = try Store(path: path)
        #expect(reopened.numberedPromptsMayExist.load(ordering: .relaxed) == true)
        try reopened.pool.close()
    }

    /// Message ids follow commit order: a webhook prepared before another message commits, and
    /// committed after it, still sorts after it, so a client paging with `after=` sees both.
    /// The prepared body (ids filled in at commit) is what is stored, raw payload link included.
    @Test func messageIDsFollowCommitOrder() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("s.sqlite"), durability: .normal)
        let ctx = EventContext(source: "urn:t")
        let channel = ChannelRef(type: "recording", id: "r")
        func inbound(_ text: String, raw: Int = 2) -> InboundWork {
            let body = "{\"t\":\"" + String(repeating: "x", count: raw) + "\"}"
            return InboundWork(channel: channel, event: InboundEvent(.message(InboundMessage(externalID: text, parts: [.text(text)])),
                                                                     peer: Peer(channelUserID: "u1", displayName: "Kim"), dedupeKey: text,
                                                                     raw: .json(Data(body.utf8))))
        }
        _ = try await store.commitInbound([inbound("first")], ctx: ctx)
        // Prepared as webhook handlers do, before waiting for the writer…
        let late = Store.PreparedInbound(inbound("late", raw: 20_000))
        try await Task.sleep(for: .milliseconds(5))
        // …while another message commits first.
        _ = try await store.commitInbound([inbound("meanwhile")], ctx: ctx)
        let results = try await store.commitInbound([late], ctx: ctx)
        guard case .success(.committed(_, let lateID?, let conversationID?)) = results.first else {
            Issue.record("not committed: \(results)")
            return
        }
        let all = try await store.messages(conversationID: conversationID, after: nil, limit: 10)
        #expect(all.map(\.textFallback) == ["first", "meanwhile", "late"])
        #expect(try await store.messages(conversationID: conversationID, after: all[1].id, limit: 10).map(\.id) == [lateID])
        let stored = try #require(all.last)
        #expect(stored.id == lateID && stored.conversationID == conversationID && stored.sender?.displayName == "Kim")
        #expect(stored.raw?.ref == "/v1/messages/\(lateID)/raw")
    }

    /// Stopping the ingest writer (cancellation here; graceful shutdown takes the same path):
    /// every event queued before it is committed and answered, none is left waiting, later
    /// emits are refused at once, and `run` returns only after the writer thread has ended.
    @Test(.timeLimit(.minutes(1)))
    func theWriterCommitsWhatIsQueuedWhenStopped() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("s.sqlite"))
        let pipeline = IngestPipeline(store: store, eventSignal: ChangeSignal(), context: EventContext(source: "urn:t"),
                                      logger: Logger(label: "test"))
        let channel = ChannelRef(type: "recording", id: "r")
        func work(_ i: Int) -> InboundWork {
            InboundWork(channel: channel, event: InboundEvent(.message(InboundMessage(externalID: "e\(i)", parts: [.text("m\(i)")])),
                                                              peer: Peer(channelUserID: "u\(i % 7)"), dedupeKey: "e\(i)"))
        }
        let runner = Task { try await pipeline.run() }
        let outcomes = await withTaskGroup(of: Bool?.self) { group -> [Bool?] in
            for i in 0..<400 {
                group.addTask {
                    do {
                        guard case .committed = try await pipeline.emit(work(i)) else { return nil }
                        return true
                    } catch is IngestPipeline.ShuttingDown { return false } catch { return nil }
                }
            }
            // Stop once the writer is under way: the rest are queued, in flight or not yet sent.
            var all = [await group.next()!]
            runner.cancel()
            for await o in group { all.append(o) }
            return all
        }
        try await runner.value
        #expect(outcomes.allSatisfy { $0 != nil }, "every emit was either committed or refused as shutting down")
        let committed = outcomes.filter { $0 == true }.count
        #expect(committed > 0)
        #expect(try await store.counts().messages == committed, "what was answered committed is stored, and nothing else")
        await #expect(throws: IngestPipeline.ShuttingDown.self) { _ = try await pipeline.emit(work(1000)) }
    }

    /// GRDB puts WAL databases at synchronous=NORMAL; acknowledged commits must still run at FULL.
    @Test func acknowledgedWritesAreFsynced() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let full = try Store(path: dir.file("full.sqlite"), durability: .full)
        #expect(try await full.acknowledgedWrite { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } == 2, "FULL")
        #expect(try full.acknowledgedWriteBlocking { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } == 2, "FULL on the ingest writer's thread too")
        #expect(try await full.pool.write { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } == 1, "bookkeeping stays NORMAL")
        let normal = try Store(path: dir.file("normal.sqlite"), durability: .normal)
        #expect(try await normal.acknowledgedWrite { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } == 1)
        #expect(try await full.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") } == "wal")
    }
}

@Suite struct WALCheckpointTests {
    /// The writer leaves checkpoints to the checkpointer (its own threshold is only a safety
    /// net), and the checkpointer copies every committed frame into the database file.
    @Test func checkpointsRunBesideTheWriter() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"))
        #expect(try await store.pool.write { db in try Int.fetchOne(db, sql: "PRAGMA wal_autocheckpoint") } == 16_000)
        #expect(try await store.pool.write { db in try Int.fetchOne(db, sql: "PRAGMA cache_size") } == -32 * 1024)
        #expect(try await store.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA cache_size") } == -8 * 1024)
        let checkpointer = try WALCheckpointer(store: store, threshold: 0, interval: .milliseconds(20), logger: Logger(label: "test"))
        for i in 0..<200 {
            try await store.acknowledgedWrite { db in
                try db.execute(sql: "INSERT INTO dedupe_keys (channel_id, key, created_at) VALUES ('c', ?, 0)", arguments: ["k\(i)"])
            }
        }
        let r = try await checkpointer.checkpoint()
        #expect(r.walFrames > 0)
        #expect(r.checkpointed == r.walFrames)
        // As a service: new commits get checkpointed without anyone asking.
        let before = checkpointer.completed
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await checkpointer.run() }
            try await store.acknowledgedWrite { db in
                try db.execute(sql: "INSERT INTO dedupe_keys (channel_id, key, created_at) VALUES ('c', 'late', 0)")
            }
            try await eventually("checkpointed") { checkpointer.completed > before }
            group.cancelAll()
        }
    }
}

@Suite struct StateUpdatesWithEventsTests {
    static let channel = ChannelRef(type: "webhook", id: "hooks")

    func event(_ ext: String, updates: [StateUpdate]) -> InboundWork {
        var e = InboundEvent(.message(InboundMessage(externalID: ext, parts: [.text("hi \(ext)")])), peer: Peer(channelUserID: "u1", displayName: "U"),
                             dedupeKey: "msg:\(ext)")
        e.stateUpdates = updates
        return InboundWork(channel: Self.channel, event: e)
    }

    func state(_ store: Store, _ key: String) async throws -> String? {
        try await StoreAdapterState(store: store, channelID: Self.channel.id).get(key)
    }

    /// State that rides with an event is written in its transaction, with the conversation's
    /// id filled in; a duplicate writes nothing; a versioned key never moves backwards.
    @Test func committedWithTheEventOnly() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"))
        let ctx = EventContext(source: "urn:test")
        let first = try await store.commitInbound([event("m1", updates: [
            StateUpdate(key: "window:{conversation_id}", value: "2000", version: 2000),
            StateUpdate(key: "cursor", value: "A"),
        ])], ctx: ctx)
        guard case .success(.committed(_, _, let conversation?)) = first[0] else { Issue.record("not committed: \(first)"); return }
        #expect(try await state(store, "window:\(conversation)") == "2000")
        #expect(try await state(store, "cursor") == "A")
        // A redelivery of m1 is a duplicate: its state changes are not applied.
        let dup = try await store.commitInbound([event("m1", updates: [StateUpdate(key: "cursor", value: "B")])], ctx: ctx)
        #expect({ if case .success(.duplicate) = dup[0] { true } else { false } }())
        #expect(try await state(store, "cursor") == "A")
        // An older version arriving later leaves the newer value; a newer one replaces it; nil deletes.
        _ = try await store.commitInbound([event("m2", updates: [StateUpdate(key: "window:{conversation_id}", value: "1000", version: 1000),
                                                                 StateUpdate(key: "cursor", value: nil)])], ctx: ctx)
        #expect(try await state(store, "window:\(conversation)") == "2000")
        #expect(try await state(store, "cursor") == nil)
        _ = try await store.commitInbound([event("m3", updates: [StateUpdate(key: "window:{conversation_id}", value: "3000", version: 3000)])], ctx: ctx)
        #expect(try await state(store, "window:\(conversation)") == "3000")
    }

    /// The conversation keeps the customer's latest message by the platform's clock and its
    /// id (WhatsApp's window and mark-as-read): a message sent earlier but delivered later,
    /// and anything not from the customer, leave it alone.
    @Test func theCustomersLatestMessageIsKeptOnTheConversation() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"))
        let ctx = EventContext(source: "urn:test")
        func message(_ ext: String, sentAt: Int64, origin: Origin = .customer) -> InboundWork {
            InboundWork(channel: Self.channel, event: InboundEvent(.message(InboundMessage(origin: origin, externalID: ext, parts: [.text(ext)])),
                                                                  peer: Peer(channelUserID: "u1", displayName: "U"), dedupeKey: ext,
                                                                  occurredAt: Timestamp(milliseconds: sentAt)))
        }
        func last(_ conversation: String) async throws -> ConversationFields.LastInbound? {
            try await store.conversation(conversation)?.fields.lastInbound
        }
        let first = try await store.commitInbound([message("m2", sentAt: 2_000)], ctx: ctx)
        guard case .success(.committed(_, _, let conversation?)) = first[0] else { Issue.record("not committed: \(first)"); return }
        #expect(try await last(conversation) == .init(sentAt: Timestamp(milliseconds: 2_000), externalID: "m2"))
        _ = try await store.commitInbound([message("m1", sentAt: 1_000)], ctx: ctx)
        _ = try await store.commitInbound([message("e1", sentAt: 5_000, origin: .echo)], ctx: ctx)
        #expect(try await last(conversation) == .init(sentAt: Timestamp(milliseconds: 2_000), externalID: "m2"))
        // Two in one batch: the later by the platform's clock wins, whatever the order.
        _ = try await store.commitInbound([message("m4", sentAt: 4_000), message("m3", sentAt: 3_000)], ctx: ctx)
        #expect(try await last(conversation) == .init(sentAt: Timestamp(milliseconds: 4_000), externalID: "m4"))
        // The JSON form of a conversation is unchanged: this is the store's, not the format's.
        let json = try JSON.encode(try #require(try await store.conversation(conversation)))
        #expect(!String(decoding: json, as: UTF8.self).contains("m4"))
    }

    /// The body prepared before the transaction, with the real ids filled in, is byte for byte
    /// what encoding the message with those ids gives, even when the customer's text carries
    /// the placeholders' marker, or a placeholder's prefix, next to where the ids go.
    @Test func preparedBodyMatchesTheMessageEncodedWithItsIDs() throws {
        let channel = ChannelRef(type: "recording", id: "rec")
        let texts = ["hello", "_ZZZZZZZZZZ", "conv_ZZZZZZZZZZ and msg_ZZZZZZZZZZZZZZZZZZZZZZZZZZ", "ident_" + String(repeating: "Z", count: 40),
                     "é_ZZZZZZZZZZZ_", String(Store.PreparedBody.messagePlaceholder.dropLast()) + "!"]
        for text in texts {
            for echo in [false, true] {
                let work = InboundWork(channel: channel, event: InboundEvent(
                    .message(InboundMessage(origin: echo ? .echo : .customer, externalID: "x-\(text)", parts: [.text(text)])),
                    peer: Peer(channelUserID: "u_ZZZZZZZZZZ", displayName: "Kim _ZZZZZZZZZZ"), raw: .json(Data("{\"t\":\"\(text)\"}".utf8))))
                let prepared = Store.PreparedBody(work)
                let (messageID, conversationID, identityID) = (ID.make(.message), ID.make(.conversation), ID.make(.identity))
                let filled = try #require(prepared.filled(messageID: messageID, conversationID: conversationID, identityID: echo ? nil : identityID))
                let sender = Participant(role: "customer", identityID: identityID, channelUserID: "u_ZZZZZZZZZZ", displayName: "Kim _ZZZZZZZZZZ")
                guard case .message(let m) = work.event.kind else { return }
                let expected = try JSON.bytes(Store.message(id: messageID, work: work, m: m, conversationID: conversationID, sender: sender,
                                                            replyTo: nil, parts: m.parts, inlineRaw: prepared.inlineRaw))
                #expect(filled == expected, "\(text) echo=\(echo)")
            }
        }
    }

    /// Every placeholder in a key is replaced, wherever it stands; other braces and non-ASCII
    /// text are left as they are.
    @Test func placeholderFilledWhereverItStands() {
        let p = StateUpdate.conversationIDPlaceholder
        #expect(Store.fillingConversationID("cursor", "conv_1") == "cursor")
        #expect(Store.fillingConversationID(p, "conv_1") == "conv_1")
        #expect(Store.fillingConversationID("a{b}:\(p)/é/\(p){", "conv_1") == "a{b}:conv_1/é/conv_1{")
        #expect(Store.fillingConversationID("{conversation_i", "conv_1") == "{conversation_i")
    }
}
