import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child started with posix_spawn and reaped with waitpid(WNOHANG).
///
/// Not Foundation's `Process`: that detects a child's exit by end-of-file on a socket the child
/// inherits, and tools that close inherited descriptors (systemd-socket-activate does) make it
/// believe the child exited and block its one manager thread in waitpid — which then stalls
/// every other `Process` in the test run.
final class SpawnedProcess: @unchecked Sendable {
    let pid: pid_t
    private var status: Int32?
    private let lock = NSLock()

    init(_ executable: String, _ arguments: [String], outputPath: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var env = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") }
        env.append(nil)
        defer { for p in env { free(p) } }
        // Default signal handling and nothing blocked in the child, whatever this test process
        // set up (an ignored SIGTERM stays ignored across exec, and `terminate` would not stop it).
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
        let rc = posix_spawn(&child, executable, &actions, &attr, argv, env)
        guard rc == 0 else { throw POSIXError(.init(rawValue: rc) ?? .EINVAL) }
        pid = child
    }

    /// The exit status once the child has exited (nil while it runs).
    var exitStatus: Int32? {
        lock.lock(); defer { lock.unlock() }
        if let status { return status }
        var raw: Int32 = 0
        if waitpid(pid, &raw, WNOHANG) == pid {
            // WIFEXITED / WEXITSTATUS, spelled out (the C macros are not imported).
            status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        }
        return status
    }

    var isRunning: Bool { exitStatus == nil }

    func terminate() { if isRunning { kill(pid, SIGTERM) } }
}
