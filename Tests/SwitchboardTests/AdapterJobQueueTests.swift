import Foundation
import Synchronization
import Testing
@testable import SwitchboardRuntime

private final class Runs: Sendable {
    let list = Mutex<[(String, ContinuousClock.Instant)]>([])
}

@Suite struct AdapterJobQueueTests {
    /// A delayed job runs once its time has come, and does not hold back jobs pushed after it.
    @Test func delayedJobsRunWhenDueWithoutHoldingASlot() async throws {
        let queue = AdapterJobQueue<String>()
        let done = Runs()
        let start = ContinuousClock.now
        queue.push("later", after: .milliseconds(300))
        queue.push("now")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await queue.drain(maxConcurrent: 1) { job in done.list.withLock { $0.append((job, ContinuousClock.now)) } }
            }
            // Nothing else is pushed: the loop must wake for the delayed job by itself.
            try await eventually(timeout: 10, "both ran") { done.list.withLock { $0.count == 2 } }
            group.cancelAll()
        }
        let runs = done.list.withLock { $0 }
        #expect(runs.map(\.0) == ["now", "later"])
        #expect(runs[1].1 - start >= .milliseconds(300), "not before its delay")
        #expect(queue.delayedCount == 0)
    }

    /// A job that, while running, puts itself off (the way a failing download does) is run
    /// again when due, although nothing else is pushed: the drain loop must not go to sleep
    /// with no deadline when that push came between its look at the queue and its wait.
    @Test func aJobPutOffWhileTheLoopIsIdleStillRuns() async throws {
        let queue = AdapterJobQueue<Int>()
        let done = Runs()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await queue.drain(maxConcurrent: 2) { n in
                    // Each job puts off the next at once, 1 ms later; 200 of them.
                    if n < 200 { queue.push(n + 1, after: .milliseconds(1)) }
                    done.list.withLock { $0.append(("\(n)", ContinuousClock.now)) }
                }
            }
            queue.push(0)
            try await eventually(timeout: 20, "all 201 ran") { done.list.withLock { $0.count == 201 } }
            group.cancelAll()
        }
    }

    @Test func deferredRetryDoublesUpToAnHourWithinItsWindow() {
        var r = DeferredRetry()
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        #expect(r.next(lastQuickDelay: 16, window: 86_400, now: t0) == .seconds(32))
        #expect(r.next(lastQuickDelay: 16, window: 86_400, now: t0 + 40) == .seconds(64))
        #expect(r.count == 2 && r.since == t0.timeIntervalSince1970)
        for _ in 0..<10 { _ = r.next(lastQuickDelay: 16, window: 86_400, now: t0 + 100) }
        #expect(r.next(lastQuickDelay: 16, window: 86_400, now: t0 + 200) == .seconds(3600), "capped at an hour")
        #expect(r.next(lastQuickDelay: 16, window: 86_400, now: t0 + 86_000) == .seconds(400), "the last wait ends with the window")
        #expect(r.next(lastQuickDelay: 16, window: 86_400, now: t0 + 86_400) == nil, "given up once the window has passed")
        var none = DeferredRetry()
        #expect(none.next(lastQuickDelay: 1, window: 0) == nil, "a window of 0 never defers")
    }
}
