import Foundation
import Testing
@testable import SwitchboardCore

/// The widget's WebSocket on a public listener passed by systemd (`switchboard-public.socket`):
/// the same upgrade, protocol and shutdown as on a listener the daemon binds itself.
@Suite(.serialized) struct WebchatSocketActivationTests {
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-socket-activate")))
    func widgetSocketsOnAPublicListenerPassedBySystemd() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("switchboard.yaml")
        try """
            server: { listen: "127.0.0.1:0" }
            storage: { path: "\(dir.file("db.sqlite"))" }
            helpdesks: [ { name: console, type: console } ]
            channels: [ { id: site, type: webchat } ]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let port = freePort()
        // systemd-socket-activate binds the port and starts the daemon with it on fd 3
        // (LISTEN_FDNAMES=public) when the first client connects.
        let activator = try DaemonProcess(arguments: [
            "--listen=127.0.0.1:\(port)", "--fdname=public", DaemonProcess.binary, "serve", "--config", path,
        ], executable: "/usr/bin/systemd-socket-activate")
        try await eventually(timeout: 30, "daemon answering on the inherited socket") {
            (try? await http("GET", "http://127.0.0.1:\(port)/healthz", timeout: 30))?.status == 200
        }
        #expect(activator.log.contains("listener=public"))

        let v = WebchatVisitor.connect(url: "ws://127.0.0.1:\(port)/webchat/site/ws")
        let welcome = try #require(try await v.hello())
        #expect(welcome["token"]?.stringValue != nil)
        v.message("a1", "hello from an activated socket")
        let ack = try await v.waitFor("ack") { $0["type"]?.stringValue == "ack" }
        #expect(ack["client_id"]?.stringValue == "a1")
        // Frames up to the documented 32 KiB pass; bigger ones are answered, not a closed socket.
        v.send(#"{"type":"message","client_id":"big","text":""# + String(repeating: "x", count: 40 * 1024) + #""}"#)
        try await v.waitFor("too_large") { $0["code"]?.stringValue == "too_large" }
        #expect(!v.isClosed)

        // SIGTERM: the open widget is closed at once and the daemon exits cleanly.
        let started = ContinuousClock.now
        activator.signal(SIGTERM)
        #expect(await activator.waitForExit() == 0)
        #expect(ContinuousClock.now - started < .seconds(15))
        try await eventually("socket closed") { v.isClosed }
        await v.close()
    }
}
