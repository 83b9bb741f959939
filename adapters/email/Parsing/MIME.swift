import Foundation

/// Bounds that keep a hostile or broken message from exhausting the daemon.
public struct MIMELimits: Sendable, Hashable {
    /// Deeper multipart nesting is not descended into (the part is kept as opaque bytes).
    public var maxDepth: Int
    /// Parts beyond this count are not parsed.
    public var maxParts: Int
    /// Bytes beyond this are not parsed (the raw message is still kept whole by the caller).
    public var maxMessageBytes: Int

    public init(maxDepth: Int = 20, maxParts: Int = 500, maxMessageBytes: Int = 64 << 20) {
        self.maxDepth = max(1, maxDepth)
        self.maxParts = max(1, maxParts)
        self.maxMessageBytes = max(1024, maxMessageBytes)
    }

    public static let `default` = MIMELimits()
}

/// One node of the MIME tree.
public struct MIMEPart: Sendable, Hashable {
    public var headers: EmailHeaders
    public var contentType: ContentType
    /// Lower-cased Content-Transfer-Encoding (`7bit` when absent).
    public var transferEncoding: String
    public var disposition: ParameterizedValue?
    /// Content-ID without the angle brackets.
    public var contentID: String?
    /// The body as it appears in the message (still transfer-encoded); empty for multiparts.
    public var rawBody: [UInt8]
    public var children: [MIMEPart]
    /// IMAP-style part number (`1`, `2.1`, …); empty for the top level.
    public var path: String

    /// The body with its transfer encoding removed.
    public var decodedBody: [UInt8] { TransferEncoding.decode(rawBody, encoding: transferEncoding) }

    /// `attachment`, `inline`, or nil when there is no Content-Disposition.
    public var dispositionType: String? { disposition.map(\.value).flatMap { $0.isEmpty ? nil : $0 } }

    /// The filename the sender gave: Content-Disposition `filename` (RFC 2231 or plain), then
    /// Content-Type `name`, then the last segment of Content-Location.
    public var declaredFilename: String? {
        if let f = disposition?["filename"], !f.trimmingSpaces().isEmpty { return f }
        if let n = contentType.parameters["name"], !n.trimmingSpaces().isEmpty { return n }
        if let loc = headers["Content-Location"]?.trimmingSpaces(), !loc.isEmpty {
            let last = loc.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? loc
            let cleaned = last.split(separator: "?").first.map(String.init) ?? last
            if !cleaned.isEmpty { return cleaned }
        }
        return nil
    }

    /// Every part of the tree, depth first, this one included.
    public var allParts: [MIMEPart] {
        var out: [MIMEPart] = [self]
        for c in children { out += c.allParts }
        return out
    }
}

enum MIMEParser {
    struct Context {
        var limits: MIMELimits
        var parts = 0
        var warnings: [String] = []
        mutating func warn(_ s: String) { if warnings.count < 50 && !warnings.contains(s) { warnings.append(s) } }
    }

    static func parse(_ bytes: [UInt8], limits: MIMELimits) -> (MIMEPart, [String]) {
        var ctx = Context(limits: limits)
        let end = min(bytes.count, limits.maxMessageBytes)
        if end < bytes.count { ctx.warn("message larger than \(limits.maxMessageBytes) bytes: only the start was parsed") }
        let root = parsePart(bytes, start: 0, end: end, depth: 0, defaultType: .textPlain, path: "", ctx: &ctx)
        return (root, ctx.warnings)
    }

    static func parsePart(_ bytes: [UInt8], start: Int, end: Int, depth: Int, defaultType: ContentType, path: String,
                          ctx: inout Context) -> MIMEPart {
        ctx.parts += 1
        let (headers, bodyStart) = HeaderParser.parse(bytes, start: start, end: end)
        var contentType = ContentType(parsing: headers["Content-Type"], default: defaultType)
        let cte = (headers["Content-Transfer-Encoding"] ?? "7bit").trimmingSpaces().lowercased()
        let disposition = headers["Content-Disposition"].map { ParameterizedValue(parsing: $0) }
        var contentID = headers["Content-ID"].map(stripAngles)
        if contentID?.isEmpty == true { contentID = nil }
        var part = MIMEPart(headers: headers, contentType: contentType, transferEncoding: cte.isEmpty ? "7bit" : cte,
                            disposition: disposition, contentID: contentID, rawBody: [], children: [], path: path)
        let bodyStartClamped = min(bodyStart, end)

        guard contentType.isMultipart else {
            part.rawBody = Array(bytes[bodyStartClamped..<end])
            return part
        }
        if depth >= ctx.limits.maxDepth {
            ctx.warn("multipart nesting deeper than \(ctx.limits.maxDepth): inner parts kept unparsed")
            part.contentType = ContentType(type: "application", subtype: "octet-stream", parameters: [:])
            part.rawBody = Array(bytes[bodyStartClamped..<end])
            return part
        }
        let boundary = contentType.boundary.flatMap { $0.isEmpty ? nil : $0 } ?? sniffBoundary(bytes, start: bodyStartClamped, end: end)
        var ranges: [(Int, Int)] = []
        if let boundary {
            var closed = true
            ranges = split(bytes, start: bodyStartClamped, end: end, boundary: boundary, closed: &closed)
            if !closed && !ranges.isEmpty { ctx.warn("multipart without its final boundary: the last part runs to the end") }
        }
        if ranges.isEmpty {
            // No delimiter: keep the content as text rather than losing it.
            ctx.warn("multipart/\(contentType.subtype) without any boundary line: body kept as text")
            contentType = ContentType(type: "text", subtype: "plain", parameters: contentType.parameters.filter { $0.key == "charset" })
            part.contentType = contentType
            part.rawBody = Array(bytes[bodyStartClamped..<end])
            return part
        }
        let childDefault: ContentType = contentType.subtype == "digest" ? .messageRFC822 : .textPlain
        for (index, r) in ranges.enumerated() {
            if ctx.parts >= ctx.limits.maxParts {
                ctx.warn("more than \(ctx.limits.maxParts) MIME parts: the rest were not parsed")
                break
            }
            let childPath = path.isEmpty ? "\(index + 1)" : "\(path).\(index + 1)"
            part.children.append(parsePart(bytes, start: r.0, end: r.1, depth: depth + 1, defaultType: childDefault,
                                           path: childPath, ctx: &ctx))
        }
        return part
    }

    static func stripAngles(_ s: String) -> String {
        var t = s.trimmingWhitespace()
        if t.hasPrefix("<") { t.removeFirst() }
        if let close = t.firstIndex(of: ">") { t = String(t[..<close]) }
        return t.trimmingSpaces()
    }

    /// Without a boundary parameter: the first line that starts with `--` names it.
    static func sniffBoundary(_ bytes: [UInt8], start: Int, end: Int) -> String? {
        var i = start
        var lines = 0
        while i < end && lines < 200 {
            var lineEnd = i
            while lineEnd < end && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var contentEnd = lineEnd
            while contentEnd > i && (bytes[contentEnd - 1] == 0x0D || Bytes.isWSP(bytes[contentEnd - 1])) { contentEnd -= 1 }
            if contentEnd - i > 2 && bytes[i] == UInt8(ascii: "-") && bytes[i + 1] == UInt8(ascii: "-") {
                let b = String(decoding: bytes[(i + 2)..<contentEnd], as: UTF8.self)
                if !b.isEmpty && !b.hasPrefix("-") { return b }
            }
            i = lineEnd + 1
            lines += 1
        }
        return nil
    }

    /// The body ranges between delimiter lines. A delimiter is `--boundary` at the start of a line
    /// followed only by optional `--` (the close delimiter) and whitespace: a line that merely
    /// starts with the boundary (a nested part's longer boundary) is content. The line break
    /// before a delimiter belongs to the delimiter. The preamble and epilogue are dropped; a
    /// missing close delimiter ends the last part at `end` (`closed` is then false).
    static func split(_ bytes: [UInt8], start: Int, end: Int, boundary: String, closed: inout Bool) -> [(Int, Int)] {
        let delimiter = Array(("--" + boundary).utf8)
        var ranges: [(Int, Int)] = []
        var partStart: Int?
        var lineStart = start
        closed = false
        while lineStart < end {
            var lineEnd = lineStart
            while lineEnd < end && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            let next = lineEnd < end ? lineEnd + 1 : end
            if bytes[lineStart] == UInt8(ascii: "-"), let isClose = delimiterKind(bytes, lineStart, lineEnd, delimiter) {
                if let ps = partStart {
                    var bodyEnd = lineStart
                    if bodyEnd > ps && bytes[bodyEnd - 1] == 0x0A {
                        bodyEnd -= 1
                        if bodyEnd > ps && bytes[bodyEnd - 1] == 0x0D { bodyEnd -= 1 }
                    }
                    ranges.append((ps, max(ps, bodyEnd)))
                }
                if isClose {
                    closed = true
                    return ranges
                }
                partStart = next
            }
            lineStart = next
        }
        if let ps = partStart { ranges.append((ps, end)) }
        return ranges
    }

    /// nil when the line is no delimiter; otherwise whether it is the close delimiter.
    private static func delimiterKind(_ bytes: [UInt8], _ start: Int, _ end: Int, _ delimiter: [UInt8]) -> Bool? {
        guard end - start >= delimiter.count else { return nil }
        var k = 0
        while k < delimiter.count {
            if bytes[start + k] != delimiter[k] { return nil }
            k += 1
        }
        var i = start + delimiter.count
        var isClose = false
        if i + 1 < end, bytes[i] == UInt8(ascii: "-"), bytes[i + 1] == UInt8(ascii: "-") {
            isClose = true
            i += 2
        }
        while i < end {
            let b = bytes[i]
            if b != 0x20 && b != 0x09 && b != 0x0D { return nil }
            i += 1
        }
        return isClose
    }
}
