import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with posix_spawn, its output in a file, reaped with
/// waitpid(WNOHANG) — never blocking a thread of Swift's cooperative pool.
///
/// Not Foundation's `Process`: it detects a child's exit by end-of-file on a socket the child
/// inherits, so a child that closes inherited descriptors (systemd-socket-activate does) makes
/// it block its one manager thread in waitpid, stalling every `Process` in the test run.
final class Spawned: Sendable {
    let pid: pid_t
    let outputPath: String
    private let status = Mutex<Int32?>(nil)

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], outputPath: String? = nil) throws {
        self.outputPath = outputPath ?? "/tmp/sbt-out-\(UUID().uuidString.prefix(8))"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, self.outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var env = ProcessInfo.processInfo.environment
        for k in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"] { env[k] = nil }
        env.merge(environment) { _, new in new }
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv { free(p) }; for p in envp { free(p) } }
        // The child starts with default signal handling and nothing blocked. Without this it
        // inherits what the test process set up: the in-process daemons' signal handling
        // ignores SIGTERM, and a Postfix master started under a test never stopped on
        // `postfix stop`, so its instance outlived the test (two a run, found piling up).
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attr, &unblocked)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var child: pid_t = 0
        let rc = posix_spawnp(&child, executable, &actions, &attr, argv, envp)
        guard rc == 0 else { throw DaemonError(message: "cannot start \(executable): error \(rc)") }
        pid = child
    }

    /// The exit status once the child has exited (128+signal when killed), nil while it runs.
    var exitStatus: Int32? {
        status.withLock { s in
            if s == nil {
                var raw: Int32 = 0
                if waitpid(pid, &raw, WNOHANG) == pid {
                    s = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
                }
            }
            return s
        }
    }

    var isRunning: Bool { exitStatus == nil }
    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    func signal(_ sig: Int32) { if isRunning { kill(pid, sig) } }

    func wait(timeout: Double = 60) async -> Int32? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return exitStatus
    }

    func cleanUp() {
        if isRunning { kill(pid, SIGKILL); _ = exitStatus }
        unlink(outputPath)
    }

    /// Runs a command to completion: (exit status, output).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 120) async throws -> (Int32, String) {
        let p = try Spawned(executable, arguments, environment: environment)
        defer { p.cleanUp() }
        guard let status = await p.wait(timeout: timeout) else {
            throw DaemonError(message: "\(executable) did not finish in \(timeout) s; output:\n\(p.output)")
        }
        return (status, p.output)
    }
}
