import Foundation

/// What a delivery status notification (RFC 3464) says about one of our messages.
public struct BounceReport: Sendable, Hashable {
    /// The Message-ID of the message that bounced (from the returned message or headers part).
    public var originalMessageID: String?
    /// `Status:` (`5.1.1`).
    public var status: String?
    /// `Action:` (`failed`, `delayed`, `delivered`, `relayed`, `expanded`).
    public var action: String?
    /// `Final-Recipient:` address, lower-cased, without the `rfc822;` type.
    public var recipient: String?
    /// `Diagnostic-Code:` text, without its type.
    public var diagnostic: String?
    /// `Reporting-MTA:` name.
    public var reportingMTA: String?
    /// Every address the report says failed (each failed block's Final- and Original-Recipient).
    public var failedRecipients: [String] = []

    public init(originalMessageID: String? = nil, status: String? = nil, action: String? = nil, recipient: String? = nil,
                diagnostic: String? = nil, reportingMTA: String? = nil) {
        self.originalMessageID = originalMessageID; self.status = status; self.action = action; self.recipient = recipient
        self.diagnostic = diagnostic; self.reportingMTA = reportingMTA
    }

    /// A permanent failure (5.x.x or `Action: failed` without a status).
    public var isPermanent: Bool {
        if let status { return status.hasPrefix("5") }
        return action == "failed"
    }

    /// Only a delay (4.x.x / `Action: delayed`): the message may still arrive.
    public var isDelay: Bool { action == "delayed" || (action == nil && status?.hasPrefix("4") == true) }

    /// The report says delivery failed: `Action: failed`, or without an action a 5.x.x status
    /// or none at all. `delivered`, `relayed` and `expanded` reports (sent on request, or by
    /// a relay) and delays are not failures.
    public var isFailure: Bool {
        if let action = action?.lowercased() { return action == "failed" }
        if let status { return status.hasPrefix("5") }
        return true
    }
}

/// The loop and noise guard's verdict on an inbound message.
public enum EmailClassification: Sendable, Hashable {
    /// A person wrote this: forward it to the helpdesk.
    case customer
    /// An automatic answer (out-of-office, auto-acknowledgement, notification, read receipt).
    case autoReply(reason: String)
    /// Mailing-list or bulk mail.
    case bulk(reason: String)
    /// A delivery failure report.
    case bounce(BounceReport, reason: String)
    /// Our own outbound mail came back (a copy, a Bcc, or a loop through another system).
    case ownMessage(reason: String)

    public var reason: String? {
        switch self {
        case .customer: nil
        case .autoReply(let r), .bulk(let r), .ownMessage(let r): r
        case .bounce(_, let r): r
        }
    }

    /// Machine mail: never forwarded as a customer message, never auto-answered.
    public var isAutomatic: Bool { self != .customer }

    /// A short stable name for `channel_data` and logs.
    public var name: String {
        switch self {
        case .customer: "customer"
        case .autoReply: "auto_reply"
        case .bulk: "bulk"
        case .bounce: "bounce"
        case .ownMessage: "own_message"
        }
    }
}

public enum EmailClassifier {
    /// Classifies `email`. `ownAddresses` are our support addresses (lower-cased compare);
    /// `codec` recognises our Message-IDs.
    ///
    /// Order: delivery reports → our own mail → auto-replies → bulk/list → null return path and
    /// MAILER-DAEMON/postmaster senders (bounces without a readable report) → customer.
    public static func classify(_ email: ParsedEmail, ownAddresses: [String] = [], codec: ThreadCodec? = nil) -> EmailClassification {
        let h = email.headers
        // The declared type: a report whose parts could not be split is still a report.
        let ct = ContentType(parsing: h["Content-Type"])

        // 1. Delivery status notifications.
        if ct.mimeType == "multipart/report" {
            let reportType = ct.parameters["report-type"]?.lowercased() ?? ""
            if reportType == "disposition-notification" {
                return .autoReply(reason: "read receipt (multipart/report; report-type=disposition-notification)")
            }
            return .bounce(bounceReport(email), reason: "multipart/report; report-type=\(reportType.isEmpty ? "unspecified" : reportType)")
        }
        if email.root.allParts.contains(where: { $0.contentType.mimeType == "message/delivery-status" || $0.contentType.mimeType == "message/global-delivery-status" }) {
            return .bounce(bounceReport(email), reason: "message/delivery-status part")
        }
        if let failed = h["X-Failed-Recipients"] {
            var report = bounceReport(email)
            if report.recipient == nil { report.recipient = AddressParser.parse(failed).first?.address }
            if report.failedRecipients.isEmpty { report.failedRecipients = AddressParser.parse(failed).map { $0.address.lowercased() } }
            return .bounce(report, reason: "X-Failed-Recipients header")
        }

        // 2. Our own mail.
        if let codec, let id = email.messageID, codec.isOurs(messageID: id) {
            return .ownMessage(reason: "Message-ID is one of ours")
        }
        // From our address, unless it names someone else to answer: a Google Group rewrites a
        // member's From to the group's address (here, ours) and puts the member in Reply-To.
        // Our own mail's Reply-To is our plus address: that is no one else.
        if let from = email.from?.address, isOwn(from, ownAddresses),
           !email.replyTo.contains(where: { !$0.address.isEmpty && !isOwn($0.address, ownAddresses) }) {
            return .ownMessage(reason: "From is our own address \(from)")
        }

        // 3. Automatic replies (RFC 3834 and the vendors' own headers).
        if let auto = h["Auto-Submitted"] {
            let token = auto.split(separator: ";").first.map { $0.trimmingSpaces().lowercased() } ?? ""
            if !token.isEmpty && token != "no" { return .autoReply(reason: "Auto-Submitted: \(token)") }
        }
        if let v = h["X-Autoreply"], v.trimmingSpaces().lowercased() != "no" {
            return .autoReply(reason: "X-Autoreply header")
        }
        if h.contains("X-Autorespond") { return .autoReply(reason: "X-Autorespond header") }
        if h.contains("X-Autogenerated") { return .autoReply(reason: "X-Autogenerated header") }
        if let suppress = h["X-Auto-Response-Suppress"]?.lowercased(), h.contains("X-MS-Exchange-Inbox-Rules-Loop"),
           suppress.contains("all") || suppress.contains("oof") {
            return .autoReply(reason: "Exchange out-of-office (X-Auto-Response-Suppress with X-MS-Exchange-Inbox-Rules-Loop)")
        }
        if h.contains("X-Loop") { return .autoReply(reason: "X-Loop header") }

        // 4. Bulk and mailing lists.
        if let p = h["Precedence"]?.trimmingSpaces().lowercased(), ["bulk", "list", "junk"].contains(p) {
            return .bulk(reason: "Precedence: \(p)")
        }
        if h.contains("List-Id") { return .bulk(reason: "List-Id header") }
        if h.contains("List-Unsubscribe") { return .bulk(reason: "List-Unsubscribe header") }
        if h.contains("List-Post") { return .bulk(reason: "List-Post header") }

        // 5. Null return path and daemon senders without a parsable report.
        let daemonLocals: Set<String> = ["mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"]
        if let from = email.from, daemonLocals.contains(from.localPart) {
            return .bounce(bounceReport(email), reason: "sender is \(from.localPart)")
        }
        if let rp = email.returnPath, rp.address.isEmpty {
            return .bounce(bounceReport(email), reason: "empty return path (<>)")
        }
        return .customer
    }

    /// One of our addresses (`ownAddresses`, case-insensitive), or a plus address of one
    /// (`support+conv-tag@example.com`, what our mail carries as Reply-To).
    public static func isOwn(_ address: String, _ ownAddresses: [String]) -> Bool {
        let a = address.lowercased()
        guard let at = a.lastIndex(of: "@") else { return ownAddresses.contains { $0.lowercased() == a } }
        let local = a[..<at], domain = a[at...]
        let base = local.split(separator: "+", maxSplits: 1).first.map(String.init) ?? String(local)
        return ownAddresses.contains { own in
            let o = own.lowercased()
            return o == a || o == base + domain
        }
    }

    /// Reads the RFC 3464 fields and the original Message-ID out of a report (best effort).
    public static func bounceReport(_ email: ParsedEmail) -> BounceReport {
        var report = BounceReport()
        let parts = email.root.allParts
        if let status = parts.first(where: { $0.contentType.mimeType == "message/delivery-status" || $0.contentType.mimeType == "message/global-delivery-status" }) {
            let body = status.decodedBody
            // A header block per message, then one per recipient, separated by blank lines.
            var start = 0
            var blocks: [EmailHeaders] = []
            while start < body.count && blocks.count < 100 {
                let (fields, next) = HeaderParser.parse(body, start: start)
                if !fields.isEmpty { blocks.append(fields) }
                if next <= start { break }
                start = next
            }
            for block in blocks {
                if report.reportingMTA == nil, let mta = block["Reporting-MTA"] { report.reportingMTA = typed(mta) }
            }
            // The first recipient block that failed, else the first recipient block.
            let recipients = blocks.filter { $0.contains("Final-Recipient") || $0.contains("Action") || $0.contains("Status") }
            for r in recipients where (r["Action"] ?? "").lowercased().contains("failed") {
                for field in ["Final-Recipient", "Original-Recipient"] {
                    if let a = r[field].map({ MIMEParser.stripAngles(typed($0).lowercased()) }), !a.isEmpty,
                       !report.failedRecipients.contains(a) { report.failedRecipients.append(a) }
                }
            }
            let chosen = recipients.first { ($0["Action"] ?? "").lowercased().contains("failed") } ?? recipients.first
            if let r = chosen {
                report.action = r["Action"]?.trimmingSpaces().lowercased()
                report.status = r["Status"].map { s in
                    String(s.trimmingSpaces().prefix { $0.isNumber || $0 == "." })
                }.flatMap { $0.isEmpty ? nil : $0 }
                report.recipient = (r["Final-Recipient"] ?? r["Original-Recipient"]).map { typed($0).lowercased() }
                    .map { MIMEParser.stripAngles($0) }
                report.diagnostic = r["Diagnostic-Code"].map(typed)
            }
        }
        // The returned message (or just its headers).
        if let returned = parts.first(where: { ["message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"].contains($0.contentType.mimeType) }) {
            let (headers, _) = HeaderParser.parse(returned.decodedBody)
            report.originalMessageID = headers["Message-ID"].flatMap { MessageIDs.parse($0).first }
        }
        if report.originalMessageID == nil {
            // Some MTAs quote the original headers in the text part only.
            for line in email.text.split(separator: "\n") {
                let t = line.trimmingSpaces()
                if t.lowercased().hasPrefix("message-id:"), let id = MessageIDs.parse(String(t.dropFirst(11))).first {
                    report.originalMessageID = id
                    break
                }
            }
        }
        return report
    }

    /// A read receipt (RFC 8098 message disposition notification): the Message-ID it is for,
    /// and whether the mail was shown (`Disposition: …; displayed`) rather than deleted unread.
    public struct ReadReceipt: Sendable, Hashable {
        public var originalMessageID: String
        public var displayed: Bool
    }

    public static func readReceipt(_ email: ParsedEmail) -> ReadReceipt? {
        let ct = ContentType(parsing: email.headers["Content-Type"])
        guard ct.mimeType == "multipart/report", ct.parameters["report-type"]?.lowercased() == "disposition-notification" else { return nil }
        let parts = email.root.allParts
        guard let mdn = parts.first(where: { ["message/disposition-notification", "message/global-disposition-notification"].contains($0.contentType.mimeType) })
        else { return nil }
        let (fields, _) = HeaderParser.parse(mdn.decodedBody)
        var original = fields["Original-Message-ID"].flatMap { MessageIDs.parse($0).first }
        if original == nil, let returned = parts.first(where: { ["message/rfc822", "text/rfc822-headers"].contains($0.contentType.mimeType) }) {
            original = HeaderParser.parse(returned.decodedBody).0["Message-ID"].flatMap { MessageIDs.parse($0).first }
        }
        guard let original else { return nil }
        // `Disposition: manual-action/MDN-sent-manually; displayed` (a `/modifier` may follow).
        let type = (fields["Disposition"] ?? "").split(separator: ";").last.map { $0.trimmingSpaces().lowercased() } ?? ""
        return ReadReceipt(originalMessageID: original, displayed: type.hasPrefix("displayed"))
    }

    /// `rfc822; jane@example.com` → `jane@example.com`; `smtp; 550 …` → `550 …`.
    private static func typed(_ s: String) -> String {
        guard let semi = s.firstIndex(of: ";") else { return s.trimmingSpaces() }
        return s[s.index(after: semi)...].trimmingSpaces()
    }
}
