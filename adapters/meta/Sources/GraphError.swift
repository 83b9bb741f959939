import Foundation
import SwitchboardCore

/// A failed Graph API call: Meta's error envelope
/// `{"error": {"message", "type", "code", "error_subcode", "error_data", "fbtrace_id", "is_transient"}}`,
/// an HTTP status without one, or a network failure (`httpStatus` 0).
public struct GraphError: Error, Sendable, Hashable, CustomStringConvertible {
    public var httpStatus: Int
    public var code: Int?
    public var subcode: Int?
    public var type: String?
    public var message: String
    public var fbtraceID: String?
    /// `error_data.details` (WhatsApp puts the useful explanation there).
    public var details: String?
    /// Graph's own `is_transient` hint.
    public var isTransient: Bool?
    /// From a `Retry-After` header, when the answer had one.
    public var retryAfter: Double?

    public init(httpStatus: Int, code: Int? = nil, subcode: Int? = nil, type: String? = nil, message: String,
                fbtraceID: String? = nil, details: String? = nil, isTransient: Bool? = nil, retryAfter: Double? = nil) {
        self.httpStatus = httpStatus; self.code = code; self.subcode = subcode; self.type = type; self.message = message
        self.fbtraceID = fbtraceID; self.details = details; self.isTransient = isTransient; self.retryAfter = retryAfter
    }

    /// Reads Meta's error envelope from an error answer's body (which may be anything).
    public init(httpStatus: Int, body: JSONValue?, retryAfter: Double? = nil) {
        let e = body?["error"]
        let code = e?["code"]?.intValue.map { Int($0) }
        var message = e?["message"]?.stringValue ?? e?["error_user_msg"]?.stringValue ?? "Graph API answered HTTP \(httpStatus)"
        if let title = e?["error_user_title"]?.stringValue, !message.contains(title) { message += " (\(title))" }
        self.init(httpStatus: httpStatus, code: code, subcode: e?["error_subcode"]?.intValue.map { Int($0) },
                  type: e?["type"]?.stringValue, message: message, fbtraceID: e?["fbtrace_id"]?.stringValue,
                  details: e?["error_data"]?["details"]?.stringValue ?? e?["error_data"]?.stringValue,
                  isTransient: e?["is_transient"]?.boolValue, retryAfter: retryAfter)
    }

    /// A network failure or timeout: nothing reached Meta, or no answer came back.
    public static func network(_ error: any Error) -> GraphError {
        GraphError(httpStatus: 0, message: "Graph API unreachable: \(error)")
    }

    public var description: String {
        var s = "Graph error"
        if let code { s += " \(code)" + (subcode.map { "/\($0)" } ?? "") }
        if httpStatus > 0 { s += " (HTTP \(httpStatus))" }
        s += ": \(message)"
        if let details, !message.contains(details) { s += " — \(details)" }
        if let fbtraceID { s += " [fbtrace_id \(fbtraceID)]" }
        return s
    }

    /// How this error is classified (see `GraphErrorCodes`).
    public var rule: GraphErrorCodes.Rule { GraphErrorCodes.classify(code: code, subcode: subcode, httpStatus: httpStatus, isTransient: isTransient) }

    /// Whether trying again later can succeed: rate limits, transient Graph errors, 5xx and
    /// network failures.
    public var retryable: Bool { rule.retryable }

    /// The access token is expired or invalid (190): the channel needs a new token.
    public var isAuthExpired: Bool { code == 190 || (code == nil && httpStatus == 401) }

    /// `code` or `code/subcode`: the platform's own code as reported to the helpdesk.
    public var channelCode: String? {
        guard let code else { return httpStatus > 0 ? "http_\(httpStatus)" : nil }
        return subcode.map { "\(code)/\($0)" } ?? "\(code)"
    }

    /// The runtime's view: our stable code, Graph's code, retryable, a delay hint for rate
    /// limits, and `auth_expired` as channel state for 190.
    ///
    /// A send refused for the access token is retried on the outbound schedule (not dropped as
    /// the rule says for the token itself): replies written while it is expired go out once an
    /// operator has installed a new one and reloaded, as with every channel's `auth_expired`.
    public var sendError: SendError {
        let r = rule
        var text = message
        if let details, !details.isEmpty, !text.contains(details) { text += " — \(details)" }
        return SendError(code: r.code, channelCode: channelCode, message: text, retryable: r.retryable || isAuthExpired,
                         retryAfter: retryAfter ?? r.retryAfter, channelState: isAuthExpired ? .authExpired : nil)
    }

    /// The classification of an asynchronous failure (a WhatsApp `failed` status's `errors[0]`).
    public static func statusError(code: Int?, title: String?, message: String?, details: String?) -> StatusError {
        let r = GraphErrorCodes.classify(code: code, subcode: nil, httpStatus: 200, isTransient: nil)
        var text = message ?? title ?? "failed"
        if let details, !details.isEmpty, !text.contains(details) { text += " — \(details)" }
        return StatusError(code: r.code, channelCode: code.map(String.init), message: text, retryable: r.retryable)
    }
}

/// The one table that says what each Graph error code means to us: our stable error code and
/// whether the runtime should try again. Sources: Meta's Graph API error handling page, the
/// WhatsApp Cloud API error-code page and the Messenger Send API reference (as summarised in
/// shared/reference/meta-channels.md §1.5, §2.10, §3.7).
public enum GraphErrorCodes {
    public struct Rule: Sendable, Hashable {
        /// Our stable code (`rate_limited`, `auth_expired`, `window_closed`, …).
        public var code: String
        public var retryable: Bool
        /// A minimum wait before retrying, in seconds, when the platform suggests one.
        public var retryAfter: Double?
        public init(_ code: String, retryable: Bool, retryAfter: Double? = nil) { self.code = code; self.retryable = retryable; self.retryAfter = retryAfter }
    }

    /// Codes whose meaning does not depend on the subcode.
    public static let table: [Int: Rule] = [
        // --- Transient: Graph itself says "try again".
        1: Rule("channel_error", retryable: true),            // API Unknown: "possibly a temporary issue due to downtime"
        2: Rule("channel_error", retryable: true),            // API Service: temporary issue due to downtime
        131000: Rule("channel_error", retryable: true),       // WhatsApp "Something went wrong": retried; the schedule bounds the attempts
        131016: Rule("channel_error", retryable: true),       // WhatsApp service unavailable
        131057: Rule("channel_error", retryable: true, retryAfter: 60), // number in maintenance / throughput upgrade, ≤ 1 minute

        // --- Rate limits: the same request succeeds once the window has passed.
        4: Rule("rate_limited", retryable: true, retryAfter: 60),       // app-level call rate limit
        17: Rule("rate_limited", retryable: true, retryAfter: 60),      // user-level call rate limit
        32: Rule("rate_limited", retryable: true, retryAfter: 60),      // Page-level call rate limit
        613: Rule("rate_limited", retryable: true, retryAfter: 60),     // "Calls to this API have exceeded the rate limit"
        80007: Rule("rate_limited", retryable: true, retryAfter: 60),   // WABA rate limit
        130429: Rule("rate_limited", retryable: true, retryAfter: 1),   // throughput (messages/second) exceeded
        131056: Rule("rate_limited", retryable: true, retryAfter: 6),   // pair rate limit: ~1 message per 6 s to one user

        // --- Authorisation: nothing changes until someone installs a new token or grants access.
        190: Rule("auth_expired", retryable: false),          // access token expired/invalid (subcode 463 = expired session)
        0: Rule("forbidden", retryable: false),               // AuthException
        3: Rule("forbidden", retryable: false),               // app lacks the capability
        10: Rule("forbidden", retryable: false),              // permission denied (see subcodes below)
        131005: Rule("forbidden", retryable: false),          // access denied
        230: Rule("forbidden", retryable: false),             // Instagram: user consent required (profile)
        2022: Rule("forbidden", retryable: false),            // commerce messaging disabled for the app

        // --- The request itself is wrong: sending it again gives the same answer.
        100: Rule("invalid_request", retryable: false),       // invalid parameter (also deprecated Messenger tags since Apr 2026)
        131008: Rule("invalid_request", retryable: false),    // required parameter missing
        131009: Rule("invalid_request", retryable: false),    // parameter value invalid
        131021: Rule("invalid_request", retryable: false),    // sender and recipient are the same number
        131051: Rule("invalid_request", retryable: false),    // unsupported message type
        131062: Rule("invalid_request", retryable: false),    // a business-scoped user id cannot receive this message: send to the phone number
        131052: Rule("media_error", retryable: false),        // media download error (Meta could not fetch our link)
        131053: Rule("media_error", retryable: false),        // media upload error (type/size)

        // --- Outside the customer-service window: only a template can go out.
        131047: Rule("window_closed", retryable: false),      // re-engagement message: > 24 h since the customer wrote

        // --- The recipient can't or won't get it: retrying won't change that.
        131026: Rule("recipient_unavailable", retryable: false), // undeliverable (not on WhatsApp, old client, terms not accepted)
        131030: Rule("recipient_unavailable", retryable: false), // not in the test number's allowed list
        130472: Rule("recipient_unavailable", retryable: false), // user is part of a marketing experiment
        551: Rule("recipient_unavailable", retryable: false),    // Messenger: "This person isn't available right now"
        131050: Rule("recipient_opted_out", retryable: false),   // user stopped marketing messages
        131049: Rule("recipient_limited", retryable: false),     // per-user marketing limit: not before ≥ 24 h, don't hammer

        // --- Templates: fix the template or its parameters first.
        132000: Rule("template_error", retryable: false),     // parameter count mismatch
        132001: Rule("template_error", retryable: false),     // template missing / not approved in this language
        132005: Rule("template_error", retryable: false),     // translated text too long
        132007: Rule("template_error", retryable: false),     // policy violation
        132008: Rule("template_error", retryable: false),     // parameter invalid
        132012: Rule("template_error", retryable: false),     // parameter format mismatch
        132015: Rule("template_error", retryable: false),     // template paused for low quality
        132016: Rule("template_error", retryable: false),     // template disabled
        131063: Rule("template_error", retryable: false),     // marketing templates must use the Marketing Messages API
        131064: Rule("template_error", retryable: false),     // messaging limit from template classification violations

        // --- The business account: an operator has to act (billing, registration, policy).
        131031: Rule("account_problem", retryable: false),    // account locked
        131042: Rule("account_problem", retryable: false),    // payment problem
        131045: Rule("account_problem", retryable: false),    // certificate / registration error
        131048: Rule("account_problem", retryable: false),    // spam rate limit: too many blocks/flags — stop and review quality
        130497: Rule("account_problem", retryable: false),    // WABA restricted from messaging this country
        368: Rule("account_problem", retryable: false),       // temporarily blocked for policy violations
        10900: Rule("invalid_request", retryable: false),     // Messenger: already replied to this activity
        10903: Rule("invalid_request", retryable: false),     // Messenger: can't reply to this activity
        10904: Rule("forbidden", retryable: false),           // Messenger: Page has messaging disabled
    ]

    /// Code/subcode pairs that mean something more specific than the code alone.
    public static let subcodeTable: [String: Rule] = [
        "10/2018278": Rule("window_closed", retryable: false),  // Messenger: sent outside the allowed window
        "10/2018065": Rule("window_closed", retryable: false),  // Messenger (older): outside the 24 h window
        "10/2534022": Rule("window_closed", retryable: false),  // Instagram: outside the allowed window
        "10/1893063": Rule("account_problem", retryable: false), // Page temporarily restricted from sending
        "100/2018218": Rule("not_found", retryable: false),     // Messenger profile: no profile for this user
        "100/2018001": Rule("invalid_recipient", retryable: false), // Messenger: no matching user (a PSID that isn't one)
    ]

    /// Our rule for a Graph error. Order: known code/subcode pair, known code, Graph's
    /// `is_transient`, then the HTTP status (429 and 5xx retryable, 0 = network retryable).
    public static func classify(code: Int?, subcode: Int?, httpStatus: Int, isTransient: Bool?) -> Rule {
        if let code {
            if let subcode, let r = subcodeTable["\(code)/\(subcode)"] { return r }
            if let r = table[code] { return r }
            // 200–299: the permission family ("(#2xx) Requires … permission").
            if (200...299).contains(code) { return Rule("forbidden", retryable: false) }
        }
        if isTransient == true { return Rule("channel_error", retryable: true) }
        switch httpStatus {
        case 0: return Rule("channel_unreachable", retryable: true)
        case 429: return Rule("rate_limited", retryable: true, retryAfter: 60)
        case 401: return Rule("auth_expired", retryable: false)
        case 403: return Rule("forbidden", retryable: false)
        case 404: return Rule("not_found", retryable: false)
        case 408, 500...599: return Rule("channel_error", retryable: true)
        default: return Rule(code == nil ? "channel_error" : "rejected", retryable: false)
        }
    }
}
