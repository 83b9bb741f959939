#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Testing

/// A fresh private directory under /tmp (short, so socket paths fit in sun_path),
/// removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/sbsd-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw TestFailure("mkdtemp failed: errno \(errno)") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, bytes: [UInt8]) throws -> String {
        let target = file(name)
        guard FileManager.default.createFile(atPath: target, contents: Data(bytes)) else {
            throw TestFailure("cannot create \(target)")
        }
        return target
    }

    func write(_ name: String, _ text: String) throws -> String {
        try write(name, bytes: Array(text.utf8))
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A real AF_UNIX datagram socket standing in for systemd's notification socket.
final class NotifySocketStub {
    let fd: Int32
    /// The value to put in NOTIFY_SOCKET.
    let address: String
    private let directory: TemporaryDirectory?

    /// Binds in a temporary directory (`abstract: false`) or in the Linux abstract
    /// namespace under a random name (`abstract: true`).
    init(abstract: Bool = false) throws {
        let socketType: Int32
        #if canImport(Glibc)
        socketType = Int32(SOCK_DGRAM.rawValue)
        #else
        socketType = SOCK_DGRAM
        #endif
        fd = socket(AF_UNIX, socketType, 0)
        guard fd >= 0 else { throw TestFailure("socket failed: errno \(errno)") }

        var pathBytes: [UInt8]
        if abstract {
            address = "@switchboard-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            pathBytes = [0] + Array(address.utf8.dropFirst())
            directory = nil
        } else {
            let directory = try TemporaryDirectory()
            address = directory.file("notify.sock")
            pathBytes = Array(address.utf8) + [0]
            self.directory = directory
        }

        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: pathBytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + pathBytes.count)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw TestFailure("bind \(address) failed: errno \(errno)") }

        // Never hang a test run on a missing datagram.
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram as text, or nil after the receive timeout.
    func receive(timeoutMilliseconds: Int = 2000) -> String? {
        var timeout = timeval(tv_sec: .init(timeoutMilliseconds / 1000), tv_usec: .init(timeoutMilliseconds % 1000 * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// Like `receive`, but polls without blocking a thread of Swift's cooperative pool, for
    /// tests where the sender is a task that needs that pool to run.
    func receiveAsync(timeoutMilliseconds: Int = 2000) async -> String? {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count >= 0 { return String(decoding: buffer[0..<count], as: UTF8.self) }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    /// The datagram split into its `KEY=value` assignments.
    func receiveFields() -> [String: String]? {
        guard let text = receive() else { return nil }
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return fields
    }

    var environment: [String: String] { ["NOTIFY_SOCKET": address] }

    deinit {
        close(fd)
        directory?.remove()
    }
}

/// The repository root: the nearest ancestor of this source file that contains
/// systemd/switchboard.service. Tried on the path as compiled and on the real path,
/// so it works from the main package and from a package that links the folder.
func repositoryRoot(from file: String = #filePath) -> String? {
    var candidates = [file]
    if let real = realpath(file, nil) {
        candidates.append(String(cString: real))
        free(real)
    }
    for start in candidates {
        var url = URL(fileURLWithPath: start).deletingLastPathComponent()
        while url.path != "/" && !url.path.isEmpty {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("systemd/switchboard.service").path) {
                return url.path
            }
            url = url.deletingLastPathComponent()
        }
    }
    return nil
}

/// Runs a program and returns its exit status and combined output.
func run(_ executable: String, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin {
        input.fileHandleForWriting.write(Data(stdin.utf8))
    }
    try input.fileHandleForWriting.close()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

func isExecutable(_ path: String) -> Bool {
    FileManager.default.isExecutableFile(atPath: path)
}
