import Foundation
import GRDB
import Testing
import Logging
import Synchronization
@testable import SwitchboardCore
@testable import SwitchboardDelivery
@testable import SwitchboardRuntime
@testable import SwitchboardStore

/// Delivery reads the event log from each sink's position; the outbox holds only exceptions.
@Suite struct DeliveryLogTests {
    static let ctx = EventContext(source: "urn:switchboard:test")

    /// A customer's text for the store-level tests (its text is its platform id too).
    static func message(_ text: String, from user: String = "u1") -> InboundWork {
        InboundWork(channel: ChannelRef(type: "recording", id: "rec"),
                    event: InboundEvent(.message(InboundMessage(externalID: text, parts: [.text(text)])), peer: Peer(channelUserID: user),
                                        dedupeKey: text))
    }

    /// A receiver that takes everything costs no outbox row at all: the position moves.
    @Test func aHealthySinkWritesNoOutboxRows() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        // Counts every row ever written to the outbox, from a second connection.
        var config = Configuration()
        config.busyMode = .timeout(10)
        let db = try DatabaseQueue(path: d.dir.file("db.sqlite"), configuration: config)
        try await db.write { db in
            try db.execute(sql: """
                CREATE TABLE outbox_writes (n INTEGER NOT NULL);
                INSERT INTO outbox_writes VALUES (0);
                CREATE TRIGGER count_outbox_writes AFTER INSERT ON outbox BEGIN UPDATE outbox_writes SET n = n + 1; END;
                """)
        }
        let ctx = d.context(channel)
        for i in 0..<30 { _ = try await ctx.customerSays("m\(i)", from: "u\(i % 3)") }
        try await eventually("33 events delivered (3 conversation.created)") { Set(helpdesk.events.map(\.id)).count == 33 }
        try await eventually("the position reached the end of the log") { try await d.runtime.store.sinkStats("desk").pending == 0 }
        let writes = try await db.read { db in try Int.fetchOne(db, sql: "SELECT n FROM outbox_writes") }
        #expect(writes == 0, "\(writes ?? -1) outbox rows written for a healthy sink")
        let position = try await db.read { db in try Int64.fetchOne(db, sql: "SELECT event_seq FROM sink_positions WHERE sink = 'desk'") }
        let last = try await db.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM events") }
        #expect(position == last)
        try await db.write { db in try db.execute(sql: "DROP TRIGGER count_outbox_writes; DROP TABLE outbox_writes") }
    }

    /// One conversation's event keeps failing: it and the events behind it wait in the outbox,
    /// in order, while the other conversations' events go straight from the log.
    @Test func aFailingConversationWaitsInTheOutboxWhileOthersGoOn() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        helpdesk.setMode(.downOn("poison"))
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"], retry: { schedule: [100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms], jitter: 0 } } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }
        let ctx = d.context(channel)
        _ = try await ctx.customerSays("poison a0", from: "a")
        try await eventually("the first attempt failed") { helpdesk.attempts.count >= 1 }
        for i in 1..<4 { _ = try await ctx.customerSays("a\(i)", from: "a") }
        for i in 0..<4 { _ = try await ctx.customerSays("b\(i)", from: "b") }
        try await eventually("the other conversation's events") {
            helpdesk.events.compactMap { $0.data?["text_fallback"]?.stringValue }.filter { $0.hasPrefix("b") } == ["b0", "b1", "b2", "b3"]
        }
        #expect(!helpdesk.events.contains { $0.data?["text_fallback"]?.stringValue?.hasPrefix("a") == true }, "a1..a3 went before a0")
        // a0 waits for a retry, a1..a3 behind it (once b3's outcome is recorded, nothing else).
        try await eventually("four waiting") { try await d.runtime.store.sinkStats("desk").pending == 4 }
        helpdesk.setMode(.up)
        try await eventually("the waiting conversation, in order") {
            helpdesk.events.compactMap { $0.data?["text_fallback"]?.stringValue }.filter { !$0.hasPrefix("b") } == ["poison a0", "a1", "a2", "a3"]
        }
        try await eventually("nothing left") { try await d.runtime.store.sinkStats("desk").pending == 0 }
        // The conversation is free again: its next event goes straight out.
        _ = try await ctx.customerSays("a4", from: "a")
        try await eventually("a4") { helpdesk.events.last?.data?["text_fallback"]?.stringValue == "a4" }
    }

    /// At a trickle, each event delivered before the next arrives, the position is written at
    /// most once per `positionInterval` rather than once per event, and still reaches the end
    /// of the log soon after the last delivery. (A long interval here, so that a slow start of
    /// the test run cannot make the trickle slower than one event per interval.)
    @Test func aTrickleMovesThePositionInFewWrites() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        try store.prepareSinkPositions(["rec-sink"])
        try await store.pool.write { db in
            try db.execute(sql: """
                CREATE TABLE position_writes (n INTEGER NOT NULL);
                INSERT INTO position_writes VALUES (0);
                CREATE TRIGGER count_position_writes AFTER UPDATE ON sink_positions BEGIN UPDATE position_writes SET n = n + 1; END;
                """)
        }
        let sink = RecordingSink()
        let signal = ChangeSignal()
        let interval = Duration.seconds(5)
        let worker = DeliveryWorker(sink: sink, store: store, signal: signal, events: ["message.*"], positionInterval: interval,
                                    logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            let start = ContinuousClock.now
            let events = 10
            for i in 0..<events {
                _ = try await store.commitInbound([Self.message("t\(i)")], ctx: Self.ctx)
                signal.notify()
                try await eventually("delivered") { sink.texts.count == i + 1 }
            }
            let elapsed = ContinuousClock.now - start
            try await eventually("the position reached the end of the log") { try await store.sinkStats("rec-sink").pending == 0 }
            let writes = try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT n FROM position_writes") } ?? -1
            // One write per interval begun during the trickle, and the one owed at its end.
            let most = Int(elapsed / interval) + 2
            #expect(writes >= 1 && writes <= most, "\(writes) position writes for \(events) events in \(elapsed)")
            #expect(writes < events, "the trickle took \(elapsed): too slow to tell")
            group.cancelAll()
        }
    }

    /// What was delivered before a restart is not delivered again after it.
    @Test func thePositionSurvivesARestart() async throws {
        let helpdesk = try await TestHelpdesk.start()
        defer { Task { await helpdesk.stop() } }
        let channel = uniqueID("rec")
        let config = """
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)", events: ["message.*"] } ]
            channels: [ { id: \(channel), type: recording } ]
            """
        let first = try await TestDaemon.start(config)
        for i in 0..<5 { _ = try await first.context(channel).customerSays("m\(i)", from: "u1") }
        try await eventually("five delivered") { helpdesk.events.count == 5 }
        await first.stop(keepFiles: true)
        let second = try await TestDaemon.start(config, dir: first.dir)
        defer { Task { await second.stop() } }
        _ = try await second.context(channel).customerSays("after", from: "u1")
        try await eventually("the new one") { helpdesk.events.last?.data?["text_fallback"]?.stringValue == "after" }
        try await Task.sleep(for: .milliseconds(300))
        #expect(helpdesk.events.count == 6, "\(helpdesk.events.compactMap { $0.data?["text_fallback"]?.stringValue })")
    }

    /// A sink sees what is committed after it is configured; one removed and added again
    /// starts afresh at the end of the log.
    @Test func aNewSinkStartsAtTheEndOfTheLog() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        func commit(_ text: String) async throws { _ = try await store.commitInbound([Self.message(text)], ctx: Self.ctx) }
        try await commit("before")                       // conversation.created + message.received
        try store.prepareSinkPositions(["desk"])
        #expect(try await store.sinkStats("desk").pending == 0)
        try await commit("after")
        #expect(try await store.sinkStats("desk").pending == 1)
        try store.prepareSinkPositions([])
        try await commit("while removed")
        try store.prepareSinkPositions(["desk"])
        #expect(try await store.sinkStats("desk").pending == 0)
        #expect(try store.sinkPosition("desk") == 4)
    }

    /// Outbox rows written before the log had positions (an upgraded database) are delivered,
    /// in order and before the conversation's later events.
    @Test func outboxRowsFromBeforeAreDelivered() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        func commit(_ text: String) async throws { _ = try await store.commitInbound([Self.message(text)], ctx: Self.ctx) }
        try await commit("old 1")
        try await commit("old 2")
        // What the previous version left: a row per undelivered event.
        try await store.pool.write { db in
            try db.execute(sql: """
                INSERT INTO outbox (sink, event_seq, conversation_id, next_attempt_at, created_at)
                SELECT 'rec-sink', seq, conversation_id, created_at, created_at FROM events ORDER BY seq
                """)
        }
        try store.prepareSinkPositions(["rec-sink"])
        try await commit("new 3")
        let sink = RecordingSink()
        let signal = ChangeSignal()
        let worker = DeliveryWorker(sink: sink, store: store, signal: signal, events: ["message.*"], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            try await eventually("all three") { sink.texts.count == 3 }
            #expect(sink.texts == ["old 1", "old 2", "new 3"])
            try await eventually("recorded") { try await store.sinkStats("rec-sink").pending == 0 }
            group.cancelAll()
        }
    }

    final class RecordingSink: EventSink, Sendable {
        let name = "rec-sink"
        private let bodies = Mutex<[Data]>([])
        var texts: [String] {
            bodies.withLock { $0 }.compactMap { body in
                (try? JSONValue.parse(body))?["data"]?["text_fallback"]?.stringValue
            }
        }
        func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
            bodies.withLock { $0.append(body) }
            return .delivered(status: 204)
        }
    }
}

/// The window's bookkeeping on its own.
@Suite struct LogWindowTests {
    func item(_ seq: Int64, _ conversation: String, _ type: String = "message.received") -> OutboxItem {
        OutboxItem(sink: "s", eventSeq: seq, eventID: "evt_\(seq)", eventType: type, conversationID: conversation, attempts: 0,
                   body: Data(), createdAt: 0)
    }

    @Test func oneEventPerConversationAtATime() {
        var w = LogWindow(position: 0) { _ in true }
        w.read([item(1, "a"), item(2, "b"), item(3, "a"), item(4, "c")])
        #expect(w.take(10).map(\.eventSeq) == [1, 2, 4])
        #expect(w.take(10).isEmpty)
        w.finished(1, .delivered)
        #expect(w.take(10).map(\.eventSeq) == [3])
    }

    @Test func thePositionStopsAtTheFirstUnsettledEvent() {
        var w = LogWindow(position: 10) { $0.hasPrefix("message.") }
        w.read([item(11, "a"), item(12, "b", "conversation.created"), item(13, "b")])
        _ = w.take(10)
        w.finished(13, .delivered)
        #expect(w.needsWrite == false, "11 is still in flight")
        w.finished(11, .delivered)
        let write = w.beginWrite()
        #expect(write.rows.isEmpty)
        #expect(write.position == 13)
        w.written()
        #expect(w.position == 13)
        #expect(w.count == 0)
        #expect(w.needsWrite == false)
    }

    @Test func aFailureSendsTheConversationToTheOutbox() {
        var w = LogWindow(position: 0) { _ in true }
        w.read([item(1, "a"), item(2, "a"), item(3, "b")])
        #expect(w.take(10).map(\.eventSeq) == [1, 3])
        w.finished(1, .retry(at: 99, error: "503"))
        #expect(w.state(of: 2) == .deferred)
        #expect(w.blocked == ["a"])
        // Read later: behind them in the outbox too.
        w.read([item(4, "a"), item(5, "c")])
        #expect(w.state(of: 4) == .deferred)
        #expect(w.take(10).map(\.eventSeq) == [5])
        let write = w.beginWrite()
        #expect(write.rows.map(\.item.eventSeq) == [1, 2, 4])
        #expect(write.position == 2, "3 is in flight")
        w.written()
        #expect(w.state(of: 4) == .settled)
        w.finished(3, .delivered)
        w.finished(5, .delivered)
        #expect(w.beginWrite().position == 5)
        w.written()
        // The outbox emptied: a's events go straight out again.
        w.refreshBlocked([])
        w.read([item(6, "a")])
        #expect(w.take(10).map(\.eventSeq) == [6])
    }

    @Test func aParkedEventFreesItsConversation() {
        var w = LogWindow(position: 0) { _ in true }
        w.read([item(1, "a"), item(2, "a")])
        _ = w.take(10)
        w.finished(1, .parked(error: "gone for good"))
        #expect(w.blocked.isEmpty)
        #expect(w.take(10).map(\.eventSeq) == [2])
    }

    @Test func aFailedWriteIsWrittenAgain() {
        var w = LogWindow(position: 0) { _ in true }
        w.read([item(1, "a")])
        _ = w.take(1)
        w.finished(1, .refused)
        let first = w.beginWrite()
        #expect(first.rows.count == 1 && first.position == 1)
        w.writeFailed()
        #expect(w.position == 0)
        let again = w.beginWrite()
        #expect(again.rows.map(\.item.eventSeq) == [1])
        #expect(again.position == 1)
        w.written()
        #expect(w.position == 1)
    }
}

extension LogWindowTests {
    /// A full window whose oldest events wait on something slow moves those conversations to
    /// the outbox, in flight or not, and lets the position pass them.
    @Test func spillingMovesTheSlowConversationsToTheOutbox() {
        var w = LogWindow(position: 0) { _ in true }
        w.read([item(1, "slow"), item(2, "slow"), item(3, "b"), item(4, "c")])
        #expect(w.take(10).map(\.eventSeq) == [1, 3, 4])
        w.finished(3, .delivered)
        w.finished(4, .delivered)
        #expect(w.spill() == [1], "the in-flight event changes hands")
        #expect(w.state(of: 1) == .deferred && w.state(of: 2) == .deferred)
        #expect(w.blocked == ["slow"])
        let write = w.beginWrite()
        #expect(write.rows.map(\.item.eventSeq) == [1, 2])
        #expect(write.rows.allSatisfy { if case .held = $0.kind { true } else { false } })
        #expect(write.position == 4)
        w.written()
        #expect(w.count == 0)
        // Its later events queue behind it in the outbox.
        w.read([item(5, "slow")])
        #expect(w.state(of: 5) == .deferred)
    }

    /// A conversation that gets an outbox row while events of it wait here (a parked event
    /// recovered) keeps its new events in line behind those, not in the outbox ahead of them.
    @Test func newEventsQueueBehindTheirConversationsWaitingEvents() {
        var w = LogWindow(position: 0) { _ in true }
        w.read([item(1, "k"), item(2, "k")])
        #expect(w.take(10).map(\.eventSeq) == [1])
        w.refreshBlocked(["k"])
        w.read([item(3, "k")])
        #expect(w.state(of: 3) == .queued)
        w.finished(1, .delivered)
        #expect(w.take(10).map(\.eventSeq) == [2])
        w.finished(2, .delivered)
        #expect(w.take(10).map(\.eventSeq) == [3])
    }
}

extension DeliveryLogTests {
    /// A sink that hangs on events containing "slow" and takes the others.
    final class HangingSink: EventSink, Sendable {
        let name = "hang-sink"
        private let delivered = Mutex<[String]>([])
        var texts: [String] { delivered.withLock { $0 } }
        func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
            let text = (try? JSONValue.parse(body))?["data"]?["text_fallback"]?.stringValue ?? ""
            if text.hasPrefix("slow") {
                try? await Task.sleep(for: .seconds(30))
                return .retry(error: "timeout", retryAfter: nil)
            }
            delivered.withLock { $0.append(text) }
            return .delivered(status: 204)
        }
    }

    /// One answer that hangs holds back its own conversation only, however many events of
    /// the others arrive behind it: more than the window holds.
    @Test func aHangingAnswerDoesNotHoldBackMoreThanItsConversation() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        try store.prepareSinkPositions(["hang-sink"])
        let batch = [Self.message("slow 1", from: "stuck"), Self.message("slow 2 behind", from: "stuck")]
            + (0..<60).map { Self.message("m\($0)", from: "u\($0 % 5)") }
        _ = try await store.commitInbound(batch, ctx: Self.ctx)
        let sink = HangingSink()
        let worker = DeliveryWorker(sink: sink, store: store, signal: ChangeSignal(), events: ["message.*"], maxInFlight: 4, window: 8,
                                    logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            try await eventually("every other conversation's events, in order") {
                let texts = sink.texts
                return texts.count == 60 && (0..<5).allSatisfy { u in
                    texts.filter { Int($0.dropFirst()).map { $0 % 5 == u } ?? false } == (0..<60).filter { $0 % 5 == u }.map { "m\($0)" }
                }
            }
            // The stuck conversation waits in the outbox, its second event behind the first.
            try await eventually("two waiting") { try await store.sinkStats("hang-sink").pending == 2 }
            group.cancelAll()
        }
    }
}

extension DeliveryLogTests {
    /// A receiver that answers at random (seeded): mostly at once, sometimes with a 503,
    /// sometimes slowly. It records every acknowledged event.
    final class FlakySink: EventSink, Sendable {
        let name = "flaky"
        private let state: Mutex<(rng: UInt64, acked: [(conversation: String, seq: Int64, id: String)])>
        init(seed: UInt64) { state = Mutex((seed, [])) }
        var acked: [(conversation: String, seq: Int64, id: String)] { state.withLock { $0.acked } }

        private func roll() -> UInt64 {
            state.withLock { s in
                // xorshift64*: deterministic per seed, good enough to vary the interleavings.
                s.rng ^= s.rng >> 12; s.rng ^= s.rng << 25; s.rng ^= s.rng >> 27
                return (s.rng &* 2685821657736338717) >> 33
            }
        }

        func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
            let r = roll() % 100
            let event = try? JSONValue.parse(body)
            let subject = event?["subject"]?.stringValue ?? ""
            let seq = Int64(event?["sequence"]?.stringValue ?? "") ?? -1
            if r < 20 {
                try? await Task.sleep(for: .milliseconds(Int64(roll() % 3)))
                return .retry(error: "503", retryAfter: nil)
            }
            if r < 22 {
                // Longer than the window waits before it spills.
                try? await Task.sleep(for: .milliseconds(Int64(1100 + roll() % 400)))
            } else if r < 28 {
                try? await Task.sleep(for: .milliseconds(Int64(50 + roll() % 250)))
            } else {
                try? await Task.sleep(for: .milliseconds(Int64(roll() % 4)))
            }
            state.withLock { $0.acked.append((subject, seq, eventID)) }
            return .delivered(status: 204)
        }
    }

    /// Many conversations, a receiver that fails and stalls at random, a small window (so it
    /// spills) and a worker restarted midway: every event is acknowledged, and within each
    /// conversation the first acknowledgements come in sequence order.
    @Test(arguments: [UInt64(0x9E3779B97F4A7C15), 0xD1B54A32D192ED03, 0x8CB92BA72F3D8DD7])
    func randomFailuresKeepEveryConversationWholeAndInOrder(seed: UInt64) async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        try store.prepareSinkPositions(["flaky"])
        let sink = FlakySink(seed: seed)
        let signal = ChangeSignal()
        let schedule = RetrySchedule(delays: Array(repeating: 0.01, count: 200), jitter: 0)
        func worker() -> DeliveryWorker {
            DeliveryWorker(sink: sink, store: store, signal: signal, events: ["*"], schedule: schedule, maxInFlight: 4, window: 8,
                           logger: Logger(label: "test"))
        }
        var n = 0
        func commitSome(_ count: Int) async throws {
            let batch = (n..<(n + count)).map { Self.message("m\($0)", from: "u\($0 % 12)") }
            n += count
            _ = try await store.commitInbound(batch, ctx: Self.ctx)
            signal.notify()
        }
        // First worker: events arrive while it runs; then it is stopped midway.
        try await withThrowingTaskGroup(of: Void.self) { group in
            let first = worker()
            group.addTask { try await first.run() }
            for _ in 0..<10 {
                try await commitSome(15)
                try await Task.sleep(for: .milliseconds(20))
            }
            try await Task.sleep(for: .milliseconds(200))
            group.cancelAll()
        }
        // A second worker goes on from the stored position and outbox.
        try await commitSome(100)
        let total = try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events") ?? 0 }
        try await withThrowingTaskGroup(of: Void.self) { group in
            let second = worker()
            group.addTask { try await second.run() }
            try await eventually(timeout: 60, "every event acknowledged") { Set(sink.acked.map(\.id)).count == total }
            try await eventually("and recorded") { try await store.sinkStats("flaky").pending == 0 }
            group.cancelAll()
        }
        var seen = Set<String>()
        var lastSeq: [String: Int64] = [:]
        for ack in sink.acked where seen.insert(ack.id).inserted {
            #expect(ack.seq > lastSeq[ack.conversation, default: 0], "\(ack.conversation): \(ack.seq) after \(lastSeq[ack.conversation, default: 0])")
            lastSeq[ack.conversation] = ack.seq
        }
        #expect(lastSeq.count == 12)
    }
}

extension DeliveryLogTests {
    /// A sink that takes every event after `delay`, recording the order of texts.
    final class SteadySink: EventSink, Sendable {
        let name = "steady"
        let delay: Duration
        private let texts = Mutex<[String]>([])
        init(delay: Duration) { self.delay = delay }
        var delivered: [String] { texts.withLock { $0 } }
        func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
            try? await Task.sleep(for: delay)
            let text = (try? JSONValue.parse(body))?["data"]?["text_fallback"]?.stringValue ?? ""
            texts.withLock { $0.append(text) }
            return .delivered(status: 204)
        }
    }

    /// One conversation's long run fills the window while slots sit idle: it moves to the
    /// outbox, and the other conversations' events behind it go out meanwhile.
    @Test func aLongRunOfOneConversationDoesNotHoldBackTheOthers() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let store = try Store(path: dir.file("db.sqlite"), durability: .normal)
        try store.prepareSinkPositions(["steady"])
        let batch = (0..<40).map { Self.message("k\($0)", from: "chatty") } + (0..<4).map { Self.message("other\($0)", from: "o\($0)") }
        _ = try await store.commitInbound(batch, ctx: Self.ctx)
        let sink = SteadySink(delay: .milliseconds(20))
        let worker = DeliveryWorker(sink: sink, store: store, signal: ChangeSignal(), events: ["message.*"], maxInFlight: 4, window: 8,
                                    logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            try await eventually("everything") { sink.delivered.count == 44 }
            let texts = sink.delivered
            let lastOther = try #require(texts.lastIndex { $0.hasPrefix("other") })
            #expect(lastOther < 20, "the other conversations waited for the long run: \(texts)")
            #expect(texts.filter { $0.hasPrefix("k") } == (0..<40).map { "k\($0)" }, "the run stays in order")
            group.cancelAll()
        }
    }
}
