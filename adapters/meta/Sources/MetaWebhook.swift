import Crypto
import Foundation
import SwitchboardCore

/// Meta's webhook mechanics, the same for WhatsApp, Messenger and Instagram:
///
/// - `GET` verification handshake: `hub.mode=subscribe`, `hub.verify_token=<token typed in the
///   App Dashboard>`, `hub.challenge=<value>` → 200 with the challenge as plain text, else 403.
/// - Every `POST` is signed: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`.
///   The check runs on the exact bytes received — Meta escapes non-ASCII as `\uXXXX`, so any
///   re-encoding of the JSON changes the bytes and must fail.
public enum MetaWebhook {
    public static let signatureHeader = "x-hub-signature-256"

    /// The outcome of checking a `POST`: the parsed payload, or the answer to give Meta.
    public enum Verified: Sendable {
        case payload(JSONValue)
        case reject(WebhookResponse)
    }

    /// The `GET` handshake: `hub.mode == "subscribe"` and `hub.verify_token` equal to ours
    /// (constant-time) → 200 `text/plain` with `hub.challenge`; anything else → 403.
    public static func handshake(_ request: WebhookRequest, verifyToken: MetaSecret) -> WebhookResponse {
        guard request.query["hub.mode"] == "subscribe",
              let given = request.query["hub.verify_token"],
              constantTimeEqual(Array(given.utf8), Array(verifyToken.value.utf8)),
              let challenge = request.query["hub.challenge"]
        else { return .text(403, "Forbidden") }
        return .text(200, challenge)
    }

    /// `sha256=<hex>` over the raw body with the app secret, compared in constant time. The hex
    /// may be in either case; anything else (missing, other algorithm, wrong length) is invalid.
    public static func signatureIsValid(body: [UInt8], header: String?, appSecret: MetaSecret) -> Bool {
        guard let h = header?.trimmingSpacesAndTabs, h.utf8.count > 7,
              h.utf8.prefix(7).elementsEqual("sha256=".utf8, by: { (65...90).contains($0) ? $0 + 32 == $1 : $0 == $1 }) else { return false }
        guard let given = Hex.decode(h.dropFirst(7)) else { return false }
        return appSecret.keyedHMAC.isValid(given, for: body)
    }

    /// The header value Meta would send for `body` (for `switchboard simulate` and tests).
    public static func sign(_ body: [UInt8], appSecret: String) -> String {
        "sha256=" + Hex.encode(HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(appSecret.utf8))))
    }

    /// The common `POST` checks: a missing or wrong signature → 401, counted and logged through
    /// `context.signatureFailed(reason:)`, nothing stored; a body that is not a JSON object → 400.
    public static func verifyPost(_ request: WebhookRequest, appSecret: MetaSecret, context: any AdapterContext) -> Verified {
        guard let header = request.header(signatureHeader), !header.isEmpty else {
            context.signatureFailed(reason: "missing \(signatureHeader)")
            return .reject(.unauthorized)
        }
        guard signatureIsValid(body: request.body, header: header, appSecret: appSecret) else {
            context.signatureFailed(reason: "signature mismatch")
            return .reject(.unauthorized)
        }
        guard let root = try? JSONValue.parse(Data(request.body)), root.objectValue != nil else {
            return .reject(problem(400, "invalid_request", "the webhook body is not a JSON object"))
        }
        return .payload(root)
    }

    /// Routes a webhook request: `GET` → handshake, `POST` → signature + JSON checks, then
    /// `handle` with the payload; other methods → 405. `expectedObject` (e.g.
    /// `whatsapp_business_account`, `page`, `instagram`) is checked when given: another object
    /// is answered 200 and ignored (Meta keeps retrying anything else), with a log line.
    public static func route(_ request: WebhookRequest, verifyToken: MetaSecret, appSecret: MetaSecret, expectedObject: String?,
                             context: any AdapterContext, handle: (JSONValue) async -> WebhookResponse) async -> WebhookResponse {
        switch request.method {
        case "GET":
            return handshake(request, verifyToken: verifyToken)
        case "POST":
            switch verifyPost(request, appSecret: appSecret, context: context) {
            case .reject(let r): return r
            case .payload(let root):
                if let expectedObject, let object = root["object"]?.stringValue, object != expectedObject {
                    context.logger.warning("Meta webhook for another product ignored", metadata: [
                        "channel": "\(context.channel.id)", "object": "\(object)", "expected": "\(expectedObject)"])
                    return .ok
                }
                return await handle(root)
            }
        default:
            return .text(405, "GET or POST only")
        }
    }

    /// An `application/problem+json` answer.
    public static func problem(_ status: Int, _ code: String, _ detail: String) -> WebhookResponse {
        let body: JSONObject = ["type": "about:blank", "status": .int(Int64(status)), "code": .string(code), "detail": .string(detail)]
        return WebhookResponse(status: status, headers: ["content-type": "application/problem+json"],
                               body: Array((try? JSON.encode(body)) ?? Data()))
    }

    /// Emits a follow-up event (media stored, profile fetched) after the webhook's commit,
    /// retrying briefly if the store is busy. Returns whether it was stored (or was a duplicate).
    @discardableResult
    public static func emitLater(_ event: InboundEvent, context: any AdapterContext) async -> Bool {
        for attempt in 0..<5 {
            do { _ = try await context.emit(event); return true } catch {
                if attempt == 4 || Task.isCancelled {
                    context.logger.error("cannot store a follow-up event", metadata: ["channel": "\(context.channel.id)", "error": "\(error)"])
                    return false
                }
                try? await Task.sleep(for: .milliseconds(200 << attempt))
            }
        }
        return false
    }

    /// Meta's string or numeric Unix-seconds timestamps (WhatsApp) as a Timestamp.
    public static func seconds(_ v: JSONValue?) -> Timestamp? {
        guard let s = v?.intValue else { return nil }
        return Timestamp(milliseconds: s * 1000)
    }

    /// Meta's millisecond timestamps (Messenger, Instagram; test payloads send seconds as strings).
    public static func milliseconds(_ v: JSONValue?) -> Timestamp? {
        guard let n = v?.intValue else { return nil }
        return Timestamp(milliseconds: n < 100_000_000_000 ? n * 1000 : n)
    }
}

extension MetaWebhook {
    /// One webhook URL per Meta app: a payload the called channel verified may hold items for
    /// the app's other accounts (phone numbers, Pages). Each such account's items go to the
    /// channel `sibling` finds for it (same type, same app secret), which stores them in its own
    /// context; an account nobody is configured for is skipped with a warning. The first
    /// sibling that can't store answers for the whole POST (Meta retries it; what was stored is
    /// deduplicated).
    public static func handOn<Sibling>(_ accounts: [String], from channel: ChannelRef, context: any AdapterContext, kind: String,
                                       sibling: (String) -> (Sibling, any AdapterContext)?,
                                       ingest: (Sibling, any AdapterContext) async -> WebhookResponse) async -> WebhookResponse {
        for account in accounts {
            guard let (adapter, siblingContext) = sibling(account) else {
                context.logger.warning("webhook item for a \(kind) no channel is configured for; skipped",
                                       metadata: ["channel": "\(channel.id)", "account": "\(account)"])
                continue
            }
            let answer = await ingest(adapter, siblingContext)
            if answer.status != 200 { return answer }
        }
        return .ok
    }
}
