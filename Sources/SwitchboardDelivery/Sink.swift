import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardCore

/// What one delivery attempt came to.
public enum DeliveryOutcome: Sendable, Equatable {
    case delivered(status: Int)
    /// Try again later; `retryAfter` seconds when the receiver said (429/503 `Retry-After`).
    case retry(error: String, retryAfter: Double?)
    /// 410 Gone: the receiver asked us to stop; the sink is disabled until recovered.
    case disable(reason: String)
}

/// Where events go. Sinks are dumb pipes: ordering, retries and bookkeeping are the worker's.
public protocol EventSink: Sendable {
    var name: String { get }
    func deliver(eventID: String, body: Data) async -> DeliveryOutcome
}

/// CloudEvents structured mode over HTTP(S) or HTTP over a Unix socket (`http+unix://`), one
/// event per request, signed per Standard Webhooks.
public struct HTTPSink: EventSink {
    public let name: String
    public let url: String
    public let signer: WebhookSigner?
    public let headers: [(String, String)]
    public let timeout: Duration
    let client: HTTPClient

    /// `url` parsed once, not per delivery; nil when it does not parse (each delivery then fails
    /// as AsyncHTTPClient would have failed it).
    let parsedURL: URL?

    public init(name: String, url: String, signer: WebhookSigner?, headers: [(String, String)] = [], timeout: Duration = .seconds(15), client: HTTPClient) {
        self.name = name; self.url = url; self.signer = signer; self.headers = headers; self.timeout = timeout; self.client = client
        parsedURL = URL(string: url)
    }

    public func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
        var headers = HTTPHeaders()
        headers.reserveCapacity(5 + self.headers.count)
        headers.add(name: "content-type", value: "application/cloudevents+json; charset=utf-8")
        headers.add(name: "user-agent", value: "switchboard/\(SwitchboardVersion.current)")
        let ts = Int64(Date().timeIntervalSince1970)
        headers.add(name: "webhook-id", value: eventID)
        headers.add(name: "webhook-timestamp", value: String(ts))
        if let signer { headers.add(name: "webhook-signature", value: signer.signature(id: eventID, timestamp: ts, body: body)) }
        for (k, v) in self.headers { headers.add(name: k, value: v) }
        do {
            guard let parsedURL else { throw HTTPClientError.invalidURL }
            let request = try HTTPClient.Request(url: parsedURL, method: .POST, headers: headers, body: .bytes(body))
            // The delegate API, not `execute(HTTPClientRequest)`: the response is taken apart on
            // the event loop and the task resumes once, where the async API's response and body
            // stream resumed it several times per event.
            let head = try await client.execute(request: request, delegate: StatusOnly(), deadline: .now() + TimeAmount(timeout)).get()
            let code = Int(head.status.code)
            switch code {
            case 200..<300: return .delivered(status: code)
            case 410: return .disable(reason: "the receiver answered 410 Gone")
            case 300..<400:
                let to = head.headers.first(name: "location").map { " to \(Self.redactQuery($0))" } ?? ""
                return .retry(error: "HTTP \(code) redirect\(to), not followed: configure the final URL", retryAfter: nil)
            default:
                let after = head.headers.first(name: "retry-after").flatMap(Self.parseRetryAfter)
                return .retry(error: "HTTP \(code)", retryAfter: after)
            }
        } catch {
            return .retry(error: Self.describe(error), retryAfter: nil)
        }
    }

    /// Keeps the response's status and headers and reads the body only to discard it, so the
    /// connection can be reused: a receiver's answer body means nothing to delivery, and however
    /// long it is it costs no memory.
    final class StatusOnly: HTTPClientResponseDelegate, @unchecked Sendable {
        // Touched only on the request's event loop, one call after another.
        private var head: HTTPResponseHead?
        struct NoHead: Error, CustomStringConvertible { var description: String { "the receiver sent no response head" } }

        func didReceiveHead(task: HTTPClient.Task<HTTPResponseHead>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
            self.head = head
            return task.eventLoop.makeSucceededVoidFuture()
        }
        func didReceiveBodyPart(task: HTTPClient.Task<HTTPResponseHead>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
            task.eventLoop.makeSucceededVoidFuture()
        }
        func didFinishRequest(task: HTTPClient.Task<HTTPResponseHead>) throws -> HTTPResponseHead {
            guard let head else { throw NoHead() }
            return head
        }
    }

    /// `Retry-After` is either delta-seconds (digits only) or an HTTP date in any of the three
    /// forms RFC 9110 §5.6.7 has a recipient accept: IMF-fixdate, RFC 850 and asctime.
    static func parseRetryAfter(_ v: String) -> Double? {
        let t = v.trimmingCharacters(in: .whitespaces)
        if !t.isEmpty, t.utf8.allSatisfy({ (48...57).contains($0) }) { return Double(t) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            f.dateFormat = format
            // asctime pads a one-digit day with a space ("Nov  6").
            if let date = f.date(from: t.replacingOccurrences(of: "  ", with: " ")) { return max(0, date.timeIntervalSinceNow) }
        }
        return nil
    }

    /// A URL for a log line or error: without its query, which can carry a token.
    static func redactQuery(_ url: String) -> String {
        String(url.prefix { $0 != "?" }.prefix(200))
    }

    static func describe(_ error: any Error) -> String {
        let s = String(describing: error)
        return s.count > 300 ? String(s.prefix(300)) : s
    }
}

extension HTTPSink {
    /// The client HTTP sinks share: `HTTPClient.shared`'s settings, except that it never
    /// follows a redirect. Following a 301/302/303 turns the POST into a GET without the event
    /// (an auth proxy's login page would then answer 200 and the event count as delivered), and
    /// a 307/308 would send the signature and configured headers to another origin. A 3xx is a
    /// failed attempt, retried like a 503, and logged with its status.
    public static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()
}

/// Prints each event as one readable line (the demo's "helpdesk"). It is delivered from the
/// event log like any sink, so what it prints is exactly what a helpdesk would receive.
public struct ConsoleSink: EventSink {
    public let name: String
    public let write: @Sendable (String) -> Void
    public init(name: String, write: @escaping @Sendable (String) -> Void = { line in
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }) {
        self.name = name; self.write = write
    }

    public func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
        guard let event = try? JSON.decode(CloudEvent.self, from: body) else {
            write(String(decoding: body, as: UTF8.self))
            return .delivered(status: 200)
        }
        var summary = ""
        if let data = event.data {
            if let text = data["text_fallback"]?.stringValue { summary = text }
            else if let status = data["status"]?.stringValue { summary = "\(data["message_id"]?.stringValue ?? "") \(status)" }
            if let name = data["sender"]?["display_name"]?.stringValue { summary = "\(name): \(summary)" }
        }
        let subject = event.subject.map { " \($0)" } ?? ""
        write("\(event.time.rfc3339) \(event.type)\(subject) \(summary)".trimmingCharacters(in: .whitespaces))
        return .delivered(status: 200)
    }
}
