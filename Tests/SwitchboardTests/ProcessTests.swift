import Foundation
import Synchronization
import Testing
@testable import SwitchboardCore
import WebhookAdapter

/// Tests of the real binary. Serialized: each starts daemons and the machine has two cores.
@Suite(.serialized) struct ProcessTests {
    static let secret = "process-secret-0123456789"

    static func config(dir: TempDir, helpdesks: String, extra: String = "") -> String {
        """
        instance: proc
        server: { listen: "127.0.0.1:0" }
        api: { socket: "\(dir.file("api.sock"))" }
        storage: { path: "\(dir.file("db.sqlite"))" }
        helpdesks: \(helpdesks)
        channels: [ { id: hooks, type: webhook, secret: "\(secret)" } ]
        \(extra)
        """
    }

    static func post(_ base: String, id: String, text: String) async throws -> TestDaemon.HTTPResult {
        let body = Array("{\"id\":\"\(id)\",\"from\":{\"id\":\"user-\(id.hashValue & 7)\"},\"text\":\"\(text)\"}".utf8)
        return try await http("POST", base + "/webhooks/hooks", body: body,
                              headers: ["x-switchboard-signature": WebhookChannelAdapter.sign(body, secret: Array(secret.utf8))])
    }

    /// SIGKILL right after a burst is acknowledged; after a restart every acknowledged event is
    /// delivered, and no message is delivered twice under different event ids.
    @Test func crashAfterAcknowledgingLosesNothing() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        try await withHelpdesk { helpdesk in
            let path = dir.file("switchboard.yaml")
            try Self.config(dir: dir, helpdesks: "[ { name: desk, url: \"\(helpdesk.url)\", secret: \"\(testSecret)\", events: [\"message.received\"], retry: { schedule: [100ms, 200ms, 400ms, 1s, 1s, 1s, 1s, 1s] } } ]")
                .write(toFile: path, atomically: true, encoding: .utf8)
            let first = try DaemonProcess(arguments: ["serve", "--config", path])
            let base = "http://" + (try await first.address(of: "public"))
            let acked = try await withThrowingTaskGroup(of: [String].self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        var ids: [String] = []
                        for i in 0..<40 {
                            let id = "burst-\(worker)-\(i)"
                            let r = try await Self.post(base, id: id, text: "message \(i)")
                            if r.status == 200 && r.json?["result"]?.stringValue == "committed" { ids.append(id) }
                        }
                        return ids
                    }
                }
                return try await group.reduce(into: [String]()) { $0 += $1 }
            }
            await first.kill9()
            #expect(acked.count == 320)
            let beforeRestart = helpdesk.events.count

            let second = try DaemonProcess(arguments: ["serve", "--config", path])
            _ = try await second.address(of: "public")
            try await eventually(timeout: 30, "every acknowledged message delivered") {
                Set(helpdesk.events.compactMap { $0.data?["external_id"]?.stringValue }).isSuperset(of: acked)
            }
            var idsByMessage: [String: Set<String>] = [:]
            for e in helpdesk.events { idsByMessage[e.data?["external_id"]?.stringValue ?? "", default: []].insert(e.id) }
            #expect(idsByMessage.values.allSatisfy { $0.count == 1 }, "a message delivered under two event ids")
            second.signal(SIGTERM)
            #expect(await second.waitForExit() == 0)
            // Evidence the kill landed mid-delivery (not required, but it makes the test meaningful).
            print("crash test: \(beforeRestart) of \(acked.count) delivered before SIGKILL, \(helpdesk.events.count) deliveries in total")
        }
    }

    /// READY only once listening, STATUS lines, RELOADING/READY on SIGHUP (a bad file is
    /// refused and the old config kept), STOPPING on SIGTERM, exit 0.
    @Test func systemdLifecycleAndReload() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let notify = try NotifyListener(path: dir.file("notify.sock"))
        defer { notify.close() }
        let path = dir.file("switchboard.yaml")
        let one = "[ { name: console, type: console } ]"
        try Self.config(dir: dir, helpdesks: one).write(toFile: path, atomically: true, encoding: .utf8)
        let p = try DaemonProcess(arguments: ["serve", "--config", path], environment: ["NOTIFY_SOCKET": dir.file("notify.sock")])
        let ready = try await notify.waitFor("READY=1")
        #expect(notify.all[ready].contains("STATUS="))
        // Before the store opened (a migration may take a while), more start time was asked for.
        let extend = try #require(notify.all.firstIndex { $0.contains("EXTEND_TIMEOUT_USEC=600000000") }, "\(notify.all)")
        #expect(extend < ready)
        // READY means listening: the API answers at once.
        let socket = "http+unix://" + dir.file("api.sock").addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        #expect(try await http("GET", socket + "/v1/health").status == 200)

        // A valid change: a second helpdesk appears without a restart.
        try Self.config(dir: dir, helpdesks: "[ { name: console, type: console }, { name: second, type: console } ]")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let before = notify.all.count
        p.signal(SIGHUP)
        let reloading = try await notify.waitFor("RELOADING=1", after: before)
        #expect(notify.all[reloading].contains("MONOTONIC_USEC="))
        _ = try await notify.waitFor("READY=1", after: reloading)
        try await eventually { try await http("GET", socket + "/v1/helpdesks").json?["helpdesks"]?.arrayValue?.count == 2 }

        // A broken file: refused, the running config stays.
        try "helpdesks: [ { name: x, url: \"ftp://nope\" } ]\nchannels: 7\n".write(toFile: path, atomically: true, encoding: .utf8)
        let before2 = notify.all.count
        p.signal(SIGHUP)
        let refused = try await notify.waitFor("READY=1", after: before2)
        #expect(notify.all[refused].contains("reload failed"))
        #expect(try await http("GET", socket + "/v1/helpdesks").json?["helpdesks"]?.arrayValue?.count == 2)
        #expect(p.log.contains("reload refused"))

        p.signal(SIGTERM)
        _ = try await notify.waitFor("STOPPING=1")
        #expect(await p.waitForExit() == 0)
    }

    @Test func badConfigExitsWith78() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("bad.yaml")
        try "server: { listen: nonsense }\nchannels: [ { id: a, type: webhook } ]\n".write(toFile: path, atomically: true, encoding: .utf8)
        let p = try DaemonProcess(arguments: ["serve", "--config", path])
        #expect(await p.waitForExit() == 78)
        #expect(p.log.contains("server.listen"))
        #expect(p.log.contains("channels[0].secret"))
    }

    /// Every channel type in adapters/ (but the shared `meta` layer) is built into the binary:
    /// `check-config` may find problems with a bare channel, but never an unknown type.
    @Test func theBinaryKnowsEveryAdapter() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let adapters = try FileManager.default.contentsOfDirectory(atPath: DaemonProcess.repoRoot + "/adapters")
            .filter { $0 != "meta" && FileManager.default.fileExists(atPath: DaemonProcess.repoRoot + "/adapters/\($0)/sample.yaml") }
        #expect(adapters.count >= 7, "\(adapters)")
        for type in adapters.sorted() {
            let path = dir.file("\(type).yaml")
            try "channels: [ { id: c1, type: \(type) } ]\n".write(toFile: path, atomically: true, encoding: .utf8)
            let p = try DaemonProcess(arguments: ["check-config", "--config", path])
            _ = await p.waitForExit()
            #expect(!p.log.contains("unknown channel type"), "\(type): \(p.log)")
        }
    }

    /// `switchboard simulate` posts a correctly signed sample to the running daemon.
    @Test func simulatePostsASignedSample() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("switchboard.yaml")
        // simulate reads server.listen from the config, so this one needs a fixed port.
        let port = Int.random(in: 20000...40000)
        try Self.config(dir: dir, helpdesks: "[ { name: console, type: console } ]").replacingOccurrences(of: "127.0.0.1:0", with: "127.0.0.1:\(port)")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let d = try DaemonProcess(arguments: ["serve", "--config", path])
        _ = try await d.address(of: "public")
        let sim = try DaemonProcess(arguments: ["simulate", "hooks", "--config", path, "--text", "simulated hello"])
        #expect(await sim.waitForExit() == 0)
        #expect(sim.log.contains("committed"))
        try await eventually { d.log.contains("switchboard.message.received") && d.log.contains("simulated hello") }
        d.signal(SIGTERM)
        _ = await d.waitForExit()
    }
    /// For a webchat channel, `switchboard simulate` is a widget visitor on the WebSocket: with the
    /// channel's identity secret, `--from` is a verified user, the same visitor on every run.
    @Test func simulateActsAsAWebchatVisitor() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("switchboard.yaml")
        // `simulate` reads the public address from the file, so the port is fixed in it: a free
        // one, and another if something took it before the daemon bound it.
        var started: DaemonProcess? = nil
        for attempt in 1...3 where started == nil {
            try Self.config(dir: dir, helpdesks: "[ { name: console, type: console } ]")
                .replacingOccurrences(of: "127.0.0.1:0", with: "127.0.0.1:\(freePort())")
                .replacingOccurrences(of: "channels: [ { id: hooks, type: webhook, secret: \"\(Self.secret)\" } ]", with: """
                    channels:
                      - { id: site, type: webchat, identity_secret: "simulate-identity-secret-0123", prechat: { fields: [ { name: name, required: true } ] } }
                    """)
                .write(toFile: path, atomically: true, encoding: .utf8)
            let p = try DaemonProcess(arguments: ["serve", "--config", path])
            do {
                _ = try await p.address(of: "public")
                started = p
            } catch where attempt < 3 {
                p.signal(SIGTERM)
                _ = await p.waitForExit()
            }
        }
        let d = try #require(started)
        for text in ["first visit", "second visit"] {
            let sim = try DaemonProcess(arguments: ["simulate", "site", "--config", path, "--from", "alice", "--name", "Alice A", "--text", text])
            #expect(await sim.waitForExit() == 0, "\(sim.log)")
            #expect(sim.log.contains("stored msg_") && sim.log.contains("from visitor u:alice"), "\(sim.log)")
        }
        try await eventually { d.log.contains("second visit") }
        #expect(d.log.contains("first visit") && d.log.contains("Alice A"))
        // Both runs are one verified visitor, so one conversation.
        let conversations = Set(d.log.split(separator: "\n").filter { $0.contains("switchboard.message.received") }
            .compactMap { line in line.range(of: "conv_[0-9A-Za-z]+", options: .regularExpression).map { String(line[$0]) } })
        #expect(conversations.count == 1, "\(d.log)")
        d.signal(SIGTERM)
        _ = await d.waitForExit()
    }
}

/// Independent implementations check what we deliver: the Python `standardwebhooks` package
/// verifies the signature (and rejects a one-byte change), the `cloudevents` SDK parses the envelope.
@Suite struct InteropTests {
    @Test func pythonReferenceLibrariesAcceptOurDeliveries() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        try await withHelpdesk { helpdesk in
            let channel = uniqueID("rec")
            try await withDaemon("""
                helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
                channels: [ { id: \(channel), type: recording } ]
                """) { d in
                _ = try await d.context(channel).customerSays("Grüße — 你好 \"quoted\" \\ backslash", from: "u1", name: "Zoë")
                try await eventually { helpdesk.deliveries.count == 2 }
                var files: [String] = []
                for (i, delivery) in helpdesk.deliveries.enumerated() {
                    let capture: JSONObject = ["headers": .object(delivery.headers.mapValues { .string($0) }),
                                               "body_base64": .string(delivery.body.base64EncodedString())]
                    let f = dir.file("capture\(i).json")
                    try JSON.encode(capture).write(to: URL(fileURLWithPath: f))
                    files.append(f)
                }
                let (status, text) = try await Spawned.run("python3", [DaemonProcess.repoRoot + "/Tests/tools/interop_verify.py", testSecret] + files)
                #expect(status == 0, "\(text)")
                #expect(text.contains("18 passed, 0 failed"), "\(text)")
            }
        }
    }
}

/// The daemon under systemd's socket activation and watchdog, and `switchboard tail`.
@Suite(.serialized) struct SystemdIntegrationTests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate")))
    func adoptsTheAPISocketPassedBySystemd() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("switchboard.yaml")
        try """
            server: { listen: "127.0.0.1:0" }
            storage: { path: "\(dir.file("db.sqlite"))" }
            helpdesks: [ { name: console, type: console } ]
            channels: [ { id: hooks, type: webhook, secret: "\(ProcessTests.secret)" } ]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let notify = try NotifyListener(path: dir.file("notify.sock"))
        defer { notify.close() }
        // systemd-socket-activate binds the socket, then starts the daemon with it on fd 3
        // (LISTEN_FDS=1, LISTEN_FDNAMES=api) when the first client connects.
        let socket = dir.file("api.sock")
        let activator = try DaemonProcess(arguments: [
            "--listen=\(socket)", "--fdname=api",
            "--setenv=NOTIFY_SOCKET=\(dir.file("notify.sock"))", "--setenv=WATCHDOG_USEC=400000",
            DaemonProcess.binary, "serve", "--config", path,
        ], executable: "/usr/bin/systemd-socket-activate")
        try await eventually("socket bound") { FileManager.default.fileExists(atPath: socket) }
        let base = "http+unix://" + socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        // The first request starts the daemon and is answered by it, on the inherited socket.
        let health = try await http("GET", base + "/v1/health", timeout: 30)
        #expect(health.status == 200)
        #expect(activator.log.contains("listener=api-socket"))
        #expect(activator.log.contains("address=\(socket)"))
        // The watchdog is pinged while the store answers.
        _ = try await notify.waitFor("READY=1")
        _ = try await notify.waitFor("WATCHDOG=1")
        activator.signal(SIGTERM)
        #expect(await activator.waitForExit() == 0)
    }

    @Test func tailPrintsEventsLive() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("switchboard.yaml")
        try """
            server: { listen: "127.0.0.1:0" }
            api: { socket: "\(dir.file("api.sock"))" }
            storage: { path: "\(dir.file("db.sqlite"))" }
            channels: [ { id: hooks, type: webhook, secret: "\(ProcessTests.secret)" } ]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let d = try DaemonProcess(arguments: ["serve", "--config", path])
        let base = "http://" + (try await d.address(of: "public"))
        _ = try await d.address(of: "api-socket")
        let tail = try DaemonProcess(arguments: ["tail", "--config", path])
        // tail follows from the moment it is connected (like tail -f); on a busy machine that
        // takes a while, so keep posting until one shows up.
        try await eventually(timeout: 20, "tail output") {
            if tail.log.contains("message.received") && tail.log.contains("seen by tail") { return true }
            _ = try await ProcessTests.post(base, id: "t-\(UUID().uuidString)", text: "seen by tail")
            try await Task.sleep(for: .milliseconds(400))
            return tail.log.contains("message.received") && tail.log.contains("seen by tail")
        }
        // A stop does not wait for the stream's next heartbeat (15 s) to end it.
        let stopping = ContinuousClock.now
        d.signal(SIGTERM)
        #expect(await d.waitForExit() == 0)
        #expect(ContinuousClock.now - stopping < .seconds(5), "stopped after \(ContinuousClock.now - stopping) with a stream open")
        tail.signal(SIGTERM)
        _ = await tail.waitForExit()
    }
}
