import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import SwitchboardCore
import SwitchboardStore

/// Event log positions delivered but not yet recorded.
final class SeqSet: Sendable {
    private let seqs = Mutex<Set<Int64>>([])
    var snapshot: Set<Int64> { seqs.withLock { $0 } }
    func insert(_ s: [Int64]) { seqs.withLock { $0.formUnion(s) } }
    func remove(_ s: [Int64]) { seqs.withLock { $0.subtract(s) } }
}

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

    /// What finished in the worker's task group.
    enum Finished: Sendable {
        case delivered(OutboxItem, DeliveryOutcome)
        case recorded
        case woken
    }

    public func run() async throws {
        var lastGauge = ContinuousClock.now - .seconds(60)
        let depth = Gauge(label: "switchboard_outbox_depth", dimensions: [("sink", sink.name)])
        // Deliveries are refilled continuously: whenever one finishes, or something new is
        // committed, the free slots (up to maxInFlight) take the next due events — an event never
        // waits for a slow delivery to another conversation. Per conversation only the head
        // pending event is ever due (the outbox query guarantees it), and a head that is in
        // flight, or delivered but not yet recorded, is skipped, so each conversation stays in
        // order. Outcomes are written while deliveries go on; at most one write is outstanding
        // (it waits behind ingest commits) and outcomes finished meanwhile go in the next one.
        let unrecorded = SeqSet()
        await withTaskGroup(of: Finished.self) { group in
            var inFlight: [String: Int64] = [:]
            var outcomes: [(OutboxItem, DeliveryOutcome)] = []
            var recording = false
            // Waker tasks wait for the signal or a timeout; a new one is added when the loop must
            // wake earlier than every pending one would (a retry due in 10 ms).
            var wakers = 0
            var wakeAt = ContinuousClock.now
            var read = true
            var idleWait = 5000
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                if !recording && !outcomes.isEmpty {
                    let batch = outcomes
                    outcomes = []
                    let seqs = batch.map(\.0.eventSeq)
                    if batch.contains(where: { if case .disable = $0.1 { true } else { false } }) {
                        // 410: record (and disable) before anything else goes to this receiver.
                        await record(batch)
                        unrecorded.remove(seqs)
                        read = true
                    } else {
                        recording = true
                        group.addTask {
                            await self.record(batch)
                            unrecorded.remove(seqs)
                            return .recorded
                        }
                    }
                }
                let generation = signal.generation
                if read && inFlight.count < maxInFlight {
                    read = false
                    if ContinuousClock.now - lastGauge > .seconds(5) {
                        lastGauge = .now
                        if let stats = try? await store.sinkStats(sink.name) { depth.record(stats.pending) }
                    }
                    if (try? await store.isSinkDisabled(sink.name)) == true {
                        idleWait = 5000
                    } else {
                        do {
                            // Taken before the read: an outcome committed after this point may still
                            // show as pending in what the read returns, and must not go out again.
                            let skip = unrecorded.snapshot
                            let due = try await store.dueOutbox(sink: sink.name, limit: maxInFlight + skip.count + inFlight.count)
                            for item in due where inFlight.count < maxInFlight && !skip.contains(item.eventSeq) && inFlight[item.conversationID] == nil {
                                inFlight[item.conversationID] = item.eventSeq
                                group.addTask { .delivered(item, await self.sink.deliver(eventID: item.eventID, body: item.body)) }
                            }
                            if inFlight.isEmpty && !recording {
                                let now = Store.nowMS()
                                let next = (try? await store.nextOutboxDue(sink: sink.name)) ?? nil
                                idleWait = next.map { max(10, min(Int($0 - now), 5000)) } ?? 5000
                            } else {
                                idleWait = 5000  // completions wake the loop
                            }
                        } catch {
                            logger.error("cannot read the outbox", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
                            idleWait = 1000
                        }
                    }
                }
                let wantWakeAt = ContinuousClock.now + .milliseconds(idleWait)
                if wakers == 0 || wantWakeAt < wakeAt {
                    wakers += 1
                    wakeAt = wantWakeAt
                    let wait = idleWait
                    group.addTask {
                        await self.signal.wait(after: generation, timeout: .milliseconds(wait))
                        return .woken
                    }
                }
                guard let finished = await group.next() else { break }
                switch finished {
                case .delivered(let item, let outcome):
                    // Skipped by reads from now until its outcome is written.
                    unrecorded.insert([item.eventSeq])
                    inFlight[item.conversationID] = nil
                    outcomes.append((item, outcome))
                    // The conversation's next event is due only once this outcome is recorded;
                    // other conversations' events arrive with the signal.
                case .recorded:
                    recording = false
                    read = true
                case .woken:
                    wakers -= 1
                    read = true
                }
            }
            group.cancelAll()
            // Outcomes of deliveries that finished are still worth keeping on the way out.
            while let finished = await group.next() {
                if case .delivered(let item, let outcome) = finished { outcomes.append((item, outcome)) }
            }
            if !outcomes.isEmpty { await record(outcomes) }
        }
    }

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
                if let delay = schedule.delay(afterAttempts: attempts, retryAfter: retryAfter) {
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
