import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
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
    /// Lets go of connections; called once the sink's worker has stopped.
    func close() async
}

extension EventSink {
    public func close() async {}
}

/// CloudEvents structured mode over HTTP(S) or HTTP over a Unix socket (`http+unix://`), one
/// event per request, signed per Standard Webhooks.
public struct HTTPSink: EventSink {
    public let name: String
    public let url: String
    public let signer: WebhookSigner?
    public let timeout: Duration
    let client: SinkHTTPClient
    /// The headers every request carries, built once.
    let fixedHeaders: HTTPHeaders

    /// - Parameter maxConnections: connections to the receiver at once (the worker's
    ///   `max_in_flight`, so that many requests can really be in flight).
    public init(name: String, url: String, signer: WebhookSigner?, headers: [(String, String)] = [], timeout: Duration = .seconds(15),
                maxConnections: Int = 64, tlsConfiguration: TLSConfiguration? = nil) {
        self.name = name; self.url = url; self.signer = signer; self.timeout = timeout
        client = SinkHTTPClient(url: url, maxConnections: maxConnections, tlsConfiguration: tlsConfiguration)
        var fixed = HTTPHeaders()
        fixed.add(name: "content-type", value: "application/cloudevents+json; charset=utf-8")
        fixed.add(name: "user-agent", value: "switchboard/\(SwitchboardVersion.current)")
        // A configured Content-Type, User-Agent or Host replaces the daemon's.
        for (k, v) in headers { fixed.replaceOrAdd(name: k, value: v) }
        fixedHeaders = fixed
    }

    public func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
        var headers = fixedHeaders
        let ts = Int64(Date().timeIntervalSince1970)
        headers.add(name: "webhook-id", value: eventID)
        headers.add(name: "webhook-timestamp", value: String(ts))
        if let signer { headers.add(name: "webhook-signature", value: signer.signature(id: eventID, timestamp: ts, body: body)) }
        do {
            let head = try await client.post(headers: headers, body: ByteBuffer(bytes: body), timeout: timeout)
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

    public func close() async { client.shutdown() }

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
