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

    public init(name: String, url: String, signer: WebhookSigner?, headers: [(String, String)] = [], timeout: Duration = .seconds(15), client: HTTPClient) {
        self.name = name; self.url = url; self.signer = signer; self.headers = headers; self.timeout = timeout; self.client = client
    }

    public func deliver(eventID: String, body: Data) async -> DeliveryOutcome {
        var req = HTTPClientRequest(url: url)
        req.method = .POST
        req.headers.add(name: "content-type", value: "application/cloudevents+json; charset=utf-8")
        req.headers.add(name: "user-agent", value: "switchboard/\(SwitchboardVersion.current)")
        let ts = Int64(Date().timeIntervalSince1970)
        req.headers.add(name: "webhook-id", value: eventID)
        req.headers.add(name: "webhook-timestamp", value: String(ts))
        if let signer { req.headers.add(name: "webhook-signature", value: signer.signature(id: eventID, timestamp: ts, body: body)) }
        for (k, v) in headers { req.headers.add(name: k, value: v) }
        req.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(req, timeout: .init(timeout))
            // Read (a bounded amount of) the body so the connection can be reused.
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let code = Int(response.status.code)
            switch code {
            case 200..<300: return .delivered(status: code)
            case 410: return .disable(reason: "the receiver answered 410 Gone")
            default:
                let after = response.headers.first(name: "retry-after").flatMap(Self.parseRetryAfter)
                return .retry(error: "HTTP \(code)", retryAfter: after)
            }
        } catch {
            return .retry(error: Self.describe(error), retryAfter: nil)
        }
    }

    /// `Retry-After` is either delta-seconds or an HTTP date.
    static func parseRetryAfter(_ v: String) -> Double? {
        if let s = Double(v.trimmingCharacters(in: .whitespaces)) { return max(0, s) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: v).map { max(0, $0.timeIntervalSinceNow) }
    }

    static func describe(_ error: any Error) -> String {
        let s = String(describing: error)
        return s.count > 300 ? String(s.prefix(300)) : s
    }
}

/// Prints each event as one readable line (the demo's "helpdesk"). Goes through the same
/// outbox as any sink, so what it prints is exactly what a helpdesk would receive.
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
