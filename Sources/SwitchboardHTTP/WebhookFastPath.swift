import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1
import SwitchboardCore
import SwitchboardRuntime

/// Platform webhooks (`POST /webhooks/{channel id}`) straight from NIO's HTTP/1.1 parts to the
/// channel, beside Hummingbird rather than through it.
///
/// A webhook is nearly all of the public listener's traffic, and Hummingbird's per-request
/// machinery cost more CPU than the daemon's own work on it: the HTTPTypes conversion, the async
/// channel's inbound and outbound sequences, the streamed request body, the router and the
/// middleware chain. A bare Hummingbird endpoint doing nothing took 64 µs of CPU per request
/// here; a plain NIO handler, 24 µs (`Benchmarks/README.md`). This handler sits in front of
/// Hummingbird's codec: it gathers a webhook's head and body, hands the complete request to
/// the connection's task (`WebhookFastPathSession.serve`), and writes the channel's answer.
/// Every other request — other paths and methods, HTTP/1.0, `Expect`, a declared body over the
/// limit, an unknown channel — passes through to Hummingbird untouched, which answers it as
/// before.
///
/// One request at a time per connection, in order: a request that arrives while another is
/// being answered (HTTP pipelining) waits here, and the connection reads no more until then.
final class WebhookFastPath: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A webhook ready for its channel.
    struct Job: Sendable {
        let entry: ChannelHub.Entry
        let request: WebhookRequest
        let keepAlive: Bool
    }

    private enum State {
        case idle
        /// A webhook's head came; its body is being gathered.
        case collecting(entry: ChannelHub.Entry, head: HTTPRequestHead, body: ByteBuffer?)
        /// The webhook is with its channel; the answer is awaited.
        case answering
        /// A webhook body past the limit was answered 413: the rest of it is read and dropped,
        /// as Hummingbird does, so that the client reads the answer (closing with its data
        /// unread would reset the connection under it).
        case discarding
        /// A request Hummingbird answers: passed on until both it and its answer have ended.
        case passing(requestEnded: Bool, answerEnded: Bool)
        /// The connection is closing after an answer: the rest of the input is dropped.
        case closing
    }

    /// What came in, in order: a request's part, or the decoder's error (which Hummingbird
    /// answers with 400 and a close, so it must not overtake a request answered here).
    private enum Inbound {
        case part(HTTPServerRequestPart)
        case error(any Error)
    }

    private let runtime: Runtime
    private let jobs: AsyncStream<Job>.Continuation
    private let limit: Int
    private var state = State.idle
    /// What came while a request was under way, replayed in order once it is answered.
    private var queued: [Inbound] = []
    /// A read the pipeline asked for while requests were waiting here: made once they are done.
    private var readHeld = false
    /// A close asked for while an answer was due (Hummingbird closes a connection it thinks
    /// idle when the server shuts down): done once the answer is written.
    private var closeHeld: (mode: CloseMode, promise: EventLoopPromise<Void>?)? = nil
    private var peer: String? = nil
    private var date = HTTPDate()

    init(runtime: Runtime, jobs: AsyncStream<Job>.Continuation, limit: Int = PublicRoutes.maxWebhookBytes) {
        self.runtime = runtime
        self.jobs = jobs
        self.limit = limit
    }

    func handlerAdded(context: ChannelHandlerContext) {
        peer = context.channel.remoteAddress?.ipAddress
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        queued.append(.part(unwrapInboundIn(data)))
        drain(context: context, inReadCycle: true)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        queued.append(.error(error))
        drain(context: context, inReadCycle: true)
    }

    /// Takes what waited, in order, for as long as the request under way can take the next
    /// part; then reads again if a read was held and nothing waits. Outside a read cycle (a
    /// replay after an answer), what was passed on is followed by a read-complete: Hummingbird's
    /// async channel hands reads to its task only then.
    private func drain(context: ChannelHandlerContext, inReadCycle: Bool) {
        var passedOn = false
        while let next = queued.first, canTake(next) {
            queued.removeFirst()
            passedOn = take(next, context: context) || passedOn
        }
        if passedOn && !inReadCycle { context.fireChannelReadComplete() }
        if readHeld, queued.isEmpty, !isAnswering {
            readHeld = false
            context.read()
        }
    }

    private var isAnswering: Bool { if case .answering = state { true } else { false } }

    /// A new request starts only when the one before it is done (answered, and passed on whole).
    private func canTake(_ next: Inbound) -> Bool {
        switch (state, next) {
        case (.answering, _): false
        case (_, .error), (.closing, _): true
        case (.idle, .part(.head)), (.collecting, .part(.body)), (.collecting, .part(.end)), (.discarding, .part(.body)),
             (.discarding, .part(.end)), (.passing(false, _), .part(.body)), (.passing(false, _), .part(.end)): true
        default: false
        }
    }

    /// Handles what `canTake` allowed; answers whether it was passed on to Hummingbird.
    private func take(_ next: Inbound, context: ChannelHandlerContext) -> Bool {
        switch (state, next) {
        case (.closing, _):
            return false  // the rest of the input is dropped
        case (_, .error(let error)):
            // A request that cannot be read: Hummingbird answers 400 and closes. A webhook being
            // gathered is given up (its sender never had an answer, and retries).
            state = .passing(requestEnded: true, answerEnded: false)
            context.fireErrorCaught(error)
            return false
        case (.idle, .part(.head(let head))):
            if let entry = webhookEntry(head) {
                state = .collecting(entry: entry, head: head, body: nil)
                return false
            }
            state = .passing(requestEnded: false, answerEnded: false)
            context.fireChannelRead(wrapInboundOut(.head(head)))
            return true
        case (.collecting(let entry, let head, var body), .part(.body(var chunk))):
            if (body?.readableBytes ?? 0) + chunk.readableBytes > limit {
                state = .discarding
                let problem = Respond.problemBody(APIProblem(413, "payload_too_large", "request body larger than \(limit) bytes"))
                write(WebhookResponse(status: 413, headers: ["content-type": "application/problem+json"], body: problem),
                      closing: !head.isKeepAlive, context: context)
                return false
            }
            state = .idle  // so that the buffer is held once while it grows
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
            state = .collecting(entry: entry, head: head, body: body)
            return false
        case (.collecting(let entry, let head, let body), .part(.end)):
            dispatch(entry: entry, head: head, body: body, context: context)
            return false
        case (.discarding, .part(.end)):
            state = .idle
            return false
        case (.passing(false, let answerEnded), .part(let part)):
            context.fireChannelRead(wrapInboundOut(part))
            if case .end = part {
                state = answerEnded ? .idle : .passing(requestEnded: true, answerEnded: false)
            }
            return true
        default:
            return false  // the rest of a discarded body
        }
    }

    /// The channel a request is a webhook for, when this handler answers it.
    private func webhookEntry(_ head: HTTPRequestHead) -> ChannelHub.Entry? {
        guard head.method == .POST, head.version == .http1_1, head.uri.hasPrefix("/webhooks/"),
              !head.headers.contains(name: "expect"), !head.headers.contains(name: "upgrade") else { return nil }
        let path = head.uri.utf8.firstIndex(of: UInt8(ascii: "?")).map { head.uri[..<$0] } ?? head.uri[...]
        let id = path.dropFirst("/webhooks/".count)
        // Anything the router would have to decode or split is left to it.
        guard !id.isEmpty, !id.utf8.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "%") }) else { return nil }
        if let declared = head.headers.first(name: "content-length").flatMap(Int.init), declared > limit { return nil }
        return runtime.hub.entry(String(id))
    }

    private func dispatch(entry: ChannelHub.Entry, head: HTTPRequestHead, body: ByteBuffer?, context: ChannelHandlerContext) {
        let headers = head.headers.joinedByName
        var query: [String: String] = [:]
        if head.uri.utf8.contains(UInt8(ascii: "?")) {
            for (k, v) in URI(head.uri).queryParameters { query[String(k)] = String(v) }
        }
        let path = String(head.uri.prefix { $0 != "?" })
        let request = WebhookRequest(method: head.method.rawValue, path: path, query: query, headers: headers,
                                     body: body.map { Array($0.readableBytesView) } ?? [],
                                     remoteAddress: PublicRoutes.clientAddress(peer: peer, headers: headers, runtime: runtime))
        state = .answering
        if case .terminated = jobs.yield(Job(entry: entry, request: request, keepAlive: head.isKeepAlive)) {
            // The connection's task has stopped taking requests: it is closing.
            state = .closing
            queued = []
            context.close(promise: nil)
        }
    }

    /// Writes the channel's answer to the webhook (on the event loop), then takes what waited.
    func answer(_ response: WebhookResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        guard isAnswering else { return }
        state = .idle
        write(response, closing: !keepAlive, context: context)
        if case .idle = state { drain(context: context, inReadCycle: false) }
    }

    /// Writes an answer; with `closing` (or a close held meanwhile) the connection then closes.
    private func write(_ response: WebhookResponse, closing: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        for (name, value) in response.headers {
            // As Hummingbird's HTTPFields would: names that are not tokens are left out, and
            // a value's line breaks and NULs do not reach the wire.
            guard let field = HTTPField.Name(name).map({ HTTPField(name: $0, value: value) }) else { continue }
            headers.add(name: field.name.rawName, value: field.value)
        }
        headers.replaceOrAdd(name: "content-length", value: String(response.body.count))
        headers.add(name: "date", value: date.now())
        let closing = closing || closeHeld != nil
        if closing { headers.replaceOrAdd(name: "connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: response.status)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !response.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        guard closing else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        state = .closing
        queued = []
        let held = closeHeld
        closeHeld = nil
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            bound.value.close(mode: held?.mode ?? .all, promise: held?.promise)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Hummingbird's answer to a request passed on: once it ends, the next one may start.
        if case .end = unwrapOutboundIn(data), case .passing(let requestEnded, false) = state {
            context.write(data, promise: promise)
            if requestEnded {
                state = .idle
                // Replayed after this write returns, not from inside it.
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.execute {
                    let (handler, context) = bound.value
                    if case .idle = handler.state { handler.drain(context: context, inReadCycle: false) }
                }
            } else {
                state = .passing(requestEnded: false, answerEnded: true)
            }
            return
        }
        context.write(data, promise: promise)
    }

    func read(context: ChannelHandlerContext) {
        // Nothing more is read while a webhook is being answered or requests wait here: a
        // pipelining client cannot queue up more than one read's worth.
        if isAnswering || !queued.isEmpty { readHeld = true; return }
        context.read()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if isAnswering, closeHeld == nil {
            closeHeld = (mode, promise)
            return
        }
        context.close(mode: mode, promise: promise)
    }
}

/// The connection task's side of `WebhookFastPath`: it runs each webhook through its channel,
/// one at a time, and gives the answer back to the handler on the event loop.
final class WebhookFastPathSession: Sendable {
    private let jobs: AsyncStream<WebhookFastPath.Job>
    private let continuation: AsyncStream<WebhookFastPath.Job>.Continuation
    private let handler: NIOLoopBound<WebhookFastPath>
    private let context: NIOLoopBound<ChannelHandlerContext>

    /// Adds the handler to the pipeline, before Hummingbird's codec (on the event loop).
    init(runtime: Runtime, channel: any Channel) throws {
        let (jobs, continuation) = AsyncStream.makeStream(of: WebhookFastPath.Job.self)
        let handler = WebhookFastPath(runtime: runtime, jobs: continuation)
        try channel.pipeline.syncOperations.addHandler(handler)
        let context = try channel.pipeline.syncOperations.context(handler: handler)
        self.jobs = jobs
        self.continuation = continuation
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        self.context = NIOLoopBound(context, eventLoop: channel.eventLoop)
    }

    /// Answers webhooks until `finish`, then returns once the one under way is answered.
    func serve() async {
        for await job in jobs {
            let response = await job.entry.adapter.handleWebhook(job.request, context: job.entry.context)
            let loop = context.eventLoop
            if loop.inEventLoop {
                handler.value.answer(response, keepAlive: job.keepAlive, context: context.value)
            } else {
                let (handler, context) = (self.handler, self.context)
                loop.execute { handler.value.answer(response, keepAlive: job.keepAlive, context: context.value) }
            }
        }
    }

    /// No more webhooks are taken (the connection is ending).
    func finish() { continuation.finish() }
}

extension HTTPHeaders {
    /// The fields as `WebhookRequest` has them: names lower-cased, repeated fields joined with
    /// ", " (RFC 9110), so that every X-Forwarded-For hop and every Origin given counts.
    var joinedByName: [String: String] {
        var joined: [String: String] = [:]
        for (name, value) in self {
            let key = name.lowercased()
            joined[key] = joined[key].map { $0 + ", " + value } ?? value
        }
        return joined
    }
}

/// The `Date` header's value (RFC 9110 IMF-fixdate), made at most once a second.
struct HTTPDate {
    private var second = -1
    private var value = ""
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    mutating func now() -> String {
        var t = time(nil)
        if Int(t) == second { return value }
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        value = "\(Self.days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(Self.months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
        second = Int(t)
        return value
    }
}
