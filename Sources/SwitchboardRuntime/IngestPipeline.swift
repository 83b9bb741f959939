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
///
/// The writer is a thread of its own, not a task: it commits on that thread (GRDB's blocking
/// write) and sleeps on a condition variable between batches. An event then crosses two
/// threads — the handler's wakes the writer, the writer resumes the handler — where a writer
/// task awaiting GRDB's async write crossed four (task, GRDB's queue, task, handler), and at a
/// trickle of events, when every batch holds one event, those wake-ups were most of the CPU
/// an event cost. Blocking in fsync there holds up no task or event loop.
public final class IngestPipeline: Service, Sendable {
    struct Pending {
        var prepared: Store.PreparedInbound
        var work: InboundWork { prepared.work }
        var continuation: CheckedContinuation<EmitResult, any Error>
    }
    private struct State {
        var queue: [Pending] = []
        var accepting = true
        /// The writer is asleep on `wakeWriter` and needs a signal.
        var writerWaiting = false
    }

    let store: Store
    let eventSignal: ChangeSignal
    let contextBox: Mutex<EventContext>
    // NSCondition rather than Mutex: the writer thread sleeps on it. Guards `state` only.
    private let wakeWriter = NSCondition()
    private nonisolated(unsafe) var state = State()
    let logger: Logger
    let maxBatch = 512
    // How the writer is doing: one commit's time (SQL and fsync) and how many events it held.
    // A commit time near the interval between commits means the writer is the bottleneck.
    private let commitTimer = Metrics.Timer(label: "switchboard_ingest_commit_seconds")
    private let batchRecorder = Recorder(label: "switchboard_ingest_batch_events", aggregate: true)
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

    private func withState<T>(_ body: (inout State) -> T) -> T {
        wakeWriter.lock()
        defer { wakeWriter.unlock() }
        return body(&state)
    }

    public func emit(_ work: InboundWork) async throws -> EmitResult {
        // Encoding happens here, in the caller's task, not on the single writer.
        let prepared = Store.PreparedInbound(work)
        return try await withCheckedThrowingContinuation { c in
            let (accepted, wake) = withState { s -> (Bool, Bool) in
                guard s.accepting else { return (false, false) }
                s.queue.append(Pending(prepared: prepared, continuation: c))
                return (true, s.writerWaiting)
            }
            if !accepted { c.resume(throwing: ShuttingDown()) }
            else if wake { wakeWriter.signal() }
        }
    }

    public func run() async throws {
        // On graceful shutdown (or cancellation) stop accepting; the writer then commits what is
        // already queued — those callers are waiting to acknowledge their platforms — and ends.
        // `run` returns only after the writer thread has.
        let stop: @Sendable () -> Void = { [self] in
            withState { $0.accepting = false }
            wakeWriter.signal()
        }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    let writer = Thread { [self] in
                        // Named from inside: on Linux a name set from another thread is not
                        // applied, and a new thread inherits its creator's (a pool thread's).
                        // Linux keeps 15 bytes; this one shows whole in top and perf.
                        Thread.current.name = "ingest-writer"
                        writeUntilStopped()
                        done.resume()
                    }
                    writer.start()
                }
            } onCancel: { stop() }
        } onGracefulShutdown: { stop() }
    }

    /// The writer thread's loop.
    private func writeUntilStopped() {
        while true {
            wakeWriter.lock()
            while state.queue.isEmpty && state.accepting {
                state.writerWaiting = true
                wakeWriter.wait()
                state.writerWaiting = false
            }
            if state.queue.isEmpty {
                wakeWriter.unlock()
                return
            }
            let n = min(state.queue.count, maxBatch)
            let batch = Array(state.queue.prefix(n))
            state.queue.removeFirst(n)
            wakeWriter.unlock()
            commit(batch)
        }
    }

    func commit(_ batch: [Pending]) {
        let ctx = eventContext
        do {
            let started = DispatchTime.now().uptimeNanoseconds
            let results = try store.commitInboundBlocking(batch.map(\.prepared), ctx: ctx)
            commitTimer.recordNanoseconds(DispatchTime.now().uptimeNanoseconds - started)
            batchRecorder.record(batch.count)
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
