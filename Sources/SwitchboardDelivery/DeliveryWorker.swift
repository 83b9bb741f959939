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

    public func run() async throws {
        // The idle wait has no timer of its own when nothing is pending: at a trickle of events
        // the worker waits once per event, and a timer per wait cost more CPU than the delivery.
        // So shutdown wakes it, and one ticker per worker stands in for the timeouts, in case an
        // outbox row was ever committed without a notify.
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { ticker in
                ticker.addTask { [signal] in
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(5))
                        signal.notify()
                    }
                }
                await self.deliverUntilShutdown()
                ticker.cancelAll()
            }
        } onGracefulShutdown: {
            self.signal.notify()
        }
    }

    private func deliverUntilShutdown() async {
        var lastGauge = ContinuousClock.now - .seconds(60)
        let depth = Gauge(label: "switchboard_outbox_depth", dimensions: [("sink", sink.name)])
        // A batch's outcomes are written while the next batch is read and delivered: that write
        // waits behind ingest commits, and other conversations shouldn't wait for it. Events
        // delivered but not yet recorded are skipped by the next read (their rows still say
        // pending); at most one such write is outstanding.
        let unrecorded = SeqSet()
        await withTaskGroup(of: Void.self) { recorders in
            var recording = false
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let generation = signal.generation
                if ContinuousClock.now - lastGauge > .seconds(5) {
                    lastGauge = .now
                    if let stats = try? await store.sinkStats(sink.name) { depth.record(stats.pending) }
                }
                let poll: Store.OutboxPoll
                let batch: [OutboxItem]
                do {
                    // Taken before the read: an outcome committed after this point may still show
                    // as pending in what the read returns, and must not be delivered again.
                    let skip = unrecorded.snapshot
                    poll = try store.pollOutbox(sink: sink.name, limit: maxInFlight + skip.count)
                    batch = Array(poll.due.filter { !skip.contains($0.eventSeq) }.prefix(maxInFlight))
                } catch {
                    logger.error("cannot read the outbox", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
                if poll.disabled {
                    if recording { await recorders.next(); recording = false }
                    // Re-enabled through the API, which notifies; the timeout is a safety net.
                    await signal.wait(after: generation, timeout: .seconds(5))
                    continue
                }
                if batch.isEmpty {
                    if recording {
                        await recorders.next()
                        recording = false
                        // Due events held back only by the outstanding write (its own, or later
                        // ones of its conversations) can go now; with nothing due at all, the
                        // wait below returns at once if anything was committed since the read.
                        if !poll.due.isEmpty { continue }
                    }
                    if let due = poll.nextDue {
                        // Retries are waiting: sleep until the first is due, or something new arrives.
                        await signal.wait(after: generation, timeout: .milliseconds(max(10, min(due - Store.nowMS(), 5000))))
                    } else if poll.due.isEmpty {
                        depth.record(0)
                        await signal.wait(after: generation)
                    }
                    continue
                }
                // One event per conversation per batch (the query guarantees it), so delivering
                // the batch concurrently keeps every conversation in order.
                let results = await withTaskGroup(of: (OutboxItem, DeliveryOutcome).self) { group in
                    for item in batch {
                        group.addTask { (item, await self.sink.deliver(eventID: item.eventID, body: item.body)) }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                if recording { await recorders.next(); recording = false }
                let seqs = results.map(\.0.eventSeq)
                if results.contains(where: { if case .disable = $0.1 { true } else { false } }) {
                    // 410: record (and disable) before anything else goes to this receiver.
                    await record(results)
                    continue
                }
                unrecorded.insert(seqs)
                recorders.addTask {
                    await self.record(results)
                    unrecorded.remove(seqs)
                }
                recording = true
            }
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
