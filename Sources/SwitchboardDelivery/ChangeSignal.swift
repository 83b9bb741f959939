import Foundation
import Synchronization

/// Wakes tasks waiting for "something new was committed" (an event for the sinks and streams, a
/// send for the send workers) without polling. A generation counter means a waiter that read
/// the store at generation `g` can never miss a change made after it read.
public final class ChangeSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    public var generation: UInt64 { state.withLock { $0.generation } }

    public func notify() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.generation &+= 1
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    /// Returns once the generation has moved past `after`, the timeout passes, or the task is cancelled.
    public func wait(after: UInt64, timeout: Duration) async {
        if generation != after { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForChange(after: after) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns once the generation has moved past `after` or the task is cancelled. Cheaper than
    /// the timed wait (no timer, no child tasks): for loops that something always wakes, such as
    /// a writer its shutdown handler notifies.
    public func wait(after: UInt64) async {
        if generation != after { return }
        await waitForChange(after: after)
    }

    private func waitForChange(after: UInt64) async {
        let id = state.withLock { s -> Int in s.nextID += 1; return s.nextID }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.generation != after || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let c = state.withLock { $0.waiters.removeValue(forKey: id) }
            c?.resume()
        }
    }
}
