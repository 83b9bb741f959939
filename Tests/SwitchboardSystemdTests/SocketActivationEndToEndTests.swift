#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Testing
import SwitchboardSystemd

/// Socket activation exactly as in production: systemd's own `systemd-socket-activate`
/// binds a Unix socket, and on the first connection executes this test binary with
/// the socket on fd 3 and LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES set, running only
/// `childReportsActivatedSockets`. That child adopts the socket through the public
/// API (no injected start descriptor) and writes what it found to a file.
@Suite("SocketActivation under systemd-socket-activate")
struct SocketActivationEndToEndTests {
    static let tool = "/usr/bin/systemd-socket-activate"
    static let resultVariable = "SWITCHBOARD_SD_ACTIVATION_RESULT"

    @Test(.enabled(if: isExecutable(tool) && ProcessInfo.processInfo.environment[resultVariable] == nil))
    func adoptsTheSocketPassedOnFdThree() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let socketPath = directory.file("api.sock")
        let resultPath = directory.file("result")
        let testBinary = try #require(realpath("/proc/self/exe", nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        })

        let logPath = try directory.write("child.log", "")
        let activator = try SpawnedProcess(Self.tool, [
            "--listen=\(socketPath)", "--fdname=api",
            "--setenv=\(Self.resultVariable)=\(resultPath)",
            testBinary, "--testing-library", "swift-testing", "--filter", "childReportsActivatedSockets",
        ], outputPath: logPath)
        defer { if activator.isRunning { activator.terminate() } }

        // The tool executes the child on the first connection, which then waits in
        // the backlog until the child accepts it.
        let client = try await connectWhenReady(socketPath, timeout: 10)
        defer { close(client) }

        let deadline = Date().addingTimeInterval(120)
        // Polls with Task.sleep: a blocking sleep here would hold one of the cooperative
        // pool's two threads for the whole child run and starve tests running beside it.
        while activator.isRunning && Date() < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let childLog = (try? String(contentsOfFile: directory.file("child.log"), encoding: .utf8)) ?? ""
        #expect(!activator.isRunning, "child did not finish:\n\(childLog)")
        #expect(activator.exitStatus == 0, "child failed:\n\(childLog)")

        let report = try String(contentsOfFile: resultPath, encoding: .utf8)
        let fields = Dictionary(uniqueKeysWithValues: report.split(separator: "\n").map { line in
            let parts = line.split(separator: "=", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        })
        #expect(fields["count"] == "1", "\(report)")
        #expect(fields["name"] == "api")
        #expect(fields["fd"] == "3")
        #expect(fields["listening"] == "true")
        #expect(fields["kind"] == "unix")
        #expect(fields["path"] == socketPath)
        #expect(fields["cloexec"] == "true")
        #expect(fields["environment_cleared"] == "true")
        #expect(fields["accepted"] == "true")
    }

    /// Runs for real only as the child started above; in a normal test run it finds
    /// no result variable and does nothing.
    @Test func childReportsActivatedSockets() throws {
        guard let resultPath = ProcessInfo.processInfo.environment[Self.resultVariable] else { return }
        let sockets = SocketActivation.takeListeners()
        var lines = ["count=\(sockets.count)"]
        if let socket = sockets.first {
            lines.append("name=\(socket.name)")
            lines.append("fd=\(socket.fd)")
            lines.append("listening=\(SocketActivation.isListeningSocket(fd: socket.fd))")
            lines.append("kind=\(SocketActivation.socketKind(fd: socket.fd) == .unix ? "unix" : "other")")
            lines.append("path=\(SocketActivation.unixPath(fd: socket.fd) ?? "")")
            lines.append("cloexec=\(fcntl(socket.fd, F_GETFD) & FD_CLOEXEC != 0)")
            let connection = accept(socket.fd, nil, nil)
            lines.append("accepted=\(connection >= 0)")
            if connection >= 0 { close(connection) }
        }
        let cleared = getenv("LISTEN_PID") == nil && getenv("LISTEN_FDS") == nil && getenv("LISTEN_FDNAMES") == nil
        lines.append("environment_cleared=\(cleared)")
        try lines.joined(separator: "\n").write(toFile: resultPath, atomically: true, encoding: .utf8)
    }
}

/// Connects to a Unix socket once it exists, retrying until `timeout` seconds pass.
private func connectWhenReady(_ path: String, timeout: TimeInterval) async throws -> Int32 {
    let deadline = Date().addingTimeInterval(timeout)
    #if canImport(Glibc)
    let stream = Int32(SOCK_STREAM.rawValue)
    #else
    let stream = SOCK_STREAM
    #endif
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8) + [0]
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    while true {
        let fd = socket(AF_UNIX, stream, 0)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 { return fd }
        close(fd)
        if Date() > deadline { throw TestFailure("cannot connect to \(path): errno \(errno)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}
