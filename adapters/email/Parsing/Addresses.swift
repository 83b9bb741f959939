import Foundation

/// One mailbox from an address header.
public struct EmailAddress: Sendable, Hashable, CustomStringConvertible {
    /// The addr-spec, lower-cased (`jane.doe@example.com`); empty for the null path `<>`.
    public var address: String
    /// The display name with RFC 2047 words decoded, when there is one.
    public var displayName: String?
    /// The group the mailbox was listed in (`undisclosed-recipients: ;`), when any.
    public var group: String?

    public init(address: String, displayName: String? = nil, group: String? = nil) {
        self.address = address
        self.displayName = displayName
        self.group = group
    }

    public var localPart: String {
        guard let at = address.lastIndex(of: "@") else { return address }
        return String(address[..<at])
    }

    public var domain: String {
        guard let at = address.lastIndex(of: "@") else { return "" }
        return String(address[address.index(after: at)...])
    }

    /// Has a non-empty local part and a domain.
    public var isValid: Bool {
        guard let at = address.lastIndex(of: "@") else { return false }
        let local = address[..<at], domain = address[address.index(after: at)...]
        return !local.isEmpty && local != "\"\"" && !domain.isEmpty && !domain.contains(" ")
    }

    public var description: String {
        if let displayName, !displayName.isEmpty { return "\(displayName) <\(address)>" }
        return address
    }
}

/// RFC 5322 address-list parsing: display names (atoms, quoted strings, RFC 2047 words), angle
/// addresses, bare addr-specs, comments (used as the name when there is no other), groups, and
/// obsolete routes. The list is tokenised before any RFC 2047 decoding, so a decoded name
/// containing `,` `<` or `"` cannot break it. Never fails: junk yields fewer or odd entries.
public enum AddressParser {
    private enum Token: Equatable {
        case atom(String)
        case quoted(String)
        case comment(String)
        case angle(String)
        case special(Character)
    }

    public static func parse(_ s: String) -> [EmailAddress] {
        let tokens = tokenize(s)
        var result: [EmailAddress] = []
        var group: String?
        var current: [Token] = []

        func finish() {
            defer { current.removeAll() }
            guard !current.isEmpty else { return }
            if let a = mailbox(from: current, group: group) { result.append(a) }
        }

        for t in tokens {
            switch t {
            case .special(","):
                finish()
            case .special(":") where group == nil && !current.contains(where: { if case .angle = $0 { return true }; return false }):
                // `name:` starts a group; the words so far are its name.
                group = phrase(current)
                current.removeAll()
            case .special(";"):
                finish()
                group = nil
            default:
                current.append(t)
            }
            if result.count >= 1000 { break }
        }
        finish()
        return result
    }

    /// The first mailbox of a header value (From, Sender, Return-Path).
    public static func first(_ s: String?) -> EmailAddress? {
        guard let s else { return nil }
        return parse(s).first
    }

    private static func mailbox(from tokens: [Token], group: String?) -> EmailAddress? {
        let angleIndex = tokens.firstIndex { if case .angle = $0 { return true }; return false }
        var comments: [String] = []
        for t in tokens { if case .comment(let c) = t { comments.append(c) } }
        if let angleIndex, case .angle(let inner) = tokens[angleIndex] {
            var addr = inner.trimmingSpaces()
            // Obsolete route `<@a,@b:user@c>`.
            if addr.hasPrefix("@"), let colon = addr.firstIndex(of: ":") { addr = String(addr[addr.index(after: colon)...]) }
            addr = addr.replacingAll(" ", with: "")
            let name = phrase(Array(tokens[..<angleIndex])) ?? comments.first.map { EncodedWords.decode($0) }
            return EmailAddress(address: addr.lowercased(), displayName: nonEmpty(name), group: group)
        }
        // A bare addr-spec: concatenate the words, specials and quoted strings without spaces.
        var spec = ""
        for t in tokens {
            switch t {
            case .atom(let a): spec += a
            case .quoted(let q): spec += "\"" + q + "\""
            case .special(let c): spec.append(c)
            case .comment, .angle: break
            }
        }
        if spec.isEmpty { return nil }
        let name = comments.first.map { EncodedWords.decode($0) }
        return EmailAddress(address: spec.lowercased(), displayName: nonEmpty(name), group: group)
    }

    private static func nonEmpty(_ s: String?) -> String? {
        guard let t = s?.trimmingWhitespace(), !t.isEmpty else { return nil }
        return t
    }

    /// Words of a display name joined by single spaces, then RFC 2047-decoded (adjacent encoded
    /// words lose the space between them, as the RFC wants).
    private static func phrase(_ tokens: [Token]) -> String? {
        var words: [String] = []
        for t in tokens {
            switch t {
            case .atom(let a): words.append(a)
            case .quoted(let q): words.append(q)
            case .special(let c) where c == "." || c == "@": words.append(String(c))
            default: break
            }
        }
        guard !words.isEmpty else { return nil }
        var joined = ""
        for (i, w) in words.enumerated() {
            let glue: Set<String> = [".", "@"]
            if i > 0 && !glue.contains(w) && !glue.contains(words[i - 1]) { joined += " " }
            joined += w
        }
        return nonEmpty(EncodedWords.decode(joined))
    }

    private static func tokenize(_ s: String) -> [Token] {
        let chars = Array(s)
        var tokens: [Token] = []
        var i = 0
        let specials: Set<Character> = [",", ":", ";", "@", ".", "[", "]"]
        while i < chars.count {
            let c = chars[i]
            if c == " " || c == "\t" || c == "\r" || c == "\n" {
                i += 1
            } else if c == "\"" {
                var q = ""
                i += 1
                while i < chars.count && chars[i] != "\"" {
                    if chars[i] == "\\" && i + 1 < chars.count { i += 1 }
                    q.append(chars[i])
                    i += 1
                }
                i += 1
                tokens.append(.quoted(q))
            } else if c == "(" {
                var depth = 1
                var text = ""
                i += 1
                while i < chars.count && depth > 0 {
                    let d = chars[i]
                    if d == "\\" && i + 1 < chars.count {
                        text.append(chars[i + 1])
                        i += 2
                        continue
                    }
                    if d == "(" { depth += 1 }
                    if d == ")" { depth -= 1; if depth == 0 { i += 1; break } }
                    text.append(d)
                    i += 1
                }
                tokens.append(.comment(text))
            } else if c == "<" {
                var inner = ""
                i += 1
                var inQuote = false
                while i < chars.count && (chars[i] != ">" || inQuote) {
                    if chars[i] == "\"" { inQuote.toggle() }
                    inner.append(chars[i])
                    i += 1
                }
                i += 1
                tokens.append(.angle(inner))
            } else if specials.contains(c) {
                tokens.append(.special(c))
                i += 1
            } else if c == ">" || c == ")" {
                i += 1 // stray closer
            } else {
                var atom = ""
                while i < chars.count {
                    let d = chars[i]
                    if d == " " || d == "\t" || d == "\r" || d == "\n" || d == "\"" || d == "(" || d == "<" || d == ">" || d == ")"
                        || specials.contains(d) {
                        break
                    }
                    atom.append(d)
                    i += 1
                }
                tokens.append(.atom(atom))
            }
        }
        return tokens
    }
}
