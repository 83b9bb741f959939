import Foundation

/// Plain text from an HTML body (for HTML-only mail and for the text fallback): tags removed,
/// entities decoded, `<style>`, `<script>`, `<head>` and comments dropped, line breaks kept for
/// `<br>` and block elements (`<p>` gives a blank line, `<div>`, `<li>`, `<tr>`, headings… a line
/// break; list items start with `- `), whitespace collapsed outside `<pre>`.
public enum HTMLText {
    private static let skipContent: Set<String> = ["style", "script", "head", "title", "template", "noscript", "xml"]
    private static let paragraphBlocks: Set<String> = ["p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl"]
    private static let lineBlocks: Set<String> = ["div", "li", "tr", "section", "article", "header", "footer", "address", "dt", "dd",
                                                  "hr", "center", "form", "fieldset", "nav", "aside", "main", "figure", "figcaption",
                                                  "tbody", "thead", "tfoot", "caption", "body", "html"]

    public static func toText(_ html: String) -> String {
        let chars = Array(html.unicodeScalars)
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        var preDepth = 0
        var i = 0

        func trailingNewlines() -> Int {
            var n = 0
            var idx = out.endIndex
            while idx > out.startIndex {
                idx = out.index(before: idx)
                if out[idx] == "\n" { n += 1 } else { break }
            }
            return n
        }
        func ensureNewlines(_ n: Int) {
            pendingSpace = false
            guard !out.isEmpty else { return }
            let have = trailingNewlines()
            if have < n { for _ in have..<n { out.append("\n") } }
        }
        func emit(_ s: String) {
            for u in s.unicodeScalars { emitScalar(u) }
        }
        func emitScalar(_ u: Unicode.Scalar) {
            if preDepth > 0 {
                if u == "\r" { return }
                out.append(u)
                return
            }
            if u == " " || u == "\t" || u == "\n" || u == "\r" || u == "\u{0C}" {
                pendingSpace = true
                return
            }
            if pendingSpace, let last = out.last, last != "\n" { out.append(" ") }
            pendingSpace = false
            out.append(u)
        }

        while i < chars.count {
            let c = chars[i]
            if c == "<" {
                // Comment, doctype, processing instruction.
                if matches(chars, i, "<!--") {
                    i = find(chars, "-->", from: i + 4).map { $0 + 3 } ?? chars.count
                    continue
                }
                if i + 1 < chars.count, chars[i + 1] == "!" || chars[i + 1] == "?" {
                    i = findScalar(chars, ">", from: i + 1).map { $0 + 1 } ?? chars.count
                    continue
                }
                guard let close = tagEnd(chars, from: i + 1) else {
                    emitScalar(c)
                    i += 1
                    continue
                }
                let (name, isEnd) = tagName(chars, i + 1, close)
                i = close + 1
                if name.isEmpty {
                    // `<` followed by something that is no tag (`a < b`): text.
                    if !isEnd { emit("<") }
                    continue
                }
                if !isEnd && skipContent.contains(name) {
                    // Skip to the matching end tag. HTML may leave `</head>` out (the body
                    // starts it); any other missing end tag but a script's or a style's must not
                    // swallow the rest of the mail: then only the tag itself is dropped.
                    let end = findEndTag(chars, name, from: i)
                    let body = name == "head" ? findStartTag(chars, "body", from: i) : nil
                    if let body, body < (end ?? chars.count) {
                        i = body
                    } else if let end {
                        i = end
                    } else if name == "script" || name == "style" {
                        i = chars.count
                    }
                    continue
                }
                switch name {
                case "br":
                    pendingSpace = false
                    out.append("\n")
                case "li":
                    if !isEnd {
                        ensureNewlines(1)
                        out.append(contentsOf: "- ".unicodeScalars)
                    } else {
                        ensureNewlines(1)
                    }
                case "td", "th":
                    if isEnd { pendingSpace = true }
                case "pre":
                    ensureNewlines(2)
                    preDepth = max(0, preDepth + (isEnd ? -1 : 1))
                case _ where paragraphBlocks.contains(name):
                    ensureNewlines(2)
                case _ where lineBlocks.contains(name):
                    ensureNewlines(1)
                case "img":
                    if !isEnd, let alt = attribute(chars, i - 1, "alt"), !alt.isEmpty { emit(decodeEntities(alt)) }
                default:
                    break
                }
                continue
            }
            if c == "&" {
                let (decoded, next) = entity(chars, i)
                if let decoded {
                    if decoded == "\u{A0}" {
                        // A no-break space is a real space (it does not collapse) and reads as a plain one.
                        if pendingSpace, let last = out.last, last != "\n" { out.append(" ") }
                        pendingSpace = false
                        out.append(" ")
                    } else {
                        for u in decoded.unicodeScalars { emitScalar(u) }
                    }
                    i = next
                    continue
                }
            }
            emitScalar(c)
            i += 1
        }
        return tidy(String(out))
    }

    /// Trims spaces at line ends, collapses three or more line breaks into two, and trims.
    static func tidy(_ s: String) -> String {
        var lines = s.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            var l = Substring(line)
            while let last = l.last, last == " " || last == "\t" { l = l.dropLast() }
            return String(l)
        }
        var collapsed: [String] = []
        var blank = 0
        for l in lines {
            if l.isEmpty {
                blank += 1
                if blank > 1 { continue }
            } else {
                blank = 0
            }
            collapsed.append(l)
        }
        lines = collapsed
        while lines.first?.isEmpty == true { lines.removeFirst() }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines.joined(separator: "\n")
    }

    private static func matches(_ chars: [Unicode.Scalar], _ i: Int, _ s: String) -> Bool {
        let u = Array(s.unicodeScalars)
        guard i + u.count <= chars.count else { return false }
        for k in 0..<u.count where chars[i + k] != u[k] { return false }
        return true
    }

    private static func find(_ chars: [Unicode.Scalar], _ s: String, from: Int) -> Int? {
        var i = from
        while i < chars.count {
            if matches(chars, i, s) { return i }
            i += 1
        }
        return nil
    }

    private static func findScalar(_ chars: [Unicode.Scalar], _ c: Unicode.Scalar, from: Int) -> Int? {
        var i = from
        while i < chars.count {
            if chars[i] == c { return i }
            i += 1
        }
        return nil
    }

    /// The index of the `>` that ends a tag starting after `<`, honouring quoted attribute values.
    private static func tagEnd(_ chars: [Unicode.Scalar], from: Int) -> Int? {
        guard from < chars.count else { return nil }
        let first = chars[from]
        // `<` must be followed by a letter or `/` to open a tag.
        guard first == "/" || first.properties.isAlphabetic else { return nil }
        var quote: Unicode.Scalar?
        var i = from
        while i < chars.count {
            let c = chars[i]
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == ">" {
                return i
            }
            i += 1
        }
        return nil
    }

    private static func tagName(_ chars: [Unicode.Scalar], _ start: Int, _ end: Int) -> (String, Bool) {
        var i = start
        var isEnd = false
        if i < end && chars[i] == "/" { isEnd = true; i += 1 }
        var name = ""
        while i < end {
            let c = chars[i]
            if c.properties.isAlphabetic || ("0"..."9").contains(c) || c == ":" || c == "-" {
                name.unicodeScalars.append(c)
                i += 1
            } else {
                break
            }
        }
        return (name.lowercased(), isEnd)
    }

    /// Where the next `<name …>` start tag begins.
    private static func findStartTag(_ chars: [Unicode.Scalar], _ name: String, from: Int) -> Int? {
        var i = from
        while i < chars.count {
            if chars[i] == "<", i + 1 < chars.count, chars[i + 1] != "/" {
                let (n, isEnd) = tagName(chars, i + 1, min(chars.count, i + 1 + name.count + 1))
                if n == name && !isEnd { return i }
            }
            i += 1
        }
        return nil
    }

    private static func findEndTag(_ chars: [Unicode.Scalar], _ name: String, from: Int) -> Int? {
        var i = from
        while i < chars.count {
            if chars[i] == "<", i + 1 < chars.count, chars[i + 1] == "/" {
                let (n, _) = tagName(chars, i + 1, min(chars.count, i + 2 + name.count + 1))
                if n == name {
                    return findScalar(chars, ">", from: i).map { $0 + 1 } ?? chars.count
                }
            }
            i += 1
        }
        return nil
    }

    /// The value of attribute `name` in the tag ending at `tagClose` (the `>` index).
    private static func attribute(_ chars: [Unicode.Scalar], _ tagClose: Int, _ name: String) -> String? {
        var start = tagClose
        while start > 0 && chars[start] != "<" { start -= 1 }
        guard tagClose > start else { return nil }
        let tag = String(String.UnicodeScalarView(chars[start...tagClose]))
        let lower = tag.lowercased()
        guard let r = lower.range(of: " \(name)=") ?? lower.range(of: "\t\(name)=") ?? lower.range(of: "\n\(name)=") else { return nil }
        let offset = lower.distance(from: lower.startIndex, to: r.upperBound)
        let rest = Array(tag.dropFirst(offset))
        guard let q = rest.first else { return nil }
        if q == "\"" || q == "'" {
            let value = rest.dropFirst().prefix { $0 != q }
            return String(value)
        }
        return String(rest.prefix { $0 != " " && $0 != ">" && $0 != "/" })
    }

    // MARK: Entities

    private static let named: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}", "copy": "©", "reg": "®",
        "trade": "™", "hellip": "…", "mdash": "—", "ndash": "–", "lsquo": "‘", "rsquo": "’", "ldquo": "“",
        "rdquo": "”", "sbquo": "‚", "bdquo": "„", "bull": "•", "middot": "·", "euro": "€", "pound": "£",
        "yen": "¥", "cent": "¢", "sect": "§", "para": "¶", "deg": "°", "plusmn": "±", "times": "×", "divide": "÷",
        "laquo": "«", "raquo": "»", "lsaquo": "‹", "rsaquo": "›", "iexcl": "¡", "iquest": "¿", "shy": "",
        "zwnj": "", "zwj": "", "lrm": "", "rlm": "", "ensp": " ", "emsp": " ", "thinsp": " ", "dagger": "†",
        "Dagger": "‡", "permil": "‰", "prime": "′", "Prime": "″", "larr": "←", "rarr": "→", "uarr": "↑",
        "darr": "↓", "harr": "↔", "hearts": "♥", "check": "✓", "frac12": "½", "frac14": "¼", "frac34": "¾",
        "sup2": "²", "sup3": "³", "micro": "µ", "ordf": "ª", "ordm": "º", "not": "¬", "macr": "¯", "acute": "´",
        "cedil": "¸", "uml": "¨", "szlig": "ß", "auml": "ä", "ouml": "ö", "uuml": "ü", "Auml": "Ä", "Ouml": "Ö",
        "Uuml": "Ü", "eacute": "é", "egrave": "è", "ecirc": "ê", "euml": "ë", "Eacute": "É", "Egrave": "È",
        "aacute": "á", "agrave": "à", "acirc": "â", "atilde": "ã", "aring": "å", "aelig": "æ", "ccedil": "ç",
        "Ccedil": "Ç", "iacute": "í", "igrave": "ì", "icirc": "î", "iuml": "ï", "ntilde": "ñ", "Ntilde": "Ñ",
        "oacute": "ó", "ograve": "ò", "ocirc": "ô", "otilde": "õ", "oslash": "ø", "uacute": "ú", "ugrave": "ù",
        "ucirc": "û", "yacute": "ý", "yuml": "ÿ", "Aacute": "Á", "Agrave": "À", "Acirc": "Â", "Aring": "Å",
        "AElig": "Æ", "Oacute": "Ó", "Oslash": "Ø", "Uacute": "Ú", "oelig": "œ", "OElig": "Œ", "scaron": "š",
        "Scaron": "Š", "zcaron": "ž", "Zcaron": "Ž", "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ",
        "pi": "π", "mu": "μ", "Omega": "Ω", "infin": "∞", "ne": "≠", "le": "≤", "ge": "≥", "minus": "−",
    ]

    /// Decodes the entity at `i` (an `&`). Returns nil (and `i + 1`) when there is none.
    private static func entity(_ chars: [Unicode.Scalar], _ i: Int) -> (String?, Int) {
        var j = i + 1
        if j < chars.count && chars[j] == "#" {
            j += 1
            var hex = false
            if j < chars.count && (chars[j] == "x" || chars[j] == "X") { hex = true; j += 1 }
            var value: UInt32 = 0
            let digitsStart = j
            while j < chars.count && j - digitsStart < 8 {
                let c = chars[j]
                if let d = hex ? Int(String(c), radix: 16) : Int(String(c), radix: 10), c.isASCII {
                    value = value &* (hex ? 16 : 10) &+ UInt32(d)
                    j += 1
                } else {
                    break
                }
            }
            guard j > digitsStart else { return (nil, i + 1) }
            if j < chars.count && chars[j] == ";" { j += 1 }
            if value == 0 || value > 0x10FFFF { return ("\u{FFFD}", j) }
            // Windows-1252 code points written as numeric references (`&#146;`).
            if value >= 0x80 && value < 0xA0 { return (Charset.windows1252([UInt8(value)]), j) }
            return (Unicode.Scalar(value).map { String(Character($0)) } ?? "\u{FFFD}", j)
        }
        var name = ""
        while j < chars.count && name.unicodeScalars.count < 10 && (chars[j].properties.isAlphabetic || ("0"..."9").contains(chars[j])) && chars[j].isASCII {
            name.unicodeScalars.append(chars[j])
            j += 1
        }
        guard !name.isEmpty else { return (nil, i + 1) }
        if let v = named[name] ?? named[name.lowercased()] {
            if j < chars.count && chars[j] == ";" { j += 1 }
            return (v, j)
        }
        return (nil, i + 1)
    }

    /// Decodes entities in an attribute value or short text.
    public static func decodeEntities(_ s: String) -> String {
        guard s.contains("&") else { return s }
        let chars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < chars.count {
            if chars[i] == "&" {
                let (d, next) = entity(chars, i)
                if let d {
                    out.append(contentsOf: d.unicodeScalars)
                    i = next
                    continue
                }
            }
            out.append(chars[i])
            i += 1
        }
        return String(out)
    }
}
