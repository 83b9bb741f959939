import Foundation

/// A `value; name=value; …` header (Content-Type, Content-Disposition) with its parameters
/// decoded: quoted strings unescaped, RFC 2231 continuations (`name*0`, `name*1*`) reassembled in
/// numeric order, `charset'lang'%XX` values converted, and (non-standard but common) RFC 2047
/// words inside plain values decoded. Parameter names are lower-cased.
public struct ParameterizedValue: Sendable, Hashable {
    /// The main value, lower-cased and trimmed (`text/plain`, `attachment`).
    public var value: String
    public var parameters: [String: String]

    public init(value: String, parameters: [String: String] = [:]) {
        self.value = value
        self.parameters = parameters
    }

    public subscript(name: String) -> String? { parameters[name.lowercased()] }

    /// Parses a header value; never fails.
    public init(parsing s: String) {
        let pieces = ParameterizedValue.split(s)
        value = (pieces.first ?? "").trimmingWhitespace().lowercased()
        var plain: [String: String] = [:]
        var extended: [String: String] = [:]            // name*=charset'lang'…
        var sections: [String: [(Int, String, Bool)]] = [:] // name*N[*]
        for piece in pieces.dropFirst() {
            guard let eq = piece.firstIndex(of: "=") else { continue }
            let rawName = piece[..<eq].trimmingWhitespace().lowercased()
            let rawValue = ParameterizedValue.unquote(piece[piece.index(after: eq)...].trimmingWhitespace())
            guard !rawName.isEmpty else { continue }
            if let star = rawName.firstIndex(of: "*") {
                let base = String(rawName[..<star])
                let rest = rawName[rawName.index(after: star)...]
                if rest.isEmpty {
                    extended[base] = rawValue
                } else {
                    let encoded = rest.hasSuffix("*")
                    let numberText = encoded ? rest.dropLast() : rest[...]
                    if let n = Int(numberText), n >= 0, n < 10_000 {
                        sections[base, default: []].append((n, rawValue, encoded))
                    }
                }
            } else if plain[rawName] == nil {
                plain[rawName] = rawValue
            }
        }
        var result: [String: String] = [:]
        for (name, v) in plain { result[name] = EncodedWords.decode(v) }
        for (name, parts) in sections {
            let sorted = parts.sorted { $0.0 < $1.0 }
            var charset: String?
            var bytes: [UInt8] = []
            // Adjacent encoded sections are joined before percent-decoding, so an escape split
            // across two sections by a careless sender still decodes.
            var encodedRun = ""
            for (index, (_, v, encoded)) in sorted.enumerated() {
                if encoded {
                    var text = Substring(v)
                    if index == 0 {
                        let (cs, rest) = ParameterizedValue.splitCharset(text)
                        charset = cs
                        text = rest
                    }
                    encodedRun += text
                } else {
                    bytes += ParameterizedValue.percentDecode(Substring(encodedRun))
                    encodedRun = ""
                    bytes += Array(v.utf8)
                }
            }
            bytes += ParameterizedValue.percentDecode(Substring(encodedRun))
            result[name] = ParameterizedValue.decodeExtendedBytes(bytes, charset: charset)
        }
        for (name, v) in extended {
            let (cs, rest) = ParameterizedValue.splitCharset(Substring(v))
            result[name] = ParameterizedValue.decodeExtendedBytes(ParameterizedValue.percentDecode(rest), charset: cs)
        }
        parameters = result
    }

    private static func decodeExtendedBytes(_ bytes: [UInt8], charset: String?) -> String {
        if let charset, !charset.isEmpty { return Charset.decode(bytes, label: charset) }
        return Charset.decode(bytes, label: nil)
    }

    /// `charset'lang'rest` → (charset, rest); without two quotes the whole text is the value.
    private static func splitCharset(_ s: Substring) -> (String?, Substring) {
        guard let q1 = s.firstIndex(of: "'") else { return (nil, s) }
        let afterQ1 = s.index(after: q1)
        guard let q2 = s[afterQ1...].firstIndex(of: "'") else { return (nil, s) }
        return (String(s[..<q1]), s[s.index(after: q2)...])
    }

    private static func percentDecode(_ s: Substring) -> [UInt8] {
        let u = Array(s.utf8)
        var out = [UInt8]()
        out.reserveCapacity(u.count)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "%"), i + 2 < u.count,
               let h = TransferEncoding.hexValue(u[i + 1]), let l = TransferEncoding.hexValue(u[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(u[i])
                i += 1
            }
        }
        return out
    }

    /// Splits at `;` outside quoted strings.
    private static func split(_ s: String) -> [String] {
        var pieces: [String] = []
        var current = ""
        var inQuotes = false
        var escaped = false
        for c in s {
            if escaped {
                current.append(c)
                escaped = false
                continue
            }
            if inQuotes && c == "\\" {
                current.append(c)
                escaped = true
                continue
            }
            if c == "\"" { inQuotes.toggle() }
            if c == ";" && !inQuotes {
                pieces.append(current)
                current = ""
                continue
            }
            current.append(c)
        }
        pieces.append(current)
        return pieces
    }

    private static func unquote(_ s: String) -> String {
        guard s.hasPrefix("\"") else { return s }
        var out = ""
        var escaped = false
        for c in s.dropFirst() {
            if escaped {
                out.append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else if c == "\"" {
                break
            } else {
                out.append(c)
            }
        }
        return out
    }
}

/// Content-Type with defaults applied.
public struct ContentType: Sendable, Hashable {
    /// `text`, `multipart`, … (lower-case).
    public var type: String
    public var subtype: String
    public var parameters: [String: String]

    public var mimeType: String { "\(type)/\(subtype)" }
    public var charset: String? { parameters["charset"] }
    public var boundary: String? { parameters["boundary"] }
    public var isMultipart: Bool { type == "multipart" }
    public var isText: Bool { type == "text" }

    public init(type: String, subtype: String, parameters: [String: String] = [:]) {
        self.type = type
        self.subtype = subtype
        self.parameters = parameters
    }

    /// Parses a Content-Type value; a missing or malformed one becomes `defaultType`.
    public init(parsing s: String?, default defaultType: ContentType = .textPlain) {
        guard let s, !s.trimmingSpaces().isEmpty else { self = defaultType; return }
        let p = ParameterizedValue(parsing: s)
        let pieces = p.value.split(separator: "/", maxSplits: 1).map { $0.trimmingSpaces() }
        if pieces.count == 2, !pieces[0].isEmpty, !pieces[1].isEmpty,
           pieces[0].allSatisfy({ $0.isLetter || $0.isNumber || "-.+_".contains($0) }) {
            type = pieces[0]
            subtype = pieces[1].split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) ?? pieces[1]
        } else if pieces.count == 1, pieces[0] == "text" {
            // `Content-Type: text` shows up in broken mail.
            type = "text"
            subtype = "plain"
        } else {
            type = defaultType.type
            subtype = defaultType.subtype
        }
        parameters = p.parameters
    }

    public static let textPlain = ContentType(type: "text", subtype: "plain")
    public static let messageRFC822 = ContentType(type: "message", subtype: "rfc822")
}
