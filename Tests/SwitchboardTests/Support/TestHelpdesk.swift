import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
@testable import SwitchboardCore

func uniqueID(_ prefix: String) -> String { prefix + "-" + String(UUID().uuidString.prefix(6)).lowercased() }

/// A real helpdesk receiver on loopback (TCP or Unix socket) that records every delivery and
/// answers as the test scripts it: up, down (503), 429 with Retry-After, 410, or slow.
final class TestHelpdesk: Sendable {
    struct Delivery: Sendable {
        var headers: [String: String]
        var body: Data
        var at: ContinuousClock.Instant
        var event: CloudEvent? { try? JSON.decode(CloudEvent.self, from: body) }
    }
    enum Mode: Sendable {
        case up, upWithBody(Int), down, tooMany(retryAfter: Int), gone, hang
        /// 302 to `/login`, whose GET answers 200 (an auth proxy in front of the helpdesk).
        case redirectToLogin
        /// Hangs (30 s) on events whose body contains the text, takes the others.
        case hangOn(String)
        /// 503 for events whose body contains the text, takes the others.
        case downOn(String)
        /// Answers every request with this status (401: our signature refused).
        case refuse(Int)
    }

    private let state = Mutex<(deliveries: [Delivery], attempts: [ContinuousClock.Instant], mode: Mode, loginPageViews: Int)>(([], [], .up, 0))
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let url: String
    let socketPath: String?

    var deliveries: [Delivery] { state.withLock { $0.deliveries } }
    var events: [CloudEvent] { deliveries.compactMap(\.event) }
    var attempts: [ContinuousClock.Instant] { state.withLock { $0.attempts } }
    var loginPageViews: Int { state.withLock { $0.loginPageViews } }
    func setMode(_ m: Mode) { state.withLock { $0.mode = m } }

    /// `socketPath` nil: TCP on an ephemeral port.
    static func start(socketPath: String? = nil, path: String = "/hooks") async throws -> TestHelpdesk {
        let box = Mutex<TestHelpdesk?>(nil)
        let bound = AsyncStream<String>.makeStream()
        let router = Router()
        router.post(RouterPath(path)) { req, _ -> Response in
            let helpdesk = box.withLock { $0 }!
            var r = req
            let body = try await r.collectBody(upTo: 16 * 1024 * 1024)
            var mode = helpdesk.state.withLock { s -> Mode in s.attempts.append(.now); return s.mode }
            if case .hangOn(let marker) = mode {
                mode = String(decoding: body.readableBytesView, as: UTF8.self).contains(marker) ? .hang : .up
            }
            if case .downOn(let marker) = mode {
                mode = String(decoding: body.readableBytesView, as: UTF8.self).contains(marker) ? .down : .up
            }
            switch mode {
            case .up, .upWithBody, .hangOn, .downOn:
                var h: [String: String] = [:]
                // A repeated field is joined, as HTTP combines it: a doubled header shows.
                for f in req.headers { h[f.name.canonicalName] = h[f.name.canonicalName].map { $0 + ", " + f.value } ?? f.value }
                // HTTPTypes keeps Host as the request's authority, not among its fields.
                // (A second Host field stays among the fields: joined here, it shows.)
                if let authority = req.head.authority { h["host"] = h["host"].map { authority + ", " + $0 } ?? authority }
                helpdesk.state.withLock { $0.deliveries.append(Delivery(headers: h, body: Data(body.readableBytesView), at: .now)) }
                if case .upWithBody(let n) = mode {
                    return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: "x"), count: n)))
                }
                return Response(status: .noContent)
            case .down: return Response(status: .serviceUnavailable)
            case .tooMany(let after): return Response(status: .tooManyRequests, headers: [.retryAfter: String(after)])
            case .gone: return Response(status: .gone)
            case .refuse(let code): return Response(status: .init(code: code))
            case .redirectToLogin: return Response(status: .found, headers: [.location: "/login"])
            case .hang:
                try await Task.sleep(for: .seconds(30))
                return Response(status: .noContent)
            }
        }
        router.get("/login") { _, _ -> Response in
            box.withLock { $0 }!.state.withLock { $0.loginPageViews += 1 }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "<html>sign in</html>")))
        }
        let address: BindAddress = socketPath.map { .unixDomainSocket(path: $0) } ?? .hostname("127.0.0.1", port: 0)
        var logger = Logger(label: "helpdesk")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: address), onServerRunning: { ch in
            bound.continuation.yield(socketPath ?? "127.0.0.1:\(ch.localAddress!.port!)")
            bound.continuation.finish()
        }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task { try await group.run() }
        var where_ = ""
        for await a in bound.stream { where_ = a }
        let url: String
        if let socketPath {
            url = "http+unix://" + socketPath.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! + path
        } else {
            url = "http://\(where_)\(path)"
        }
        let h = TestHelpdesk(group: group, task: task, url: url, socketPath: socketPath)
        box.withLock { $0 = h }
        return h
    }

    private init(group: ServiceGroup, task: Task<Void, any Error>, url: String, socketPath: String?) {
        self.group = group; self.task = task; self.url = url; self.socketPath = socketPath
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// A fixed test secret in the Standard Webhooks form.
let testSecret = "whsec_" + Data((0..<32).map { UInt8($0) }).base64EncodedString()
