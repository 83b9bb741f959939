import Foundation

/// Separates the new text of a reply from the quoted history below it. The full body is always
/// kept beside the result: customers answer inline, and a wrong cut must never lose text.
public enum QuoteStripper {
    public struct Result: Sendable, Hashable {
        /// The reply without the quoted history (trimmed).
        public var text: String
        /// The whole body (line ends normalised to LF, trailing whitespace trimmed).
        public var fullText: String
        /// What was cut, when anything was.
        public var quoted: String?
        /// Which rule cut (`on_wrote`, `original_message`, `outlook_header`, `quote_block`, …).
        public var marker: String?
        public var stripped: Bool { quoted != nil }
    }

    /// Splits `body` into (new text, full text). Rules, first match from the top wins:
    /// - an attribution line: `On … wrote:` (also wrapped over two or three lines), its common
    ///   translations, Korean `… 작성:`, Japanese `… のメッセージ:` / `…書きました:` / `…のメール:`,
    ///   Gmail's Japanese `2024年3月5日(火) 14:15 名前 <addr>:`;
    /// - a separator: `-----Original Message-----`, `-----원본 메시지-----`, `-----元のメッセージ-----`
    ///   and translations (any number of dashes, optional spaces);
    /// - an Outlook header block: a `From:` line (or `보낸 사람:`, `差出人:`, `送信者:`, `Von:`, `De :`)
    ///   followed by at least two `Sent:`/`Date:`/`To:`/`Subject:`/`Cc:` lines (localised too), one
    ///   of them a subject or the `From:` with an address, with a preceding `____` rule cut as well;
    /// - a trailing block of `>`-quoted lines.
    /// An attribution followed by answers written between its quoted lines cuts nothing.
    /// When a cut would leave nothing (the mail starts with the quote, e.g. a bare forward), the
    /// whole body is the text.
    public static func strip(_ body: String) -> Result {
        let normalized = body.replacingAll("\r\n", with: "\n").replacingAll("\r", with: "\n")
        let lines = normalized.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let full = trimTrailing(lines).joined(separator: "\n")

        var cut: Int?
        var marker: String?
        scan: for i in lines.indices {
            let line = lines[i].trimmingSpaces()
            if line.isEmpty { continue }
            if isSeparator(line) { cut = i; marker = "original_message"; break scan }
            if let span = attributionSpan(lines, i) {
                // Answers written between the quoted lines below (`> Order number?` / `12345`)
                // are the reply itself: nothing is cut.
                if answersInline(lines, after: i + span) { break scan }
                cut = i
                marker = "on_wrote"
                break scan
            }
            if isOutlookHeaderBlock(lines, i) {
                cut = i
                // A horizontal rule right above the block belongs to it.
                var j = i - 1
                while j >= 0 && lines[j].trimmingSpaces().isEmpty { j -= 1 }
                if j >= 0 && isRule(lines[j].trimmingSpaces()) { cut = j }
                marker = "outlook_header"
                break scan
            }
        }

        var kept = Array(lines[..<(cut ?? lines.count)])
        // A trailing `>`-quoted block (after the cut, or in a body with no marker).
        var end = kept.count
        while end > 0 && kept[end - 1].trimmingSpaces().isEmpty { end -= 1 }
        var q = end
        while q > 0 {
            let t = kept[q - 1].trimmingSpaces()
            if t.hasPrefix(">") || t.isEmpty {
                q -= 1
            } else {
                break
            }
        }
        // The block must start with a quoted line (blank lines are only allowed inside it).
        while q < end && kept[q].trimmingSpaces().isEmpty { q += 1 }
        if q < end {
            kept = Array(kept[..<q])
            if marker == nil { marker = "quote_block" }
            // An attribution line directly above a quote block (`Jane wrote:`) goes too.
            var k = kept.count - 1
            while k >= 0 && kept[k].trimmingSpaces().isEmpty { k -= 1 }
            if k >= 0 {
                let t = kept[k].trimmingSpaces()
                if t.hasSuffix(":") && (t.lowercased().hasSuffix("wrote:") || t.hasSuffix("작성:") || t.hasSuffix("書きました:") || t.hasSuffix("のメッセージ:")) {
                    kept = Array(kept[..<k])
                }
            }
        }
        let text = trimTrailing(kept).joined(separator: "\n").trimmingWhitespace()
        if marker == nil || text.isEmpty {
            return Result(text: full.trimmingWhitespace(), fullText: full, quoted: nil, marker: nil)
        }
        let quoted = lines.count > kept.count ? lines[kept.count...].joined(separator: "\n").trimmingWhitespace() : ""
        return Result(text: text, fullText: full, quoted: quoted, marker: marker)
    }

    private static func trimTrailing(_ lines: [String]) -> [String] {
        var l = lines.map { s -> String in
            var t = Substring(s)
            while let last = t.last, last == " " || last == "\t" { t = t.dropLast() }
            return String(t)
        }
        while l.last?.isEmpty == true { l.removeLast() }
        return l
    }

    // MARK: Rules

    private static let separatorWords = [
        "original message", "원본 메시지", "元のメッセージ", "オリジナル メッセージ", "ursprüngliche nachricht",
        "message d'origine", "mensaje original", "messaggio originale", "oorspronkelijk bericht", "mensagem original",
        "исходное сообщение", "原始邮件", "原始郵件",
    ]

    /// `-----Original Message-----` and friends: dashes (or full-width ones) around a known word.
    static func isSeparator(_ line: String) -> Bool {
        guard line.hasPrefix("--") || line.hasPrefix("－－") || line.hasPrefix("——") else { return false }
        let inner = line.trimmingCharacters(in: CharacterSet(charactersIn: "-－— ")).lowercased()
        return separatorWords.contains(inner)
    }

    static func isRule(_ line: String) -> Bool {
        line.count >= 10 && line.allSatisfy { $0 == "_" || $0 == "-" || $0 == "=" || $0 == "─" }
    }

    private static let wroteEndings = [
        "wrote:", "schrieb:", "a écrit :", "a écrit:", "escribió:", "escreveu:", "ha scritto:", "geschreven:", "napisał(a):",
        "написал:", "написала:", "skrev:", "kirjoitti:",
    ]

    private static func isAttributionEnd(_ s: String) -> Bool {
        let t = s.trimmingSpaces()
        let lower = t.lowercased()
        if wroteEndings.contains(where: { lower.hasSuffix($0) }) { return true }
        // Korean (Gmail: `2024년 3월 5일 (화) 오후 2:15, 홍길동 <hong@example.com>님이 작성:`).
        if t.hasSuffix("작성:") || t.hasSuffix("작성：") { return true }
        // Japanese (Apple Mail `…のメール:`, Outlook/Thunderbird `…のメッセージ:`, `…書きました:`).
        for suffix in ["のメッセージ:", "のメッセージ：", "書きました:", "書きました：", "のメール:", "のメール："] where t.hasSuffix(suffix) {
            return true
        }
        return false
    }

    private static let attributionStarts = ["on ", "am ", "le ", "el ", "em ", "il ", "op ", "dnia ", "den "]

    /// The number of lines an attribution at `i` spans (1–3), or nil.
    static func attributionSpan(_ lines: [String], _ i: Int) -> Int? {
        let first = lines[i].trimmingSpaces()
        if isAttributionEnd(first) && looksLikeAttribution(first) { return 1 }
        if isGmailJapanese(first) { return 1 }
        // Wrapped: `On Tue, 5 Mar 2024 at 14:15, Jane Doe <` / `jane@example.com> wrote:`.
        let lower = first.lowercased()
        let startsLikeOn = attributionStarts.contains { lower.hasPrefix($0) } || startsWithDate(first)
        guard startsLikeOn else { return nil }
        var joined = first
        for extra in 1...2 where i + extra < lines.count {
            let next = lines[i + extra].trimmingSpaces()
            if next.isEmpty { return nil }
            joined += " " + next
            if isAttributionEnd(joined) { return extra + 1 }
        }
        return nil
    }

    /// Guards against ordinary sentences that happen to end in "wrote:": an attribution names a
    /// date, a time or an address, or starts with the localised "On".
    private static func looksLikeAttribution(_ t: String) -> Bool {
        let lower = t.lowercased()
        if attributionStarts.contains(where: { lower.hasPrefix($0) }) { return true }
        if t.contains("@") || t.contains(":") && t.dropLast().contains(":") { return true }
        return t.contains(where: { $0.isNumber })
    }

    private static func startsWithDate(_ t: String) -> Bool {
        // `2024年…`, `2024/03/05 …`, `2024-03-05 …`, `2024년 …`.
        let digits = t.prefix { $0.isASCII && $0.isNumber }
        return digits.count == 4 && t.count > 5
    }

    /// Gmail in Japanese: `2024年3月5日(火) 14:15 山田太郎 <taro@example.jp>:`.
    private static func isGmailJapanese(_ t: String) -> Bool {
        guard startsWithDate(t), t.contains("年"), t.contains("月") else { return false }
        return t.hasSuffix(">:") || t.hasSuffix(">：")
    }

    private static let fromKeys = ["from:", "보낸 사람:", "보낸사람:", "差出人:", "送信者:", "von:", "de :", "de:", "van:", "da:", "от:", "发件人:"]
    private static let otherKeys = ["sent:", "date:", "to:", "subject:", "cc:", "보낸 날짜:", "받는 사람:", "제목:", "참조:", "날짜:",
                                    "送信日時:", "宛先:", "件名:", "日付:", "gesendet:", "an:", "betreff:", "envoyé :", "envoyé:",
                                    "à :", "objet :", "enviado:", "para:", "asunto:", "verzonden:", "aan:", "onderwerp:",
                                    "inviato:", "oggetto:", "отправлено:", "кому:", "тема:", "发送时间:", "收件人:", "主题:"]

    private static let subjectKeys = ["subject:", "제목:", "件名:", "betreff:", "objet :", "objet:", "asunto:", "onderwerp:", "oggetto:",
                                      "assunto:", "тема:", "主题:", "主旨:"]

    /// Whether the customer wrote between the `>`-quoted lines that follow an attribution: a
    /// line of their own below a quoted one.
    static func answersInline(_ lines: [String], after start: Int) -> Bool {
        var sawQuote = false
        for line in lines[min(start, lines.count)...] {
            let t = line.trimmingSpaces()
            if t.isEmpty { continue }
            if t.hasPrefix(">") { sawQuote = true } else if sawQuote { return true }
        }
        return false
    }

    /// A forwarded or quoted message's header block: a `From:` line and at least two more
    /// header lines, one of them a subject, or a `From:` with an address (`From: Berlin` /
    /// `To: Paris` / `Date: 5 May` in a customer's own text is not one).
    static func isOutlookHeaderBlock(_ lines: [String], _ i: Int) -> Bool {
        let first = lines[i].trimmingSpaces().replacingAll("*", with: "")
        guard fromKeys.contains(where: { first.lowercased().hasPrefix($0) }) else { return false }
        var headerLines = 0
        var subject = false
        var j = i + 1
        while j < lines.count && j <= i + 6 {
            let t = lines[j].trimmingSpaces().replacingAll("*", with: "").lowercased()
            if t.isEmpty { break }
            if otherKeys.contains(where: { t.hasPrefix($0) }) || subjectKeys.contains(where: { t.hasPrefix($0) }) {
                headerLines += 1
                if subjectKeys.contains(where: { t.hasPrefix($0) }) { subject = true }
            } else if headerLines == 0 {
                // A wrapped From: value (long display name) may take one more line.
                if j > i + 1 { break }
            }
            j += 1
        }
        return headerLines >= 2 && (subject || first.contains("@"))
    }
}
