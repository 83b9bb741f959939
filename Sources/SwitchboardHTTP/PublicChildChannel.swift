import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
import SwitchboardCore
import SwitchboardRuntime

/// One connection to the public listener, bound or passed by systemd: HTTP/1.1 for the router,
/// or a WebSocket upgrade that a channel accepts (`ChannelAdapter.acceptLive`).
///
/// An upgraded socket leaves Hummingbird: `LiveWebSocketHandler` runs the protocol on the event
/// loop and the adapter's `serveLive` runs in the connection's task — the only task a socket
/// keeps. (Hummingbird's WebSocket handler keeps several per socket; at 10,000 widgets that was
/// 50 KiB a socket.) The HTTP/1.1 side is HummingbirdWebSocket 2.8's
/// `HTTP1WebSocketUpgradeChannel`, adapted.
struct PublicChildChannel: ServerChildChannel, HTTPChannelHandler {
    /// What the connection became. Every case is one reference, so that awaiting it costs the
    /// connection's task little (see `handle`).
    enum Negotiated: Sendable {
        case http(HTTPConnection)
        /// An upgrade request no channel accepted (or a malformed one): 400, as Hummingbird does.
        case refusedUpgrade(HTTPConnection)
        case live(LiveConnection)
    }

    final class HTTPConnection: Sendable {
        let channel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
        /// Webhooks answered beside Hummingbird (`WebhookFastPath`).
        let webhooks: WebhookFastPathSession
        init(_ channel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, webhooks: WebhookFastPathSession) {
            self.channel = channel; self.webhooks = webhooks
        }
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let runtime: Runtime
    let http1 = HTTP1Channel.Configuration()

    init(responder: @escaping HTTPChannelHandler.Responder, runtime: Runtime) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.runtime = runtime
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // The receive buffer adapts to what a socket reads, so an idle widget's shrinks
            // towards the 64-byte minimum. The first read stays at 2 KiB (NIO's default): with
            // 512 bytes, webhook POSTs of 1–2 KB took several reads, and `make bench` measured
            // ingest 2,905 vs 4,288 req/s and end-to-end p99 28.7 vs 21.1 ms, for 1.6 KiB more
            // per idle socket (160 vs 175 MiB at 10,000). It must be set before the first read.
            try channel.syncOptions?.setOption(
                ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 65536))
            let attempt = NIOLoopBoundBox(UpgradeAttempt.none, eventLoop: channel.eventLoop)
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Negotiated>(
                upgradeConfiguration: NIOTypedHTTPServerUpgradeConfiguration(
                    upgraders: [webSocketUpgrader(attempt)],
                    notUpgradingCompletionHandler: { channel in Self.plainHTTP(channel, attempt: attempt, runtime: runtime, logger: logger) }))
            configuration.enablePipelining = false  // NIOAsyncChannel serialises requests
            configuration.enableErrorHandling = false  // Hummingbird answers parse errors
            configuration.enableResponseHeaderValidation = false  // HTTPTypes validated them
            configuration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            configuration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            configuration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    /// What became of the connection's WebSocket upgrade request, between NIO's two callbacks.
    private enum UpgradeAttempt {
        /// None was asked for (or the request was malformed): ordinary HTTP.
        case none
        /// The channel said no (`acceptLive`), or no channel serves the path.
        case refused
        case accepted(LiveTarget)
    }

    /// Offers the upgrade to the channel serving the path; an accepted socket gets its
    /// `LiveWebSocketHandler` after the 101.
    private func webSocketUpgrader(_ attempt: NIOLoopBoundBox<UpgradeAttempt>) -> NIOTypedWebSocketServerUpgrader<Negotiated> {
        let runtime = self.runtime
        return NIOTypedWebSocketServerUpgrader<Negotiated>(
            maxFrameSize: LiveWebSocketLimits.maxMessageBytes,
            shouldUpgrade: { channel, head in
                attempt.value = .refused
                let remote = channel.remoteAddress?.ipAddress
                let decided = channel.eventLoop.makePromise(of: LiveTarget?.self)
                decided.completeWithTask { await LiveTarget.accept(head, remoteAddress: remote, runtime: runtime) }
                return decided.futureResult.map { (target: LiveTarget?) -> HTTPHeaders? in
                    guard let target else { return nil }
                    attempt.value = .accepted(target)
                    return HTTPHeaders()
                }
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard case .accepted(let target) = attempt.value else { throw NIOWebSocketUpgradeError.unsupportedWebSocketTarget }
                    attempt.value = .none
                    return .live(try LiveConnection(target: target, channel: channel))
                }
            })
    }

    /// The pipeline for ordinary HTTP/1.1, as Hummingbird's `HTTP1Channel` sets it up, with
    /// webhooks taken off in front of it (`WebhookFastPath`).
    private static func plainHTTP(_ channel: any Channel, attempt: NIOLoopBoundBox<UpgradeAttempt>, runtime: Runtime,
                                  logger: Logger) -> EventLoopFuture<Negotiated> {
        channel.eventLoop.makeCompletedFuture {
            let webhooks = try WebhookFastPathSession(runtime: runtime, channel: channel)
            try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
            let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
            if case .refused = attempt.value { return .refusedUpgrade(HTTPConnection(http, webhooks: webhooks)) }
            return .http(HTTPConnection(http, webhooks: webhooks))
        }
    }

    /// The connection's task. For a WebSocket it lives as long as the socket, and a task keeps
    /// the memory of the deepest point it ever reached until it ends (its allocator keeps its
    /// slabs): so this stays shallow and small, and each path is a function of its own.
    func handle(value: Value, logger: Logger) async {
        switch await Self.negotiated(value, logger: logger) {
        case .http(let http): await serveHTTP(http, on: value.channel.eventLoop, logger: logger)
        case .refusedUpgrade(let http):
            http.webhooks.finish()
            await Self.refuse(http.channel, logger: logger)
        case .live(let live): await live.serve()
        case nil: break
        }
    }

    /// Waits for the negotiation. (Not `EventLoopFuture.get()`: its frame alone is bigger than
    /// one slab of the task allocator, kept for the socket's lifetime.)
    @inline(never)
    private static func negotiated(_ value: Value, logger: Logger) async -> Negotiated? {
        await withUnsafeContinuation { continuation in
            value.negotiated.whenComplete { result in
                switch result {
                case .success(let negotiated):
                    continuation.resume(returning: negotiated)
                case .failure(let error as ChannelError) where error == .inputClosed:
                    logger.trace("connection closed before a request")
                    continuation.resume(returning: nil)
                case .failure(let error):
                    logger.debug("connection ended during negotiation", metadata: ["error": "\(error)"])
                    continuation.resume(returning: nil)
                }
            }
        }
    }

    /// Ordinary HTTP runs on the connection's own event loop (`EventLoopTaskExecutor`), not on
    /// Swift's global executor: reading a request, the handler and writing the answer happen on
    /// the thread that owns the socket, without two thread hand-offs per request. Webhook
    /// handlers only compute and await (the ingest commit happens on the writer's thread), and
    /// file I/O is handed to NIO's thread pool (`FileMediaStore`), so nothing here blocks the
    /// loop. WhatsApp ingest gained about 10 % (`Benchmarks/ab.sh wa`). A WebSocket's task does
    /// not: the preference would stay with it, in memory, for the socket's lifetime.
    ///
    /// Webhooks taken off in front of Hummingbird (`WebhookFastPath`) are answered by a second
    /// child of this task, on the same loop; it ends after Hummingbird's side does, once the
    /// webhook under way (if any) is answered.
    @inline(never)
    private func serveHTTP(_ http: HTTPConnection, on loop: any EventLoop, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopTaskExecutor(loop)) {
            await withDiscardingTaskGroup { group in
                group.addTask { await http.webhooks.serve() }
                await handleHTTP(asyncChannel: http.channel, logger: logger)
                http.webhooks.finish()
            }
        }
    }

    /// The answer to a refused upgrade: 400 and close (the client wanted a WebSocket, not a page).
    @inline(never)
    private static func refuse(_ http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, logger: Logger) async {
        do {
            try await http.executeThenClose { _, outbound in
                try await outbound.write(contentsOf: [
                    .head(HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])), .end(nil),
                ])
            }
        } catch {
            logger.trace("refused upgrade: connection gone", metadata: ["error": "\(error)"])
        }
    }

    /// NIO upgrades only a connection's first request. A WebSocket upgrade after an ordinary
    /// request on a kept-alive connection is sent back to the same URL on a new connection
    /// (307 and close), where it can be upgraded. (A malformed one — no key, another version —
    /// would only come back: it is an ordinary request.)
    private static func redirectingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder) -> HTTPChannelHandler.Responder {
        struct RedirectedUpgrade: Error {}
        return { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket", request.headers[.secWebSocketKey] != nil,
                  request.headers[.secWebSocketVersion] == "13" else {
                return try await responder(request, writer, channel)
            }
            var location = request.uri.path
            if let query = request.uri.query { location += "?\(query)" }
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw RedirectedUpgrade()  // ends the connection
        }
    }
}

/// The channel that accepted a WebSocket upgrade, and the request as its `serveLive` sees it.
struct LiveTarget: Sendable {
    let adapter: any ChannelAdapter
    let context: any AdapterContext
    let subpath: String
    let request: WebhookRequest

    /// Asks the channel serving the path (`acceptLive`); nil refuses the upgrade.
    static func accept(_ head: HTTPRequestHead, remoteAddress: String?, runtime: Runtime) async -> LiveTarget? {
        let path = String(head.uri.prefix { $0 != "?" })
        guard let (entry, subpath) = PublicRoutes.publicTarget(path: path, runtime: runtime) else { return nil }
        let headers = head.headers.joinedByName
        var query: [String: String] = [:]
        if let q = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first {
            for pair in q.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                let k = String(kv[0]).removingPercentEncoding ?? String(kv[0])
                query[k] = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
            }
        }
        let request = WebhookRequest(method: head.method.rawValue, path: path, query: query, headers: headers, body: [],
                                     remoteAddress: runtime.trustedProxies.clientAddress(peer: remoteAddress, headers: headers))
        guard await entry.adapter.acceptLive(request, subpath: subpath, context: entry.context) else { return nil }
        // The socket keeps its request for as long as it is open: only the headers a live
        // connection uses (docs/adapters.md).
        var kept = request
        kept.headers = headers.filter { LiveTarget.keptHeaders.contains($0.key) }
        return LiveTarget(adapter: entry.adapter, context: entry.context, subpath: subpath, request: kept)
    }

    static let keptHeaders: Set<String> = ["origin", "host", "user-agent"]
}

/// An upgraded socket: its handler in the channel pipeline, and the adapter's side of it.
///
/// A class, so that what the connection's task awaits (the negotiation's result) is one
/// reference: the task allocator keeps the memory of the deepest point a task ever reached for
/// as long as the task lives, and this task lives as long as the socket.
final class LiveConnection: Sendable {
    let target: LiveTarget
    let incoming: AsyncStream<String>
    let socket: LiveSocket

    /// Adds the WebSocket handler to the upgraded pipeline (on its event loop).
    init(target: LiveTarget, channel: any Channel) throws {
        let (incoming, continuation) = AsyncStream.makeStream(
            of: String.self, bufferingPolicy: .bufferingOldest(LiveWebSocketLimits.maxQueuedMessages))
        let handler = LiveWebSocketHandler(incoming: continuation)
        try channel.pipeline.syncOperations.addHandler(handler)
        self.target = target
        self.incoming = incoming
        self.socket = LiveSocket(LiveWebSocket(handler, eventLoop: channel.eventLoop))
    }

    /// Runs the adapter's `serveLive` in the connection's task; when it returns, the socket closes
    /// (with a close frame after whatever it sent last).
    @inline(never)
    func serve() async {
        await target.adapter.serveLive(target.request, subpath: target.subpath, incoming: incoming, socket: socket,
                                       context: target.context)
        socket.close()
    }
}
