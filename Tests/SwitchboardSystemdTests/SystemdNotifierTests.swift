#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Testing
@testable import SwitchboardSystemd

@Suite("SystemdNotifier over a real datagram socket")
struct SystemdNotifierTests {
    @Test func disabledWithoutNotifySocket() {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(notifier.socketPath == nil)
        #expect(notifier.ready() == false)
        #expect(notifier.send("READY=1") == false)
    }

    @Test func ignoresAddressesItCannotUse() {
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": ""]).isEnabled)
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": "@"]).isEnabled)
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative/path"]).isEnabled)
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": "vsock:2:1234"]).isEnabled)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify"]).isEnabled)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "@abstract"]).isEnabled)
    }

    @Test func readyArrives() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        #expect(notifier.isEnabled)
        #expect(notifier.ready())
        #expect(stub.receive() == "READY=1")
    }

    @Test func readyWithStatusIsOneDatagram() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        #expect(notifier.ready(status: "6/6 adapters connected"))
        #expect(stub.receiveFields() == ["READY": "1", "STATUS": "6/6 adapters connected"])
    }

    @Test func statusIsOneLine() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        #expect(notifier.status("5/6 adapters connected\noutbox 12 pending\r\nlast forward 2s ago"))
        let text = try #require(stub.receive())
        #expect(text == "STATUS=5/6 adapters connected outbox 12 pending last forward 2s ago")
        #expect(!text.contains("\n"))
    }

    @Test func reloadingCarriesMonotonicTimestamp() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        var before = timespec()
        clock_gettime(CLOCK_MONOTONIC, &before)
        #expect(notifier.reloading())
        var after = timespec()
        clock_gettime(CLOCK_MONOTONIC, &after)

        let fields = try #require(stub.receiveFields())
        #expect(fields["RELOADING"] == "1")
        let stamp = try #require(fields["MONOTONIC_USEC"].flatMap { UInt64($0) })
        let low = UInt64(before.tv_sec) * 1_000_000 + UInt64(before.tv_nsec) / 1000
        let high = UInt64(after.tv_sec) * 1_000_000 + UInt64(after.tv_nsec) / 1000
        #expect(stamp >= low && stamp <= high)
    }

    @Test func stoppingWatchdogAndExtendTimeout() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)

        #expect(notifier.stopping())
        #expect(stub.receive() == "STOPPING=1")

        #expect(notifier.stopping(status: "draining 3 deliveries"))
        #expect(stub.receiveFields() == ["STOPPING": "1", "STATUS": "draining 3 deliveries"])

        #expect(notifier.watchdog())
        #expect(stub.receive() == "WATCHDOG=1")

        #expect(notifier.extendTimeout(microseconds: 45_000_000))
        #expect(stub.receive() == "EXTEND_TIMEOUT_USEC=45000000")

        #expect(notifier.extendTimeout(by: .milliseconds(1500)))
        #expect(stub.receive() == "EXTEND_TIMEOUT_USEC=1500000")
    }

    @Test func fieldsAreSortedAndSanitised() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        #expect(notifier.send(["STATUS": "a\nb", "READY": "1", "ERRNO": "0"]))
        #expect(stub.receive() == "ERRNO=0\nREADY=1\nSTATUS=a b")
    }

    @Test func invalidFieldNamesAreRefused() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        #expect(notifier.send(["ready": "1"]) == false)
        #expect(notifier.send(["READY=1\nSTATUS": "x"]) == false)
        #expect(notifier.send([:]) == false)
        // Nothing was sent; the next real message is the first datagram.
        #expect(notifier.watchdog())
        #expect(stub.receive() == "WATCHDOG=1")
    }

    @Test func rawMessagesAreSentVerbatim() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        #expect(notifier.send("READY=1\nSTATUS=raw"))
        #expect(stub.receive() == "READY=1\nSTATUS=raw")
    }

    #if os(Linux)
    @Test func abstractNamespaceSocket() throws {
        let stub = try NotifySocketStub(abstract: true)
        #expect(stub.address.hasPrefix("@"))
        let notifier = SystemdNotifier(environment: stub.environment)
        #expect(notifier.ready())
        #expect(stub.receive() == "READY=1")
        #expect(notifier.reloading())
        let fields = try #require(stub.receiveFields())
        #expect(fields["RELOADING"] == "1")
        #expect(fields["MONOTONIC_USEC"].flatMap { UInt64($0) } != nil)
    }
    #endif

    @Test func unreachableSocketDoesNotThrowOrCrash() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": directory.file("nobody-listens.sock")])
        #expect(notifier.isEnabled)
        // Repeated failures: the first is logged as a warning, the rest quietly.
        for _ in 0..<3 {
            #expect(notifier.ready() == false)
        }
        let tooLong = "/" + String(repeating: "x", count: 200)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": tooLong]).watchdog() == false)
    }

    @Test func copiesShareTheSocketAddress() throws {
        let stub = try NotifySocketStub()
        let notifier = SystemdNotifier(environment: stub.environment)
        let copy = notifier
        let sent = performConcurrently(8) { _ in copy.watchdog() }
        #expect(sent.allSatisfy { $0 })
        for _ in 0..<8 {
            #expect(stub.receive() == "WATCHDOG=1")
        }
    }

    @Test func childEnvironmentDropsServiceManagerVariables() {
        let environment = [
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "api:public",
            "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42",
            "PATH": "/usr/bin", "CREDENTIALS_DIRECTORY": "/run/credentials/switchboard.service",
            "JOURNAL_STREAM": "8:1234", "LISTEN_ADDRESS": "kept",
        ]
        let child = SystemdNotifier.childEnvironment(environment)
        #expect(child == [
            "PATH": "/usr/bin", "CREDENTIALS_DIRECTORY": "/run/credentials/switchboard.service",
            "JOURNAL_STREAM": "8:1234", "LISTEN_ADDRESS": "kept",
        ])
    }
}

/// Runs `body` on `count` threads at once and collects the results.
private func performConcurrently<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
    let results = ResultBox<T>(count: count)
    DispatchQueue.concurrentPerform(iterations: count) { index in
        results.set(index, body(index))
    }
    return results.values
}

private final class ResultBox<T: Sendable>: @unchecked Sendable {
    private var storage: [T?]
    private let lock = NSLock()
    init(count: Int) { storage = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) {
        lock.lock()
        storage[index] = value
        lock.unlock()
    }
    var values: [T] {
        lock.lock()
        defer { lock.unlock() }
        return storage.compactMap { $0 }
    }
}
