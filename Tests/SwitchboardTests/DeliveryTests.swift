import Foundation
import Testing
@testable import SwitchboardCore
@testable import SwitchboardDelivery
@testable import SwitchboardRuntime
@testable import SwitchboardStore
import Logging

@Suite struct DeliveryTests {
    /// The helpdesk is down while events arrive, then comes back: it receives every event, in
    /// order per conversation.
    @Test func outageThenRecoveryDeliversEverythingInOrder() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.down)
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks:
              - { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", retry: { schedule: [50ms, 100ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms], jitter: 0.2 } }
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        let ctx = d.context(channel)
        // 5 customers × 8 messages, interleaved, emitted concurrently per customer.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<5 {
                group.addTask {
                    for i in 0..<8 { _ = try await ctx.customerSays("c\(c) m\(i)", from: "cust-\(c)") }
                }
            }
            try await group.waitForAll()
        }
        // The worker keeps trying while the helpdesk is down (waited for, not slept: a loaded
        // machine may take a while to get there), and nothing counts as delivered.
        try await eventually("attempts while the helpdesk is down") { helpdesk.attempts.count >= 5 }
        #expect(helpdesk.deliveries.isEmpty)
        helpdesk.setMode(.up)
        try await eventually(timeout: 15, "all 45 events (5 conversation.created + 40 messages)") { Set(helpdesk.events.map(\.id)).count == 45 }
        // In order per conversation: sequences strictly increase, messages in emit order.
        let bySubject = Dictionary(grouping: helpdesk.events, by: { $0.subject ?? "" })
        #expect(bySubject.count == 5)
        for (_, events) in bySubject {
            let seqs = events.compactMap(\.sequence)
            #expect(seqs == seqs.sorted(), "sequence order")
            let texts = events.compactMap { $0.data?["text_fallback"]?.stringValue }
            let indices = texts.compactMap { Int($0.split(separator: "m").last ?? "") }
            #expect(indices == Array(0..<8), "message order \(texts)")
            #expect(events.first?.type == "switchboard.conversation.created")
        }
        // Outcomes are recorded just after delivery: wait for the outbox to show it.
        try await eventually("outbox drained") {
            let stats = try await d.runtime.store.sinkStats("desk")
            return stats.pending == 0 && stats.failed == 0
        }
    }

    @Test func retryAfterIsHonoured() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.tooMany(retryAfter: 1))
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"], retry: { schedule: [10ms, 10ms, 10ms] } } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("hi", from: "u1")
        try await eventually("first attempt") { helpdesk.attempts.count == 1 }
        helpdesk.setMode(.up)
        try await eventually(timeout: 5, "delivery after Retry-After") { helpdesk.deliveries.count == 1 }
        let gap = helpdesk.attempts[1] - helpdesk.attempts[0]
        // The schedule says 10 ms; the receiver said 1 s, and that wins.
        #expect(gap >= .milliseconds(950), "retried after \(gap)")
    }

    /// A redirect is a failed attempt, never followed: following a 302 turns the POST into a
    /// GET without the event, and the login page's 200 behind an auth proxy would count as
    /// delivered.
    @Test func redirectsAreNotFollowed() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.redirectToLogin)
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"], retry: { schedule: [20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms] } } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("hi", from: "u1")
        try await eventually("attempts") { helpdesk.attempts.count >= 3 }
        #expect(helpdesk.loginPageViews == 0)
        let stats = try await d.runtime.store.sinkStats("desk")
        #expect(stats.pending + stats.failed == 1, "not counted as delivered: \(stats)")
        helpdesk.setMode(.up)
        try await eventually(timeout: 5, "delivered once the receiver answers") { helpdesk.deliveries.count == 1 }
    }

    /// A receiver answering `Retry-After: 0` (or 1) over and over doesn't run through the whole
    /// schedule in a moment: its retries go on for as long as the schedule spans.
    @Test func aShortRetryAfterDoesNotUseTheScheduleUp() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.tooMany(retryAfter: 0))
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"], retry: { schedule: [2s, 2s, 2s], jitter: 0 } } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("hi", from: "u1")
        try await eventually(timeout: 20, "parked") { try await d.runtime.store.sinkStats("desk").failed == 1 }
        let attempts = helpdesk.attempts
        // 1 + 3 at once (the receiver said 0 s), then every 2 s (the first step) until the
        // schedule's 6 s have passed since the event was written. How many of those 2 s steps
        // fit depends on how late the first attempts ran (a busy test machine); that the
        // retries went on for seconds, not a moment, does not.
        #expect(attempts.count >= 4, "\(attempts.count) attempts")
        #expect(attempts.last! - attempts.first! >= .milliseconds(1500), "retried for \(attempts.last! - attempts.first!)")
    }

    @Test func goneDisablesTheSinkUntilRecovered() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.gone)
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.received"] } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("one", from: "u1")
        try await eventually("410 seen") { helpdesk.attempts.count == 1 }
        try await eventually("disabled") { try await d.runtime.store.isSinkDisabled("desk") }
        _ = try await d.context(channel).customerSays("two", from: "u1")
        try await Task.sleep(for: .milliseconds(400))
        #expect(helpdesk.attempts.count == 1, "a disabled sink gets nothing")
        let list = try await d.api("GET", "/v1/helpdesks")
        #expect(list.json?["helpdesks"]?.arrayValue?.first?["disabled_at"] != nil)
        #expect(list.json?["helpdesks"]?.arrayValue?.first?["pending"]?.intValue == 2)

        helpdesk.setMode(.up)
        let recovered = try await d.api("POST", "/v1/helpdesks/desk/recover")
        #expect(recovered.status == 200)
        try await eventually("both delivered after recovery") { helpdesk.deliveries.count == 2 }
        #expect(helpdesk.events.compactMap { $0.data?["text_fallback"]?.stringValue } == ["one", "two"])
        #expect(try await d.api("POST", "/v1/helpdesks/nope/recover").status == 404)
    }

    @Test func parkedEventsAreRecoverable() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.down)
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.received"], retry: { schedule: [10ms, 10ms] } } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("lost?", from: "u1")
        try await eventually("parked after 3 attempts") { try await d.runtime.store.sinkStats("desk").failed == 1 }
        #expect(helpdesk.attempts.count == 3)
        helpdesk.setMode(.up)
        let r = try await d.api("POST", "/v1/helpdesks/desk/recover")
        #expect(r.json?["requeued"]?.intValue == 1)
        try await eventually("recovered") { helpdesk.deliveries.count == 1 }
    }

    /// A helpdesk that hangs must not slow ingest or the other helpdesk.
    @Test func aHangingHelpdeskDoesNotSlowTheOthers() async throws {
        let slow = try await TestHelpdesk.start()
        let fast = try await TestHelpdesk.start()
        defer { Task { await slow.stop(); await fast.stop() } }
        slow.setMode(.hang)
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks:
              - { name: slow, url: "\(slow.url)", secret: "\(testSecret)", timeout: 20s, max_in_flight: 4 }
              - { name: fast, url: "\(fast.url)", secret: "\(testSecret)" }
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        let start = ContinuousClock.now
        for i in 0..<100 { _ = try await d.context(channel).customerSays("m\(i)", from: "u\(i % 10)") }
        let ingest = ContinuousClock.now - start
        try await eventually(timeout: 5, "fast helpdesk got everything") { fast.events.filter { $0.type == "switchboard.message.received" }.count == 100 }
        // The slow helpdesk holds each request for 30 s: had ingest waited on it, this would take
        // minutes. (Speed itself is measured by the benchmark, not here.)
        #expect(ingest < .seconds(20), "ingest took \(ingest) with a hanging helpdesk")
        // The hanging sink holds at most max_in_flight events in memory; the rest wait in SQLite.
        #expect(slow.attempts.count <= 4)
        #expect(try await d.runtime.store.sinkStats("slow").pending == 110)
    }

    /// One answer that never comes holds back its own conversation only: the other
    /// conversations' events keep going out while it waits for its timeout.
    @Test func aSlowAnswerHoldsBackOnlyItsConversation() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.hangOn("stuck-here"))
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"], timeout: 20s } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        let ctx = d.context(channel)
        _ = try await ctx.customerSays("stuck-here", from: "slow")
        try await eventually("the stuck event is at the helpdesk") { helpdesk.attempts.count == 1 }
        _ = try await ctx.customerSays("behind the stuck one", from: "slow")
        for i in 0..<10 { _ = try await ctx.customerSays("m\(i)", from: "u\(i % 3)") }
        try await eventually(timeout: 5, "the other conversations' events, while one answer hangs") {
            helpdesk.events.filter { $0.data?["text_fallback"]?.stringValue?.hasPrefix("m") == true }.count == 10
        }
        // The stuck conversation keeps its order: its second event waits for the first.
        #expect(!helpdesk.events.contains { $0.data?["text_fallback"]?.stringValue == "behind the stuck one" })
    }

    /// Configured headers go with every delivery, including one read from a file.
    @Test func configuredHeadersAreSent() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        let dir = TempDir()
        defer { dir.remove() }
        try "Bearer from-a-file\n".write(toFile: dir.file("auth"), atomically: true, encoding: .utf8)
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks:
              - { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"],
                  headers: { Authorization: { file: "\(dir.file("auth"))" }, X-Tenant: t-1, Host: desk.internal, User-Agent: desk-relay } }
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("hi", from: "u1")
        try await eventually("delivered") { helpdesk.deliveries.count == 1 }
        #expect(helpdesk.deliveries[0].headers["authorization"] == "Bearer from-a-file")
        #expect(helpdesk.deliveries[0].headers["x-tenant"] == "t-1")
        // A configured Host or User-Agent replaces the daemon's rather than doubling it.
        #expect(helpdesk.deliveries[0].headers["host"] == "desk.internal")
        #expect(helpdesk.deliveries[0].headers["user-agent"] == "desk-relay")
    }

    /// The receiver's answer body means nothing to delivery: however long, it is read and
    /// dropped, the event counts as delivered, and the connection carries the next events.
    @Test func aLongAnswerBodyIsReadAndDropped() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.upWithBody(300_000))
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"], retry: { schedule: [10ms] } } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        for i in 0..<5 { _ = try await d.context(channel).customerSays("m\(i)", from: "u1") }
        try await eventually("all five delivered and recorded") {
            let stats = try await d.runtime.store.sinkStats("desk")
            return helpdesk.events.count == 5 && stats.pending == 0 && stats.failed == 0
        }
        #expect(helpdesk.attempts.count == 5, "no retries")
    }

    /// The idle worker waits for a notify without a timer of its own; an outbox row committed
    /// without one (here the store is written directly, which nothing in the daemon does) is
    /// still delivered, by the worker's ticker.
    @Test func anEventCommittedWithoutANotifyIsStillDelivered() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"] } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("first", from: "u1")
        try await eventually("the first event") { helpdesk.events.count == 1 }
        let ref = d.runtime.hub.entry(channel)!.context.channel
        let work = InboundWork(channel: ref, event: InboundEvent(.message(InboundMessage(externalID: "quiet-1", parts: [.text("quiet")])),
                                                                 peer: Peer(channelUserID: "u1"), dedupeKey: "quiet-1"))
        let results = try await d.runtime.store.commitInbound([work], ctx: d.runtime.pipeline.eventContext)
        guard case .success(.committed) = results.first else { Issue.record("not committed: \(results)"); return }
        try await eventually(timeout: 15, "the quiet event") { helpdesk.events.count == 2 }
        #expect(helpdesk.events.last?.data?["text_fallback"]?.stringValue == "quiet")
    }

    /// A sink whose every answer takes `delay`.
    struct SlowSink: EventSink {
        let name = "slow"
        let delay: Duration
        func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
            try? await Task.sleep(for: delay)
            return .delivered(status: 204)
        }
    }

    /// With every slot taken by slow answers, news of another event must not make the worker
    /// spin: it notes the news and sleeps until a slot frees.
    @Test func aFullWindowSleepsThroughNews() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        let signal = ChangeSignal()
        let worker = DeliveryWorker(sink: SlowSink(delay: .seconds(3)), store: store, signal: signal, maxInFlight: 2,
                                    logger: Logger(label: "test"))
        let ctx = EventContext(source: "urn:switchboard:test")
        let channel = ChannelRef(type: "recording", id: "rec")
        func commit(_ text: String, from user: String) async throws {
            let work = InboundWork(channel: channel, event: InboundEvent(.message(InboundMessage(externalID: text, parts: [.text(text)])),
                                                                         peer: Peer(channelUserID: user), dedupeKey: text))
            _ = try await store.commitInbound([work], ctx: ctx)
            signal.notify()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            // conversation.created + message.received for each of two customers: two in flight.
            try await commit("a", from: "u1")
            try await commit("b", from: "u2")
            try await Task.sleep(for: .milliseconds(300))
            try await commit("c", from: "u3")
            try await Task.sleep(for: .milliseconds(200))
            let before = worker.turns
            try await Task.sleep(for: .seconds(1))
            let turns = worker.turns - before
            #expect(turns < 20, "\(turns) loop turns in a second while waiting for slow answers")
            group.cancelAll()
        }
    }

    @Test func eventFiltersSelectWhatEachSinkGets() async throws {
        let a = try await TestHelpdesk.start()
        let b = try await TestHelpdesk.start()
        defer { Task { await a.stop(); await b.stop() } }
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks:
              - { name: a, url: "\(a.url)", secret: "\(testSecret)", events: ["conversation.*"] }
              - { name: b, url: "\(b.url)", secret: "\(testSecret)", events: ["message.received"] }
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        _ = try await d.context(channel).customerSays("x", from: "u1")
        try await eventually { a.deliveries.count == 1 && b.deliveries.count == 1 }
        #expect(a.events.first?.type == "switchboard.conversation.created")
        #expect(b.events.first?.type == "switchboard.message.received")
    }

    @Test func retryScheduleHasJitterAndGivesUp() {
        let s = RetrySchedule(delays: [10, 20], jitter: 0.2)
        let d1 = (0..<50).compactMap { _ in s.delay(afterAttempts: 1) }
        #expect(d1.allSatisfy { $0 >= 8 && $0 <= 12 })
        #expect(Set(d1).count > 1, "jitter spreads retries")
        #expect(s.delay(afterAttempts: 3) == nil)
        #expect(s.delay(afterAttempts: 1, retryAfter: 42) == 42)
        // A short Retry-After doesn't use the schedule up: past its last step the receiver's
        // retries go on (no sooner than the first step) for as long as the schedule spans.
        #expect(s.delay(afterAttempts: 3, retryAfter: 1, elapsed: 5) == 10)
        #expect(s.delay(afterAttempts: 9, retryAfter: 1, elapsed: 20) == 10)
        #expect(s.delay(afterAttempts: 9, retryAfter: 1, elapsed: 21) == nil)
        #expect(s.delay(afterAttempts: 3, retryAfter: nil, elapsed: 5) == nil)
        #expect(RetrySchedule.standard.delays.reduce(0, +) > 2.5 * 86400, "retries span days")
        #expect(HTTPSink.parseRetryAfter("120") == 120)
        #expect(HTTPSink.parseRetryAfter("Wed, 21 Oct 2099 07:28:00 GMT")! > 1000)
        #expect(HTTPSink.parseRetryAfter("Wednesday, 21-Oct-99 07:28:00 GMT") != nil, "RFC 850")
        #expect(HTTPSink.parseRetryAfter("Wed Oct 21 07:28:00 2099")! > 1000, "asctime")
        #expect(HTTPSink.parseRetryAfter("Sun Nov  6 08:49:37 1994") == 0, "asctime, padded day, in the past")
        #expect(HTTPSink.parseRetryAfter("1e3") == nil && HTTPSink.parseRetryAfter("nan") == nil && HTTPSink.parseRetryAfter("-5") == nil)
    }
}
