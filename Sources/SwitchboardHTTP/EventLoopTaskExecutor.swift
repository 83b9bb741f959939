import NIOCore

/// A task executor that runs its jobs on one NIO event loop, for tasks that mostly talk to a
/// channel on that loop (`withTaskExecutorPreference`). Only code that never blocks may run
/// on it: everything else on the loop waits meanwhile.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        // From the loop's own thread this only appends to its queue (no wake-up).
        eventLoop.execute { job.runSynchronously(on: executor) }
    }
}
