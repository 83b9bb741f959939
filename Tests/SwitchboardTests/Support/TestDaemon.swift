import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing
@testable import SwitchboardCore
@testable import SwitchboardDaemon
@testable import SwitchboardRuntime
import WebhookAdapter

/// A temporary directory removed when the test ends.
final class TempDir: Sendable {
    let path: String
    init() {
        // Short paths: Unix socket paths must stay under 108 bytes.
        path = "/tmp/sbt-" + String(UUID().uuidString.prefix(8))
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { "\(path)/\(name)" }
}

let testLogger: Logger = {
    var l = Logger(label: "test")
    l.logLevel = ProcessInfo.processInfo.environment["TEST_LOG"] == "1" ? .debug : .critical
    return l
}()

/// A real daemon, in this process, on ephemeral loopback ports and a temp dir.
final class TestDaemon: Sendable {
    let dir: TempDir
    let daemon: Daemon
    let task: Task<Void, any Error>
    let addresses: [String: String]

    var runtime: Runtime { daemon.runtime }
    var publicBase: String { "http://\(addresses["public"]!)" }
    var apiBase: String { "http://\(addresses["api"]!)" }
    var socketBase: String { "http+unix://" + dir.file("api.sock").addingPercentEncoding(withAllowedCharacters: .alphanumerics)! }
    static let token = "test-token-0123456789abcdef"

    /// `body` is YAML inserted after the generated server/api/storage sections (helpdesks,
    /// channels, …).
    /// `dir`: reuse a previous daemon's files (a restart).
    static func start(_ body: String, registry: AdapterRegistry = TestRegistry.make(), heartbeat: String = "15s",
                      dir existing: TempDir? = nil, publicURL: String = "http://127.0.0.1:1", apiExtra: String = "") async throws -> TestDaemon {
        let dir = existing ?? TempDir()
        let yaml = """
            instance: test
            server: { listen: "127.0.0.1:0", public_url: "\(publicURL)" }
            api:
              listen: "127.0.0.1:0"
              socket: "\(dir.file("api.sock"))"
              heartbeat: \(heartbeat)
            \(apiExtra.isEmpty ? "" : "  " + apiExtra)
              tokens: [ { name: desk, token: "\(token)" } ]
            storage: { path: "\(dir.file("db.sqlite"))", durability: normal }
            media: { path: "\(dir.file("media"))", max_bytes: 1MB }
            \(body)
            """
        let daemon = try Daemon(configText: yaml, configPath: nil, registry: registry,
                                environment: ConfigEnvironment(variables: [:], baseDirectory: dir.path), logger: testLogger)
        let task = Task { try await daemon.run() }
        let addresses = await daemon.waitUntilReady()
        return TestDaemon(dir: dir, daemon: daemon, task: task, addresses: addresses)
    }

    private init(dir: TempDir, daemon: Daemon, task: Task<Void, any Error>, addresses: [String: String]) {
        self.dir = dir; self.daemon = daemon; self.task = task; self.addresses = addresses
    }

    func stop(keepFiles: Bool = false) async {
        await daemon.shutdown()
        _ = try? await task.value
        if !keepFiles { dir.remove() }
    }

    func context(_ channel: String) -> any AdapterContext { runtime.hub.entry(channel)!.context }

    // MARK: API calls

    struct HTTPResult: Sendable {
        var status: Int
        var headers: [String: String]
        var body: Data
        var json: JSONValue? { try? JSONValue.parse(body) }
    }

    func api(_ method: String, _ path: String, json: String? = nil, headers: [String: String] = [:],
             socket: Bool = false, token: String? = TestDaemon.token) async throws -> HTTPResult {
        try await http(method, (socket ? socketBase : apiBase) + path, body: json.map { Array($0.utf8) },
                       headers: headers.merging(socket || token == nil ? [:] : ["authorization": "Bearer \(token!)"]) { a, _ in a }
                        .merging(json == nil ? [:] : ["content-type": "application/json"]) { a, _ in a })
    }
}

func http(_ method: String, _ url: String, body: [UInt8]? = nil, headers: [String: String] = [:], timeout: Int64 = 10) async throws -> TestDaemon.HTTPResult {
    var req = HTTPClientRequest(url: url)
    req.method = .init(rawValue: method)
    for (k, v) in headers { req.headers.add(name: k, value: v) }
    if let body { req.body = .bytes(ByteBuffer(bytes: body)) }
    let resp = try await HTTPClient.shared.execute(req, timeout: .seconds(timeout))
    let data = try await resp.body.collect(upTo: 16 * 1024 * 1024)
    var h: [String: String] = [:]
    for f in resp.headers { h[f.name.lowercased()] = f.value }
    return .init(status: Int(resp.status.code), headers: h, body: Data(data.readableBytesView))
}

/// How much longer than written every `eventually` waits. All suites run at once in one
/// process, and the machines differ: on a slow, shared 2-core host the cooperative pool was seen
/// busy for over 10 s at the start of `make test`, and conditions met in well under a second on
/// a quiet machine timed out. A timeout is only an upper bound — a passing test goes on as soon
/// as its condition holds — so stretching it costs nothing but a slower failure.
/// `SWITCHBOARD_TEST_TIMEOUT_SCALE` overrides the factor.
let testTimeoutScale: Double = ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_TIMEOUT_SCALE"].flatMap(Double.init) ?? 3

/// Polls until `condition` holds or the timeout (× `testTimeoutScale`) passes.
func eventually(timeout: Double = 10, _ what: String = "condition", _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * testTimeoutScale * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting for \(what)")
    throw CancellationError()
}
