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

/// Real listening sockets, moved with dup2 onto a free range of descriptors the way
/// systemd places them from fd 3. A test process already uses fd 3 and up, so each
/// test picks its own high range and passes it as the first descriptor.
@Suite("SocketActivation with real sockets")
struct SocketActivationTests {
    let pid = Int32(ProcessInfo.processInfo.processIdentifier)

    @Test func adoptsNamedSocketsInOrder() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let apiPath = directory.file("api.sock")
        let base = try placeListeners([try unixListener(path: apiPath), try tcpListener()], searchFrom: 600)
        defer { closeRange(base, 2) }
        // dup2 leaves the copies without FD_CLOEXEC, as systemd hands them over.
        #expect(fcntl(base, F_GETFD) & FD_CLOEXEC == 0)

        let sockets = SocketActivation.takeListeners(
            environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "api:public"],
            unsetEnvironment: false,
            firstDescriptor: base,
            processID: pid
        )

        #expect(sockets == [ActivatedSocket(name: "api", fd: base), ActivatedSocket(name: "public", fd: base + 1)])
        #expect(sockets.first(named: "public")?.fd == base + 1)
        #expect(sockets.first(named: "metrics") == nil)
        for socket in sockets {
            #expect(fcntl(socket.fd, F_GETFD) & FD_CLOEXEC != 0, "fd \(socket.fd) must be close-on-exec")
            #expect(SocketActivation.isListeningSocket(fd: socket.fd))
            #expect(SocketActivation.isStreamSocket(fd: socket.fd))
        }
        #expect(SocketActivation.socketKind(fd: base) == .unix)
        #expect(SocketActivation.socketKind(fd: base + 1) == .inet)
        #expect(SocketActivation.socketKind(fd: base + 1)?.isInternet == true)
        #expect(SocketActivation.unixPath(fd: base) == apiPath)
        #expect(SocketActivation.unixPath(fd: base + 1) == nil)
    }

    @Test func adoptedUnixSocketAcceptsConnections() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("api.sock")
        let base = try placeListeners([try unixListener(path: path)], searchFrom: 650)
        defer { closeRange(base, 1) }

        let sockets = SocketActivation.takeListeners(
            environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "api"],
            unsetEnvironment: false, firstDescriptor: base, processID: pid
        )
        let api = try #require(sockets.first(named: "api"))

        let client = try unixClient(path: path)
        defer { close(client) }
        let connection = accept(api.fd, nil, nil)
        #expect(connection >= 0)
        if connection >= 0 { close(connection) }
    }

    @Test func nothingForAnotherProcess() throws {
        let base = try placeListeners([try tcpListener()], searchFrom: 680)
        defer { closeRange(base, 1) }
        func take(_ environment: [String: String]) -> [ActivatedSocket] {
            SocketActivation.takeListeners(
                environment: environment, unsetEnvironment: false, firstDescriptor: base, processID: pid
            )
        }
        #expect(take([:]).isEmpty)
        #expect(take(["LISTEN_FDS": "1"]).isEmpty)
        #expect(take(["LISTEN_PID": "\(pid &+ 1)", "LISTEN_FDS": "1"]).isEmpty)
        #expect(take(["LISTEN_PID": "not-a-pid", "LISTEN_FDS": "1"]).isEmpty)
        #expect(take(["LISTEN_PID": "\(pid)", "LISTEN_FDS": "0"]).isEmpty)
        #expect(take(["LISTEN_PID": "\(pid)", "LISTEN_FDS": "-1"]).isEmpty)
        #expect(take(["LISTEN_PID": "\(pid)", "LISTEN_FDS": "one"]).isEmpty)
        // The same descriptor is adopted once the pid matches.
        #expect(take(["LISTEN_PID": "\(pid)", "LISTEN_FDS": "1"]).count == 1)
    }

    @Test func missingNamesBecomeUnknown() throws {
        let base = try placeListeners([try tcpListener(), try tcpListener(), try tcpListener()], searchFrom: 700)
        defer { closeRange(base, 3) }
        func names(_ fdNames: String?) -> [String] {
            var environment = ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "3"]
            environment["LISTEN_FDNAMES"] = fdNames
            return SocketActivation.takeListeners(
                environment: environment, unsetEnvironment: false, firstDescriptor: base, processID: pid
            ).map(\.name)
        }
        #expect(names(nil) == ["unknown", "unknown", "unknown"])
        #expect(names("api") == ["api", "unknown", "unknown"])
        #expect(names("api::public") == ["api", "unknown", "public"])
        #expect(names("a:b:c:extra") == ["a", "b", "c"])
    }

    @Test func descriptorsThatAreNotOpenAreSkipped() throws {
        let base = try placeListeners([try tcpListener()], searchFrom: 750)
        defer { closeRange(base, 1) }
        // base + 1 is free (placeListeners checked the range it used only).
        #expect(fcntl(base + 1, F_GETFD) == -1)
        let sockets = SocketActivation.takeListeners(
            environment: ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "api:public"],
            unsetEnvironment: false, firstDescriptor: base, processID: pid
        )
        #expect(sockets == [ActivatedSocket(name: "api", fd: base)])
    }

    @Test func unsetsTheVariablesWhenAsked() {
        // The real environment is left alone (see `unsetVariable`): the names unset are recorded.
        let environment = ["LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "api"]
        var unset: [String] = []
        // pid 1 is never us, so nothing is adopted and no descriptor is touched.
        let kept = SocketActivation.takeListeners(environment: environment, unsetEnvironment: false, firstDescriptor: SocketActivation.firstDescriptor,
                                                  processID: pid, unsetVariable: { unset.append($0) })
        #expect(kept.isEmpty)
        #expect(unset.isEmpty)

        let taken = SocketActivation.takeListeners(environment: environment, unsetEnvironment: true, firstDescriptor: SocketActivation.firstDescriptor,
                                                   processID: pid, unsetVariable: { unset.append($0) })
        #expect(taken.isEmpty)
        #expect(unset == ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"])
    }

    @Test func helpersOnOtherDescriptors() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        #expect(!SocketActivation.isListeningSocket(fd: ends[0]))
        #expect(SocketActivation.socketKind(fd: ends[0]) == nil)
        #expect(!SocketActivation.isListeningSocket(fd: -1))
        #expect(SocketActivation.socketKind(fd: -1) == nil)

        // A socket that was never listen()ed on.
        let plain = socket(AF_UNIX, streamType, 0)
        defer { close(plain) }
        #expect(!SocketActivation.isListeningSocket(fd: plain))
        #expect(SocketActivation.socketKind(fd: plain) == .unix)
        #expect(SocketActivation.unixPath(fd: plain) == nil)

        // A datagram socket is a socket but not a stream.
        let datagram = try NotifySocketStub()
        #expect(!SocketActivation.isStreamSocket(fd: datagram.fd))
        #expect(SocketActivation.unixPath(fd: datagram.fd) == datagram.address)

        #if os(Linux)
        let abstract = try NotifySocketStub(abstract: true)
        #expect(SocketActivation.unixPath(fd: abstract.fd) == abstract.address)
        #endif

        if let six = try? tcpListener(ipv6: true) {
            defer { close(six) }
            #expect(SocketActivation.socketKind(fd: six) == .inet6)
            #expect(SocketActivation.isListeningSocket(fd: six))
        }
    }
}

// MARK: - Socket helpers

private var streamType: Int32 {
    #if canImport(Glibc)
    Int32(SOCK_STREAM.rawValue)
    #else
    SOCK_STREAM
    #endif
}

private func unixAddress(_ path: String) -> (sockaddr_un, socklen_t) {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8) + [0]
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    return (address, socklen_t(MemoryLayout<sockaddr_un>.size))
}

private func unixListener(path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, streamType, 0)
    guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    var (address, length) = unixAddress(path)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0, listen(fd, 16) == 0 else {
        close(fd)
        throw TestFailure("bind/listen \(path): errno \(errno)")
    }
    return fd
}

private func unixClient(path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, streamType, 0)
    var (address, length) = unixAddress(path)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
    }
    guard connected == 0 else {
        close(fd)
        throw TestFailure("connect \(path): errno \(errno)")
    }
    return fd
}

/// A TCP listener on the loopback address, on a port the kernel picks.
private func tcpListener(ipv6: Bool = false) throws -> Int32 {
    let fd = socket(ipv6 ? AF_INET6 : AF_INET, streamType, 0)
    guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
    let bound: Int32
    if ipv6 {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
            }
        }
    } else {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
    guard bound == 0, listen(fd, 16) == 0 else {
        close(fd)
        throw TestFailure("bind/listen tcp: errno \(errno)")
    }
    return fd
}

/// Moves `fds` onto consecutive free descriptors at or above `searchFrom` (closing
/// the originals) and returns the first. Tests use disjoint search ranges, so tests
/// running in parallel never pick the same numbers.
private func placeListeners(_ fds: [Int32], searchFrom: Int32) throws -> Int32 {
    var base = searchFrom
    search: while base < searchFrom + 40 {
        for offset in 0..<Int32(fds.count + 1) where fcntl(base + offset, F_GETFD) != -1 {
            base += offset + 1
            continue search
        }
        for (offset, fd) in fds.enumerated() {
            guard dup2(fd, base + Int32(offset)) == base + Int32(offset) else {
                throw TestFailure("dup2: errno \(errno)")
            }
            close(fd)
        }
        return base
    }
    fds.forEach { close($0) }
    throw TestFailure("no free descriptor range near \(searchFrom)")
}

private func closeRange(_ base: Int32, _ count: Int32) {
    for fd in base..<(base + count) {
        close(fd)
    }
}
