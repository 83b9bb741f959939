import Foundation
import Synchronization

/// The real `switchboard` binary as a child process, for what only a process shows: SIGKILL,
/// SIGHUP, SIGTERM and sd_notify.
final class DaemonProcess: Sendable {
    let child: Spawned

    static var repoRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }
    static var binary: String { repoRoot + "/.build/debug/switchboard" }

    init(arguments: [String], environment: [String: String] = [:], executable: String? = nil) throws {
        child = try Spawned(executable ?? Self.binary, executable == nil ? arguments : arguments, environment: environment)
    }

    deinit { child.cleanUp() }

    var log: String { child.output }
    var isRunning: Bool { child.isRunning }

    /// The address a listener logged (`listening address=… listener=public`).
    func address(of listener: String, timeout: Double = 20) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            for line in log.split(separator: "\n") where line.contains("listener=\(listener)") && line.contains("listening") {
                if let a = line.split(separator: " ").first(where: { $0.hasPrefix("address=") }) { return String(a.dropFirst(8)) }
            }
            if !child.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw DaemonError(message: "no \(listener) listener; log:\n\(log)")
    }

    func signal(_ sig: Int32) { child.signal(sig) }

    func waitForExit(timeout: Double = 20) async -> Int32? { await child.wait(timeout: timeout) }

    func kill9() async {
        signal(SIGKILL)
        _ = await waitForExit()
    }
}

struct DaemonError: Error, CustomStringConvertible { var message: String; var description: String { message } }

/// A datagram socket standing in for systemd's NOTIFY_SOCKET.
final class NotifyListener: Sendable {
    let path: String
    let fd: Int32
    let messages = Mutex<[String]>([])
    let stopped = Atomic<Bool>(false)

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.enumerated() { buf[i] = b }
        }
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard ok == 0 else { throw DaemonError(message: "cannot bind \(path)") }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        Thread { [self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while !stopped.load(ordering: .relaxed) {
                let n = recv(fd, &buf, buf.count, 0)
                if n > 0 { messages.withLock { $0.append(String(decoding: buf[0..<n], as: UTF8.self)) } }
            }
        }.start()
    }

    var all: [String] { messages.withLock { $0 } }

    func waitFor(_ needle: String, after index: Int = 0, timeout: Double = 20) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            let msgs = all
            if let i = msgs.indices.first(where: { $0 >= index && msgs[$0].contains(needle) }) { return i }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw DaemonError(message: "no \(needle) from the daemon; got \(all)")
    }

    func close() {
        stopped.store(true, ordering: .relaxed)
        Glibc.close(fd)
        unlink(path)
    }
}
