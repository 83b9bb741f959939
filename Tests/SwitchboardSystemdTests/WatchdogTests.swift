import Foundation
import Testing
@testable import SwitchboardSystemd

@Suite("Watchdog")
struct WatchdogTests {
    let pid = Int32(ProcessInfo.processInfo.processIdentifier)

    @Test func disabledWithoutWatchdogUsec() {
        #expect(Watchdog.interval(environment: [:]) == nil)
        #expect(Watchdog.timeout(environment: [:]) == nil)
        #expect(Watchdog.interval(environment: ["WATCHDOG_PID": "\(pid)"]) == nil)
    }

    @Test func halfTheTimeoutWhenMeantForUs() {
        let environment = ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(pid)"]
        #expect(Watchdog.timeout(environment: environment) == .seconds(30))
        #expect(Watchdog.interval(environment: environment) == .seconds(15))
    }

    @Test func pidIsOptional() {
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "1000"]) == .microseconds(500))
    }

    @Test func wrongPidDisables() {
        let environment = ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(pid &+ 1)"]
        #expect(Watchdog.interval(environment: environment) == nil)
        #expect(Watchdog.timeout(environment: environment) == nil)
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "self"]) == nil)
        // The internal entry point with an explicit pid agrees.
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "77"], processID: 77) == .seconds(1))
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "77"], processID: 78) == nil)
    }

    @Test(arguments: ["0", "", "-5", "abc", "30s", "1e6", "99999999999999999999999"])
    func malformedValuesDisable(value: String) {
        #expect(Watchdog.interval(environment: ["WATCHDOG_USEC": value]) == nil)
    }

    @Test func runPingsOnlyWhileHealthy() async throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        let health = HealthFlag(true)

        let task = Task {
            await Watchdog.run(notifier: notifier, interval: .milliseconds(20)) { health.value }
        }
        // Healthy: pings arrive. (Generous timeouts: the whole suite starts at once on two cores.)
        #expect(await stub.receiveAsync(timeoutMilliseconds: 15_000) == "WATCHDOG=1")
        #expect(await stub.receiveAsync(timeoutMilliseconds: 15_000) == "WATCHDOG=1")

        // Unhealthy: they stop. Drain pings already in flight until a quiet gap of
        // five intervals (bounded, so a daemon that kept pinging fails below instead
        // of looping here).
        health.value = false
        var drained = 0
        while drained < 50, await stub.receiveAsync(timeoutMilliseconds: 100) != nil {
            drained += 1
        }
        #expect(await stub.receiveAsync(timeoutMilliseconds: 200) == nil)

        // Healthy again: they resume. Cancelling ends the loop.
        health.value = true
        #expect(await stub.receiveAsync(timeoutMilliseconds: 15_000) == "WATCHDOG=1")
        task.cancel()
        await task.value
    }

    @Test func runReturnsAtOnceWhenDisabled() async {
        let notifier = SystemdNotifier(environment: [:])
        // Would never return if it looped.
        await Watchdog.run(notifier: notifier, interval: .milliseconds(1)) { true }
        let stub = try? NotifySocketStub()
        if let stub {
            await Watchdog.run(notifier: SystemdNotifier(environment: stub.environment), interval: nil) { true }
        }
    }
}

private final class HealthFlag: @unchecked Sendable {
    private var stored: Bool
    private let lock = NSLock()
    init(_ value: Bool) { stored = value }
    var value: Bool {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
