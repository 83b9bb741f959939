// Small wrappers over the C library that the rest of the module shares.
//
// The systemd protocols this module speaks (sd_notify, LISTEN_FDS, JOURNAL_STREAM)
// are plain sockets, file descriptors and environment variables, so we talk to the
// C library directly instead of linking libsystemd. The differences between the C
// library overlays Swift imports on each platform are kept in this one file.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

enum POSIX {
    /// `SOCK_DGRAM` as the `Int32` that `socket(2)` takes. Glibc imports the socket
    /// types as an enum, the other C libraries as plain integers.
    static var datagramSocketType: Int32 {
        #if canImport(Glibc)
        return Int32(SOCK_DGRAM.rawValue)
        #else
        return SOCK_DGRAM
        #endif
    }

    /// `SOCK_STREAM` as an `Int32`, for comparing with `SO_TYPE`.
    static var streamSocketType: Int32 {
        #if canImport(Glibc)
        return Int32(SOCK_STREAM.rawValue)
        #else
        return SOCK_STREAM
        #endif
    }

    /// `SOCK_CLOEXEC`, to create sockets that never leak into child processes, or 0
    /// where `socket(2)` does not accept it (Darwin).
    static var closeOnExecSocketFlag: Int32 {
        #if canImport(Glibc)
        return Int32(SOCK_CLOEXEC.rawValue)
        #elseif os(Linux)
        return SOCK_CLOEXEC
        #else
        return 0
        #endif
    }

    /// Flags for `send`-style calls: on Linux, never raise SIGPIPE, whatever the
    /// process's signal disposition (a daemon must not die because systemd went away).
    static var noSignalFlag: Int32 {
        #if os(Linux)
        return Int32(MSG_NOSIGNAL)
        #else
        return 0
        #endif
    }

    /// The calling thread's `errno`.
    static var errno: Int32 {
        #if canImport(Glibc)
        return Glibc.errno
        #elseif canImport(Musl)
        return Musl.errno
        #else
        return Darwin.errno
        #endif
    }

    /// A human-readable text for an errno value, such as "No such file or directory
    /// (errno 2)". `strerror` returns constant strings for known codes on glibc (2.32+)
    /// and musl, and a thread-local buffer otherwise, so it is safe to call from here.
    static func describe(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text) + " (errno \(code))"
    }

    /// The current process id.
    static var processID: Int32 { Int32(getpid()) }

    /// CLOCK_MONOTONIC in microseconds, the clock systemd uses for `MONOTONIC_USEC=`.
    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    /// CLOCK_REALTIME as whole seconds plus milliseconds, for log timestamps.
    static func wallClock() -> (seconds: Int, milliseconds: Int) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return (Int(now.tv_sec), Int(now.tv_nsec) / 1_000_000)
    }

    /// Device and inode of an open descriptor, or nil if `fstat` fails.
    static func deviceAndInode(of fd: Int32) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return (UInt64(truncatingIfNeeded: info.st_dev), UInt64(truncatingIfNeeded: info.st_ino))
    }

    /// Writes all of `bytes` to `fd`, retrying on EINTR and short writes.
    /// Returns false if the descriptor refused (closed pipe, EBADF, ...).
    @discardableResult
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard var base = bytes.baseAddress else { return true }
        var remaining = bytes.count
        while remaining > 0 {
            let written = write(fd, base, remaining)
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            remaining -= written
            base += written
        }
        return true
    }

    /// Builds a `sockaddr_un` for `path` and passes it to `body` with the exact length
    /// to hand to the kernel. A leading `@` selects the Linux abstract namespace: the
    /// address then starts with a NUL byte and its length must not include a trailing
    /// NUL, because every byte of an abstract name is significant.
    /// Returns nil when the path is empty or does not fit in `sun_path`.
    static func withUnixSocketAddress<Result>(
        _ path: String,
        _ body: (UnsafePointer<sockaddr>, socklen_t) -> Result
    ) -> Result? {
        var pathBytes = Array(path.utf8)
        guard !pathBytes.isEmpty, !pathBytes.contains(0) else { return nil }
        if pathBytes[0] == UInt8(ascii: "@") {
            #if os(Linux)
            pathBytes[0] = 0
            #else
            return nil  // abstract sockets exist only on Linux
            #endif
        } else {
            pathBytes.append(0)  // filesystem paths are NUL-terminated
        }

        var address = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count <= capacity else { return nil }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + pathBytes.count
        #if canImport(Darwin)
        address.sun_len = UInt8(length)
        #endif
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(length)) }
        }
    }
}
