import EmailParsing
import Foundation
import SwitchboardCore

/// An attachment for an outbound message.
public struct OutboundAttachment: Sendable, Hashable {
    public var bytes: [UInt8]
    public var mimeType: String
    public var filename: String
    public init(bytes: [UInt8], mimeType: String, filename: String) { self.bytes = bytes; self.mimeType = mimeType; self.filename = filename }
}

/// Everything one outbound mail consists of.
public struct OutboundEmail: Sendable {
    public var from: EmailAddress
    public var to: [EmailAddress]
    public var cc: [EmailAddress] = []
    public var replyTo: String?
    public var subject: String
    public var messageID: String
    public var inReplyTo: String?
    public var references: [String] = []
    public var date: Date = Date()
    /// `auto-replied` / `auto-generated` for automatic messages (RFC 3834), nil for a person's reply.
    public var autoSubmitted: String?
    public var text: String
    /// nil: a text/plain message only.
    public var html: String?
    public var attachments: [OutboundAttachment] = []
    public var extraHeaders: [(String, String)] = []

    public init(from: EmailAddress, to: [EmailAddress], subject: String, messageID: String, text: String, html: String? = nil) {
        self.from = from; self.to = to; self.subject = subject; self.messageID = messageID; self.text = text; self.html = html
    }
}

/// Writes RFC 5322 / MIME messages: 7-bit only (quoted-printable text, base64 files), CRLF line
/// ends, lines ≤ 78 characters, RFC 2047 encoded words for non-ASCII header text, RFC 2231 and
/// RFC 2047 filenames, random boundaries that can't occur in the encoded content.
public enum MIMEBuilder {
    public static func build(_ m: OutboundEmail) -> [UInt8] {
        var head: [String] = []
        head.append(field("From", address(m.from)))
        head.append(field("To", m.to.map(address).joined(separator: ", ")))
        if !m.cc.isEmpty { head.append(field("Cc", m.cc.map(address).joined(separator: ", "))) }
        if let r = m.replyTo { head.append(field("Reply-To", "<\(r)>")) }
        head.append(unstructured("Subject", m.subject))
        head.append(field("Date", rfc5322Date(m.date)))
        head.append(field("Message-ID", "<\(m.messageID)>"))
        if let r = m.inReplyTo { head.append(field("In-Reply-To", "<\(r)>")) }
        let refs = trimmedReferences(m.references)
        if !refs.isEmpty { head.append(field("References", refs.map { "<\($0)>" }.joined(separator: " "))) }
        if let a = m.autoSubmitted {
            head.append(field("Auto-Submitted", a))
            head.append(field("X-Auto-Response-Suppress", "All"))
        }
        for (k, v) in m.extraHeaders { head.append(unstructured(k, v)) }
        head.append("MIME-Version: 1.0")

        let textPart = Entity(headers: ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"],
                              body: quotedPrintable(m.text))
        var body: Entity = textPart
        if let html = m.html {
            let htmlPart = Entity(headers: ["Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"],
                                  body: quotedPrintable(html))
            body = multipart("alternative", [textPart, htmlPart])
        }
        if !m.attachments.isEmpty {
            var parts = [body]
            for a in m.attachments {
                let name = sanitizeFilename(a.filename)
                let type = contentType(a.mimeType)
                parts.append(Entity(headers: [
                    "Content-Type: \(type);" + "\r\n\tname=\(headerParameterFallback(name))",
                    "Content-Transfer-Encoding: base64",
                    "Content-Disposition: attachment;" + "\r\n\t" + filenameParameters(name),
                ], body: base64Lines(a.bytes)))
            }
            body = multipart("mixed", parts)
        }
        var out = head.joined(separator: "\r\n") + "\r\n"
        out += body.headers.joined(separator: "\r\n") + "\r\n\r\n"
        out += body.body
        return Array(out.utf8)
    }

    struct Entity { var headers: [String]; var body: String }

    static func multipart(_ subtype: String, _ parts: [Entity]) -> Entity {
        let boundary = "=_sb_" + Hex.encode((0..<12).map { _ in UInt8.random(in: 0...255) })
        var body = "This is a multipart message in MIME format.\r\n"
        for p in parts {
            body += "\r\n--\(boundary)\r\n" + p.headers.joined(separator: "\r\n") + "\r\n\r\n" + p.body
            if !body.hasSuffix("\r\n") { body += "\r\n" }
        }
        body += "--\(boundary)--\r\n"
        // The CRLF before each delimiter belongs to it: parts end without an extra blank line.
        body = body.replacingOccurrences(of: "\r\n\r\n--\(boundary)", with: "\r\n--\(boundary)")
        return Entity(headers: ["Content-Type: multipart/\(subtype);\r\n\tboundary=\"\(boundary)\""], body: body)
    }

    // MARK: headers

    /// A structured header. Callers pass checked values; a line break in one is still replaced,
    /// so no input can end the header or start another.
    static func field(_ name: String, _ value: String) -> String {
        fold("\(name): \(value.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " "))")
    }

    /// A media type as `Content-Type` takes it (`type/subtype`, RFC 2045 tokens), else
    /// `application/octet-stream`: the helpdesk's `mime_type` never writes header text.
    static func contentType(_ type: String) -> String {
        let tspecials = Set("()<>@,;:\\\"/[]?= ".unicodeScalars)
        func token(_ s: Substring) -> Bool {
            !s.isEmpty && s.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F && !tspecials.contains($0) }
        }
        let halves = type.split(separator: "/", omittingEmptySubsequences: false)
        guard halves.count == 2, token(halves[0]), token(halves[1]) else { return "application/octet-stream" }
        return type.lowercased()
    }

    /// Folds a structured header at spaces so lines stay ≤ 78 characters where possible.
    static func fold(_ line: String) -> String {
        guard line.count > 78 else { return line }
        var out = ""
        var current = ""
        for word in line.split(separator: " ", omittingEmptySubsequences: false) {
            if current.isEmpty { current = String(word); continue }
            if current.count + 1 + word.count > 78 {
                out += current + "\r\n"
                current = " " + word
            } else {
                current += " " + word
            }
        }
        return out + current
    }

    /// An unstructured header (Subject): ASCII as is, otherwise RFC 2047 B-encoded words of at
    /// most 75 characters each, never splitting a UTF-8 sequence.
    static func unstructured(_ name: String, _ value: String) -> String {
        let clean = value.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        if clean.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 }) && !clean.contains("=?") { return field(name, clean) }
        return "\(name): " + encodedWords(clean).joined(separator: "\r\n ")
    }

    static func encodedWords(_ s: String) -> [String] {
        // "=?utf-8?B?" + base64 + "?=" ≤ 75 → base64 ≤ 63 → ≤ 45 bytes per word.
        var words: [String] = []
        var chunk: [UInt8] = []
        for ch in s {
            let bytes = Array(String(ch).utf8)
            if chunk.count + bytes.count > 45 {
                words.append("=?utf-8?B?" + Data(chunk).base64EncodedString() + "?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty || words.isEmpty { words.append("=?utf-8?B?" + Data(chunk).base64EncodedString() + "?=") }
        return words
    }

    /// `"Name" <addr>` with the name encoded when needed.
    static func address(_ a: EmailAddress) -> String {
        guard let name = a.displayName, !name.isEmpty else { return "<\(a.address)>" }
        let clean = name.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        if clean.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 }) && !clean.contains("=?") {
            let quoted = clean.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(quoted)\" <\(a.address)>"
        }
        return encodedWords(clean).joined(separator: " ") + " <\(a.address)>"
    }

    /// Keeps the first id and the last ten when the chain is long (clients truncate the same way).
    static func trimmedReferences(_ ids: [String]) -> [String] {
        let unique = MessageIDs.unique(ids)
        guard unique.count > 11 else { return unique }
        return [unique[0]] + unique.suffix(10)
    }

    static func rfc5322Date(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return f.string(from: d)
    }

    static func sanitizeFilename(_ name: String) -> String {
        var n = name.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "\\", with: "_")
        n = String(n.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.map(Character.init))
        while n.hasPrefix(".") { n.removeFirst() }
        return n.isEmpty ? "attachment" : n
    }

    /// `name="…"`: ASCII names quoted, others as one RFC 2047 word list (what many clients read).
    static func headerParameterFallback(_ name: String) -> String {
        if name.unicodeScalars.allSatisfy({ $0.isASCII }) {
            return "\"" + name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        return "\"" + encodedWords(name).joined(separator: " ") + "\""
    }

    /// `filename="…"` (ASCII fallback) and `filename*=utf-8''…` (RFC 2231) for non-ASCII names.
    static func filenameParameters(_ name: String) -> String {
        if name.unicodeScalars.allSatisfy({ $0.isASCII }) { return "filename=" + headerParameterFallback(name) }
        let ascii = String(name.unicodeScalars.map { $0.isASCII ? Character($0) : "_" })
        var pct = ""
        for b in name.utf8 {
            let c = Character(Unicode.Scalar(b))
            if b < 0x80, c.isLetter || c.isNumber || "-._~".contains(c) { pct.append(c) } else { pct += String(format: "%%%02X", b) }
        }
        return "filename=\"\(ascii)\";\r\n\tfilename*=utf-8''\(pct)"
    }

    // MARK: body encodings

    /// Quoted-printable (RFC 2045) of UTF-8 text, with CRLF line breaks and soft breaks at 76.
    public static func quotedPrintable(_ text: String) -> String {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        var out = ""
        let lines = normalized.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            var current = ""
            let bytes = Array(line.utf8)
            for (i, b) in bytes.enumerated() {
                let isLast = i == bytes.count - 1
                var piece: String
                if (b >= 33 && b <= 126 && b != 61) || ((b == 32 || b == 9) && !isLast) {
                    piece = String(UnicodeScalar(b))
                } else {
                    piece = String(format: "=%02X", b)
                }
                // A line starting with "." or "From " is encoded so no relay rewrites it.
                if current.isEmpty && b == 46 { piece = "=2E" }
                if current.isEmpty && b == 70 && bytes[i...].starts(with: Array("From ".utf8)) { piece = "=46" }
                if current.count + piece.count > 75 {
                    out += current + "=\r\n"
                    current = ""
                }
                current += piece
            }
            out += current
            if index < lines.count - 1 { out += "\r\n" }
        }
        return out.hasSuffix("\r\n") ? out : out + "\r\n"
    }

    static func base64Lines(_ bytes: [UInt8]) -> String {
        let b64 = Data(bytes).base64EncodedString()
        var out = ""
        var i = b64.startIndex
        while i < b64.endIndex {
            let j = b64.index(i, offsetBy: 76, limitedBy: b64.endIndex) ?? b64.endIndex
            out += b64[i..<j] + "\r\n"
            i = j
        }
        return out
    }

    // MARK: text → HTML

    /// A small markdown subset as HTML: paragraphs, line breaks, `- ` lists, `**bold**`, `*em*`,
    /// `` `code` ``, `[text](url)` and bare http(s) URLs as links. Everything else is escaped.
    public static func html(fromMarkdown text: String) -> String {
        var blocks: [String] = []
        let paragraphs = text.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n\n")
        for p in paragraphs {
            let lines = p.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            guard !lines.isEmpty else { continue }
            if lines.allSatisfy({ $0.hasPrefix("- ") || $0.hasPrefix("* ") }) {
                blocks.append("<ul>" + lines.map { "<li>" + inline(String($0.dropFirst(2))) + "</li>" }.joined() + "</ul>")
            } else {
                blocks.append("<p>" + lines.map(inline).joined(separator: "<br>\n") + "</p>")
            }
        }
        return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n" + blocks.joined(separator: "\n") + "\n</body></html>\n"
    }

    /// The same markdown subset as plain text: `[text](url)` → `text (url)`, emphasis markers removed.
    public static func plain(fromMarkdown text: String) -> String {
        var s = text
        s = replace(s, #"\[([^\]]+)\]\((https?://[^)\s]+)\)"#) { g in g[1] == g[2] ? g[1] : "\(g[1]) (\(g[2]))" }
        s = replace(s, #"\*\*([^*]+)\*\*"#) { $0[1] }
        s = replace(s, #"`([^`]+)`"#) { $0[1] }
        return s
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func inline(_ line: String) -> String {
        var s = escape(line)
        var links: [String] = []
        // Links first (their URLs must not be touched by the emphasis rules); placeholders keep them safe.
        s = replace(s, #"\[([^\]]+)\]\((https?://[^)\s]+)\)"#) { g in
            links.append("<a href=\"\(g[2])\">\(g[1])</a>"); return "\u{1}\(links.count - 1)\u{1}"
        }
        s = replace(s, #"(?<![\w/"=])(https?://[^\s<]+[^\s<.,;:!?)])"#) { g in
            links.append("<a href=\"\(g[1])\">\(g[1])</a>"); return "\u{1}\(links.count - 1)\u{1}"
        }
        s = replace(s, #"`([^`]+)`"#) { "<code>\($0[1])</code>" }
        s = replace(s, #"\*\*([^*]+)\*\*"#) { "<strong>\($0[1])</strong>" }
        s = replace(s, #"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])"#) { "<em>\($0[1])</em>" }
        s = replace(s, #"\x{01}(\d+)\x{01}"#) { links[Int($0[1])!] }
        return s
    }

    static func replace(_ s: String, _ pattern: String, _ f: ([String]) -> String) -> String {
        guard let re = try? NSRegularExpression(pattern: pattern) else { return s }
        let ns = s as NSString
        var out = ""
        var last = 0
        for m in re.matches(in: s, range: NSRange(location: 0, length: ns.length)) {
            out += ns.substring(with: NSRange(location: last, length: m.range.location - last))
            let groups = (0..<m.numberOfRanges).map { m.range(at: $0).location == NSNotFound ? "" : ns.substring(with: m.range(at: $0)) }
            out += f(groups)
            last = m.range.location + m.range.length
        }
        return out + ns.substring(from: last)
    }
}
