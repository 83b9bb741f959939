#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging

/// A listening socket handed over by the service manager.
public struct ActivatedSocket: Sendable, Hashable, CustomStringConvertible {
    /// The name from `FileDescriptorName=` in the `.socket` unit (`api`, `public`), or
    /// `"unknown"` when the manager sent no name for this descriptor.
    public let name: String
    /// The descriptor, already marked close-on-exec.
    public let fd: Int32

    public init(name: String, fd: Int32) {
        self.name = name
        self.fd = fd
    }

    public var description: String { "\(name)=fd\(fd)" }
}

extension Array where Element == ActivatedSocket {
    /// The first passed socket with this `FileDescriptorName=`.
    public func first(named name: String) -> ActivatedSocket? {
        first { $0.name == name }
    }
}

/// What kind of address a socket is bound to, so the daemon can tell the helpdesk API
/// Unix socket from the public TCP listener even if a `.socket` unit is misnamed.
public enum SocketKind: Sendable, Hashable {
    /// `AF_UNIX`.
    case unix
    /// `AF_INET`.
    case inet
    /// `AF_INET6` (which may also accept IPv4 unless `BindIPv6Only=ipv6-only`).
    case inet6
    /// Any other address family, with its number.
    case other(family: Int32)

    /// True for `inet` and `inet6`.
    public var isInternet: Bool { self == .inet || self == .inet6 }
}

/// Socket activation: adopting listening sockets that systemd opened for us.
///
/// With `switchboard.socket` the service manager binds `/run/switchboard/api.sock`
/// itself, with the owner, group and mode from the unit, before the daemon runs; it
/// keeps the socket open across daemon restarts, so helpdesk connections queue in the
/// backlog instead of failing while the daemon restarts. The daemon receives the open
/// descriptors starting at fd 3 and three variables describing them:
/// `LISTEN_PID` (which process they are for), `LISTEN_FDS` (how many) and
/// `LISTEN_FDNAMES` (their `FileDescriptorName=`s, colon-separated).
public enum SocketActivation {
    /// The first passed descriptor (`SD_LISTEN_FDS_START`): 0-2 are stdio.
    public static let firstDescriptor: Int32 = 3

    /// The name given to descriptors the manager did not name.
    public static let unknownName = "unknown"

    /// Takes the sockets passed by the service manager.
    ///
    /// Returns an empty array when nothing was passed to this process: variables unset,
    /// or `LISTEN_PID` naming another pid (we inherited them from a parent and the
    /// descriptors are not ours). Each descriptor is marked `FD_CLOEXEC` so it does not
    /// leak into child processes such as external adapters.
    ///
    /// Call this once, early in `main`, before other threads start: with
    /// `unsetEnvironment` (the default) it removes the variables with `unsetenv`, which
    /// is not safe while other threads read the environment. Removing them keeps child
    /// processes from believing the descriptors are theirs.
    public static func takeListeners(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        unsetEnvironment: Bool = true
    ) -> [ActivatedSocket] {
        takeListeners(
            environment: environment,
            unsetEnvironment: unsetEnvironment,
            firstDescriptor: firstDescriptor,
            processID: POSIX.processID
        )
    }

    /// The implementation, with the start descriptor and pid injectable: a test process
    /// already uses fd 3 and up for its own files, so tests place real sockets higher.
    static func takeListeners(
        environment: [String: String],
        unsetEnvironment: Bool,
        firstDescriptor: Int32,
        processID: Int32,
        logger: Logger = Logger(label: "switchboard.systemd"),
        // Injectable: a test that changed the real environment would race every other test
        // that starts a process (which copies the environment while it is being changed).
        unsetVariable: (String) -> Void = { _ = unsetenv($0) }
    ) -> [ActivatedSocket] {
        defer {
            if unsetEnvironment {
                unsetVariable("LISTEN_PID")
                unsetVariable("LISTEN_FDS")
                unsetVariable("LISTEN_FDNAMES")
            }
        }

        guard let pidText = environment["LISTEN_PID"], let countText = environment["LISTEN_FDS"] else {
            return []
        }
        guard let pid = Int32(pidText), pid == processID else {
            logger.debug("ignoring LISTEN_FDS meant for another process", metadata: ["listen_pid": "\(pidText)"])
            return []
        }
        guard let count = Int32(countText), count > 0, count <= Int32.max - firstDescriptor else {
            if countText != "0" {
                logger.warning("ignoring malformed LISTEN_FDS", metadata: ["listen_fds": "\(countText)"])
            }
            return []
        }

        // `FileDescriptorName=` values, in descriptor order. systemd always sends one
        // per descriptor; be lenient with hand-made environments and fill the gaps.
        var names = environment["LISTEN_FDNAMES"]
            .map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        if !names.isEmpty && names.count != Int(count) {
            logger.warning(
                "LISTEN_FDNAMES does not match LISTEN_FDS",
                metadata: ["listen_fds": "\(count)", "names": "\(names.count)"]
            )
        }
        names = names.map { $0.isEmpty ? unknownName : $0 }

        var sockets: [ActivatedSocket] = []
        sockets.reserveCapacity(Int(count))
        for index in 0..<count {
            let fd = firstDescriptor + index
            let flags = fcntl(fd, F_GETFD)
            guard flags >= 0 else {
                // Not open: the environment lied. Skip it rather than hand out a
                // number that may later be reused by an unrelated file.
                logger.warning("LISTEN_FDS names descriptor \(fd), which is not open")
                continue
            }
            if flags & FD_CLOEXEC == 0 {
                _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
            }
            let name = Int(index) < names.count ? names[Int(index)] : unknownName
            sockets.append(ActivatedSocket(name: name, fd: fd))
        }
        return sockets
    }

    /// True if `fd` is a socket on which `listen(2)` has been called (`SO_ACCEPTCONN`).
    /// Use it to reject a descriptor that is a connected socket or a plain file, which
    /// would otherwise fail later inside the HTTP server with a confusing error.
    public static func isListeningSocket(fd: Int32) -> Bool {
        var accepting: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0 else {
            return false
        }
        return accepting != 0
    }

    /// True if `fd` is a stream (`SOCK_STREAM`) socket, which is what HTTP needs.
    public static func isStreamSocket(fd: Int32) -> Bool {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else { return false }
        return type == POSIX.streamSocketType
    }

    /// The address family `fd` is bound to, or nil if it is not a socket.
    public static func socketKind(fd: Int32) -> SocketKind? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_UNIX: return .unix
        case AF_INET: return .inet
        case AF_INET6: return .inet6
        case let family: return .other(family: family)
        }
    }

    /// The filesystem path (or `@abstract` name) a Unix socket is bound to, for logs.
    /// Nil for other socket kinds and unnamed sockets.
    public static func unixPath(fd: Int32) -> String? {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let result = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0, Int32(address.sun_family) == AF_UNIX else { return nil }
        let pathLength = Int(length) - MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        guard pathLength > 0 else { return nil }
        var bytes = withUnsafeBytes(of: &address.sun_path) { Array($0.prefix(pathLength)) }
        if bytes.first == 0 {
            bytes[0] = UInt8(ascii: "@")  // abstract: all bytes are the name
        } else if let end = bytes.firstIndex(of: 0) {
            bytes.removeSubrange(end...)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
