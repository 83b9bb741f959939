import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import SwitchboardCore
import SwitchboardStore

/// Moves one sink's events from the event log (and the outbox) to the receiver.
///
/// Each sink has its own worker, so a slow or dead helpdesk holds back only itself — never
/// ingest, never the other sinks. Memory stays bounded while a receiver is down: the worker
/// holds at most `maxInFlight` events in flight and a window of events read ahead; the rest
/// wait in SQLite.
///
/// The worker reads the log from the sink's position (`LogWindow`), so an event that is
/// delivered at the first attempt costs no write of its own: the position moves once per
/// batch. Only the exceptions go to the outbox table: an event whose attempt failed (retried
/// from there on its schedule, then parked) and the later events of its conversation, which
/// queue behind it there to keep the conversation in order.
public final class DeliveryWorker: Service, Sendable {
    public let sink: any EventSink
    let store: Store
    let signal: ChangeSignal
    let patterns: [String]
    let schedule: RetrySchedule
    let maxInFlight: Int
    /// Events read ahead of the position, at most.
    let windowLimit: Int
    /// How often, at most, a write that only moves the position is made (`defaultPositionInterval`).
    let positionInterval: Duration
    let logger: Logger

    /// `events`: the event types the sink subscribes to (`*`, a family such as `message.*`,
    /// or a type). `window`: events read ahead, at most (tests make it small).
    public init(sink: any EventSink, store: Store, signal: ChangeSignal, events: [String] = ["*"], schedule: RetrySchedule = .standard,
                maxInFlight: Int = 64, window: Int? = nil, positionInterval: Duration = defaultPositionInterval, logger: Logger) {
        self.sink = sink; self.store = store; self.signal = signal; self.schedule = schedule
        self.patterns = events
        self.maxInFlight = maxInFlight
        self.windowLimit = window ?? max(1024, maxInFlight * 16)
        self.positionInterval = positionInterval
        self.logger = logger
        self.latency = Metrics.Timer(label: "switchboard_delivery_latency_seconds", dimensions: [("sink", sink.name)])
        self.retries = Counter(label: "switchboard_delivery_retries_total", dimensions: [("sink", sink.name)])
    }

    public func run() async throws {
        // Shutdown wakes the worker's wait for news; it then finishes the deliveries under way,
        // records them, and returns.
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { ticker in
                ticker.addTask { await self.tick() }
                if let position = await startingPosition() {
                    await deliverUntilShutdown(from: position)
                }
                ticker.cancelAll()
            }
        } onGracefulShutdown: {
            self.signal.notify()
        }
    }

    /// The sink's position in the log, read (or made) once; retried while the store refuses.
    private func startingPosition() async -> Int64? {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                return try store.sinkPosition(sink.name)
            } catch {
                logger.error("cannot read the sink's position in the event log; trying again", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        return nil
    }

    /// What the worker's loop waits for: whichever comes first.
    private enum Step: Sendable {
        /// One delivery attempt ended (`fromLog`: of an event read from the log, else of an
        /// outbox row).
        case attempted(OutboxItem, DeliveryOutcome, fromLog: Bool)
        /// A batch of outcomes was written or not. `refusal`: it was to disable the sink (410).
        case recorded([OutboxItem], refusal: String?, result: RecordResult)
        /// Something was committed (the change signal moved), or a timeout passed: the wait
        /// that was to end by `deadline` (`.max`: no timeout) ended.
        case woken(deadline: Int64)
    }

    /// Deliveries run side by side, up to `maxInFlight`, one per conversation at a time: a new
    /// event starts as soon as a slot is free, so one slow answer holds back only its own
    /// conversation (until the timeout), not every event behind it. A conversation's next
    /// event goes once the previous one was delivered — from the log window in memory, or,
    /// when the conversation waits in the outbox, once the outbox row's outcome is stored (the
    /// outbox query returns only each conversation's oldest pending event), which keeps it in
    /// order across restarts too. Outcomes are written by one recorder at a time, so they
    /// batch themselves under load.
    private func deliverUntilShutdown(from position: Int64) async {
        var lastGauge = ContinuousClock.now - .seconds(60)
        let depth = Gauge(label: "switchboard_outbox_depth", dimensions: [("sink", sink.name)])
        let patterns = self.patterns
        var window = LogWindow(position: position) { type in patterns.contains { EventType(rawValue: type).matches($0) } }
        await withTaskGroup(of: Step.self) { group in
            // Outbox rows in flight or waiting to be recorded. They are still pending, so the
            // outbox query holds back the later rows of their conversations.
            var taken = Set<Int64>()
            // Events sent from the log and moved to the outbox while in flight (`spill`): their
            // outcomes are recorded as outbox rows'.
            var spilled = Set<Int64>()
            var lastBlockedRead = ContinuousClock.now - .seconds(60)
            // When the position last moved (or the window last spilled).
            var positionMoved = ContinuousClock.now
            var lastPosition = window.position
            var inFlight = 0
            // Outcomes of outbox rows, to record.
            var outcomes: [(OutboxItem, DeliveryOutcome)] = []
            // A 410 for an event from the log, to store with the next write.
            var refusal: String? = nil
            var recording = false
            // After a 410, nothing more goes out until the outcome (and the disable) is stored.
            var holding = false
            var disabled = false
            var needPoll = true
            // The last poll left due rows behind for want of a free slot.
            var saturated = false
            // The last poll read a full page of the log: there is more to read.
            var logMore = false
            var generation = signal.generation
            var nextDue: Int64? = nil
            // Running waits for the change signal, and the earliest deadline among them
            // (`.max`: they wait without a timeout).
            var watchers = 0
            var watchDeadline: Int64 = .max
            var stopping = false
            // A write failed while stopping: give up on what is left (it is delivered again).
            var abandon = false
            // When the last write began, and whether a position-only write waits for its turn
            // (`positionInterval`).
            var lastWrite = ContinuousClock.now - .seconds(60)
            var positionOwed = false

            while true {
                if !stopping && (Task.isCancelled || Task.isShuttingDownGracefully) { stopping = true }
                let wantsWrite = !recording && !abandon && (!outcomes.isEmpty || refusal != nil || window.needsWrite)
                // Only the position to move, and the last write was less than
                // `positionInterval` ago: later.
                positionOwed = wantsWrite && outcomes.isEmpty && refusal == nil && !window.hasRowsToWrite && !stopping
                    && ContinuousClock.now - lastWrite < positionInterval
                if wantsWrite && !positionOwed {
                    lastWrite = .now
                    let batch = outcomes
                    outcomes = []
                    let (rows, position) = window.beginWrite()
                    let reason = refusal ?? batch.lazy.compactMap { if case .disable(let r) = $0.1 { r } else { nil } }.first
                    refusal = nil
                    recording = true
                    group.addTask {
                        let result = await self.record(batch, deferred: rows, position: position, refusal: reason)
                        return .recorded(batch.map(\.0), refusal: reason, result: result)
                    }
                }
                if stopping {
                    // Finish what is under way and record it; start nothing new.
                    if inFlight == 0 && !recording && (abandon || (outcomes.isEmpty && refusal == nil && !window.needsWrite)) { break }
                } else {
                    if ContinuousClock.now - lastGauge > .seconds(5) {
                        lastGauge = .now
                        if let stats = try? await store.sinkStats(sink.name) { depth.record(stats.pending) }
                    }
                    // A window full of events behind a slow one (the position has not moved for a
                    // while), or full of one conversation's run while slots sit idle: move those
                    // conversations to the outbox so the others keep going. A window that is
                    // merely full (a backlog being caught up) moves on.
                    if window.count >= windowLimit && !holding
                        && (ContinuousClock.now - positionMoved >= Self.spillAfter || window.readyCount + inFlight <= maxInFlight / 2) {
                        for seq in window.spill() {
                            spilled.insert(seq)
                            taken.insert(seq)
                        }
                        positionMoved = .now
                    }
                    // Under load, refill the window in batches (when half of it is free), not
                    // one read per finished delivery.
                    if needPoll && !holding && inFlight <= maxInFlight / 2 {
                        needPoll = false
                        generation = signal.generation
                        let logRoom = max(0, windowLimit - window.count)
                        // Which conversations wait in the outbox, read at most twice a second
                        // (a scan of the outbox's pending rows; while a receiver is down there
                        // are many). Meanwhile the window adds what it decides itself, so the
                        // set can only be too large for a moment, never too small.
                        let readBlocked = ContinuousClock.now - lastBlockedRead > .milliseconds(500)
                        if readBlocked { lastBlockedRead = .now }
                        do {
                            let poll = try store.pollDelivery(sink: sink.name, limit: maxInFlight - inFlight, excluding: taken,
                                                              logAfter: window.readThrough, logLimit: logRoom, blocked: readBlocked)
                            disabled = poll.disabled
                            // Disabled: look again now and then (recovery through the API notifies).
                            nextDue = poll.disabled ? Store.nowMS() + 5000 : poll.nextDue
                            saturated = poll.due.count == maxInFlight - inFlight
                            if let blocked = poll.blocked { window.refreshBlocked(blocked) }
                            window.read(poll.log)
                            logMore = logRoom > 0 && poll.log.count == logRoom
                            for item in poll.due {
                                taken.insert(item.eventSeq)
                                inFlight += 1
                                group.addTask { .attempted(item, await self.sink.deliver(eventID: item.eventID, body: item.body), fromLog: false) }
                            }
                        } catch {
                            logger.error("cannot read the event log or the outbox", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
                            nextDue = Store.nowMS() + 1000
                        }
                    }
                    if !holding && !disabled {
                        for item in window.take(maxInFlight - inFlight) {
                            inFlight += 1
                            group.addTask { .attempted(item, await self.sink.deliver(eventID: item.eventID, body: item.body), fromLog: true) }
                        }
                    }
                    // Full and stuck: look again when it is time to spill (a few ms late rather
                    // than early: timers may fire a little ahead).
                    if window.count >= windowLimit && !holding {
                        let left = Self.spillAfter - (ContinuousClock.now - positionMoved)
                        let wake = Store.nowMS() + max(0, Int64((left / .milliseconds(1)).rounded(.up))) + 5
                        nextDue = min(nextDue ?? .max, wake)
                    }
                    if inFlight == 0 && taken.isEmpty && window.count == 0 && !disabled && nextDue == nil && !logMore { depth.record(0) }
                    // A position left unwritten is written once its interval is over, even if
                    // nothing else happens by then.
                    if positionOwed {
                        let left = positionInterval - (ContinuousClock.now - lastWrite)
                        let at = Store.nowMS() + max(0, Int64((left / .milliseconds(1)).rounded(.up)))
                        nextDue = min(nextDue ?? .max, at)
                    }
                    // Wake for news, or when a retry falls due. The usual wait has no timer (at a
                    // trickle of events the worker waits once per event, and a timer per wait
                    // cost more CPU than the delivery); `tick` is the safety net.
                    let deadline = nextDue ?? .max
                    // A deadline is used once: the wake it brings polls again, and that poll
                    // says what is due next.
                    nextDue = nil
                    if watchers == 0 || deadline < watchDeadline {
                        watchers += 1
                        watchDeadline = min(watchDeadline, deadline)
                        // With a poll still owed (the window was too full to read), the news it
                        // owes is already noted: wait for what comes after now, not after the
                        // last poll, which would wake at once, again and again, until a slot
                        // frees (up to the helpdesk's timeout).
                        let after = needPoll ? signal.generation : generation
                        group.addTask { [signal] in
                            if deadline == .max {
                                await signal.wait(after: after)
                            } else {
                                await signal.wait(after: after, timeout: .milliseconds(max(10, min(deadline - Store.nowMS(), 5000))))
                            }
                            return .woken(deadline: deadline)
                        }
                    }
                }
                turnCount.add(1, ordering: .relaxed)
                guard let step = await group.next() else { break }
                switch step {
                case .attempted(let item, let outcome, let fromLog):
                    inFlight -= 1
                    if fromLog && spilled.remove(item.eventSeq) != nil {
                        // Now an outbox row's attempt (its row is written or being written).
                        outcomes.append((item, outcome))
                        if case .disable = outcome { holding = true }
                    } else if fromLog {
                        window.finished(item.eventSeq, judgeFirstAttempt(item, outcome))
                        if case .disable(let reason) = outcome {
                            refusal = reason
                            holding = true
                        }
                    } else {
                        outcomes.append((item, outcome))
                        if case .disable = outcome { holding = true }
                    }
                    // A free slot can take a due row the last poll had no room for.
                    if saturated { needPoll = true }
                case .recorded(let items, let reason, let result):
                    recording = false
                    if result.rows {
                        window.written()
                        if window.position != lastPosition {
                            lastPosition = window.position
                            positionMoved = .now
                        }
                    } else {
                        // Outcomes of outbox rows are lost, and those rows delivered again.
                        window.writeFailed()
                        if stopping { abandon = true }
                    }
                    if let reason {
                        if result.disabled {
                            holding = false
                            // Stored: nothing more goes out, not even from the window, until
                            // the next poll says the sink was recovered.
                            disabled = true
                        } else if refusal == nil {
                            // The disable goes with the next write.
                            refusal = reason
                        }
                    }
                    for item in items { taken.remove(item.eventSeq) }
                    needPoll = true
                case .woken(let deadline):
                    watchers -= 1
                    // The earliest timed wait ended: a new deadline needs a wait of its own
                    // even while others (later, or untimed) still run.
                    if watchers == 0 || deadline <= watchDeadline { watchDeadline = .max }
                    needPoll = true
                }
                if logMore && window.count < windowLimit / 2 { needPoll = true }
            }
            group.cancelAll()
        }
    }

    /// Stands in for timeouts on the worker's waits, in case an event was ever committed
    /// without a notify: one timer per worker, not one per wait.
    private func tick() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .seconds(5))
            signal.notify()
        }
    }

    /// Turns of the worker's loop (one per step it waits for): lets tests see that an idle or
    /// saturated worker sleeps.
    let turnCount = Atomic<Int>(0)
    var turns: Int { turnCount.load(ordering: .relaxed) }

    // Metric handles, made once: the metrics backend looks each one up under a lock.
    private let outCounters = Mutex<[String: Counter]>([:])
    private let latency: Metrics.Timer
    private let retries: Counter
    func outCounter(_ type: String, _ result: String) -> Counter {
        outCounters.withLock { cache in
            if let c = cache[type + " " + result] { return c }
            let c = Counter(label: "switchboard_events_out_total", dimensions: [("sink", sink.name), ("type", type), ("result", result)])
            cache[type + " " + result] = c
            return c
        }
    }

    /// What one attempt means for its event — delivered, retried when, or parked — with its
    /// metrics and log lines. Nil for a 410 (the event waits for the sink's recovery).
    func judge(_ item: OutboxItem, _ outcome: DeliveryOutcome, now: Int64) -> Store.Outcome? {
        switch outcome {
        case .delivered:
            outCounter(item.eventType, "delivered").increment()
            latency.recordNanoseconds((now - item.createdAt) * 1_000_000)
            return .delivered
        case .retry(let error, let retryAfter):
            let attempts = item.attempts + 1
            retries.increment()
            if let delay = schedule.delay(afterAttempts: attempts, retryAfter: retryAfter, elapsed: Double(now - item.createdAt) / 1000) {
                logger.warning("delivery failed; will retry", metadata: [
                    "sink": "\(sink.name)", "event": "\(item.eventID)", "attempt": "\(attempts)", "error": "\(error)",
                    "retry_in_s": "\(Int(delay))"])
                return .retry(at: now + Int64(delay * 1000), error: error)
            }
            logger.error("delivery failed for the last time; event parked (recover with POST /v1/helpdesks/{name}/recover)",
                         metadata: ["sink": "\(sink.name)", "event": "\(item.eventID)", "error": "\(error)"])
            outCounter(item.eventType, "failed").increment()
            return .failed(error: error)
        case .disable:
            return nil
        }
    }

    /// `judge` for the first attempt at an event read from the log.
    func judgeFirstAttempt(_ item: OutboxItem, _ outcome: DeliveryOutcome) -> LogWindow.Outcome {
        switch judge(item, outcome, now: Store.nowMS()) {
        case .delivered?: .delivered
        case .retry(let at, let error)?: .retry(at: at, error: error)
        case .failed(let error)?: .parked(error: error)
        case nil: .refused
        }
    }

    /// How long the position may stand still with a full window before the window spills.
    static let spillAfter: Duration = .seconds(1)

    /// How often, at most, a write that only moves the position is made. At a trickle of
    /// events every delivery would otherwise cost a write transaction of its own and the poll
    /// that follows it: at 1,000 events/s, a thousand writes a second queueing for the one
    /// SQLite writer that the ingest commits need too. Outcomes of outbox rows, events moved to
    /// the outbox and a 410 are written at once; so is the position when the worker stops.
    /// After a crash, what was delivered in the last interval is delivered again (at least
    /// once, with the same ids).
    public static let defaultPositionInterval: Duration = .milliseconds(200)

    /// What `record` stored: the batch's rows and position, and the sink's disable (when a 410
    /// asked for it).
    struct RecordResult: Sendable {
        var rows: Bool
        var disabled: Bool
    }

    /// Writes a batch — outcomes of outbox rows, log events moved to the outbox, the new
    /// position — in one transaction, then a 410's disable. After a failure it pauses, so a
    /// failing store is not hammered.
    func record(_ results: [(OutboxItem, DeliveryOutcome)], deferred: [Store.Deferred], position: Int64?, refusal: String?) async -> RecordResult {
        let now = Store.nowMS()
        let outcomes = results.compactMap { item, outcome in judge(item, outcome, now: now).map { (eventSeq: item.eventSeq, outcome: $0) } }
        var result = RecordResult(rows: false, disabled: false)
        do {
            try await store.record(sink: sink.name, outcomes: outcomes, deferred: deferred, position: position, now: now)
            result.rows = true
            if let reason = refusal {
                logger.error("sink disabled", metadata: ["sink": "\(sink.name)", "reason": "\(reason)"])
                try await store.disableSink(sink.name, reason: reason)
                result.disabled = true
            }
        } catch {
            // Unrecorded deliveries are delivered again: at least once.
            logger.error("cannot record delivery outcomes", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
            try? await Task.sleep(for: .seconds(1))
        }
        return result
    }
}
