import ArgumentParser
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An HTTP/1.1 keep-alive load generator on raw SwiftNIO (cheap per request, so most of the
/// shared CPU goes to the server under test).
///
/// Each connection sends one request at a time (no pipelining). Every body is unique —
/// `{"id":"b-<tag>.<conn>.<n>-<send ns>","from":{"id":"bench-user-<u>","name":…},"text":…}` —
/// and carries a valid `X-Switchboard-Signature` (HMAC-SHA256 of the body), computed just
/// before the write, so the send time in the id is the moment the request leaves.
///
/// Without `--rate` every connection sends its next request as soon as the previous answer
/// arrives (closed loop, maximum throughput). With `--rate R` the connections share a fixed
/// schedule of R requests/s (each connection every C/R s); a connection that is still waiting
/// when its next slot comes sends as soon as it is free, and that delay is reported as
/// "latency from schedule" (so a slow server cannot hide its stalls by slowing the generator).
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Post signed, unique webhook bodies over keep-alive connections and report throughput and latency.")

    @Option(help: "Target URL, e.g. http://127.0.0.1:8080/webhooks/bench.") var url: String
    @Option(help: "The webhook channel secret (HMAC-SHA256 key).") var secret: String = "bench-secret-not-checked"
    @Option(help: "Concurrent keep-alive connections.") var connections: Int = 32
    @Option(help: "Measured duration in seconds (after the warm-up).") var duration: Double = 10
    @Option(help: "Fixed total rate in requests/s (default: as fast as the server answers).") var rate: Double?
    @Option(help: "Simulated customers (distinct from.id values, hence conversations).") var users: Int = 1000
    @Option(help: "Warm-up seconds before measuring (requests are sent but not counted in the measured figures).") var warmup: Double = 1
    @Option(help: "Event-loop threads for the generator.") var threads: Int = 1
    @Option(help: "Write each measured request's due time (ms from the first) and its latency from schedule (ms), a line each, to this file: for finding when stalls happen.") var trace: String?
    @Option(help: "Seconds to wait for outstanding answers after the end before counting them as timeouts.") var grace: Double = 10
    @Option(help: "Body shape: webhook (Switchboard's generic webhook channel, X-Switchboard-Signature) or whatsapp (a WhatsApp Cloud API messages notification, X-Hub-Signature-256 with --secret as the app secret).")
    var format: BodyFormat = .webhook
    @Option(help: "The WhatsApp phone_number_id the notifications are addressed to (--format whatsapp).") var phoneNumberID: String = "100000000000001"
    @Option(help: "Message text in every body.") var text: String = "Hello! I ordered a blue kettle last week (order 48213) and it has not arrived yet. Could you check the delivery status, please?"

    func validate() throws {
        guard connections >= 1 else { throw ValidationError("--connections must be at least 1") }
        guard duration > 0 else { throw ValidationError("--duration must be positive") }
        if let rate, rate <= 0 { throw ValidationError("--rate must be positive") }
        guard users >= 1 else { throw ValidationError("--users must be at least 1") }
    }

    func run() async throws {
        guard let u = URL(string: url), u.scheme == "http", let host = u.host else {
            throw ValidationError("--url must be http://host:port/path")
        }
        let port = u.port ?? 80
        let path = u.path.isEmpty ? "/" : u.path + (u.query.map { "?" + $0 } ?? "")
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let textJSON = String(decoding: try JSONEncoder().encode(text), as: UTF8.self)

        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))

        let shape = RequestShape(host: host, port: port, path: path, key: Array(secret.utf8), tag: tag, textJSON: textJSON,
                                 users: users, connections: connections, format: format, phoneNumberID: phoneNumberID)
        // Connect everything first, then start all connections on one shared schedule.
        var channels: [any Channel] = []
        var results: [EventLoopFuture<ConnectionResult>] = []
        for i in 0..<connections {
            let promise = group.next().makePromise(of: ConnectionResult.self)
            let bootstrap = ClientBootstrap(group: promise.futureResult.eventLoop)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(LoadConnectionHandler(index: i, shape: shape, done: promise))
                    }
                }
            do {
                channels.append(try await bootstrap.connect(host: host, port: port).get())
                results.append(promise.futureResult)
            } catch {
                promise.fail(error)
                for c in channels { try? await c.close() }
                try? await group.shutdownGracefully()
                throw ValidationError("cannot connect to \(host):\(port): \(error)")
            }
        }

        let start = monotonicNanos() + 20_000_000
        let measureFrom = start + UInt64(max(0, warmup) * 1e9)
        let end = measureFrom + UInt64(duration * 1e9)
        let intervalNs: UInt64? = rate.map { UInt64(Double(connections) / $0 * 1e9) }
        for (i, c) in channels.enumerated() {
            // Stagger the connections' slots evenly over one interval.
            let offset = intervalNs.map { $0 * UInt64(i) / UInt64(connections) } ?? 0
            c.pipeline.fireUserInboundEventTriggered(StartSignal(start: start + offset, measureFrom: measureFrom, end: end, intervalNs: intervalNs))
        }

        // Wait for the run, then for stragglers (at most `grace` seconds); then close whatever
        // is still waiting, which counts those requests as timeouts.
        let finished = FinishedCount()
        for f in results { f.whenComplete { _ in finished.increment() } }
        let deadline = end + UInt64(grace * 1e9)
        while finished.value < results.count && monotonicNanos() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for c in channels { try? await c.close() }
        var total = ConnectionResult()
        for f in results {
            if let r = try? await f.get() { total.merge(r) } else { total.errors += 1 }
        }
        try? await group.shutdownGracefully()
        report(total, measuredSeconds: duration, rateMode: rate != nil)
        if let trace { writeTrace(total, to: trace) }
    }

    func writeTrace(_ r: ConnectionResult, to path: String) {
        let rows = zip(r.intendedTimes, r.scheduleLatencies).sorted { $0.0 < $1.0 }
        guard let first = rows.first?.0 else { return }
        var text = "# first_monotonic_ns \(first)\n"
        for (at, latency) in rows { text += "\(fmt(Double(at - first) / 1e6, 3)) \(fmt(Double(latency) / 1e6, 3))\n" }
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
    }

    /// User + system CPU this process has used, in µs.
    static func ownCPUMicroseconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func us(_ t: timeval) -> Double { Double(t.tv_sec) * 1e6 + Double(t.tv_usec) }
        return us(usage.ru_utime) + us(usage.ru_stime)
    }

    func report(_ r: ConnectionResult, measuredSeconds: Double, rateMode: Bool) {
        let service = LatencySummary(nanos: r.latencies)
        let scheduled = LatencySummary(nanos: r.scheduleLatencies)
        let rps = Double(r.measured) / measuredSeconds
        let okRps = Double(r.measuredOK) / measuredSeconds
        let committedRps = Double(r.measuredCommitted) / measuredSeconds
        let statuses = r.statuses.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        say("load: \(url)  \(connections) connections, \(rate.map { "\(Int($0)) req/s fixed rate" } ?? "max rate"), \(fmt(measuredSeconds, 1)) s measured after \(fmt(warmup, 1)) s warm-up, \(users) users")
        say("  requests   \(r.measured) (\(fmt(rps, 1))/s)   200: \(r.measuredOK) (\(fmt(okRps, 1))/s)   committed: \(r.measuredCommitted) (\(fmt(committedRps, 1))/s)")
        say("  statuses   \(statuses.isEmpty ? "-" : statuses)   errors \(r.errors)   timeouts \(r.timeouts)")
        say("  latency    p50 \(fmt(service.p50, 3)) ms  p90 \(fmt(service.p90, 3)) ms  p99 \(fmt(service.p99, 3)) ms  max \(fmt(service.max, 3)) ms")
        if rateMode {
            say("  from schedule p50 \(fmt(scheduled.p50, 3)) ms  p99 \(fmt(scheduled.p99, 3)) ms  max \(fmt(scheduled.max, 3)) ms  (late sends > 1 ms: \(r.late))")
        }
        say("  whole run (incl. warm-up): sent \(r.sentTotal), committed \(r.committedTotal)")
        var kv = [
            "requests=\(r.measured)", "rps=\(fmt(rps, 1))", "ok=\(r.measuredOK)", "ok_rps=\(fmt(okRps, 1))",
            "committed=\(r.measuredCommitted)", "committed_rps=\(fmt(committedRps, 1))",
            "errors=\(r.errors)", "timeouts=\(r.timeouts)", "late=\(r.late)",
            "p50_ms=\(fmt(service.p50, 3))", "p90_ms=\(fmt(service.p90, 3))", "p99_ms=\(fmt(service.p99, 3))", "max_ms=\(fmt(service.max, 3))",
            "sched_p50_ms=\(fmt(scheduled.p50, 3))", "sched_p99_ms=\(fmt(scheduled.p99, 3))", "sched_max_ms=\(fmt(scheduled.max, 3))",
            "sent_total=\(r.sentTotal)", "committed_total=\(r.committedTotal)",
            // The generator's own CPU per request sent (warm-up included): it shares the
            // machine's cores with the server under test, so this is what the server can't have.
            "self_cpu_us=\(fmt(Self.ownCPUMicroseconds() / Double(max(r.sentTotal, 1)), 1))",
        ]
        for (code, n) in r.statuses.sorted(by: { $0.key < $1.key }) { kv.append("status_\(code)=\(n)") }
        say("RESULT " + kv.joined(separator: " "))
    }
}

final class FinishedCount: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// What every connection needs to build requests. Immutable.
struct RequestShape: Sendable {
    var host: String
    var port: Int
    var path: String
    var key: [UInt8]
    var tag: String
    var textJSON: String
    var users: Int
    var connections: Int
    var format: BodyFormat
    var phoneNumberID: String
}

enum BodyFormat: String, ExpressibleByArgument, Sendable {
    case webhook, whatsapp
}

struct StartSignal: Sendable {
    var start: UInt64
    var measureFrom: UInt64
    var end: UInt64
    var intervalNs: UInt64?
}

/// One connection's tally; merged at the end.
struct ConnectionResult: Sendable {
    var latencies: [UInt64] = []
    var scheduleLatencies: [UInt64] = []
    /// When each measured request was due (beside `scheduleLatencies`), for `--trace`.
    var intendedTimes: [UInt64] = []
    var statuses: [UInt: Int] = [:]
    /// Answered requests sent inside the measured window.
    var measured = 0
    var measuredOK = 0
    var measuredCommitted = 0
    /// Everything, warm-up included (to compare with what the helpdesk receives).
    var sentTotal = 0
    var committedTotal = 0
    var errors = 0
    var timeouts = 0
    var late = 0

    mutating func merge(_ o: ConnectionResult) {
        latencies += o.latencies; scheduleLatencies += o.scheduleLatencies; intendedTimes += o.intendedTimes
        for (k, v) in o.statuses { statuses[k, default: 0] += v }
        measured += o.measured; measuredOK += o.measuredOK; measuredCommitted += o.measuredCommitted
        sentTotal += o.sentTotal; committedTotal += o.committedTotal
        errors += o.errors; timeouts += o.timeouts; late += o.late
    }
}

/// Drives one keep-alive connection. Lives on its channel's event loop only.
final class LoadConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let index: Int
    let shape: RequestShape
    let key: SymmetricKey
    let done: EventLoopPromise<ConnectionResult>
    var result = ConnectionResult()
    var signal: StartSignal?
    var context: ChannelHandlerContext?

    var counter: UInt64 = 0
    var inFlight = false
    var sentAt: UInt64 = 0
    var intendedAt: UInt64 = 0
    var nextDue: UInt64 = 0
    var status: UInt = 0
    var committed = false
    var finished = false
    var timerArmed = false

    static let committedMarker = Array(#""committed""#.utf8)
    static let contentType = "application/json"

    init(index: Int, shape: RequestShape, done: EventLoopPromise<ConnectionResult>) {
        self.index = index; self.shape = shape; self.done = done
        self.key = SymmetricKey(data: shape.key)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let s = event as? StartSignal else { context.fireUserInboundEventTriggered(event); return }
        signal = s
        nextDue = s.start
        arm()
    }

    /// Sends now if the next slot is due (or in closed-loop mode), else sets a timer for it.
    private func arm() {
        guard let s = signal, let context, !inFlight, !finished else { return }
        let now = monotonicNanos()
        if now >= s.end { finish(); return }
        if nextDue > now {
            guard !timerArmed else { return }
            timerArmed = true
            context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(nextDue - now))) {
                self.timerArmed = false
                self.arm()
            }
            return
        }
        send(context: context, now: now)
    }

    private func send(context: ChannelHandlerContext, now: UInt64) {
        guard let s = signal else { return }
        counter += 1
        let user = (UInt64(index) &+ counter &* UInt64(shape.connections)) % UInt64(shape.users)
        intendedAt = s.intervalNs == nil ? now : nextDue
        if let interval = s.intervalNs {
            if now - nextDue > 1_000_000 { result.late += 1 }
            nextDue += interval
        }
        sentAt = monotonicNanos()
        let unique = "b-\(shape.tag).\(index).\(counter)-\(sentAt)"
        var body: String
        switch shape.format {
        case .webhook:
            body = "{\"id\":\"\(unique)\",\"from\":{\"id\":\"bench-user-\(user)\",\"name\":\"Bench User \(user)\"},\"text\":"
            body += shape.textJSON
            body += "}"
        case .whatsapp:
            // A messages notification as the Cloud API sends it (one entry, one change, one message).
            let waID = 15_550_000_000 + Int(user)
            body = "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"200000000000002\",\"changes\":[{\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{\"display_phone_number\":\"15550009999\",\"phone_number_id\":\"\(shape.phoneNumberID)\"},\"contacts\":[{\"profile\":{\"name\":\"Bench User \(user)\"},\"wa_id\":\"\(waID)\",\"user_id\":\"US.\(9_000_000_000 + Int(user))\"}],\"messages\":[{\"from\":\"\(waID)\",\"from_user_id\":\"US.\(9_000_000_000 + Int(user))\",\"id\":\"wamid.\(unique)\",\"timestamp\":\"\(Int(Date().timeIntervalSince1970))\",\"text\":{\"body\":"
            body += shape.textJSON
            body += "},\"type\":\"text\"}]},\"field\":\"messages\"}]}]}"
        }
        let bytes = Array(body.utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: bytes, using: key)
        var headers = HTTPHeaders()
        headers.reserveCapacity(4)
        headers.add(name: "host", value: "\(shape.host):\(shape.port)")
        headers.add(name: "content-type", value: Self.contentType)
        headers.add(name: "content-length", value: String(bytes.count))
        headers.add(name: shape.format == .whatsapp ? "x-hub-signature-256" : "x-switchboard-signature", value: "sha256=" + hexString(mac))
        inFlight = true
        status = 0
        committed = false
        result.sentTotal += 1
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: shape.path, headers: headers))), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status.code
        case .body(let buffer):
            if !committed, buffer.readableBytesView.firstRange(of: Self.committedMarker) != nil { committed = true }
        case .end:
            let now = monotonicNanos()
            guard inFlight, let s = signal else { return }
            inFlight = false
            result.statuses[status, default: 0] += 1
            // A WhatsApp answer has no body to look at: Meta only reads the status, and the
            // adapter answers 200 only after the commit.
            if shape.format == .whatsapp { committed = true }
            if committed && status == 200 { result.committedTotal += 1 }
            if sentAt >= s.measureFrom && sentAt < s.end {
                result.measured += 1
                if status == 200 { result.measuredOK += 1 }
                if committed && status == 200 { result.measuredCommitted += 1 }
                result.latencies.append(now - sentAt)
                result.scheduleLatencies.append(now - min(intendedAt, sentAt))
                result.intendedTimes.append(min(intendedAt, sentAt))
            }
            arm()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        result.errors += 1
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if inFlight {
            // Closed while waiting: by us after the grace period (a timeout), or by the server.
            if let s = signal, monotonicNanos() >= s.end { result.timeouts += 1 } else { result.errors += 1 }
            inFlight = false
        }
        finish()
        context.fireChannelInactive()
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        done.succeed(result)
    }
}
