import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Why a delivery request got no answer.
public enum SinkHTTPError: Error, CustomStringConvertible, Equatable {
    case invalidURL
    /// The connection ended before a whole answer came (`answered`: part of one had).
    case connectionClosed(answered: Bool)
    case timedOut(Duration)
    case connectFailed(String)
    case tls(String)
    case shutDown

    public var description: String {
        switch self {
        case .invalidURL: "the helpdesk URL does not parse"
        case .connectionClosed(let answered): answered ? "the connection closed in the middle of the answer" : "the connection closed before an answer"
        case .timedOut(let d): "no answer within \(d)"
        case .connectFailed(let why): "could not connect: \(why)"
        case .tls(let why): "TLS: \(why)"
        case .shutDown: "the sink is shutting down"
        }
    }
}

/// The HTTP/1.1 client event delivery uses: POSTs to one origin over up to `maxConnections`
/// keep-alive connections, answered by a status line and headers; bodies are read and dropped.
///
/// It never follows a redirect: following a 301/302/303 turns the POST into a GET without the
/// event (an auth proxy's login page would then answer 200 and the event count as delivered),
/// and a 307/308 would send the signature and configured headers to another origin. The sink
/// treats a 3xx as a failed attempt.
///
/// Delivery needs nothing more, and AsyncHTTPClient's general machinery (a connection pool
/// state machine shared by every host, a request state machine, task delegates, a hop to a
/// task per answer) was a fifth of the daemon's CPU with a helpdesk connected
/// (`Benchmarks/ab.sh ingest-hd` under perf). Requests go out in the order they are handed in;
/// each connection carries one at a time (no pipelining: an answer is tied to its request, and
/// a lost connection loses at most one).
public final class SinkHTTPClient: Sendable {
    /// Where requests go, parsed once from the sink's URL.
    struct Endpoint: Sendable, Equatable {
        enum Address: Sendable, Equatable { case tcp(host: String, port: Int), unix(path: String) }
        var address: Address
        var tls: Bool
        var hostHeader: String
        /// The request target: path and query.
        var target: String

        init?(url: String) {
            guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased() else { return nil }
            var target = c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath
            if let q = c.percentEncodedQuery { target += "?" + q }
            self.target = target
            switch scheme {
            case "http", "https":
                guard let host = c.host, !host.isEmpty else { return nil }
                tls = scheme == "https"
                let port = c.port ?? (tls ? 443 : 80)
                // URLComponents keeps an IPv6 literal's brackets; sockets want it bare.
                let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
                address = .tcp(host: bare, port: port)
                let named = bare.contains(":") ? "[\(bare)]" : bare
                hostHeader = c.port == nil ? named : "\(named):\(port)"
            case "http+unix":
                guard let path = c.percentEncodedHost?.removingPercentEncoding, path.hasPrefix("/") else { return nil }
                tls = false
                address = .unix(path: path)
                // What curl sends over --unix-socket: the socket path means nothing to the receiver.
                hostHeader = "localhost"
            default:
                return nil
            }
        }

        /// The name to send as SNI and check the certificate against; nil for an IP address,
        /// which the certificate is then checked against instead.
        var serverHostname: String? {
            guard case .tcp(let host, _) = address else { return nil }
            var v4 = in_addr(), v6 = in6_addr()
            if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 { return nil }
            return host
        }
    }

    let endpoint: Endpoint?
    let maxConnections: Int
    let idleTimeout: Duration
    let group: any EventLoopGroup
    private let tlsContext: Result<NIOSSLContext, any Error>?
    private let state = Mutex(PoolState())

    private struct PoolState {
        /// Connections free for a request, the most recently used last (it is taken first, so a
        /// trickle keeps one connection warm and lets the others time out).
        var idle: [Connection] = []
        /// Connections open, being opened, or granted to a waiter to open.
        var open = 0
        var waiters: [CheckedContinuation<Grant, any Error>] = []
        var closed = false
    }

    private enum Grant: Sendable { case reuse(Connection), connect }

    /// - Parameters:
    ///   - maxConnections: connections to the origin at once; requests beyond wait for one.
    ///   - idleTimeout: a connection unused this long is closed.
    ///   - tlsConfiguration: for https (default: the system's trust roots, full verification).
    public init(url: String, maxConnections: Int = 8, idleTimeout: Duration = .seconds(60),
                tlsConfiguration: TLSConfiguration? = nil, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        endpoint = Endpoint(url: url)
        self.maxConnections = max(1, maxConnections)
        self.idleTimeout = idleTimeout
        self.group = group
        if endpoint?.tls == true {
            tlsContext = Result { try NIOSSLContext(configuration: tlsConfiguration ?? .makeClientConfiguration()) }
        } else {
            tlsContext = nil
        }
    }

    /// Sends one request and answers the response head. `Content-Length` is set here, and
    /// `Host` (from the URL) unless `headers` has one.
    public func post(headers: HTTPHeaders, body: ByteBuffer, timeout: Duration) async throws -> HTTPResponseHead {
        guard let endpoint else { throw SinkHTTPError.invalidURL }
        var headers = headers
        if !headers.contains(name: "host") { headers.add(name: "host", value: endpoint.hostHeader) }
        headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
        let head = HTTPRequestHead(version: .http1_1, method: .POST, uri: endpoint.target, headers: headers)
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        // A keep-alive connection the server closed while it sat idle fails before any answer;
        // such a request is sent again once, on a new connection. (The receiver may have seen it
        // if it closed just after reading it; deliveries are at least once, with stable ids.)
        var retried = false
        while true {
            let (connection, reused) = try await acquire(deadline: deadline, timeout: timeout)
            do {
                let answer = try await connection.send(head: head, body: body, deadline: deadline, timeout: timeout)
                release(connection, reusable: answer.isKeepAlive)
                return answer
            } catch SinkHTTPError.connectionClosed(answered: false) where reused && !retried {
                release(connection, reusable: false)
                retried = true
            } catch {
                release(connection, reusable: false)
                throw error
            }
        }
    }

    /// Closes the idle connections, fails requests waiting for one, and closes the busy ones
    /// as their answers come.
    public func shutdown() {
        let (idle, waiters) = state.withLock { s -> ([Connection], [CheckedContinuation<Grant, any Error>]) in
            s.closed = true
            let taken = (s.idle, s.waiters)
            s.open -= s.idle.count
            s.idle = []
            s.waiters = []
            return taken
        }
        for c in idle { c.channel.close(promise: nil) }
        for w in waiters { w.resume(throwing: SinkHTTPError.shutDown) }
    }

    /// Connections open now (for tests).
    var openConnections: Int { state.withLock { $0.open } }

    // MARK: The pool

    private func acquire(deadline: NIODeadline, timeout: Duration) async throws -> (Connection, reused: Bool) {
        let grant: Grant
        if let immediate = try state.withLock({ s in try grantAtOnce(&s) }) {
            grant = immediate
        } else {
            grant = try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Grant, any Error>) in
                // Looked at again under the lock: a connection may have come free meanwhile.
                let now: Result<Grant, any Error>? = state.withLock { s in
                    do {
                        if let g = try grantAtOnce(&s) { return .success(g) }
                    } catch {
                        return .failure(error)
                    }
                    s.waiters.append(waiter)
                    return nil
                }
                if let now { waiter.resume(with: now) }
            }
        }
        switch grant {
        case .reuse(let c):
            guard NIODeadline.now() < deadline else {
                release(c, reusable: true)
                throw SinkHTTPError.timedOut(timeout)
            }
            return (c, true)
        case .connect:
            do {
                return (try await connect(deadline: deadline, timeout: timeout), false)
            } catch {
                dropped()
                throw error
            }
        }
    }

    /// An idle connection, or leave to open one, if either can be had without waiting.
    private func grantAtOnce(_ s: inout PoolState) throws -> Grant? {
        if s.closed { throw SinkHTTPError.shutDown }
        if let c = s.idle.popLast() { return .reuse(c) }
        if s.open < maxConnections { s.open += 1; return .connect }
        return nil
    }

    /// Hands a connection back: to a waiting request, to the idle list, or closed.
    private func release(_ c: Connection, reusable: Bool) {
        enum Next { case handOver(CheckedContinuation<Grant, any Error>, Grant), idle, close }
        let reusable = reusable && c.channel.isActive
        let next: Next = state.withLock { s in
            if reusable && !s.closed {
                if !s.waiters.isEmpty { return .handOver(s.waiters.removeFirst(), .reuse(c)) }
                s.idle.append(c)
                c.idleSince.store(Self.uptimeNanos(), ordering: .relaxed)
                return .idle
            }
            // The connection's slot passes to a waiting request, which opens a new one.
            if !s.waiters.isEmpty && !s.closed { return .handOver(s.waiters.removeFirst(), .connect) }
            s.open -= 1
            return .close
        }
        switch next {
        case .handOver(let waiter, let grant):
            if case .connect = grant { c.channel.close(promise: nil) }
            waiter.resume(returning: grant)
        case .idle: scheduleIdleCheck(c)
        case .close: c.channel.close(promise: nil)
        }
    }

    /// A connection slot was given up without a connection (connecting failed).
    private func dropped() {
        let waiter = state.withLock { s -> CheckedContinuation<Grant, any Error>? in
            if !s.waiters.isEmpty && !s.closed { return s.waiters.removeFirst() }
            s.open -= 1
            return nil
        }
        waiter?.resume(returning: .connect)
    }

    /// Closes `c` once it has sat idle for `idleTimeout`; one check is scheduled at a time.
    private func scheduleIdleCheck(_ c: Connection) {
        guard !c.idleCheckScheduled.exchange(true, ordering: .relaxed) else { return }
        let limit = TimeAmount(idleTimeout)
        c.channel.eventLoop.scheduleTask(in: limit) { [weak self] in
            c.idleCheckScheduled.store(false, ordering: .relaxed)
            guard let self else { return }
            let (expired, stillIdle) = self.state.withLock { s -> (Bool, Bool) in
                guard let i = s.idle.firstIndex(where: { $0 === c }) else { return (false, false) }
                guard Self.uptimeNanos() - c.idleSince.load(ordering: .relaxed) >= UInt64(limit.nanoseconds) else { return (false, true) }
                s.idle.remove(at: i)
                s.open -= 1
                return (true, false)
            }
            if expired { c.channel.close(promise: nil) }
            // Used since it was scheduled and idle again: look again a whole timeout later.
            if stillIdle { self.scheduleIdleCheck(c) }
        }
    }

    /// A connection the server closed while idle leaves the list at once.
    private func forgetIfIdle(_ c: Connection) {
        state.withLock { s in
            if let i = s.idle.firstIndex(where: { $0 === c }) {
                s.idle.remove(at: i)
                s.open -= 1
            }
        }
    }

    private func connect(deadline: NIODeadline, timeout: Duration) async throws -> Connection {
        guard let endpoint else { throw SinkHTTPError.invalidURL }
        var ssl: NIOSSLContext? = nil
        switch tlsContext {
        case .success(let context): ssl = context
        case .failure(let error): throw SinkHTTPError.tls(String(describing: error))
        case nil: break
        }
        let serverHostname = endpoint.serverHostname
        let remaining = deadline - .now()
        guard remaining > .zero else { throw SinkHTTPError.timedOut(timeout) }
        // The handler is taken from the initializer rather than looked up in the pipeline after
        // the connect: a failed TLS handshake may have emptied the pipeline by then, and the
        // handler is what remembers that failure for the request.
        let made = HandlerSlot()
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(remaining)
            .channelInitializer { [ssl] channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let ssl { try sync.addHandler(NIOSSLClientHandler(context: ssl, serverHostname: serverHostname)) }
                    try sync.addHTTPClientHandlers()
                    let handler = DeliveryResponseHandler()
                    try sync.addHandler(handler)
                    made.value.withLock { $0 = NIOLoopBound(handler, eventLoop: channel.eventLoop) }
                }
            }
        let channel: any Channel
        do {
            switch endpoint.address {
            case .tcp(let host, let port):
                bootstrap = bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1)
                channel = try await bootstrap.connect(host: host, port: port).get()
            case .unix(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch ChannelError.connectTimeout {
            throw SinkHTTPError.timedOut(timeout)
        } catch {
            throw SinkHTTPError.connectFailed(String(describing: error))
        }
        guard let handler = made.value.withLock({ $0 }) else {
            channel.close(promise: nil)
            throw SinkHTTPError.connectFailed("the connection was not set up")
        }
        let connection = Connection(channel: channel, handler: handler)
        channel.closeFuture.whenComplete { [weak self] _ in self?.forgetIfIdle(connection) }
        return connection
    }

    private final class HandlerSlot: Sendable {
        let value = Mutex<NIOLoopBound<DeliveryResponseHandler>?>(nil)
    }

    static func uptimeNanos() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    // MARK: One connection

    final class Connection: Sendable {
        let channel: any Channel
        let handler: NIOLoopBound<DeliveryResponseHandler>
        let idleSince = Atomic<UInt64>(0)
        let idleCheckScheduled = Atomic<Bool>(false)

        init(channel: any Channel, handler: NIOLoopBound<DeliveryResponseHandler>) {
            self.channel = channel; self.handler = handler
        }

        func send(head: HTTPRequestHead, body: ByteBuffer, deadline: NIODeadline, timeout: Duration) async throws -> HTTPResponseHead {
            let loop = channel.eventLoop
            let promise = loop.makePromise(of: HTTPResponseHead.self)
            let handler = self.handler
            if loop.inEventLoop {
                handler.value.send(head: head, body: body, deadline: deadline, timeout: timeout, promise: promise)
            } else {
                loop.execute { handler.value.send(head: head, body: body, deadline: deadline, timeout: timeout, promise: promise) }
            }
            return try await promise.futureResult.get()
        }
    }
}

/// The last handler of a delivery connection: writes a request, completes its promise with the
/// response head once the whole response (body dropped) has been read, and fails it when the
/// connection ends first or the deadline passes. Touched only on the connection's event loop.
final class DeliveryResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private var context: ChannelHandlerContext?
    private var pending: EventLoopPromise<HTTPResponseHead>?
    private var head: HTTPResponseHead?
    private var answered = false
    private var timer: Scheduled<Void>?
    /// What closed the connection, for a request that finds it closed.
    private var closedBy: (any Error)?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        fail(SinkHTTPError.connectionClosed(answered: answered))
        self.context = nil
    }

    func send(head request: HTTPRequestHead, body: ByteBuffer, deadline: NIODeadline, timeout: Duration,
              promise: EventLoopPromise<HTTPResponseHead>) {
        guard let context, context.channel.isActive, pending == nil else {
            promise.fail(closedBy ?? SinkHTTPError.connectionClosed(answered: false))
            return
        }
        pending = promise
        head = nil
        answered = false
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self, self.pending != nil else { return }
            self.fail(SinkHTTPError.timedOut(timeout))
            // The answer may still come; the connection cannot be reused for another request.
            self.context?.close(promise: nil)
        }
        context.write(NIOAny(HTTPClientRequestPart.head(request)), promise: nil)
        context.write(NIOAny(HTTPClientRequestPart.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(NIOAny(HTTPClientRequestPart.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard pending != nil else {
            // Nothing was asked: a server talking out of turn cannot be trusted with the next request.
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let h):
            answered = true
            head = h
        case .body:
            answered = true
        case .end:
            guard let promise = pending, let h = head else { return }
            pending = nil
            head = nil
            timer?.cancel()
            timer = nil
            promise.succeed(h)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(SinkHTTPError.connectionClosed(answered: answered))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A failed TLS handshake (an untrusted certificate) arrives here, often before any
        // request: kept so that the request finding the connection closed says why.
        let reason: any Error = error is NIOSSLError || error is BoringSSLError ? SinkHTTPError.tls(String(describing: error)) : error
        if closedBy == nil { closedBy = reason }
        fail(reason)
        context.close(promise: nil)
    }

    private func fail(_ error: any Error) {
        guard let promise = pending else { return }
        pending = nil
        timer?.cancel()
        timer = nil
        promise.fail(error)
    }
}
