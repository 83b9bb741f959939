#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Secrets passed as systemd credentials.
///
/// `LoadCredential=wa-token:/etc/credstore/switchboard.wa-token` in the unit makes
/// systemd copy that file, before the daemon starts, to
/// `$CREDENTIALS_DIRECTORY/wa-token`: a read-only, non-swappable directory that only
/// the service's user can read and that disappears when the service stops. The daemon
/// then never needs read access to `/etc/credstore`, and the secrets stay out of the
/// YAML file, the environment (visible in `/proc/<pid>/environ` and `systemctl show`)
/// and the command line.
///
/// The configuration refers to a credential by name: `access_token_file: wa-token`.
/// ``resolve(path:environment:)`` turns that into the real path, so the same YAML
/// works under systemd and, with files in the working directory, from a shell.
public enum Credentials {
    /// `$CREDENTIALS_DIRECTORY`, or nil when the service manager passed no credentials.
    public static func directory(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String? {
        guard let value = environment["CREDENTIALS_DIRECTORY"], !value.isEmpty else { return nil }
        return value
    }

    /// The file a `*_file` configuration value refers to. Absolute paths are used as
    /// given; relative ones resolve under `$CREDENTIALS_DIRECTORY` when it is set (so a
    /// credential is named by its `LoadCredential=` id), else under the current
    /// directory.
    public static func resolve(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        if path.hasPrefix("/") { return path }
        let base = directory(environment: environment) ?? FileManager.default.currentDirectoryPath
        return join(base, path)
    }

    /// Reads the secret that `path` refers to (resolved as in
    /// ``resolve(path:environment:)``), minus one trailing newline: files written with
    /// `echo` or an editor end in one, and it is never part of a token. Other
    /// whitespace is kept, since it might be.
    ///
    /// - Throws: ``CredentialError``, whose message names the file and the reason but
    ///   never includes any of the file's content.
    public static func readSecret(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(CredentialError) -> String {
        let resolved = resolve(path: path, environment: environment)
        let credentialsDirectory = directory(environment: environment)
        let isCredential = credentialsDirectory.map { resolved.hasPrefix(join($0, "")) } ?? false

        func failure(_ reason: CredentialError.Reason) -> CredentialError {
            CredentialError(path: resolved, reason: reason, isCredential: isCredential)
        }

        let fd = open(resolved, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(.cannotOpen(errno: POSIX.errno)) }
        defer { close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure(.cannotRead(errno: POSIX.errno)) }
        guard (info.st_mode & S_IFMT) != S_IFDIR else { throw failure(.isDirectory) }

        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        defer {
            // Best effort: scrub our buffers (earlier reallocations and the returned
            // String are beyond our control).
            chunk.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
            bytes.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
        }
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if POSIX.errno == EINTR { continue }
                throw failure(.cannotRead(errno: POSIX.errno))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maximumSecretSize { throw failure(.tooLarge(limit: maximumSecretSize)) }
        }

        if bytes.last == UInt8(ascii: "\n") {
            bytes.removeLast()
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }  // CRLF from a Windows editor
        }
        guard let secret = String(bytes: bytes, encoding: .utf8) else {
            throw failure(.notUTF8)
        }
        return secret
    }

    /// Secrets are tokens, passwords and keys; anything this large is almost certainly
    /// the wrong file (a database, a log) and is refused rather than read into memory.
    public static let maximumSecretSize = 1 << 20

    private static func join(_ base: String, _ name: String) -> String {
        base.hasSuffix("/") ? base + name : base + "/" + name
    }
}

/// A secret file could not be read. The description names the file and the reason and
/// never any of its content, so it is safe to log and to print from `check-config`.
public struct CredentialError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// `open(2)` failed: missing file, no permission, ...
        case cannotOpen(errno: Int32)
        /// `read(2)` or `fstat(2)` failed.
        case cannotRead(errno: Int32)
        /// The path is a directory.
        case isDirectory
        /// The file is larger than ``Credentials/maximumSecretSize``.
        case tooLarge(limit: Int)
        /// The content is not valid UTF-8 text.
        case notUTF8
    }

    /// The resolved path that was tried.
    public let path: String
    public let reason: Reason
    /// True if the path lies in `$CREDENTIALS_DIRECTORY`; then the likely fix is a
    /// `LoadCredential=` line, and the message says so.
    public let isCredential: Bool

    public init(path: String, reason: Reason, isCredential: Bool = false) {
        self.path = path
        self.reason = reason
        self.isCredential = isCredential
    }

    public var description: String {
        var text = "cannot read secret file \(path): "
        switch reason {
        case .cannotOpen(let code), .cannotRead(let code):
            text += POSIX.describe(errno: code)
            if isCredential && code == ENOENT {
                let name = path.split(separator: "/").last.map(String.init) ?? path
                text += "; add LoadCredential=\(name):/path/to/secret to the service unit"
            }
        case .isDirectory:
            text += "it is a directory"
        case .tooLarge(let limit):
            text += "larger than \(limit) bytes, not a secret"
        case .notUTF8:
            text += "not valid UTF-8 text"
        }
        return text
    }
}
