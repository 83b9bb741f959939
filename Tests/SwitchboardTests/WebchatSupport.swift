import Foundation
import HummingbirdWSClient
import Logging
import Synchronization
import Testing
@testable import SwitchboardCore
@testable import SwitchboardRuntime
@testable import WebchatAdapter

/// A widget visitor: a real WebSocket client (HummingbirdWSClient) on the daemon's public
/// listener, recording every frame it receives.
final class WebchatVisitor: Sendable {
    let received = Mutex<[JSONValue]>([])
    let closed = Mutex(false)
    let failure = Mutex<String?>(nil)
    let outbox: AsyncStream<String>.Continuation
    let task: Task<Void, any Error>

    var frames: [JSONValue] { received.withLock { $0 } }
    func frames(_ type: String) -> [JSONValue] { frames.filter { $0["type"]?.stringValue == type } }
    var isClosed: Bool { closed.withLock { $0 } }

    private init(outbox: AsyncStream<String>.Continuation, task: Task<Void, any Error>) {
        self.outbox = outbox; self.task = task
    }

    /// Connects to `/webchat/<channel>/ws`; `origin` sets an Origin header like a browser.
    static func connect(_ d: TestDaemon, _ channel: String, origin: String? = nil, headers: [String: String] = [:]) -> WebchatVisitor {
        connect(url: "ws://\(d.addresses["public"]!)/webchat/\(channel)/ws", origin: origin, headers: headers)
    }

    /// Connects to a WebSocket URL (a daemon run as a process).
    static func connect(url: String, origin: String? = nil, headers: [String: String] = [:]) -> WebchatVisitor {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self)
        let box = Mutex<WebchatVisitor?>(nil)
        var config = WebSocketClientConfiguration()
        if let origin { config.additionalHeaders[.init("Origin")!] = origin }
        for (name, value) in headers { config.additionalHeaders[.init(name)!] = value }
        let task = Task {
            defer { box.withLock { $0?.closed.withLock { $0 = true } } }
            var logger = Logger(label: "ws-test")
            logger.logLevel = .critical
            do { try await WebSocketClient.connect(url: url, configuration: config, logger: logger) { inbound, outbound, _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await text in stream { try await outbound.write(.text(text)) }
                        try await outbound.close(.normalClosure, reason: nil)
                    }
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        if case .text(let text) = message, let v = try? JSONValue.parse(Array(text.utf8)) {
                            box.withLock { $0 }?.received.withLock { $0.append(v) }
                        }
                    }
                    continuation.finish()
                    try await group.waitForAll()
                }
            } } catch {
                box.withLock { $0 }?.failure.withLock { $0 = "\(error)" }
                throw error
            }
        }
        let v = WebchatVisitor(outbox: continuation, task: task)
        box.withLock { $0 = v }
        return v
    }

    func send(_ json: String) { outbox.yield(json) }

    /// Sends hello and waits for `synced` (or an error/slow_down); returns the welcome frame.
    @discardableResult
    func hello(token: String? = nil, lastSeq: Int = 0, extra: String = "") async throws -> JSONValue? {
        var fields = [#""type":"hello""#, #""last_seq":\#(lastSeq)"#]
        if let token { fields.append(#""token":"\#(token)""#) }
        if !extra.isEmpty { fields.append(extra) }
        send("{" + fields.joined(separator: ",") + "}")
        try await eventually("synced or refusal") {
            !self.frames("synced").isEmpty || !self.frames("error").isEmpty || !self.frames("slow_down").isEmpty || self.isClosed
        }
        if let f = failure.withLock({ $0 }) { Issue.record("websocket failed: \(f)") }
        return frames("welcome").first
    }

    func message(_ clientID: String, _ text: String) {
        send(#"{"type":"message","client_id":"\#(clientID)","text":\#(JSON.string(JSONValue.string(text)))}"#)
    }

    @discardableResult
    func waitFor(_ what: String = "frame", _ match: @escaping @Sendable (JSONValue) -> Bool) async throws -> JSONValue {
        try await eventually(what) { self.frames.contains(where: match) }
        return frames.first(where: match)!
    }

    func close() async {
        outbox.finish()
        _ = try? await task.value
    }
}

enum WebchatFixture {
    static let secret = "identity-secret-0123456789abcdef"

    static func registry() -> AdapterRegistry {
        var r = TestRegistry.make()
        r.register(WebchatChannelAdapter.type, WebchatChannelAdapter.factory)
        return r
    }

    static func channel(_ id: String, _ extra: String = "") -> String {
        "{ id: \(id), type: webchat, allowed_origins: [\"https://shop.example.com\"]\(extra.isEmpty ? "" : ", " + extra) }"
    }
}

/// Runs `body` with a daemon whose channels are `channels` (YAML list items) and optionally a helpdesk.
func withWebchat<T: Sendable>(_ channels: [String], helpdesk: TestHelpdesk? = nil,
                              _ body: (TestDaemon) async throws -> T) async throws -> T {
    var yaml = "channels: [ \(channels.joined(separator: ", ")) ]"
    if let helpdesk { yaml = "helpdesks: [ { name: desk, url: \"\(helpdesk.url)\", secret: \"\(testSecret)\" } ]\n" + yaml }
    return try await withDaemon(yaml, registry: WebchatFixture.registry(), body)
}
