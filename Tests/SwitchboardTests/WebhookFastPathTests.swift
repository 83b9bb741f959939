import Foundation
import NIOCore
import NIOPosix
import Testing
@testable import SwitchboardCore
@testable import SwitchboardRuntime

/// Webhooks are answered by `WebhookFastPath`, in front of Hummingbird, and every other request
/// on the same connection by Hummingbird: these hold the two to the same requests, the same
/// order and the same connection rules, over real TCP connections to a daemon.
@Suite struct WebhookFastPathTests {
    /// A request as bytes on the wire.
    static func request(_ method: String, _ target: String, version: String = "HTTP/1.1", headers: [(String, String)] = [],
                        body: [UInt8] = []) -> [UInt8] {
        var head = "\(method) \(target) \(version)\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        return Array((head + "\r\n").utf8) + body
    }

    /// A daemon with one `recording` channel, and that channel's id.
    static func withRecordingChannel(_ body: (TestDaemon, String) async throws -> Void) async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in try await body(d, channel) }
    }

    @Test("pipelined requests are answered in order, webhooks and Hummingbird's routes alike")
    func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await Self.withRecordingChannel { d, channel in
            let adapter = TestRegistry.adapter(channel)
            // The first webhook is slow: everything behind it must wait for its answer.
            adapter.setWebhookDelay(.milliseconds(200))
            let wire = Self.request("POST", "/webhooks/\(channel)", body: Array("first".utf8))
                + Self.request("GET", "/healthz")
                + Self.request("POST", "/webhooks/\(channel)?n=2", body: Array("second".utf8))
                + Self.request("POST", "/webhooks/no-such-channel", body: Array("third".utf8))
                + Self.request("GET", "/healthz")
            let (text, _) = try await rawExchange(d.addresses["public"]!, wire) { parseResponses($0).count == 5 }
            let answers = parseResponses(text)
            #expect(answers.map(\.status) == [200, 200, 200, 404, 200], "\(text)")
            #expect(answers.map(\.body) == ["event loop", "ok\n", "event loop", answers[3].body, "ok\n"])
            #expect(answers[3].body.contains("\"code\":\"not_found\""))
            #expect(answers[0].headers["date"] != nil && answers[0].headers["content-length"] == "10")
            #expect(adapter.webhooks.map { String(decoding: $0.body, as: UTF8.self) } == ["first", "second"])
            #expect(adapter.webhooks.map(\.query) == [[:], ["n": "2"]])
        }
    }

    @Test("a webhook reaches its channel as it would through the router: path, query, headers, body, address")
    func webhooksReachTheChannelAsThroughTheRouter() async throws {
        try await Self.withRecordingChannel { d, channel in
            let adapter = TestRegistry.adapter(channel)
            let body: [UInt8] = [0x7B, 0x00, 0xFF, 0xFE, 0x22, 0x0A, 0x7D]  // not UTF-8, kept as bytes
            let headers = [("X-Forwarded-For", "198.51.100.7"), ("X-Forwarded-For", "203.0.113.9"), ("X-Hub-Signature-256", "sha256=ab"),
                           ("Content-Type", "application/json")]
            let target = "/webhooks/\(channel)?a=1&b=x%20y&empty="
            // HTTP/1.0 is left to Hummingbird's router; HTTP/1.1 takes the fast path.
            let (routed, _) = try await rawExchange(d.addresses["public"]!, Self.request("POST", target, version: "HTTP/1.0", headers: headers, body: body)) {
                parseResponses($0).count == 1
            }
            #expect(parseResponses(routed).first?.status == 200, "\(routed)")
            let (fast, _) = try await rawExchange(d.addresses["public"]!, Self.request("POST", target, headers: headers, body: body)) {
                parseResponses($0).count == 1
            }
            #expect(parseResponses(fast).first?.status == 200, "\(fast)")
            let seen = adapter.webhooks
            try #require(seen.count == 2)
            let (a, b) = (seen[0], seen[1])
            #expect(a.method == "POST" && b.method == "POST")
            #expect(a.path == "/webhooks/\(channel)" && b.path == a.path)
            #expect(a.query == ["a": "1", "b": "x y", "empty": ""] && b.query == a.query)
            #expect(b.headers == a.headers)
            #expect(b.headers["x-forwarded-for"] == "198.51.100.7, 203.0.113.9")
            #expect(b.body == body && a.body == body)
            // Loopback is a trusted proxy by default: the last hop it forwarded is the client.
            #expect(a.remoteAddress == "203.0.113.9" && b.remoteAddress == a.remoteAddress)
        }
    }

    @Test("a chunked webhook body past the limit is answered 413, the rest is read and dropped, and the connection goes on")
    func oversizedChunkedBodiesAreRefused() async throws {
        try await Self.withRecordingChannel { d, channel in
            var wire = Array("POST /webhooks/\(channel) HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024)
            for _ in 0...(4 * 1024 * 1024 / chunk.count) {  // PublicRoutes.maxWebhookBytes
                wire += Array((String(chunk.count, radix: 16) + "\r\n").utf8) + chunk + Array("\r\n".utf8)
            }
            wire += Array("0\r\n\r\n".utf8) + Self.request("POST", "/webhooks/\(channel)", body: Array("next".utf8))
            let (text, _) = try await rawExchange(d.addresses["public"]!, wire) { parseResponses($0).count == 2 }
            let answers = parseResponses(text)
            try #require(answers.count == 2, "\(text.prefix(300))")
            #expect(answers[0].status == 413)
            #expect(answers[0].headers["content-type"] == "application/problem+json")
            #expect(answers[0].body.contains("\"code\":\"payload_too_large\""))
            #expect(answers[1].status == 200)
            #expect(TestRegistry.adapter(channel).webhooks.map(\.body) == [Array("next".utf8)])
        }
    }

    @Test("a request the decoder refuses after a webhook gets Hummingbird's 400 only after the webhook's answer")
    func aMalformedRequestAfterAWebhookWaitsItsTurn() async throws {
        try await Self.withRecordingChannel { d, channel in
            TestRegistry.adapter(channel).setWebhookDelay(.milliseconds(100))
            let wire = Self.request("POST", "/webhooks/\(channel)", body: Array("x".utf8)) + Array("NOT HTTP AT ALL\r\n\r\n".utf8)
            let (text, closed) = try await rawExchange(d.addresses["public"]!, wire)
            #expect(parseResponses(text).map(\.status) == [200, 400], "\(text)")
            #expect(closed)
        }
    }

    @Test("Connection: close is answered with close, and the connection ends")
    func connectionCloseEndsTheConnection() async throws {
        try await Self.withRecordingChannel { d, channel in
            let wire = Self.request("POST", "/webhooks/\(channel)", headers: [("Connection", "close")], body: Array("x".utf8))
                + Self.request("GET", "/healthz")
            let (text, closed) = try await rawExchange(d.addresses["public"]!, wire)
            let answers = parseResponses(text)
            #expect(answers.count == 1, "\(text)")
            #expect(answers.first?.headers["connection"] == "close")
            #expect(closed)
        }
    }

    @Test("a random mix of pipelined requests, split anywhere across writes, is answered in order")
    func randomlySplitPipelinesAreAnsweredInOrder() async throws {
        try await Self.withRecordingChannel { d, channel in
            let adapter = TestRegistry.adapter(channel)
            adapter.setWebhookDelay(.milliseconds(2))
            var rng = SystemRandomNumberGenerator()
            for round in 0..<4 {
                // (request, expected status, expected body or nil for "any")
                var expected: [(Int, String?)] = []
                var wire: [UInt8] = []
                var webhookBodies: [String] = []
                for n in 0..<25 {
                    switch Int.random(in: 0..<5, using: &rng) {
                    case 0, 1:
                        let body = "r\(round)-\(n)-" + String(repeating: "x", count: Int.random(in: 0..<3000, using: &rng))
                        wire += Self.request("POST", "/webhooks/\(channel)?n=\(n)", body: Array(body.utf8))
                        webhookBodies.append(body)
                        expected.append((200, "event loop"))
                    case 2:
                        wire += Self.request("GET", "/healthz")
                        expected.append((200, "ok\n"))
                    case 3:
                        wire += Self.request("POST", "/webhooks/nobody-\(n)", body: Array("z".utf8))
                        expected.append((404, nil))
                    default:
                        // Chunked, to the channel: the fast path's own body reading.
                        let body = "c\(round)-\(n)"
                        wire += Array("POST /webhooks/\(channel) HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
                            + Array("\(String(body.utf8.count, radix: 16))\r\n\(body)\r\n0\r\n\r\n".utf8)
                        webhookBodies.append(body)
                        expected.append((200, "event loop"))
                    }
                }
                // Cut the bytes at random places, including inside heads and chunk framing.
                var chunks: [[UInt8]] = []
                var at = 0
                while at < wire.count {
                    let size = min(wire.count - at, Int.random(in: 1...700, using: &rng))
                    chunks.append(Array(wire[at..<(at + size)]))
                    at += size
                }
                let before = adapter.webhooks.count
                let count = expected.count
                let (text, _) = try await rawExchange(d.addresses["public"]!, chunks: chunks) { parseResponses($0).count == count }
                let answers = parseResponses(text)
                #expect(answers.map(\.status) == expected.map(\.0), "round \(round)")
                for (answer, want) in zip(answers, expected) where want.1 != nil { #expect(answer.body == want.1) }
                #expect(adapter.webhooks.dropFirst(before).map { String(decoding: $0.body, as: UTF8.self) } == webhookBodies, "round \(round)")
            }
        }
    }

    @Test("a webhook under way when the daemon stops is still answered")
    func shutdownWaitsForTheWebhookUnderWay() async throws {
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("channels: [ { id: \(channel), type: recording } ]")
        let adapter = TestRegistry.adapter(channel)
        adapter.setWebhookDelay(.milliseconds(600))
        let address = d.addresses["public"]!
        async let exchange = rawExchange(address, Self.request("POST", "/webhooks/\(channel)", body: Array("late".utf8))) {
            parseResponses($0).count == 1
        }
        try await eventually(timeout: 5, "the webhook reached the channel") { adapter.webhooks.count == 1 }
        await d.stop()
        let (text, _) = try await exchange
        #expect(parseResponses(text).first?.status == 200, "\(text)")
        #expect(parseResponses(text).first?.body == "event loop")
    }
}

/// Writes `bytes` on a new TCP connection to `address` (`host:port`) and reads until `done` holds
/// for what came back (the connection is then closed by us) or the server closes it.
func rawExchange(_ address: String, _ bytes: [UInt8], timeout: Duration = .seconds(20),
                 until done: @escaping @Sendable (String) -> Bool = { _ in false }) async throws -> (text: String, closedByServer: Bool) {
    try await rawExchange(address, chunks: [bytes], timeout: timeout, until: done)
}

/// `rawExchange` writing `chunks` one after another, a millisecond apart (so that the server
/// reads them separately, splitting requests wherever the chunks do).
func rawExchange(_ address: String, chunks: [[UInt8]], timeout: Duration = .seconds(20),
                 until done: @escaping @Sendable (String) -> Bool = { _ in false }) async throws -> (text: String, closedByServer: Bool) {
    let colon = address.lastIndex(of: ":")!
    let host = String(address[..<colon]), port = Int(address[address.index(after: colon)...])!
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: host, port: port) { ch in
        ch.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch) }
    }
    return try await withThrowingTaskGroup(of: (String, Bool)?.self) { group in
        group.addTask {
            try await channel.executeThenClose { inbound, outbound in
                try await withThrowingTaskGroup(of: (String, Bool)?.self) { exchange in
                    exchange.addTask {
                        for (k, chunk) in chunks.enumerated() {
                            if k > 0 { try await Task.sleep(for: .milliseconds(1)) }
                            try await outbound.write(ByteBuffer(bytes: chunk))
                        }
                        return nil
                    }
                    exchange.addTask {
                        var received = [UInt8]()
                        for try await buffer in inbound {
                            received += Array(buffer.readableBytesView)
                            if done(String(decoding: received, as: UTF8.self)) { return (String(decoding: received, as: UTF8.self), false) }
                        }
                        return (String(decoding: received, as: UTF8.self), true)
                    }
                    while let next = try await exchange.next() {
                        if let answer = next { exchange.cancelAll(); return answer }
                    }
                    return ("", true)
                }
            }
        }
        group.addTask { try await Task.sleep(for: timeout); return nil }
        defer { group.cancelAll() }
        guard let result = try await group.next() ?? nil else {
            Issue.record("no complete answer within \(timeout)")
            throw CancellationError()
        }
        return (result.0, result.1)
    }
}

/// The HTTP/1.1 responses in `text`, each complete one (by its Content-Length) in order.
func parseResponses(_ text: String) -> [(status: Int, headers: [String: String], body: String)] {
    var answers: [(status: Int, headers: [String: String], body: String)] = []
    var rest = Substring(text)
    while let end = rest.range(of: "\r\n\r\n") {
        let lines = rest[..<end.lowerBound].components(separatedBy: "\r\n")
        guard let status = lines.first?.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { break }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = end.upperBound
        guard rest.utf8.distance(from: bodyStart, to: rest.endIndex) >= length else { break }
        let bodyEnd = rest.utf8.index(bodyStart, offsetBy: length)
        answers.append((status, headers, String(rest[bodyStart..<bodyEnd])))
        rest = rest[bodyEnd...]
    }
    return answers
}
