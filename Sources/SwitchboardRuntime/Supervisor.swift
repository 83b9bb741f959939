import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// A one-shot stop request for one supervised task.
final class StopLatch: Sendable {
    private struct State {
        var fired = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())
    func fire() {
        let w = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.fired = true
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for c in w { c.resume() }
    }
    var fired: Bool { state.withLock { $0.fired } }
    /// Returns when the latch fires or the waiting task is cancelled (its unit ended by itself).
    func wait() async {
        let id = state.withLock { s -> Int in s.nextID += 1; return s.nextID }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.fired || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// Runs long-lived tasks (adapters, send workers, delivery workers) as children of one service,
/// so a failing channel never takes the daemon down: a task that throws is restarted with
/// exponential backoff, and tasks can be started and stopped one by one (config reload).
public final class Supervisor: Service, Sendable {
    public struct Unit: Sendable {
        public var id: String
        /// The body finishes its work under way and returns when the daemon shuts down
        /// gracefully (send and delivery workers: an answered send or delivery must be
        /// recorded, or it goes out again after the restart). Other units are cancelled at once.
        public var drains: Bool
        public var body: @Sendable () async throws -> Void
        public init(id: String, drains: Bool = false, body: @escaping @Sendable () async throws -> Void) {
            self.id = id; self.drains = drains; self.body = body
        }
    }
    enum Command: Sendable { case start(Unit), stop(String) }

    private let commands: AsyncStream<Command>
    private let continuation: AsyncStream<Command>.Continuation
    private let latches = Mutex<[String: (latch: StopLatch, drains: Bool, done: StopLatch)]>([:])
    /// Draining units stopped by id (a reload removed them), until they have finished: a unit
    /// started again under that id (the next reload brings it back) waits for them too.
    private let stopped = Mutex<[String: StopLatch]>([:])
    let logger: Logger

    public init(logger: Logger) {
        (commands, continuation) = AsyncStream.makeStream(of: Command.self)
        self.logger = logger
    }

    public func start(_ unit: Unit) { continuation.yield(.start(unit)) }
    public func stop(_ id: String) { continuation.yield(.stop(id)) }
    public var runningIDs: [String] { latches.withLock { Array($0.keys) } }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for await command in commands.cancelOnGracefulShutdown() {
                switch command {
                case .start(let unit):
                    let latch = StopLatch()
                    let done = StopLatch()
                    let previous = latches.withLock { l -> (latch: StopLatch, drains: Bool, done: StopLatch)? in
                        defer { l[unit.id] = (latch, unit.drains, done) }
                        return l[unit.id]
                    }
                    previous?.latch.fire()
                    let stoppedEarlier = stopped.withLock { $0.removeValue(forKey: unit.id) }
                    group.addTask {
                        // A replaced draining unit (a reloaded sink or channel) first finishes
                        // what it has under way: two workers on one sink's log position or one
                        // send queue would take the same events and deliver them twice.
                        if let previous, previous.drains { await previous.done.wait() }
                        if let stoppedEarlier { await stoppedEarlier.wait() }
                        await self.supervise(unit, latch: latch)
                        done.fire()
                    }
                case .stop(let id):
                    if let entry = latches.withLock({ $0.removeValue(forKey: id) }) {
                        if entry.drains { stopped.withLock { $0[id] = entry.done } }
                        entry.latch.fire()
                    }
                }
            }
            // Shutting down: stop the other children now; draining ones see the graceful
            // shutdown themselves and return when their work under way is recorded (or are
            // cancelled with everything else when server.shutdown_grace runs out). Cancelled
            // outright (a service failed, the grace ran out): stop every child. The group waits
            // for all of them.
            let cancelled = Task.isCancelled
            for l in latches.withLock({ l -> [StopLatch] in defer { l = [:] }; return l.values.filter { cancelled || !$0.drains }.map(\.latch) }) {
                l.fire()
            }
        }
    }

    func supervise(_ unit: Unit, latch: StopLatch) async {
        var failures = 0
        while !latch.fired {
            let started = ContinuousClock.now
            let error: (any Error)? = await withTaskGroup(of: (any Error)?.self) { group in
                group.addTask {
                    do { try await unit.body(); return nil } catch { return error }
                }
                group.addTask { await latch.wait(); return nil }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            if latch.fired { break }
            // A draining unit returns when the daemon shuts down: that is not a failure. Nor is
            // returning because the whole group was cancelled.
            if Task.isCancelled || (unit.drains && Task.isShuttingDownGracefully) { break }
            if ContinuousClock.now - started > .seconds(60) { failures = 0 }
            failures += 1
            let delay = min(60.0, 0.5 * pow(2.0, Double(min(failures, 8)))) * Double.random(in: 0.8...1.2)
            logger.error("task stopped; restarting", metadata: [
                "task": "\(unit.id)", "error": "\(error.map { "\($0)" } ?? "returned")", "restart_in_s": "\(String(format: "%.1f", delay))"])
            // The wait before the restart ends early for a stop, and for a shutdown: a draining
            // unit waiting here has nothing under way to finish.
            await withGracefulShutdownHandler {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { try? await Task.sleep(for: .seconds(delay)) }
                    group.addTask { await latch.wait() }
                    await group.next()
                    group.cancelAll()
                }
            } onGracefulShutdown: {
                latch.fire()
            }
        }
    }
}
