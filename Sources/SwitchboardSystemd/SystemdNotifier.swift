#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging

/// Sends service state notifications to the service manager (the `sd_notify` protocol).
///
/// With `Type=notify`, systemd considers the service started only when it receives
/// `READY=1`, shows the last `STATUS=` line in `systemctl status`, restarts the service
/// when `WATCHDOG=1` pings stop, and knows that a reload or shutdown is in progress
/// from `RELOADING=1` and `STOPPING=1`. Each notification is one datagram of
/// newline-separated `KEY=value` assignments sent to the `AF_UNIX` socket named by
/// `$NOTIFY_SOCKET`. That protocol is small and stable, so it is implemented here in
/// plain Swift rather than by linking libsystemd.
///
/// Sending never throws: the daemon must keep serving even if the service manager
/// cannot be reached. Failures are logged (a warning the first time a given error is
/// seen, debug after that, so a periodic watchdog ping cannot flood the journal) and
/// reported through the `Bool` result for callers that care.
///
/// When `$NOTIFY_SOCKET` is not set (run by hand, in a container, under tests) every
/// method is a cheap no-op, so the daemon can call them unconditionally.
public struct SystemdNotifier: Sendable {
    /// The environment variables that systemd hands to the main process only and that a
    /// child process must not inherit: a child that sees `NOTIFY_SOCKET` could announce
    /// readiness on our behalf, and `LISTEN_*` / `WATCHDOG_*` describe *our* pid.
    public static let serviceManagerVariables: [String] = [
        "NOTIFY_SOCKET",
        "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
        "WATCHDOG_PID", "WATCHDOG_USEC",
    ]

    /// The notification socket address: a filesystem path, or `@name` for the Linux
    /// abstract namespace. Nil when notifications are disabled.
    public let socketPath: String?

    private let logger: Logger?
    private let failures = FailureMemory()

    /// Reads `$NOTIFY_SOCKET` from `environment`.
    ///
    /// - Parameters:
    ///   - environment: Usually the process environment; tests pass their own.
    ///   - logger: Where send failures go. When nil, a logger labelled
    ///     `switchboard.systemd` is created on first failure, so the notifier can be
    ///     made before `LoggingSystem.bootstrap` without capturing the default handler.
    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger? = nil
    ) {
        let value = environment["NOTIFY_SOCKET"] ?? ""
        // Only filesystem paths and abstract names are meaningful to us; newer systemd
        // versions also accept `vsock:` addresses, which a daemon on the host never gets.
        if value.hasPrefix("/") || (value.hasPrefix("@") && value.count > 1) {
            self.socketPath = value
        } else {
            self.socketPath = nil
        }
        self.logger = logger
    }

    /// True when a service manager asked for notifications (`$NOTIFY_SOCKET` is set).
    public var isEnabled: Bool { socketPath != nil }

    // MARK: Convenience messages

    /// Tells systemd that start-up (or a reload) has finished: listeners are bound and
    /// adapters have started. Until then `systemctl start` waits and dependent units
    /// are held back, so send it only when the daemon can actually serve.
    @discardableResult
    public func ready(status: String? = nil) -> Bool {
        send(Self.withStatus(["READY": "1"], status))
    }

    /// Sets the one-line status shown by `systemctl status`. Newlines are replaced by
    /// spaces because a newline would start a new `KEY=value` assignment.
    @discardableResult
    public func status(_ text: String) -> Bool {
        send(["STATUS": Self.singleLine(text)])
    }

    /// Keep-alive ping for `WatchdogSec=`. Send it only after a successful health check
    /// (see ``Watchdog``): a ping from a timer alone proves nothing about the daemon.
    @discardableResult
    public func watchdog() -> Bool {
        send("WATCHDOG=1")
    }

    /// Announces that a configuration reload has started; send ``ready(status:)`` when
    /// it has finished (successfully or not). `MONOTONIC_USEC` is the CLOCK_MONOTONIC
    /// time at which the reload began: systemd 253+ with `Type=notify-reload` requires
    /// it to tell this reload from an earlier one, and older versions ignore it, so we
    /// always send it.
    @discardableResult
    public func reloading(status: String? = nil) -> Bool {
        send(Self.withStatus([
            "RELOADING": "1",
            "MONOTONIC_USEC": String(POSIX.monotonicMicroseconds()),
        ], status))
    }

    /// Announces that graceful shutdown has begun, so systemd reports "deactivating"
    /// instead of treating the drain as a hang.
    @discardableResult
    public func stopping(status: String? = nil) -> Bool {
        send(Self.withStatus(["STOPPING": "1"], status))
    }

    /// Asks for more time for the current start-up, reload or shutdown step (for
    /// example a long database migration) so that `TimeoutStartSec=` / `TimeoutStopSec=`
    /// do not kill the daemon. The value is measured from now, not added to the limit,
    /// so long steps should send it repeatedly.
    @discardableResult
    public func extendTimeout(microseconds: UInt64) -> Bool {
        send(["EXTEND_TIMEOUT_USEC": String(microseconds)])
    }

    /// ``extendTimeout(microseconds:)`` taking a `Duration`.
    @discardableResult
    public func extendTimeout(by duration: Duration) -> Bool {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return extendTimeout(microseconds: 0) }
        let micros = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000)
        let total = micros.overflow ? UInt64.max : micros.partialValue &+ UInt64(attoseconds / 1_000_000_000_000)
        return extendTimeout(microseconds: total)
    }

    // MARK: Sending

    /// Sends the given assignments as one datagram, sorted by key so the bytes on the
    /// wire are deterministic. Keys must be upper-case letters, digits and `_` (the
    /// protocol's field names); an invalid key makes the whole message be dropped and
    /// logged, because half a state change is worse than none. Newlines in values are
    /// replaced by spaces.
    @discardableResult
    public func send(_ fields: [String: String]) -> Bool {
        guard isEnabled, !fields.isEmpty else { return false }
        for key in fields.keys where !Self.isValidKey(key) {
            report(failure: "invalid notification field name \"\(key)\"", code: -1)
            return false
        }
        let message = fields.keys.sorted()
            .map { "\($0)=\(Self.singleLine(fields[$0]!))" }
            .joined(separator: "\n")
        return send(message)
    }

    /// Sends `raw` verbatim as one datagram, for callers that build the message
    /// themselves (several `KEY=value` lines separated by `\n`).
    @discardableResult
    public func send(_ raw: String) -> Bool {
        guard let socketPath, !raw.isEmpty else { return false }

        let fd = socket(AF_UNIX, POSIX.datagramSocketType | POSIX.closeOnExecSocketFlag, 0)
        guard fd >= 0 else {
            let code = POSIX.errno
            report(failure: "cannot create notification socket: \(POSIX.describe(errno: code))", code: code)
            return false
        }
        defer { close(fd) }
        if POSIX.closeOnExecSocketFlag == 0 {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)  // no SOCK_CLOEXEC: close the gap after the fact
        }

        // The datagram send blocks only if the manager's receive queue is full. Bound
        // that wait, so a wedged PID 1 cannot wedge the thread that is notifying.
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        let outcome: (sent: Int, code: Int32)? = POSIX.withUnixSocketAddress(socketPath) { address, length in
            let message = Array(raw.utf8)
            return message.withUnsafeBytes { bytes in
                while true {
                    let sent = sendto(fd, bytes.baseAddress, bytes.count, POSIX.noSignalFlag, address, length)
                    if sent < 0 && POSIX.errno == EINTR { continue }
                    return (sent, sent < 0 ? POSIX.errno : 0)
                }
            }
        }
        guard let outcome else {
            report(failure: "NOTIFY_SOCKET address \"\(socketPath)\" is not usable", code: -2)
            return false
        }
        guard outcome.sent >= 0 else {
            report(
                failure: "cannot notify the service manager at \(socketPath): \(POSIX.describe(errno: outcome.code))",
                code: outcome.code
            )
            return false
        }
        failures.clear()
        return true
    }

    // MARK: Environment for child processes

    /// Returns `environment` without the variables systemd meant for this process only
    /// (``serviceManagerVariables``). Pass the result to child processes such as
    /// external adapters: otherwise a child could send `READY=1` or `WATCHDOG=1` for us,
    /// or try to adopt descriptors that were never passed to it.
    public static func childEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> [String: String] {
        var copy = environment
        for name in serviceManagerVariables {
            copy.removeValue(forKey: name)
        }
        return copy
    }

    // MARK: Helpers

    static func singleLine(_ text: String) -> String {
        guard text.contains(where: { $0.isNewline }) else { return text }
        return String(text.map { $0.isNewline ? " " : $0 })
    }

    static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "_")
        }
    }

    private static func withStatus(_ fields: [String: String], _ status: String?) -> [String: String] {
        guard let status else { return fields }
        var copy = fields
        copy["STATUS"] = singleLine(status)
        return copy
    }

    private func report(failure message: String, code: Int32) {
        let repeated = failures.record(code)
        let log = logger ?? Logger(label: "switchboard.systemd")
        log.log(level: repeated ? .debug : .warning, "\(message)")
    }
}

/// Remembers the last notify error so the same failure is logged loudly once and
/// quietly afterwards. Shared by copies of a notifier (it is a reference).
private final class FailureMemory: @unchecked Sendable {
    // Guarded by `lock`.
    private var lastCode: Int32?
    private let lock = NSLock()

    /// Records a failure; returns true if it is the same failure as the previous one.
    func record(_ code: Int32) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let repeated = lastCode == code
        lastCode = code
        return repeated
    }

    func clear() {
        lock.lock()
        lastCode = nil
        lock.unlock()
    }
}
