import Foundation
import Logging
import Testing
@testable import SwitchboardCore
@testable import SwitchboardDaemon
@testable import SwitchboardRuntime

/// What a reload (SIGHUP) decides from two configurations.
@Suite struct ReloadTests {
    static func load(_ text: String, dir: TempDir) -> SwitchboardConfig {
        let diagnostics = ConfigDiagnostics()
        let config = ConfigLoader.load(text: text, environment: ConfigEnvironment(variables: [:], baseDirectory: dir.path),
                                       adapterKinds: ["webhook"], diagnostics: diagnostics)
        #expect(diagnostics.isEmpty, "\(diagnostics.problems)")
        return config
    }

    /// A channel restarts when anything it was built from changed: a secret rotated behind the
    /// same `*_file` path (the mapping itself is unchanged), the public URL, the send retries.
    @Test func aRotatedSecretFileRestartsItsChannel() throws {
        let dir = TempDir()
        defer { dir.remove() }
        try "first-secret-0123456789\n".write(toFile: dir.file("hook.secret"), atomically: true, encoding: .utf8)
        let text = """
            server: { listen: "127.0.0.1:0", public_url: "https://a.example" }
            channels: [ { id: hook, type: webhook, secret_file: "\(dir.file("hook.secret"))" } ]
            """
        // Fingerprints are taken when a configuration is applied, as a reload does.
        func fingerprint(_ text: String) -> String {
            let c = Self.load(text, dir: dir)
            return Runtime.fingerprint(c.channels[0], in: c)
        }
        let before = fingerprint(text)
        #expect(fingerprint(text) == before, "nothing changed")
        try "second-secret-0123456789\n".write(toFile: dir.file("hook.secret"), atomically: true, encoding: .utf8)
        let rotated = fingerprint(text)
        #expect(rotated != before)
        #expect(fingerprint(text.replacingOccurrences(of: "https://a.example", with: "https://b.example")) != rotated)
        #expect(fingerprint(text + "\noutbound: { retry: { schedule: [1s, 2s] } }") != rotated)
    }

    /// Keys a reload cannot apply are named in its log line.
    @Test func restartOnlyKeysAreNamed() {
        let dir = TempDir()
        defer { dir.remove() }
        let a = Self.load("media: { max_bytes: 1MB }\nlogging: { level: info }\n", dir: dir)
        let b = Self.load("media: { max_bytes: 2MB }\nlogging: { level: debug }\nstorage: { durability: normal }\n", dir: dir)
        #expect(Daemon.restartOnlyChanges(a, b) == ["storage.durability", "media.max_bytes", "logging.level"])
        #expect(Daemon.restartOnlyChanges(a, a).isEmpty)
        // What a reload runs keeps the running values of those keys: the next reload warns
        // about them again, and going back to them warns of nothing.
        let running = Daemon.keepingRestartOnly(running: a, new: b)
        #expect(running.mediaMaxBytes == a.mediaMaxBytes && running.logLevel == "info" && running.durability == a.durability)
        #expect(Daemon.restartOnlyChanges(running, b) == ["storage.durability", "media.max_bytes", "logging.level"])
        #expect(Daemon.restartOnlyChanges(running, a).isEmpty)
        // A public_url derived from server.listen keeps naming the port in use.
        let moved = Self.load("server: { listen: \"127.0.0.1:9999\" }\n", dir: dir)
        #expect(Daemon.keepingRestartOnly(running: a, new: moved).publicURL == a.publicURL)
    }
}
