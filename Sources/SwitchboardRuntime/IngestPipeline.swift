import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import SwitchboardCore
import SwitchboardDelivery
import SwitchboardStore

/// The one way into the store for inbound events: adapters' `emit` calls queue here, and a
/// single writer commits whatever has queued up in one transaction (group commit). A burst of
/// webhooks costs one fsync, not one each, and every caller is answered only after the commit
/// that holds its event.
public final class IngestPipeline: Service, Sendable {
    struct Pending {
        var prepared: Store.PreparedInbound
        var work: InboundWork { prepared.work }
        var continuation: CheckedContinuation<EmitResult, any Error>
    }
    private struct State {
        var queue: [Pending] = []
        var accepting = true
    }

    let store: Store
    let eventSignal: ChangeSignal
    let contextBox: Mutex<EventContext>
    private let state = Mutex(State())
    private let wake = ChangeSignal()
    let logger: Logger
    let maxBatch = 512
    struct CounterKey: Hashable { var channel: String; var type: String; var result: String }
    private let counters = Mutex<[CounterKey: Counter]>([:])

    public struct ShuttingDown: Error, CustomStringConvertible {
        public var description: String { "switchboard is shutting down" }
    }

    public init(store: Store, eventSignal: ChangeSignal, context: EventContext, logger: Logger) {
        self.store = store; self.eventSignal = eventSignal; self.contextBox = Mutex(context); self.logger = logger
    }

    /// The sinks and source events are written for (replaced on reload).
    public var eventContext: EventContext {
        get { contextBox.withLock { $0 } }
    }
    public func setEventContext(_ ctx: EventContext) { contextBox.withLock { $0 = ctx } }

    public func emit(_ work: InboundWork) async throws -> EmitResult {
        // Encoding happens here, in the caller's task, not in the single commit loop.
        let prepared = Store.PreparedInbound(work)
        return try await withCheckedThrowingContinuation { c in
            let accepted = state.withLock { s -> Bool in
                guard s.accepting else { return false }
                s.queue.append(Pending(prepared: prepared, continuation: c))
                return true
            }
            if accepted { wake.notify() } else { c.resume(throwing: ShuttingDown()) }
        }
    }

    public func run() async throws {
        // On graceful shutdown stop accepting, then commit what is already queued: those
        // callers are waiting to acknowledge their platforms.
        await withGracefulShutdownHandler {
            while true {
                let generation = wake.generation
                let (batch, open) = state.withLock { s -> ([Pending], Bool) in
                    let n = min(s.queue.count, maxBatch)
                    let b = Array(s.queue.prefix(n))
                    s.queue.removeFirst(n)
                    return (b, s.accepting)
                }
                if batch.isEmpty {
                    if !open || Task.isCancelled { break }
                    await wake.wait(after: generation, timeout: .seconds(1))
                    continue
                }
                await commit(batch)
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.accepting = false }
            self.wake.notify()
        }
        // Anything that raced in after the loop ended is refused, never left hanging.
        let leftovers = state.withLock { s -> [Pending] in s.accepting = false; defer { s.queue = [] }; return s.queue }
        for p in leftovers { p.continuation.resume(throwing: ShuttingDown()) }
    }

    func commit(_ batch: [Pending]) async {
        let ctx = eventContext
        do {
            let results = try await store.commitInbound(batch.map(\.prepared), ctx: ctx)
            var committed = false
            for (p, r) in zip(batch, results) {
                if case .success(.committed) = r { committed = true }
                count(p.work, r)
                p.continuation.resume(with: r)
            }
            if committed { eventSignal.notify() }
        } catch {
            logger.error("cannot commit inbound events; the platforms will be asked to retry", metadata: ["error": "\(error)", "count": "\(batch.count)"])
            for p in batch { p.continuation.resume(throwing: error) }
        }
    }

    func count(_ work: InboundWork, _ r: Result<EmitResult, any Error>) {
        let type: String
        switch work.event.kind {
        case .message(let m): type = m.origin == .echo ? "message.echo" : "message.received"
        case .status: type = "message.status"
        case .reaction: type = "message.reaction"
        case .deleted: type = "message.deleted"
        case .updated: type = "message.updated"
        case .read: type = "conversation.read"
        case .typing(let s): type = s ? "typing.started" : "typing.stopped"
        case .identityUpdated: type = "identity.updated"
        case .custom(let t, _): type = t.rawValue
        }
        let result: String
        switch r {
        case .success(.committed): result = "committed"
        case .success(.duplicate): result = "duplicate"
        case .success(.ignored): result = "ignored"
        case .failure: result = "error"
        }
        let key = CounterKey(channel: work.channel.id, type: type, result: result)
        // Metric handles are looked up by label and dimensions in the metrics backend, under a
        // lock, for every `Counter(...)`: keep ours instead of asking per event.
        let counter = counters.withLock { cache -> Counter in
            if let c = cache[key] { return c }
            let c = Counter(label: "switchboard_events_in_total", dimensions: [("channel", key.channel), ("type", type), ("result", result)])
            cache[key] = c
            return c
        }
        counter.increment()
    }
}
