import Crypto
import Foundation
import SwitchboardCore

// The email channel. This file holds the parsed-message model and the top-level parser; the
// IMAP client, LMTP listener and SMTP sender build on it (see adapters/email/README.md).

/// A non-body part of a message: an attachment, an inline (cid) image, a calendar invite, a
/// winmail.dat, a forwarded message, a signature, a delivery report.
public struct EmailAttachment: Sendable, Hashable {
    /// The decoded bytes.
    public var bytes: [UInt8]
    /// Lower-cased `type/subtype`.
    public var mimeType: String
    /// The sanitized filename: the sender's (Content-Disposition / Content-Type name /
    /// Content-Location), else one derived from the type (`winmail.dat`, `invite.ics`, `image.png`).
    public var filename: String
    /// Whether `filename` came from the message rather than being derived.
    public var filenameFromMessage: Bool
    /// The Content-ID without angle brackets.
    public var contentID: String?
    /// `attachment`, `inline`, or nil when the part had no Content-Disposition.
    public var disposition: String?
    /// Shown inside the HTML body: its Content-ID is referenced by a `cid:` URL there.
    public var isInline: Bool
    /// The charset parameter (text attachments).
    public var charset: String?
    /// The MIME part number (`2`, `1.2`).
    public var partPath: String
    /// Content-Type parameters, e.g. `method` of a calendar invite.
    public var parameters: [String: String]

    public var size: Int { bytes.count }
    public var isCalendar: Bool { mimeType == "text/calendar" || mimeType == "application/ics" }
    public var isTNEF: Bool {
        mimeType == "application/ms-tnef" || mimeType == "application/vnd.ms-tnef" || filename.lowercased() == "winmail.dat"
    }
    public var isMessage: Bool { mimeType == "message/rfc822" || mimeType == "message/global" }
}

/// A message parsed from RFC 5322 / MIME bytes. Parsing never fails: problems are listed in
/// `warnings` and whatever could be read is kept.
public struct ParsedEmail: Sendable {
    public var headers: EmailHeaders
    public var root: MIMEPart
    public var warnings: [String]

    public var from: EmailAddress?
    public var sender: EmailAddress?
    public var replyTo: [EmailAddress]
    public var to: [EmailAddress]
    public var cc: [EmailAddress]
    /// `Return-Path`; an empty `address` is the null path `<>`.
    public var returnPath: EmailAddress?
    public var subject: String?
    public var date: Timestamp?
    /// Message-ID without angle brackets.
    public var messageID: String?
    public var inReplyTo: [String]
    /// Oldest first, as in the header.
    public var references: [String]

    /// The full plain-text body: the text/plain parts in order, or text derived from the HTML.
    public var text: String
    /// The HTML body (several HTML parts joined), when there is one.
    public var html: String?
    /// `text` was generated from `html` (HTML-only mail).
    public var textDerivedFromHTML: Bool
    public var attachments: [EmailAttachment]
    /// The charset of the first body part, used for raw 8-bit headers.
    public var bodyCharset: String?
    /// Size of the message in bytes.
    public var size: Int

    /// The Message-ID, or a stable one made from a hash of the bytes when the message has none.
    public var messageIDOrSynthesized: String
}

public enum EmailParser {
    /// Parses a whole message. Accepts CRLF or LF line ends, 8-bit bytes anywhere, NULs, and any
    /// amount of breakage; respects `limits`.
    public static func parse(_ bytes: [UInt8], limits: MIMELimits = .default) -> ParsedEmail {
        let (root, warnings) = MIMEParser.parse(bytes, limits: limits)
        var collector = Collector()
        collect(root, into: &collector, depth: 0)

        let headers = root.headers
        let bodyCharset = collector.bodyCharset
        func decoded(_ name: String) -> String? {
            headers.field(name).map { $0.decodedValue(fallbackCharset: bodyCharset) }
        }
        func addresses(_ name: String) -> [EmailAddress] {
            headers.fields(named: name).flatMap { AddressParser.parse($0.value(fallbackCharset: bodyCharset)) }
        }

        let html = collector.html.isEmpty ? nil : collector.html.joined(separator: "\n")
        var text = collector.plain.joined(separator: "\n")
        var derived = false
        if text.trimmingWhitespace().isEmpty, let html {
            text = HTMLText.toText(html)
            derived = true
        }

        // Inline = referenced from the HTML by cid: (whatever the disposition says: Outlook sends
        // such images without one, and an unreferenced "inline" part shows nowhere).
        let referenced = html.map(cidReferences) ?? []
        var attachments = collector.attachments
        for i in attachments.indices {
            attachments[i].isInline = attachments[i].contentID.map { referenced.contains($0.lowercased()) } ?? false
        }

        let messageID = headers["Message-ID"].flatMap { MessageIDs.parse($0).first }
        let synthesized: String = messageID ?? {
            let digest = SHA256Hex.of(bytes)
            return "\(digest.prefix(32))@switchboard.invalid"
        }()
        var returnPath: EmailAddress?
        if let rp = headers.fields(named: "Return-Path").last?.value {
            let trimmed = rp.trimmingSpaces()
            returnPath = trimmed == "<>" || trimmed.isEmpty ? EmailAddress(address: "") : AddressParser.first(trimmed)
        }

        return ParsedEmail(
            headers: headers, root: root, warnings: warnings,
            from: addresses("From").first, sender: addresses("Sender").first, replyTo: addresses("Reply-To"),
            to: addresses("To"), cc: addresses("Cc"), returnPath: returnPath,
            subject: decoded("Subject"),
            date: headers["Date"].flatMap(EmailDate.parse),
            messageID: messageID,
            inReplyTo: headers.values("In-Reply-To").flatMap(MessageIDs.parse),
            references: MessageIDs.unique(headers.values("References").flatMap(MessageIDs.parse)),
            text: text, html: html, textDerivedFromHTML: derived, attachments: attachments,
            bodyCharset: bodyCharset, size: bytes.count, messageIDOrSynthesized: synthesized)
    }

    public static func parse(_ data: Data, limits: MIMELimits = .default) -> ParsedEmail {
        parse(Array(data), limits: limits)
    }

    // MARK: Body selection

    struct Collector {
        var plain: [String] = []
        var html: [String] = []
        var attachments: [EmailAttachment] = []
        var bodyCharset: String?
    }

    static func collect(_ part: MIMEPart, into c: inout Collector, depth: Int) {
        guard part.contentType.isMultipart, !part.children.isEmpty else {
            leaf(part, into: &c)
            return
        }
        let children = part.children
        switch part.contentType.subtype {
        case "alternative":
            // The last alternative is the preferred one (RFC 2046): the last child that yields a
            // plain body gives the text, the last that yields HTML gives the HTML. Anything else
            // in them (inline images of a related HTML branch, a calendar) is kept as attachments.
            var plain: [String] = []
            var html: [String] = []
            for child in children {
                var sub = Collector()
                collect(child, into: &sub, depth: depth + 1)
                if !sub.plain.isEmpty { plain = sub.plain }
                if !sub.html.isEmpty { html = sub.html }
                c.attachments += sub.attachments
                if c.bodyCharset == nil { c.bodyCharset = sub.bodyCharset }
            }
            c.plain += plain
            c.html += html
        case "related":
            var rootIndex = 0
            if let start = part.contentType.parameters["start"].map(MIMEParser.stripAngles),
               let idx = children.firstIndex(where: { $0.contentID == start }) {
                rootIndex = idx
            }
            for (i, child) in children.enumerated() {
                if i == rootIndex {
                    collect(child, into: &c, depth: depth + 1)
                } else {
                    attachAll(child, into: &c)
                }
            }
        case "signed":
            collect(children[0], into: &c, depth: depth + 1)
            for child in children.dropFirst() { attachAll(child, into: &c) }
        case "encrypted":
            for child in children { attachAll(child, into: &c) }
        case "report":
            collect(children[0], into: &c, depth: depth + 1)
            for child in children.dropFirst() { attachAll(child, into: &c) }
        default:
            // mixed, digest, parallel and unknown subtypes: every part in order.
            for child in children { collect(child, into: &c, depth: depth + 1) }
        }
    }

    /// Every leaf under `part` as an attachment.
    static func attachAll(_ part: MIMEPart, into c: inout Collector) {
        if part.contentType.isMultipart && !part.children.isEmpty {
            for child in part.children { attachAll(child, into: &c) }
        } else if let a = attachment(part) {
            c.attachments.append(a)
        }
    }

    static func leaf(_ part: MIMEPart, into c: inout Collector) {
        let ct = part.contentType
        let isBody = ct.type == "text" && (ct.subtype == "plain" || ct.subtype == "html")
            && part.dispositionType != "attachment" && part.declaredFilename == nil
        if isBody {
            let bytes = part.decodedBody
            var charset = ct.charset
            if ct.subtype == "html" && (charset == nil || charset?.isEmpty == true) { charset = sniffHTMLCharset(bytes) }
            // Line ends become LF: the common format's text never carries CRLF.
            var s = Charset.decode(bytes, label: charset).replacingAll("\r\n", with: "\n")
            if ct.subtype == "plain", ct.parameters["format"]?.lowercased() == "flowed" {
                s = FormatFlowed.unwrap(s, delSp: ct.parameters["delsp"]?.lowercased() == "yes")
            }
            if c.bodyCharset == nil, let charset, !charset.isEmpty { c.bodyCharset = charset }
            if ct.subtype == "html" { c.html.append(s) } else { c.plain.append(s) }
            return
        }
        if let a = attachment(part) { c.attachments.append(a) }
    }

    static func attachment(_ part: MIMEPart) -> EmailAttachment? {
        let bytes = part.decodedBody
        let ct = part.contentType
        // An empty text part without a name is nothing worth keeping.
        if bytes.isEmpty && part.declaredFilename == nil && ct.type == "text" { return nil }
        let declared = part.declaredFilename.map(Filenames.sanitize).flatMap { $0.isEmpty ? nil : $0 }
        var filename = declared ?? Filenames.fallback(for: ct.mimeType, contentID: part.contentID)
        if declared == nil && ct.mimeType == "message/rfc822" {
            let (h, _) = HeaderParser.parse(bytes)
            if let subject = h.field("Subject")?.decodedValue(), !Filenames.sanitize(subject).isEmpty {
                filename = Filenames.sanitize(subject) + ".eml"
            }
        }
        return EmailAttachment(bytes: bytes, mimeType: ct.mimeType, filename: filename, filenameFromMessage: declared != nil,
                               contentID: part.contentID, disposition: part.dispositionType, isInline: false,
                               charset: ct.charset, partPath: part.path, parameters: ct.parameters)
    }

    /// `<meta charset="…">` or `<meta http-equiv="Content-Type" content="text/html; charset=…">`
    /// in the first 2 KB of an HTML part that declares no charset in MIME.
    static func sniffHTMLCharset(_ bytes: [UInt8]) -> String? {
        let head = String(decoding: bytes.prefix(2048), as: UTF8.self).lowercased()
        guard let r = head.range(of: "charset=") else { return nil }
        var rest = head[r.upperBound...]
        while let f = rest.first, f == "\"" || f == "'" || f == " " { rest = rest.dropFirst() }
        let value = rest.prefix { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ":" || $0 == "." }
        return value.isEmpty ? nil : String(value)
    }

    /// Content-IDs referenced as `cid:` in HTML (percent-decoded, lower-cased).
    static func cidReferences(_ html: String) -> Set<String> {
        var out = Set<String>()
        let lower = html.lowercased()
        var search = lower.startIndex
        while let r = lower.range(of: "cid:", range: search..<lower.endIndex) {
            let rest = lower[r.upperBound...]
            let value = rest.prefix { !"\"' )>\r\n\t".contains($0) }
            if !value.isEmpty {
                let v = String(value)
                out.insert(v.removingPercentEncoding ?? v)
                out.insert(v)
            }
            search = r.upperBound
            if out.count > 1000 { break }
        }
        return out
    }
}

/// Filenames from the wire are untrusted.
enum Filenames {
    /// Keeps the last path segment, drops control characters and leading dots/spaces, and bounds the
    /// length (keeping the extension).
    static func sanitize(_ name: String) -> String {
        var s = name
        if let slash = s.lastIndex(where: { $0 == "/" || $0 == "\\" }) { s = String(s[s.index(after: slash)...]) }
        s = String(s.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F && !($0.value >= 0x80 && $0.value < 0xA0) }.map(Character.init))
        s = s.replacingAll(":", with: "_")
        while let f = s.first, f == "." || f == " " || f == "-" { s.removeFirst() }
        s = s.trimmingSpaces()
        if s.utf8.count > 200 {
            let ext = (s as NSString).pathExtension
            var stem = String((s as NSString).deletingPathExtension)
            while stem.utf8.count + ext.utf8.count + 1 > 200, !stem.isEmpty { stem.removeLast() }
            s = ext.isEmpty ? stem : stem + "." + ext
        }
        return s
    }

    static func fallback(for mimeType: String, contentID: String?) -> String {
        switch mimeType {
        case "application/ms-tnef", "application/vnd.ms-tnef": return "winmail.dat"
        case "text/calendar", "application/ics": return "invite.ics"
        case "message/rfc822", "message/global": return "message.eml"
        case "message/delivery-status", "message/global-delivery-status": return "delivery-status.txt"
        case "message/disposition-notification": return "disposition-notification.txt"
        case "text/rfc822-headers", "message/global-headers": return "headers.txt"
        case "application/pgp-signature": return "signature.asc"
        case "application/pkcs7-signature", "application/x-pkcs7-signature": return "smime.p7s"
        case "application/pkcs7-mime", "application/x-pkcs7-mime": return "smime.p7m"
        case "application/pgp-encrypted": return "pgp-version.txt"
        default: break
        }
        let ext: String
        switch mimeType {
        case "image/png": ext = "png"
        case "image/jpeg", "image/jpg", "image/pjpeg": ext = "jpg"
        case "image/gif": ext = "gif"
        case "image/webp": ext = "webp"
        case "image/svg+xml": ext = "svg"
        case "application/pdf": ext = "pdf"
        case "text/plain": ext = "txt"
        case "text/html": ext = "html"
        case "text/csv": ext = "csv"
        case "application/zip": ext = "zip"
        case "audio/mpeg": ext = "mp3"
        case "video/mp4": ext = "mp4"
        default: ext = "bin"
        }
        let stem: String
        if let cid = contentID, let local = cid.split(separator: "@").first, !sanitize(String(local)).isEmpty {
            stem = sanitize(String(local))
        } else if mimeType.hasPrefix("image/") {
            stem = "image"
        } else {
            stem = "attachment"
        }
        return stem.lowercased().hasSuffix("." + ext) ? stem : "\(stem).\(ext)"
    }
}

/// Lower-case hex SHA-256.
enum SHA256Hex {
    static func of(_ bytes: [UInt8]) -> String {
        Hex.encode(SHA256.hash(data: bytes))
    }
}

/// RFC 5322 dates (`Tue, 1 Jul 2003 10:52:37 +0200`), leniently: optional weekday, two-digit
/// years, missing seconds, named zones (`GMT`, `EST`…), a missing zone (read as UTC), and
/// comments such as `(PDT)`.
public enum EmailDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let zones: [String: Int] = ["ut": 0, "utc": 0, "gmt": 0, "z": 0, "est": -300, "edt": -240, "cst": -360,
                                               "cdt": -300, "mst": -420, "mdt": -360, "pst": -480, "pdt": -420,
                                               "jst": 540, "kst": 540, "cet": 60, "cest": 120, "bst": 60]

    public static func parse(_ s: String) -> Timestamp? {
        var text = s
        // Drop comments.
        while let open = text.firstIndex(of: "("), let close = text[open...].firstIndex(of: ")") {
            text.removeSubrange(open...close)
        }
        var tokens = text.replacingAll(",", with: " ").split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if let f = tokens.first, f.count >= 3, Int(f) == nil, !f.contains(":") { tokens.removeFirst() } // weekday
        guard tokens.count >= 4 else { return nil }
        var day: Int?, month: Int?, year: Int?
        // `1 Jul 2003` or (broken) `Jul 1 2003`.
        if let d = Int(tokens[0]), let m = monthIndex(tokens[1]) {
            day = d; month = m; year = Int(tokens[2])
        } else if let m = monthIndex(tokens[0]), let d = Int(tokens[1]) {
            day = d; month = m; year = Int(tokens[2])
        }
        guard var y = year, let mo = month, let d = day, (1...31).contains(d) else { return nil }
        if y < 50 { y += 2000 } else if y < 1000 { y += 1900 }
        guard y <= 9999 else { return nil }
        let timeParts = tokens[3].split(separator: ":").map { Int($0) }
        guard timeParts.count >= 2, let hh = timeParts[0], let mm = timeParts[1], (0...23).contains(hh), (0...59).contains(mm) else { return nil }
        let ss = timeParts.count >= 3 ? (timeParts[2] ?? 0) : 0
        guard (0...60).contains(ss) else { return nil }
        var offsetMinutes = 0
        if tokens.count >= 5 {
            let z = tokens[4]
            if let sign = z.first, sign == "+" || sign == "-", z.count >= 5, let v = Int(z.dropFirst().prefix(4)) {
                offsetMinutes = (v / 100) * 60 + v % 100
                if sign == "-" { offsetMinutes = -offsetMinutes }
            } else if let named = zones[z.lowercased()] {
                offsetMinutes = named
            }
        }
        let days = daysFromCivil(Int64(y), Int64(mo), Int64(d))
        let seconds = days * 86400 + Int64(hh * 3600 + mm * 60 + ss) - Int64(offsetMinutes * 60)
        return Timestamp(milliseconds: seconds * 1000)
    }

    private static func monthIndex(_ s: String) -> Int? {
        let l = s.lowercased().prefix(3)
        return months.firstIndex(of: String(l)).map { $0 + 1 }
    }

    // Howard Hinnant's days-from-civil.
    private static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }
}

/// RFC 3676 `format=flowed`: a line ending in a space continues on the next line (with
/// `DelSp=yes` that space goes too); a leading space is stuffing; quoted lines (`>`) only join
/// lines of the same depth; the signature separator `-- ` never flows.
enum FormatFlowed {
    static func unwrap(_ text: String, delSp: Bool) -> String {
        var out: [String] = []
        var current: String?
        var currentDepth = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = Substring(raw)
            var depth = 0
            while line.first == ">" { depth += 1; line = line.dropFirst() }
            if line.first == " " { line = line.dropFirst() } // space-stuffing
            let prefix = String(repeating: ">", count: depth) + (depth > 0 ? " " : "")
            let flowed = line.hasSuffix(" ") && line != "-- "
            var content = String(line)
            if flowed && delSp { content.removeLast() }
            if let c = current, currentDepth == depth {
                current = c + content
            } else {
                if let c = current { out.append(c) }
                current = prefix + content
                currentDepth = depth
            }
            if !flowed {
                out.append(current ?? "")
                current = nil
            }
        }
        if let c = current { out.append(c) }
        return out.joined(separator: "\n")
    }
}
