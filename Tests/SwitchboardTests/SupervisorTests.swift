import Foundation
import Logging
import Synchronization
import Testing
@testable import SwitchboardRuntime

/// The supervisor keeps long-lived tasks running: one that fails is started again.
@Suite struct SupervisorTests {
    @Test func aUnitThatFailsIsStartedAgain() async throws {
        let supervisor = Supervisor(logger: Logger(label: "test"))
        let runs = Atomic<Int>(0)
        struct Boom: Error {}
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await supervisor.run() }
            supervisor.start(.init(id: "flaky") {
                if runs.add(1, ordering: .relaxed).newValue == 1 { throw Boom() }
                while !Task.isCancelled { try await Task.sleep(for: .seconds(60)) }
            })
            try await eventually(timeout: 10, "the second run") { runs.load(ordering: .relaxed) == 2 }
            // Stopped by id: the running body is cancelled and not started again.
            supervisor.stop("flaky")
            try await Task.sleep(for: .milliseconds(300))
            #expect(runs.load(ordering: .relaxed) == 2)
            #expect(supervisor.runningIDs.isEmpty)
            group.cancelAll()
        }
    }

    /// Cancelled outright (a listener failed to bind), draining units stop too: they are not
    /// started again and again until the process is killed.
    @Test func cancellationStopsDrainingUnits() async throws {
        let supervisor = Supervisor(logger: Logger(label: "test"))
        let runs = Atomic<Int>(0)
        let task = Task {
            try await supervisor.run()
        }
        supervisor.start(.init(id: "worker", drains: true) {
            runs.add(1, ordering: .relaxed)
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(60)) }
        })
        try await eventually { runs.load(ordering: .relaxed) == 1 }
        task.cancel()
        let clock = ContinuousClock()
        let started = clock.now
        _ = try? await task.value
        #expect(clock.now - started < .seconds(2))
        #expect(runs.load(ordering: .relaxed) == 1, "started again while cancelled")
    }
}
