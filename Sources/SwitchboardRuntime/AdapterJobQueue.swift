import Foundation
import Synchronization

/// A small FIFO of an adapter's background work (media downloads, profile look-ups) queued by a
/// webhook handler after its commit and drained by the adapter's `run(context:)`, a few jobs at
/// a time, as children of that task. It survives the run loop being restarted, unlike an
/// AsyncStream, which finishes when its consumer is cancelled. (What must survive a restart of
/// the process belongs in the adapter state too, e.g. committed with the event.)
public final class AdapterJobQueue<Job: Sendable>: Sendable {
    private let state = Mutex<(jobs: [Job], waiter: CheckedContinuation<Void, Never>?)>(([], nil))

    public init() {}

    public func push(_ job: Job) {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.jobs.append(job)
            defer { s.waiter = nil }
            return s.waiter
        }
        w?.resume()
    }

    public func pop() -> Job? { state.withLock { $0.jobs.isEmpty ? nil : $0.jobs.removeFirst() } }

    public var count: Int { state.withLock { $0.jobs.count } }

    /// Returns when a job is queued or the task is cancelled.
    public func waitForWork() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { s -> (now: Bool, previous: CheckedContinuation<Void, Never>?) in
                    if !s.jobs.isEmpty || Task.isCancelled { return (true, nil) }
                    defer { s.waiter = c }
                    return (false, s.waiter)
                }
                ready.previous?.resume()
                if ready.now { c.resume() }
            }
        } onCancel: {
            let w = state.withLock { s -> CheckedContinuation<Void, Never>? in defer { s.waiter = nil }; return s.waiter }
            w?.resume()
        }
    }

    /// Runs queued jobs, at most `maxConcurrent` at a time, as children of the calling task,
    /// until it is cancelled.
    public func drain(maxConcurrent: Int = 4, _ perform: @escaping @Sendable (Job) async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            while !Task.isCancelled {
                if running >= maxConcurrent {
                    await group.next()
                    running -= 1
                    continue
                }
                if let job = pop() {
                    running += 1
                    group.addTask { await perform(job) }
                    continue
                }
                await waitForWork()
            }
            group.cancelAll()
        }
    }
}

/// A Sendable boolean an adapter struct can hold (Mutex is not copyable): "a download resume
/// already ran", "a call reported an expired token".
public final class AdapterFlag: Sendable {
    private let m = Mutex(false)
    public init() {}
    public var value: Bool { m.withLock { $0 } }
    public func set(_ v: Bool) { m.withLock { $0 = v } }
    /// Sets the flag to `v` and returns what it was.
    public func exchange(_ v: Bool) -> Bool { m.withLock { old in defer { old = v }; return old } }
}
