import Foundation

/// The service watchdog (`WatchdogSec=` in the unit).
///
/// systemd passes the configured timeout as `$WATCHDOG_USEC` and, to make sure only
/// the intended process acts on it, the main pid as `$WATCHDOG_PID`. If no
/// `WATCHDOG=1` arrives within the timeout, systemd kills the service with SIGABRT
/// and `Restart=on-failure` starts a fresh one. That turns a hung daemon (a deadlock,
/// a stuck database, an event loop that stopped) into a restart instead of silent
/// message loss.
public enum Watchdog {
    /// The full watchdog timeout, or nil when the watchdog is disabled or meant for
    /// another process (`$WATCHDOG_PID` set to a pid other than ours).
    public static func timeout(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Duration? {
        timeout(environment: environment, processID: POSIX.processID)
    }

    /// How often to ping: half the timeout, as systemd recommends, so one late or lost
    /// ping does not get a healthy daemon killed. Nil when the watchdog is disabled.
    public static func interval(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Duration? {
        interval(environment: environment, processID: POSIX.processID)
    }

    static func timeout(environment: [String: String], processID: Int32) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"],
              let microseconds = UInt64(text), microseconds > 0
        else { return nil }
        if let owner = environment["WATCHDOG_PID"] {
            // Inherited from a parent service: the pings would be rejected anyway
            // (NotifyAccess=main), and the timeout describes someone else.
            guard let pid = Int32(owner), pid == processID else { return nil }
        }
        return .microseconds(Int64(clamping: microseconds))
    }

    static func interval(environment: [String: String], processID: Int32) -> Duration? {
        timeout(environment: environment, processID: processID).map { $0 / 2 }
    }

    /// Pings the watchdog every `interval` for as long as `isHealthy` says so, until
    /// the task is cancelled. Returns immediately when the watchdog is disabled.
    ///
    /// `isHealthy` should exercise the real work path (for example one round trip
    /// through the router and a trivial store query). If it returns false, or hangs,
    /// no ping is sent and systemd restarts the service after the timeout, which is
    /// the point: a blind timer would keep a wedged daemon alive.
    public static func run(
        notifier: SystemdNotifier,
        interval: Duration? = Watchdog.interval(),
        isHealthy: @Sendable () async -> Bool
    ) async {
        guard let interval, notifier.isEnabled else { return }
        while !Task.isCancelled {
            if await isHealthy() {
                notifier.watchdog()
            }
            do {
                try await Task.sleep(for: interval)
            } catch {
                return  // cancelled
            }
        }
    }
}
