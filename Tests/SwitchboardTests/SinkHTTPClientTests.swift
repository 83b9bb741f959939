import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import Testing
@testable import SwitchboardDelivery

/// The delivery HTTP client against a real HTTP/1.1 server on loopback whose every answer the
/// test scripts per connection and request: answered, answered then closed, dropped, or hung.
@Suite struct SinkHTTPClientTests {
    /// How long a request that should be answered may take: long, since a full test run keeps
    /// both CPUs busy.
    let patience = Duration.seconds(5 * testTimeoutScale)

    @Test func keepAliveConnectionsAreReusedAndAnswerBodiesDropped() async throws {
        let server = try await ScriptedHTTPServer.start { _, n in
            // Alternately a chunked and a sized body: both must be read to the end before reuse.
            .answer(status: 200, body: 40_000, chunked: n % 2 == 0)
        }
        defer { server.stop() }
        let client = SinkHTTPClient(url: server.url("/hooks?tenant=a"))
        defer { client.shutdown() }
        for _ in 0..<20 {
            let head = try await client.post(headers: ["x-test": "1"], body: ByteBuffer(string: "{}"), timeout: patience)
            #expect(head.status == .ok)
        }
        #expect(server.connectionsAccepted == 1)
        let first = try #require(server.requests.first)
        #expect(first.uri == "/hooks?tenant=a")
        #expect(first.headers["host"] == ["127.0.0.1:\(server.port)"])
        #expect(first.headers["content-length"] == ["2"] && first.headers["x-test"] == ["1"])
        #expect(first.body == "{}")
    }

    @Test func aKeepAliveConnectionTheServerDroppedIsReplacedWithoutAFailure() async throws {
        // The second request on the first connection is read and the connection closed without
        // an answer, as a server does whose keep-alive timeout passed just as the request came.
        let server = try await ScriptedHTTPServer.start { conn, n in conn == 0 && n == 1 ? .drop : .answer(status: 204) }
        defer { server.stop() }
        let client = SinkHTTPClient(url: server.url("/"))
        defer { client.shutdown() }
        for _ in 0..<3 {
            #expect(try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience).status == .noContent)
        }
        #expect(server.connectionsAccepted == 2)
    }

    @Test func aNewConnectionDroppedBeforeAnAnswerIsAFailureNotARetry() async throws {
        let server = try await ScriptedHTTPServer.start { _, _ in .drop }
        defer { server.stop() }
        let client = SinkHTTPClient(url: server.url("/"))
        defer { client.shutdown() }
        await #expect(throws: SinkHTTPError.connectionClosed(answered: false)) {
            try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience)
        }
        #expect(server.requests.count == 1, "sent once: only a reused connection earns a second try")
        #expect(client.openConnections == 0)
    }

    @Test func connectionCloseAnswersAreNotReused() async throws {
        let server = try await ScriptedHTTPServer.start { _, _ in .answer(status: 200, close: true) }
        defer { server.stop() }
        let client = SinkHTTPClient(url: server.url("/"))
        defer { client.shutdown() }
        for _ in 0..<3 {
            #expect(try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience).status == .ok)
        }
        #expect(server.connectionsAccepted == 3)
        #expect(client.openConnections == 0)
    }

    @Test func aRequestWithoutAnAnswerTimesOutAndTheNextOneGoesOnANewConnection() async throws {
        let server = try await ScriptedHTTPServer.start { conn, _ in conn == 0 ? .hang : .answer(status: 202) }
        defer { server.stop() }
        let client = SinkHTTPClient(url: server.url("/"))
        defer { client.shutdown() }
        let start = ContinuousClock.now
        await #expect(throws: SinkHTTPError.timedOut(.milliseconds(300))) {
            try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: .milliseconds(300))
        }
        // Well under the 15 s a forgotten deadline would take; loose, since a full test run can
        // keep the task from resuming for seconds.
        #expect(ContinuousClock.now - start < .seconds(3 * testTimeoutScale))
        #expect(try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience).status == .accepted)
        #expect(server.connectionsAccepted == 2)
    }

    @Test func concurrentRequestsShareAtMostMaxConnections() async throws {
        let server = try await ScriptedHTTPServer.start { _, _ in .answer(status: 204, after: .milliseconds(50)) }
        defer { server.stop() }
        let client = SinkHTTPClient(url: server.url("/"), maxConnections: 3)
        defer { client.shutdown() }
        try await withThrowingTaskGroup(of: HTTPResponseStatus.self) { group in
            for _ in 0..<24 {
                group.addTask { try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience).status }
            }
            for try await status in group { #expect(status == .noContent) }
        }
        #expect(server.requests.count == 24)
        // Never more than three at once; more than one unless the machine stalled the senders.
        #expect(server.connectionsAccepted <= 3)
        #expect((2...3).contains(server.mostAtOnce))
    }

    @Test func idleConnectionsAreClosedAfterTheIdleTimeout() async throws {
        let server = try await ScriptedHTTPServer.start { _, _ in .answer(status: 204) }
        defer { server.stop() }
        let client = SinkHTTPClient(url: server.url("/"), idleTimeout: .milliseconds(200))
        defer { client.shutdown() }
        _ = try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience)
        #expect(client.openConnections == 1)
        try await eventually(timeout: 5, "the idle connection closed") { client.openConnections == 0 && server.connectionsOpen == 0 }
    }

    @Test func aUnixSocketURLReachesTheSocket() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let path = dir.file("desk.sock")
        let server = try await ScriptedHTTPServer.start(unixSocket: path) { _, _ in .answer(status: 204) }
        defer { server.stop() }
        let client = SinkHTTPClient(url: "http+unix://" + path.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! + "/in?x=1")
        defer { client.shutdown() }
        #expect(try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience).status == .noContent)
        #expect(server.requests.first?.uri == "/in?x=1")
        #expect(server.requests.first?.headers["host"] == ["localhost"])
    }

    @Test func httpsChecksTheCertificate() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (certPath, keyPath) = try await makeTestCertificate(in: dir)
        let cert = try NIOSSLCertificate.fromPEMFile(certPath)
        let tls = TLSConfiguration.makeServerConfiguration(certificateChain: cert.map { .certificate($0) },
                                                           privateKey: .privateKey(try NIOSSLPrivateKey(file: keyPath, format: .pem)))
        let server = try await ScriptedHTTPServer.start(tls: tls) { _, _ in .answer(status: 204) }
        defer { server.stop() }

        var trusting = TLSConfiguration.makeClientConfiguration()
        trusting.trustRoots = .certificates(cert)
        for host in ["localhost", "127.0.0.1"] {
            let client = SinkHTTPClient(url: "https://\(host):\(server.port)/hooks", tlsConfiguration: trusting)
            defer { client.shutdown() }
            #expect(try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience).status == .noContent, "\(host)")
        }
        #expect(server.requests.count == 2)

        // The system's roots do not know the test certificate: nothing is sent.
        let strict = SinkHTTPClient(url: "https://localhost:\(server.port)/hooks")
        defer { strict.shutdown() }
        do {
            _ = try await strict.post(headers: [:], body: ByteBuffer(string: "x"), timeout: patience)
            Issue.record("an untrusted certificate was accepted")
        } catch let error as SinkHTTPError {
            guard case .tls = error else { Issue.record("expected a TLS failure, got \(error)"); return }
        }
        #expect(server.requests.count == 2)
    }

    @Test func aBadURLFailsEveryRequestClearly() async throws {
        for url in ["ftp://desk/hooks", "http:///nohost", "http+unix://relative.sock/x"] {
            let client = SinkHTTPClient(url: url)
            await #expect(throws: SinkHTTPError.invalidURL, "\(url)") {
                try await client.post(headers: [:], body: ByteBuffer(string: "x"), timeout: .seconds(1))
            }
        }
    }

    @Test func endpointsAreParsedOnce() {
        let v6 = SinkHTTPClient.Endpoint(url: "https://[::1]:8443/a/b?c=d")
        #expect(v6?.address == .tcp(host: "::1", port: 8443) && v6?.hostHeader == "[::1]:8443" && v6?.target == "/a/b?c=d" && v6?.tls == true)
        #expect(v6?.serverHostname == nil, "an IP literal is checked against the certificate's addresses, not sent as SNI")
        let named = SinkHTTPClient.Endpoint(url: "https://desk.example.com")
        #expect(named?.address == .tcp(host: "desk.example.com", port: 443) && named?.hostHeader == "desk.example.com" && named?.target == "/")
        #expect(named?.serverHostname == "desk.example.com")
        let unix = SinkHTTPClient.Endpoint(url: "http+unix://%2Frun%2Fdesk.sock/hooks")
        #expect(unix?.address == .unix(path: "/run/desk.sock") && unix?.target == "/hooks" && unix?.tls == false)
    }
}

/// An HTTP/1.1 server on loopback that answers as `script(connection, request)` says, where
/// both count from 0 (the request index is per connection), and records what it saw.
final class ScriptedHTTPServer: Sendable {
    enum Action: Sendable {
        case answer(status: Int, body: Int = 0, chunked: Bool = false, close: Bool = false, after: Duration = .zero)
        /// Close the connection without answering.
        case drop
        /// Never answer.
        case hang
    }
    struct Request: Sendable { var uri: String; var headers: HTTPHeaders; var body: String }
    struct State {
        var accepted = 0, open = 0, busy = 0, mostAtOnce = 0
        var requests: [Request] = []
    }

    let channel: any Channel
    let counters: Counters
    let port: Int

    var connectionsAccepted: Int { counters.state.withLock { $0.accepted } }
    var connectionsOpen: Int { counters.state.withLock { $0.open } }
    var requests: [Request] { counters.state.withLock { $0.requests } }
    var mostAtOnce: Int { counters.state.withLock { $0.mostAtOnce } }
    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    private init(channel: any Channel, counters: Counters) {
        self.channel = channel
        self.counters = counters
        port = channel.localAddress?.port ?? 0
    }

    static func start(tls: TLSConfiguration? = nil, unixSocket: String? = nil,
                      script: @escaping @Sendable (Int, Int) -> Action) async throws -> ScriptedHTTPServer {
        let counters = Counters()
        let ssl = try tls.map { try NIOSSLContext(configuration: $0) }
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let index = counters.state.withLock { s in s.accepted += 1; s.open += 1; return s.accepted - 1 }
                    channel.closeFuture.whenComplete { _ in counters.state.withLock { $0.open -= 1 } }
                    let sync = channel.pipeline.syncOperations
                    if let ssl { try sync.addHandler(NIOSSLServerHandler(context: ssl)) }
                    try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
                    try sync.addHandler(ScriptedHandler(connection: index, counters: counters, script: script))
                }
            }
        let channel = if let unixSocket {
            try await bootstrap.bind(unixDomainSocketPath: unixSocket, cleanupExistingSocketFile: true).get()
        } else {
            try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        }
        return ScriptedHTTPServer(channel: channel, counters: counters)
    }

    func stop() { channel.close(promise: nil) }

    final class Counters: Sendable { let state = Mutex(State()) }

    final class ScriptedHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let connection: Int
        let counters: Counters
        let script: @Sendable (Int, Int) -> Action
        var served = 0
        var head: HTTPRequestHead?
        var body = ""

        init(connection: Int, counters: Counters, script: @escaping @Sendable (Int, Int) -> Action) {
            self.connection = connection; self.counters = counters; self.script = script
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h; body = ""
            case .body(let b): body += String(buffer: b)
            case .end:
                guard let head else { return }
                let action = script(connection, served)
                served += 1
                counters.state.withLock { s in
                    s.requests.append(Request(uri: head.uri, headers: head.headers, body: body))
                    s.busy += 1
                    s.mostAtOnce = max(s.mostAtOnce, s.busy)
                }
                switch action {
                case .drop:
                    counters.state.withLock { $0.busy -= 1 }
                    context.close(promise: nil)
                case .hang:
                    break
                case .answer(let status, let size, let chunked, let close, let after):
                    let loop = context.eventLoop.assumeIsolated()
                    let respond = { [counters] in
                        var headers = HTTPHeaders()
                        if chunked { headers.add(name: "transfer-encoding", value: "chunked") } else { headers.add(name: "content-length", value: String(size)) }
                        if close { headers.add(name: "connection", value: "close") }
                        counters.state.withLock { $0.busy -= 1 }
                        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: headers))), promise: nil)
                        if size > 0 {
                            context.write(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(repeating: UInt8(ascii: "x"), count: size)))), promise: nil)
                        }
                        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                            if close { context.close(promise: nil) }
                        }
                    }
                    if after == .zero { respond() } else { loop.scheduleTask(in: TimeAmount(after)) { respond() } }
                }
            }
        }
    }
}
