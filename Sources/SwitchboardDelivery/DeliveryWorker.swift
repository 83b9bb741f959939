import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import SwitchboardCore
import SwitchboardStore

/// Moves one sink's events from the outbox to the receiver.
///
/// Each sink has its own worker, so a slow or dead helpdesk holds back only itself — never
/// ingest, never the other sinks. Memory stays bounded while a receiver is down: the worker
/// holds at most `maxInFlight` events, the rest wait in SQLite.
public final class DeliveryWorker: Service, Sendable {
    public let sink: any EventSink
    let store: Store
    let signal: ChangeSignal
    let schedule: RetrySchedule
    let maxInFlight: Int
    let logger: Logger

    public init(sink: any EventSink, store: Store, signal: ChangeSignal, schedule: RetrySchedule = .standard,
                maxInFlight: Int = 64, logger: Logger) {
        self.sink = sink; self.store = store; self.signal = signal; self.schedule = schedule
        self.maxInFlight = maxInFlight
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
                await deliverUntilShutdown()
                ticker.cancelAll()
            }
        } onGracefulShutdown: {
            self.signal.notify()
        }
    }

    /// What the worker's loop waits for: whichever comes first.
    private enum Step: Sendable {
        /// One delivery attempt ended.
        case attempted(OutboxItem, DeliveryOutcome)
        /// Outcomes of these events are in the store (`disabled`: one was a 410, and the sink
        /// is now disabled).
        case recorded([OutboxItem], disabled: Bool)
        /// Something was committed (the change signal moved), or a timeout passed.
        case woken
    }

    /// Deliveries run side by side, up to `maxInFlight`, one per conversation at a time: a new
    /// event starts as soon as a slot is free, so one slow answer holds back only its own
    /// conversation (until the timeout), not every event behind it. A conversation's next
    /// event becomes due once the previous one's outcome is in the store (the outbox query
    /// returns only each conversation's oldest pending event), which keeps it in order across
    /// restarts too. Outcomes are written by one recorder at a time, so they batch themselves
    /// under load.
    private func deliverUntilShutdown() async {
        var lastGauge = ContinuousClock.now - .seconds(60)
        let depth = Gauge(label: "switchboard_outbox_depth", dimensions: [("sink", sink.name)])
        await withTaskGroup(of: Step.self) { group in
            // Events in flight or waiting to be recorded. Their rows are still pending, so the
            // outbox query holds back the later events of their conversations: one per
            // conversation at a time needs no bookkeeping of its own.
            var taken = Set<Int64>()
            var inFlight = 0
            var outcomes: [(OutboxItem, DeliveryOutcome)] = []
            var recording = false
            // After a 410, nothing more goes out until the outcome (and the disable) is stored.
            var holding = false
            var needPoll = true
            // The last poll left due events behind for want of a free slot.
            var saturated = false
            var generation = signal.generation
            var nextDue: Int64? = nil
            // Running waits for the change signal, and the earliest deadline among them
            // (`.max`: they wait without a timeout).
            var watchers = 0
            var watchDeadline: Int64 = .max
            var stopping = false

            while true {
                if !stopping && (Task.isCancelled || Task.isShuttingDownGracefully) { stopping = true }
                if !recording && !outcomes.isEmpty {
                    let batch = outcomes
                    outcomes = []
                    recording = true
                    let disables = batch.contains { if case .disable = $0.1 { true } else { false } }
                    group.addTask {
                        await self.record(batch)
                        return .recorded(batch.map(\.0), disabled: disables)
                    }
                }
                if stopping {
                    // Finish what is under way and record it; start nothing new.
                    if inFlight == 0 && !recording && outcomes.isEmpty { break }
                } else {
                    if ContinuousClock.now - lastGauge > .seconds(5) {
                        lastGauge = .now
                        if let stats = try? await store.sinkStats(sink.name) { depth.record(stats.pending) }
                    }
                    // Under load, refill the window in batches (when half of it is free), not
                    // one read per finished delivery.
                    if needPoll && !holding && inFlight <= maxInFlight / 2 {
                        needPoll = false
                        generation = signal.generation
                        do {
                            let poll = try store.pollOutbox(sink: sink.name, limit: maxInFlight - inFlight, excluding: taken)
                            // Disabled: look again now and then (recovery through the API notifies).
                            nextDue = poll.disabled ? Store.nowMS() + 5000 : poll.nextDue
                            saturated = poll.due.count == maxInFlight - inFlight
                            for item in poll.due {
                                taken.insert(item.eventSeq)
                                inFlight += 1
                                group.addTask { .attempted(item, await self.sink.deliver(eventID: item.eventID, body: item.body)) }
                            }
                            if poll.due.isEmpty && taken.isEmpty && !poll.disabled && poll.nextDue == nil { depth.record(0) }
                        } catch {
                            logger.error("cannot read the outbox", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
                            nextDue = Store.nowMS() + 1000
                        }
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
                            return .woken
                        }
                    }
                }
                turnCount.add(1, ordering: .relaxed)
                guard let step = await group.next() else { break }
                switch step {
                case .attempted(let item, let outcome):
                    inFlight -= 1
                    outcomes.append((item, outcome))
                    if case .disable = outcome { holding = true }
                case .recorded(let items, let disabled):
                    recording = false
                    if disabled { holding = false }
                    for item in items { taken.remove(item.eventSeq) }
                    needPoll = true
                case .woken:
                    watchers -= 1
                    if watchers == 0 { watchDeadline = .max }
                    needPoll = true
                }
                // A free slot can take a due event the last poll had no room for.
                if case .attempted = step, saturated { needPoll = true }
            }
            group.cancelAll()
        }
    }

    /// Stands in for timeouts on the worker's waits, in case an outbox row was ever committed
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

    /// Turns delivery outcomes into store updates (one transaction per batch), metrics and logs.
    func record(_ results: [(OutboxItem, DeliveryOutcome)]) async {
        var outcomes: [(eventSeq: Int64, outcome: Store.Outcome)] = []
        var disable: String? = nil
        let now = Store.nowMS()
        for (item, outcome) in results {
            switch outcome {
            case .delivered:
                outcomes.append((item.eventSeq, .delivered))
                outCounter(item.eventType, "delivered").increment()
                latency.recordNanoseconds((now - item.createdAt) * 1_000_000)
            case .retry(let error, let retryAfter):
                let attempts = item.attempts + 1
                retries.increment()
                if let delay = schedule.delay(afterAttempts: attempts, retryAfter: retryAfter, elapsed: Double(now - item.createdAt) / 1000) {
                    logger.warning("delivery failed; will retry", metadata: [
                        "sink": "\(sink.name)", "event": "\(item.eventID)", "attempt": "\(attempts)", "error": "\(error)",
                        "retry_in_s": "\(Int(delay))"])
                    outcomes.append((item.eventSeq, .retry(at: now + Int64(delay * 1000), error: error)))
                } else {
                    logger.error("delivery failed for the last time; event parked (recover with POST /v1/helpdesks/{name}/recover)",
                                 metadata: ["sink": "\(sink.name)", "event": "\(item.eventID)", "error": "\(error)"])
                    outCounter(item.eventType, "failed").increment()
                    outcomes.append((item.eventSeq, .failed(error: error)))
                }
            case .disable(let reason):
                // The event stays pending, delivered once the sink is recovered.
                disable = reason
            }
        }
        do {
            try await store.record(sink: sink.name, outcomes: outcomes)
            if let reason = disable {
                logger.error("sink disabled", metadata: ["sink": "\(sink.name)", "reason": "\(reason)"])
                try await store.disableSink(sink.name, reason: reason)
            }
        } catch {
            // Unrecorded deliveries are delivered again: at least once.
            logger.error("cannot record delivery outcomes", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
        }
    }
}
