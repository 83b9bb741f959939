import Foundation
import Synchronization

/// A small FIFO of an adapter's background work (media downloads, profile look-ups) queued by a
/// webhook handler after its commit and drained by the adapter's `run(context:)`, a few jobs at
/// a time, as children of that task. It survives the run loop being restarted, unlike an
/// AsyncStream, which finishes when its consumer is cancelled. (What must survive a restart of
/// the process belongs in the adapter state too, e.g. committed with the event.)
public final class AdapterJobQueue<Job: Sendable>: Sendable {
    private struct State {
        var jobs: [Job] = []
        /// Jobs pushed with a delay, not yet due (few: each is a download that keeps failing).
        var later: [(due: ContinuousClock.Instant, job: Job)] = []
        /// Counts pushes of either kind: a drain loop that found nothing to do sleeps only if
        /// nothing was pushed since it looked (a push in between would find no waiter to wake).
        var version: UInt64 = 0
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    public init() {}

    public func push(_ job: Job) {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.jobs.append(job)
            s.version &+= 1
            defer { s.waiter = nil }
            return s.waiter
        }
        w?.resume()
    }

    /// Queues `job` to run once `delay` has passed (a retry that should not hold a slot while
    /// it waits). Like every queued job it is lost with the process: keep it in the adapter
    /// state too and push it again at start.
    public func push(_ job: Job, after delay: Duration) {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.later.append((ContinuousClock.now + delay, job))
            s.version &+= 1
            defer { s.waiter = nil }
            return s.waiter
        }
        // The drain loop may be waiting for an earlier deadline, or none: it looks again.
        w?.resume()
    }

    /// The next job to run (delayed ones once due), or else what to wait for: the version of
    /// the queue seen and the earliest delayed job's time.
    private func next() -> (job: Job?, version: UInt64, due: ContinuousClock.Instant?) {
        state.withLock { s in
            if !s.later.isEmpty {
                let now = ContinuousClock.now
                let due = s.later.filter { $0.due <= now }
                if !due.isEmpty {
                    s.later.removeAll { $0.due <= now }
                    s.jobs.append(contentsOf: due.sorted { $0.due < $1.due }.map(\.job))
                }
            }
            let job: Job? = s.jobs.isEmpty ? nil : s.jobs.removeFirst()
            return (job, s.version, s.later.map(\.due).min())
        }
    }

    /// Jobs ready to run now (delayed ones count once they are due and popped).
    public var count: Int { state.withLock { $0.jobs.count } }
    /// Jobs waiting for their delay.
    public var delayedCount: Int { state.withLock { $0.later.count } }

    /// Returns when a job is queued, anything was pushed after `version` was seen, or the task
    /// is cancelled.
    private func waitForWork(since version: UInt64) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { s -> (now: Bool, previous: CheckedContinuation<Void, Never>?) in
                    if !s.jobs.isEmpty || Task.isCancelled || s.version != version { return (true, nil) }
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

    /// `waitForWork(since:)`, or until `deadline` passes.
    private func waitForWork(since version: UInt64, until deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            group.addTask { await self.waitForWork(since: version) }
            await group.next()
            group.cancelAll()
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
                let (job, version, due) = next()
                if let job {
                    running += 1
                    group.addTask { await perform(job) }
                    continue
                }
                if let due { await waitForWork(since: version, until: due) } else { await waitForWork(since: version) }
            }
            group.cancelAll()
        }
    }
}

/// How a background job that keeps failing for a transient reason (a media download while the
/// platform answers 5xx) is tried again after its quick retries: after twice the last quick
/// delay, doubling each time up to an hour, until `window` has passed since it was first put
/// off; then it is given up. Kept with the job in the adapter state, so a restart continues the
/// count rather than starting over.
public struct DeferredRetry: Codable, Sendable, Hashable {
    /// Times the job was put off so far.
    public var count: Int = 0
    /// When it was first put off (seconds since 1970).
    public var since: Double?

    public init() {}

    public static let maxDelay: Double = 3600

    /// Records one more deferral and returns the wait before the next attempt, or nil when the
    /// job has been put off for `window` seconds already (or `window` is 0: no deferral).
    public mutating func next(lastQuickDelay: Double, window: Double, now: Date = Date()) -> Duration? {
        let t = now.timeIntervalSince1970
        let first = since ?? t
        guard window > 0, t - first < window else { return nil }
        let base = max(lastQuickDelay, 0.05)
        let delay = min(base * pow(2, Double(min(count + 1, 30))), Self.maxDelay, max(window - (t - first), 0.05))
        since = first
        count += 1
        return .milliseconds(Int64(delay * 1000))
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
