import Foundation
import Logging
import Metrics
import ServiceLifecycle
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
    let leaseMS: Int64
    let logger: Logger

    public init(sink: any EventSink, store: Store, signal: ChangeSignal, schedule: RetrySchedule = .standard,
                maxInFlight: Int = 64, timeout: Duration = .seconds(15), logger: Logger) {
        self.sink = sink; self.store = store; self.signal = signal; self.schedule = schedule
        self.maxInFlight = maxInFlight
        self.leaseMS = Int64(timeout.components.seconds) * 1000 + 10_000
        self.logger = logger
    }

    public func run() async throws {
        var lastGauge = ContinuousClock.now - .seconds(60)
        let depth = Gauge(label: "switchboard_outbox_depth", dimensions: [("sink", sink.name)])
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let generation = signal.generation
            if ContinuousClock.now - lastGauge > .seconds(5) {
                lastGauge = .now
                if let stats = try? await store.sinkStats(sink.name) { depth.record(stats.pending) }
            }
            if (try? await store.isSinkDisabled(sink.name)) == true {
                await signal.wait(after: generation, timeout: .seconds(5))
                continue
            }
            let batch: [OutboxItem]
            do {
                batch = try await store.claimOutbox(sink: sink.name, limit: maxInFlight, leaseMS: leaseMS)
            } catch {
                logger.error("cannot read the outbox", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            if batch.isEmpty {
                let now = Store.nowMS()
                let due = (try? await store.nextOutboxDue(sink: sink.name)) ?? nil
                let wait = due.map { max(10, min($0 - now, 5000)) } ?? 5000
                await signal.wait(after: generation, timeout: .milliseconds(wait))
                continue
            }
            // One event per conversation per batch (the claim guarantees it), so delivering the
            // batch concurrently keeps every conversation in order.
            await withTaskGroup(of: Void.self) { group in
                for item in batch {
                    group.addTask { await self.deliver(item) }
                }
            }
        }
    }

    func deliver(_ item: OutboxItem) async {
        let outcome = await sink.deliver(eventID: item.eventID, body: item.body)
        let dims = [("sink", sink.name), ("type", item.eventType)]
        do {
            switch outcome {
            case .delivered:
                try await store.markDelivered(sink: sink.name, eventSeq: item.eventSeq)
                Counter(label: "switchboard_events_out_total", dimensions: dims + [("result", "delivered")]).increment()
                let latency = Double(Store.nowMS() - item.createdAt) / 1000
                Metrics.Timer(label: "switchboard_delivery_latency_seconds", dimensions: [("sink", sink.name)])
                    .recordNanoseconds(Int64(latency * 1_000_000_000))
            case .retry(let error, let retryAfter):
                let attempts = item.attempts + 1
                Counter(label: "switchboard_delivery_retries_total", dimensions: [("sink", sink.name)]).increment()
                if let delay = schedule.delay(afterAttempts: attempts, retryAfter: retryAfter) {
                    logger.warning("delivery failed; will retry", metadata: [
                        "sink": "\(sink.name)", "event": "\(item.eventID)", "attempt": "\(attempts)", "error": "\(error)",
                        "retry_in_s": "\(Int(delay))"])
                    try await store.markRetry(sink: sink.name, eventSeq: item.eventSeq,
                                              nextAttemptAt: Store.nowMS() + Int64(delay * 1000), error: error)
                } else {
                    logger.error("delivery failed for the last time; event parked (recover with POST /v1/helpdesks/{name}/recover)",
                                 metadata: ["sink": "\(sink.name)", "event": "\(item.eventID)", "error": "\(error)"])
                    Counter(label: "switchboard_events_out_total", dimensions: dims + [("result", "failed")]).increment()
                    try await store.markFailed(sink: sink.name, eventSeq: item.eventSeq, error: error)
                }
            case .disable(let reason):
                logger.error("sink disabled", metadata: ["sink": "\(sink.name)", "reason": "\(reason)"])
                try await store.disableSink(sink.name, reason: reason)
                try await store.releaseLease(sink: sink.name, eventSeq: item.eventSeq)
            }
        } catch {
            // The lease expires and the event is delivered again: at least once.
            logger.error("cannot record a delivery outcome", metadata: ["sink": "\(sink.name)", "error": "\(error)"])
        }
    }
}
