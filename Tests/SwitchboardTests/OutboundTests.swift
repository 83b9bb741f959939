import Foundation
import GRDB
import Testing
@testable import SwitchboardCore
@testable import SwitchboardRuntime
@testable import SwitchboardStore

@Suite struct OutboundTests {
    static func conversation(_ d: TestDaemon, _ channel: String, user: String = "u1") async throws -> String {
        guard case .committed(_, _, let conv?) = try await d.context(channel).customerSays("hi", from: user) else {
            throw CancellationError()
        }
        return conv
    }

    @Test func sameIdempotencyKeyReturnsTheSameMessageAndSendsOnce() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("rec")
            try await withDaemon("""
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.status"] } ]
                channels: [ { id: \(channel), type: recording } ]
                """) { d in
                let conv = try await Self.conversation(d, channel)
                let body = #"{"parts":[{"type":"text","text":"On its way"}]}"#
                let a = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: body, headers: ["idempotency-key": "key-1"])
                let b = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: body, headers: ["idempotency-key": "key-1"])
                #expect(a.status == 202 && b.status == 202)
                #expect(a.json?["id"] == b.json?["id"])
                // The same request with other spacing and key order is the same request.
                let reordered = try await d.api("POST", "/v1/conversations/\(conv)/messages",
                                                json: #"{ "parts" : [ { "text": "On its way", "type": "text" } ] }"#, headers: ["idempotency-key": "key-1"])
                #expect(reordered.status == 202 && reordered.json?["id"] == a.json?["id"])
                try await eventually("status") { helpdesk.deliveries.count == 1 }
                try await Task.sleep(for: .milliseconds(200))
                #expect(TestRegistry.adapter(channel).sent.count == 1)
                #expect(helpdesk.deliveries.count == 1)
                // The same key with another body is refused, not silently mapped.
                let c = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"other"}]}"#,
                                        headers: ["idempotency-key": "key-1"])
                #expect(c.status == 422)
                #expect(c.json?["code"]?.stringValue == "idempotency_key_reused")
                #expect(c.headers["content-type"] == "application/problem+json")
            }
        }
    }

    @Test func retryableFailuresAreRetriedAndPermanentOnesAreNot() async throws {
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("rec")
            try await withDaemon("""
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.status"] } ]
                channels: [ { id: \(channel), type: recording } ]
                outbound: { retry: { schedule: [50ms, 50ms, 50ms, 50ms] } }
                """) { d in
                let adapter = TestRegistry.adapter(channel)
                let conv = try await Self.conversation(d, channel)
                adapter.setBehaviour(.failRetryable(times: 2))
                let a = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"a"}],"metadata":{"k":"v"}}"#)
                let id = try #require(a.json?["id"]?.stringValue)
                try await eventually("sent after retries") { helpdesk.events.contains { $0.data?["status"]?.stringValue == "sent" } }
                #expect(adapter.attempts == 3)
                let sent = try #require(helpdesk.events.first)
                #expect(sent.data?["message_id"]?.stringValue == id)
                #expect(sent.data?["attempt"]?.intValue == 3)
                #expect(sent.data?["metadata"]?["k"]?.stringValue == "v")

                adapter.setBehaviour(.failPermanent)
                let b = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"b"}],"metadata":{"k":"w"}}"#)
                let failedID = try #require(b.json?["id"]?.stringValue)
                try await eventually("failed status") { helpdesk.events.contains { $0.data?["status"]?.stringValue == "failed" } }
                try await Task.sleep(for: .milliseconds(300))
                #expect(adapter.attempts == 1, "a permanent failure is never retried")
                let failed = try #require(helpdesk.events.first { $0.data?["status"]?.stringValue == "failed" })
                #expect(failed.data?["message_id"]?.stringValue == failedID)
                #expect(failed.data?["error"]?["retryable"] == .bool(false))
                #expect(failed.data?["error"]?["channel_code"]?.stringValue == "131026")
                #expect(failed.data?["final"] == .bool(true))
                #expect(failed.data?["metadata"]?["k"]?.stringValue == "w")
                let stored = try await d.api("GET", "/v1/messages/\(failedID)")
                #expect(stored.json?["metadata"]?["k"]?.stringValue == "w")
            }
        }
    }

    /// The platform took the message but the store refuses to record it for a while (a full
    /// disk): the record is retried, the message is not sent again.
    @Test func aSendTheStoreCannotRecordIsNotSentAgain() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("""
            channels: [ { id: \(channel), type: recording } ]
            outbound: { retry: { schedule: [50ms, 50ms, 50ms, 50ms] } }
            """) { d in
            let conv = try await Self.conversation(d, channel)
            // Another connection to the same database makes removing the send from the queue
            // fail, as a full disk would, until the test lets it.
            // It waits for the daemon's writes (the send worker retrying its record) like the
            // daemon's own connections do, rather than failing at once on a busy database.
            var config = Configuration()
            config.busyMode = .timeout(10)
            let db = try DatabaseQueue(path: d.dir.file("db.sqlite"), configuration: config)
            try await db.write { db in
                try db.execute(sql: """
                    CREATE TABLE refuse (on_ INTEGER);
                    INSERT INTO refuse VALUES (1);
                    CREATE TRIGGER refuse_send_done BEFORE DELETE ON send_queue WHEN (SELECT on_ FROM refuse) = 1
                    BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
                    """)
            }
            let r = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"once"}]}"#)
            let id = try #require(r.json?["id"]?.stringValue)
            let adapter = TestRegistry.adapter(channel)
            try await eventually("sent") { adapter.sent.count == 1 }
            try await Task.sleep(for: .milliseconds(800))
            #expect(adapter.attempts == 1, "sent \(adapter.attempts) times while the record failed")
            try await db.write { db in try db.execute(sql: "UPDATE refuse SET on_ = 0") }
            try await eventually("recorded") { try await d.runtime.store.message(id)?.externalID != nil }
            #expect(adapter.attempts == 1)
            try await db.write { db in try db.execute(sql: "DROP TRIGGER refuse_send_done; DROP TABLE refuse") }
        }
    }

    @Test func repliesGoOutInTheOrderTheyWereWritten() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let conv = try await Self.conversation(d, channel)
            for i in 0..<10 {
                let r = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: "{\"parts\":[{\"type\":\"text\",\"text\":\"r\(i)\"}]}")
                #expect(r.status == 202)
            }
            let adapter = TestRegistry.adapter(channel)
            try await eventually { adapter.sent.count == 10 }
            #expect(adapter.sent.map(\.rendered.textFallback) == (0..<10).map { "r\($0)" })
        }
    }

    /// Two replies queued in the same millisecond (concurrent requests): one is claimed, the
    /// first written, and while it waits for a retry the second stays behind it.
    @Test func repliesQueuedInOneMillisecondKeepTheirOrder() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let conv = try #require(try await d.runtime.store.conversation(try await Self.conversation(d, channel)))
            let store = d.runtime.store
            // A channel id no send worker serves, so only this test claims.
            var parked = conv
            parked.channel = ChannelRef(type: "recording", id: uniqueID("idle"))
            let now = Store.nowMS() + 60_000
            var ids: [String] = []
            for text in ["first", "second"] {
                let rendered = try Renderer.render(parts: [.text(text)], fallbackText: nil, capabilities: .init(), channelType: "recording")
                let accepted = try await store.enqueueOutbound(OutboundRequest(conversation: parked, parts: [.text(text)], rendered: rendered, metadata: nil,
                                                                               replyTo: nil, sender: nil, idempotency: nil), now: now)
                ids.append(accepted.id)
            }
            let claimed = try await store.claimSends(channelID: parked.channel.id, limit: 16, leaseMS: 1000, now: now)
            #expect(claimed.map(\.message.id) == [ids[0]])
            try await store.retrySend(try #require(claimed.first), nextAttemptAt: now + 5000,
                                      error: SendError(code: "channel_error", message: "try later", retryable: true))
            #expect(try await store.claimSends(channelID: parked.channel.id, limit: 16, leaseMS: 1000, now: now).isEmpty,
                    "the second reply waits behind the first")
        }
    }

    @Test func requestsAreValidated() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let conv = try await Self.conversation(d, channel)
            let path = "/v1/conversations/\(conv)/messages"
            let empty = try await d.api("POST", path, json: #"{"parts":[]}"#)
            #expect(empty.status == 400 && empty.json?["code"]?.stringValue == "invalid_request")
            let bad = try await d.api("POST", path, json: #"{"parts":[{"type":"text"}]}"#)
            #expect(bad.status == 400)
            #expect(bad.json?["detail"]?.stringValue?.contains("parts[0].text") == true, "\(bad.json?["detail"] ?? nil)")
            let notJSON = try await d.api("POST", path, json: "{nope")
            #expect(notJSON.status == 400)
            let inboundOnly = try await d.api("POST", path, json: #"{"parts":[{"type":"interaction","kind":"postback","payload":"X"}]}"#)
            #expect(inboundOnly.status == 400 && inboundOnly.json?["code"]?.stringValue == "invalid_request")
            let template = try await d.api("POST", path, json: #"{"parts":[{"type":"template","channel":"whatsapp","name":"hello"}]}"#)
            #expect(template.status == 422 && template.json?["code"]?.stringValue == "capability_unsupported")
            let deny = try await d.api("POST", path, json: #"{"parts":[{"type":"quick_replies","text":"?","options":[{"title":"a"}]}],"policy":{"degrade":"deny"}}"#)
            #expect(deny.status == 422 && deny.json?["code"]?.stringValue == "capability_unsupported")
            let missing = try await d.api("POST", "/v1/conversations/conv_01M81SCQHA03BB129VE588XTBY/messages", json: #"{"parts":[{"type":"text","text":"x"}]}"#)
            #expect(missing.status == 404 && missing.json?["code"]?.stringValue == "not_found")
            TestRegistry.adapter(channel).setBehaviour(.rejectWindow)
            let closed = try await d.api("POST", path, json: #"{"parts":[{"type":"text","text":"late"}]}"#)
            #expect(closed.status == 422 && closed.json?["code"]?.stringValue == "window_closed")
            #expect(TestRegistry.adapter(channel).sent.isEmpty)
        }
    }

    @Test func overridesPassThroughAndActivityReachesTheAdapter() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let conv = try await Self.conversation(d, channel)
            let r = try await d.api("POST", "/v1/conversations/\(conv)/messages",
                                    json: #"{"parts":[{"type":"text","text":"plain"}],"overrides":{"recording":{"native":true}}}"#)
            #expect(r.status == 202)
            // Empty parts need a native payload for this channel's type, not another's.
            let other = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[],"overrides":{"whatsapp":{"type":"text"}}}"#)
            #expect(other.status == 400 && other.json?["code"] == "invalid_request", "\(String(decoding: other.body, as: UTF8.self))")
            let adapter = TestRegistry.adapter(channel)
            try await eventually { adapter.sent.count == 1 }
            #expect(adapter.sent[0].rendered.override?["native"] == .bool(true))
            let a = try await d.api("POST", "/v1/conversations/\(conv)/activity", json: #"{"type":"typing_start"}"#)
            #expect(a.status == 204)
            #expect(adapter.activities == [.typingStart])
            let bad = try await d.api("POST", "/v1/conversations/\(conv)/activity", json: #"{"type":"dance"}"#)
            #expect(bad.status == 400)
        }
    }

    @Test func proactiveConversation() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let r = try await d.api("POST", "/v1/conversations", json: """
                {"channel_id":"\(channel)","address":"+4915112345678","display_name":"Max","message":{"parts":[{"type":"text","text":"Your order shipped"}]}}
                """)
            #expect(r.status == 202)
            let conv = try #require(r.json?["conversation"]?["id"]?.stringValue)
            try await eventually { TestRegistry.adapter(channel).sent.count == 1 }
            #expect(TestRegistry.adapter(channel).sent[0].recipient.channelUserID == "+4915112345678")
            // The customer's answer lands in the same conversation.
            guard case .committed(_, _, let c2?) = try await d.context(channel).customerSays("thanks", from: "+4915112345678") else {
                Issue.record("not committed"); return
            }
            #expect(c2 == conv)
            let unknown = try await d.api("POST", "/v1/conversations", json: #"{"channel_id":"nope","address":"x"}"#)
            #expect(unknown.status == 404)
        }
    }

    /// A graceful stop lets a send under way finish and records it: the restarted daemon does
    /// not send it again. (The supervisor used to cancel send workers at once: the answered
    /// send went unrecorded and out a second time after the restart.)
    @Test func aSendUnderWayAtShutdownIsRecordedNotRepeated() async throws {
        let channel = uniqueID("rec")
        let config = "channels: [ { id: \(channel), type: recording } ]"
        let d = try await TestDaemon.start(config)
        let conv = try await Self.conversation(d, channel)
        let adapter = TestRegistry.adapter(channel)
        adapter.setBehaviour(.slow(.milliseconds(700)))
        let r = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"on its way"}]}"#)
        let id = try #require(r.json?["id"]?.stringValue)
        try await eventually { adapter.attempts == 1 }
        await d.stop(keepFiles: true)
        #expect(adapter.sent.count == 1, "the send under way finished")

        let again = try await TestDaemon.start(config, dir: d.dir)
        defer { Task { await again.stop() } }
        let statuses = try await again.api("GET", "/v1/events?after=&types=message.status")
        #expect(String(decoding: statuses.body, as: UTF8.self).contains(#""status":"sent""#), "the send was recorded before the stop")
        try await Task.sleep(for: .milliseconds(800))
        #expect(TestRegistry.adapter(channel).sent.isEmpty, "sent again after the restart")
        _ = id
    }

    /// A receipt that names our message (WhatsApp echoes our id back) counts even when it beats
    /// the end of the send; the send's own `sent` then does not take the status back.
    @Test func aReceiptBeforeTheSendIsRecordedCounts() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let conv = try await Self.conversation(d, channel)
            let adapter = TestRegistry.adapter(channel)
            adapter.setBehaviour(.slow(.milliseconds(800)))
            let r = try await d.api("POST", "/v1/conversations/\(conv)/messages", json: #"{"parts":[{"type":"text","text":"two parts"}]}"#)
            let id = try #require(r.json?["id"]?.stringValue)
            try await eventually { adapter.attempts == 1 }
            func receipt(_ status: DeliveryStatus, hint: String?) async throws -> EmitResult {
                var e = InboundEvent(.status(externalID: "early-part-1", status: status, error: nil), peer: Peer(channelUserID: "u1"),
                                     dedupeKey: "status:early-part-1:\(status.rawValue)")
                e.ourMessageID = hint
                return try await d.context(channel).emit(e)
            }
            // Not ours: a hint naming an inbound message, or another channel's, finds nothing.
            guard case .ignored = try await receipt(.delivered, hint: "msg_01M81SCQHA03BB129VE588XTBY") else { Issue.record("unknown id taken"); return }
            guard case .committed = try await receipt(.delivered, hint: id) else { Issue.record("early receipt not taken"); return }
            try await eventually(timeout: 5) { adapter.sent.count == 1 }
            try await Task.sleep(for: .milliseconds(300))
            // The external id was learnt: a later receipt without the hint finds the message.
            guard case .committed = try await receipt(.read, hint: nil) else { Issue.record("later receipt not taken"); return }
            let events = try await d.api("GET", "/v1/events?after=&types=message.status")
            let statuses = (events.json?["events"]?.arrayValue ?? []).filter { $0["data"]?["message_id"]?.stringValue == id }
                .compactMap { $0["data"]?["status"]?.stringValue }
            #expect(statuses == ["delivered", "read"], "no `sent` after `delivered`")
        }
    }

    /// `display_name` names a new customer; one the channel already knows by name keeps it. A
    /// known customer without a name gets it, and the helpdesk hears of it (`identity.updated`).
    @Test func proactiveStartsDoNotRenameKnownCustomers() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            _ = try await d.context(channel).customerSays("hi", from: "jane-1", name: "Jane")
            _ = try await d.context(channel).customerSays("hello", from: "anon-2")
            func open(_ address: String, _ name: String) async throws -> Identity {
                let r = try await d.api("POST", "/v1/conversations", json: #"{"channel_id":"\#(channel)","address":"\#(address)","display_name":"\#(name)"}"#)
                #expect(r.status == 200 || r.status == 201, "\(String(decoding: r.body, as: UTF8.self))")
                let id = try #require(r.json?["conversation"]?["id"]?.stringValue)
                let conv = try #require(try await d.runtime.store.conversation(id))
                return try #require(try await d.runtime.store.identity(conv.identityID))
            }
            #expect(try await open("jane-1", "Max").displayName == "Jane")
            #expect(try await open("anon-2", "Lee").displayName == "Lee")
            let updates = try await d.api("GET", "/v1/events?after=&types=identity.updated")
            let lines = String(decoding: updates.body, as: UTF8.self)
            #expect(lines.contains("\"Lee\"") && !lines.contains("\"Max\""), "\(lines)")
        }
    }
}
