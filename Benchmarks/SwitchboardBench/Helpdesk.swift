import ArgumentParser
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SwitchboardCore
import Synchronization

/// A loopback helpdesk: receives the daemon's CloudEvent POSTs and measures them.
///
/// For every event it records the arrival time (CLOCK_MONOTONIC, taken once the whole body is
/// read) and, for `switchboard.message.received` events whose `data.external_id` was made by
/// `load` (`b-<tag>.<conn>.<n>-<send ns>`), the end-to-end latency arrival − send. It checks
/// that each conversation's (`subject`'s) CloudEvent `sequence` strictly increases, and, when
/// given the sink's `whsec_` secret, verifies every Standard Webhooks signature.
///
/// `GET /stats` answers JSON (or `key=value` lines with `?format=kv`); `POST /reset` clears.
struct Helpdesk: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A loopback helpdesk receiver that measures end-to-end latency and ordering.")

    @Option(help: "TCP port on 127.0.0.1 (0 = any free port; the bound port is printed).") var port: Int = 0
    @Option(help: "Listen on this Unix socket instead of TCP.") var socket: String?
    @Option(help: "The sink's whsec_ secret: verify each webhook-signature (bad ones are counted and answered 401).") var secret: String?
    @Option(help: "Answer this HTTP status to every event (e.g. 503 to test retries).") var status: Int = 204

    func run() async throws {
        var key: [UInt8]? = nil
        if let secret {
            guard secret.hasPrefix("whsec_"), let raw = Data(base64Encoded: String(secret.dropFirst(6))) else {
                throw ValidationError("--secret must be whsec_<base64>")
            }
            key = Array(raw)
        }
        let receiver = HelpdeskReceiver(recorder: HelpdeskRecorder(), key: key, status: HTTPResponseStatus(statusCode: status))
        // Plain NIO, each request handled on its connection's event loop: this process shares
        // the CPUs with the daemon it measures, so it should take as little of them as it can
        // while still checking every signature and sequence.
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HelpdeskHandler(receiver: receiver))
                }
            }
        let server: any Channel
        if let socket {
            server = try await bootstrap.bind(unixDomainSocketPath: socket, cleanupExistingSocketFile: true).get()
            say("ready unix:\(socket)")
        } else {
            server = try await bootstrap.childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: "127.0.0.1", port: port).get()
            say("ready 127.0.0.1:\(server.localAddress?.port ?? port)")
        }
        try await server.closeFuture.get()
    }

    /// Standard Webhooks: `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`, any of several
    /// space-separated signatures may match.
    static func verify(body: ByteBuffer, headers: HTTPHeaders, key: [UInt8]) -> Bool {
        guard let id = headers.first(name: "webhook-id"), let ts = headers.first(name: "webhook-timestamp"),
              let sig = headers.first(name: "webhook-signature") else { return false }
        var mac = HMAC<SHA256>(key: SymmetricKey(data: key))
        mac.update(data: Array("\(id).\(ts).".utf8))
        body.withUnsafeReadableBytes { mac.update(data: $0) }
        let expected = Data(mac.finalize()).base64EncodedString()
        return sig.split(separator: " ").contains { $0.hasPrefix("v1,") && $0.dropFirst(3) == expected }
    }
}

/// What every connection's handler shares.
struct HelpdeskReceiver: Sendable {
    let recorder: HelpdeskRecorder
    let key: [UInt8]?
    let status: HTTPResponseStatus
}

/// One connection: collects each request, then answers it. The control routes are `GET /stats`
/// (JSON, or `key=value` lines with `?format=kv`), `POST /reset` and `GET /healthz`; every other
/// POST is an event.
final class HelpdeskHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let receiver: HelpdeskReceiver
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(receiver: HelpdeskReceiver) { self.receiver = receiver }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
        case .body(var part):
            body.writeBuffer(&part)
        case .end:
            guard let head else { return }
            self.head = nil
            let arrival = monotonicNanos()
            let (status, contentType, answer) = route(head, arrival: arrival)
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: String(answer.readableBytes))
            if let contentType { headers.add(name: "content-type", value: contentType) }
            if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            if answer.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(answer))), promise: nil) }
            let keepAlive = head.isKeepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
        }
    }

    private func route(_ head: HTTPRequestHead, arrival: UInt64) -> (HTTPResponseStatus, String?, ByteBuffer) {
        let path = head.uri.prefix { $0 != "?" }
        switch (head.method, path) {
        case (.GET, "/stats"):
            let stats = receiver.recorder.snapshot()
            if head.uri.contains("format=kv") { return (.ok, "text/plain", ByteBuffer(string: stats.keyValues())) }
            return (.ok, "application/json", ByteBuffer(bytes: (try? stats.json()) ?? Data()))
        case (.GET, "/healthz"):
            return (.ok, "text/plain", ByteBuffer(string: "ok\n"))
        case (.POST, "/reset"):
            receiver.recorder.reset()
            return (.noContent, nil, ByteBuffer())
        case (.POST, _):
            if let key = receiver.key, !Helpdesk.verify(body: body, headers: head.headers, key: key) {
                receiver.recorder.badSignature()
                return (.unauthorized, nil, ByteBuffer())
            }
            receiver.recorder.record(body: body, arrival: arrival)
            return (receiver.status, nil, ByteBuffer())
        default:
            return (.notFound, nil, ByteBuffer())
        }
    }
}

/// The fields of a CloudEvent the receiver looks at.
private struct ReceivedEvent {
    var id: String
    var type: String
    var subject: String?
    var sequence: String?
    var externalID: String?

    init?(_ body: ByteBuffer) {
        guard let v = body.withUnsafeReadableBytes({ try? JSONParser.parse($0) }),
              let id = v["id"]?.stringValue, let type = v["type"]?.stringValue else { return nil }
        self.id = id
        self.type = type
        subject = v["subject"]?.stringValue
        sequence = v["sequence"]?.stringValue
        externalID = v["data"]?["external_id"]?.stringValue
    }
}

struct HelpdeskStats: Encodable {
    struct Latency: Encodable {
        var count: Int, p50_ms: Double, p90_ms: Double, p99_ms: Double, p999_ms: Double, max_ms: Double, mean_ms: Double
    }
    /// Every POST that parsed as a CloudEvent (duplicates included).
    var events: Int
    /// `switchboard.message.received` events carrying a load-generator external id.
    var bench_messages: Int
    /// Distinct load-generator external ids (compare with the generator's committed count).
    var bench_unique: Int
    /// Events whose CloudEvent id was seen before (at-least-once redeliveries).
    var duplicates: Int
    /// Events whose `sequence` was not greater than the last one seen for the same subject.
    var ordering_violations: Int
    /// Events whose `sequence` skipped numbers for its subject (informational; a filtered
    /// sink legitimately skips).
    var sequence_gaps: Int
    var subjects: Int
    var bad_signatures: Int
    var unparsable: Int
    var by_type: [String: Int]
    var latency: Latency
    /// Monotonic ns of the first and last arrival (0 if none).
    var first_arrival_ns: UInt64
    var last_arrival_ns: UInt64

    func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try e.encode(self)
    }

    func keyValues() -> String {
        var lines = [
            "events=\(events)", "bench_messages=\(bench_messages)", "bench_unique=\(bench_unique)", "duplicates=\(duplicates)",
            "ordering_violations=\(ordering_violations)", "sequence_gaps=\(sequence_gaps)", "subjects=\(subjects)",
            "bad_signatures=\(bad_signatures)", "unparsable=\(unparsable)",
            "latency_count=\(latency.count)", "p50_ms=\(fmt(latency.p50_ms, 3))", "p90_ms=\(fmt(latency.p90_ms, 3))",
            "p99_ms=\(fmt(latency.p99_ms, 3))", "p999_ms=\(fmt(latency.p999_ms, 3))", "max_ms=\(fmt(latency.max_ms, 3))",
            "mean_ms=\(fmt(latency.mean_ms, 3))", "first_arrival_ns=\(first_arrival_ns)", "last_arrival_ns=\(last_arrival_ns)",
        ]
        for (t, n) in by_type.sorted(by: { $0.key < $1.key }) {
            lines.append("type_\(t.replacingOccurrences(of: "switchboard.", with: "").replacingOccurrences(of: ".", with: "_"))=\(n)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Shared by the request handlers (which run on several event loops), hence the lock. The
/// work under the lock is a few dictionary operations; JSON parsing happens outside it.
final class HelpdeskRecorder: Sendable {
    private struct State {
        var events = 0
        var latencies: [UInt64] = []
        var benchIDs = Set<String>()
        var benchMessages = 0
        var eventIDs = Set<String>()
        var duplicates = 0
        var violations = 0
        var gaps = 0
        var lastSequence: [String: UInt64] = [:]
        var badSignatures = 0
        var unparsable = 0
        var byType: [String: Int] = [:]
        var firstArrival: UInt64 = 0
        var lastArrival: UInt64 = 0
    }
    private let state = Mutex(State())

    func badSignature() { state.withLock { $0.badSignatures += 1 } }
    func reset() { state.withLock { $0 = State() } }

    func record(body: ByteBuffer, arrival: UInt64) {
        guard let event = ReceivedEvent(body) else {
            state.withLock { $0.unparsable += 1 }
            return
        }
        // `b-<tag>.<conn>.<n>-<send ns>` (`wamid.b-…` in WhatsApp notifications, and
        // `…@bench.invalid` as an email Message-ID): the send time is after the last '-'.
        var sendNs: UInt64? = nil
        var benchID: String? = nil
        if event.type == "switchboard.message.received", let full = event.externalID,
           case let ext = String(full.prefix { $0 != "@" }),
           ext.hasPrefix("b-") || ext.hasPrefix("wamid.b-"),
           let dash = ext.lastIndex(of: "-"), let ns = UInt64(ext[ext.index(after: dash)...]) {
            sendNs = ns
            benchID = ext
        }
        let sequence = event.sequence.flatMap { UInt64($0) }
        state.withLock { s in
            s.events += 1
            if s.firstArrival == 0 { s.firstArrival = arrival }
            s.lastArrival = arrival
            s.byType[event.type, default: 0] += 1
            guard s.eventIDs.insert(event.id).inserted else {
                // A redelivery: at-least-once, legitimate; not an ordering question.
                s.duplicates += 1
                return
            }
            if let subject = event.subject, let sequence {
                if let last = s.lastSequence[subject] {
                    if sequence <= last { s.violations += 1 }
                    else {
                        if sequence != last + 1 { s.gaps += 1 }
                        s.lastSequence[subject] = sequence
                    }
                } else {
                    // A fresh database numbers each conversation's events from 1.
                    if sequence != 1 { s.gaps += 1 }
                    s.lastSequence[subject] = sequence
                }
            }
            if let benchID, let sendNs {
                s.benchMessages += 1
                if s.benchIDs.insert(benchID).inserted {
                    s.latencies.append(arrival >= sendNs ? arrival - sendNs : 0)
                }
            }
        }
    }

    func snapshot() -> HelpdeskStats {
        let s = state.withLock { $0 }
        let l = LatencySummary(nanos: s.latencies)
        return HelpdeskStats(
            events: s.events, bench_messages: s.benchMessages, bench_unique: s.benchIDs.count, duplicates: s.duplicates,
            ordering_violations: s.violations, sequence_gaps: s.gaps, subjects: s.lastSequence.count,
            bad_signatures: s.badSignatures, unparsable: s.unparsable, by_type: s.byType,
            latency: .init(count: l.count, p50_ms: l.p50, p90_ms: l.p90, p99_ms: l.p99, p999_ms: l.p999, max_ms: l.max, mean_ms: l.mean),
            first_arrival_ns: s.firstArrival, last_arrival_ns: s.lastArrival)
    }
}
