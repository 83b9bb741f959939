#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging

/// A swift-log handler that writes one line per message to stderr, in the form
/// journald understands when the daemon runs under systemd.
///
/// Under systemd, stderr is a stream connected to journald, which stores each line as
/// one entry and reads a leading `<N>` as the entry's syslog priority (with the default
/// `SyslogLevelPrefix=yes`). So in that case each line starts with the priority and has
/// no timestamp (journald records one):
///
///     <4>[switchboard.delivery] delivery failed attempt=3 helpdesk=desk
///
/// Elsewhere (a terminal, a container log, a file) each line starts with an ISO-8601
/// UTC timestamp and the level name instead:
///
///     2025-06-01T09:30:00.123Z warning [switchboard.delivery] delivery failed attempt=3 helpdesk=desk
///
/// Metadata follows the message as ` key=value` pairs in key order; values containing
/// whitespace, `"` or `=` are quoted. Newlines and other control characters inside a
/// message or value are escaped (`\n`, `\xHH`), because journald would split a
/// multi-line message into unrelated entries, and because log lines must not carry
/// terminal escape sequences from customer-supplied text.
///
/// Lines from all threads are serialised by a process-wide lock and each is written
/// with a single `write(2)` (repeated only after a partial write), so lines never
/// interleave.
public struct JournalLogHandler: LogHandler {
    /// The line format.
    public enum Style: Sendable, Equatable {
        /// `<N>` priority prefix, no timestamp: stderr is the journal.
        case journal
        /// Timestamp and level name: anything else.
        case plain
    }

    /// Where finished lines go. Injectable so tests (and tools) can capture lines.
    public struct Output: Sendable {
        let emit: @Sendable (String) -> Void

        /// Standard error, the stream systemd connects to the journal.
        public static var standardError: Output { fileDescriptor(2) }

        /// Any open descriptor; each line is written with a trailing newline.
        public static func fileDescriptor(_ fd: Int32) -> Output {
            Output { line in
                var bytes = Array(line.utf8)
                bytes.append(UInt8(ascii: "\n"))
                outputLock.lock()
                defer { outputLock.unlock() }
                bytes.withUnsafeBytes { _ = POSIX.writeAll(fd, $0) }
            }
        }

        /// Calls `body` with each finished line, without the trailing newline.
        public static func lines(_ body: @escaping @Sendable (String) -> Void) -> Output {
            Output(emit: body)
        }
    }

    /// The logger's label, shown in brackets so subsystems can be told apart.
    public let label: String
    /// The line format, fixed when the handler is made.
    public let style: Style
    /// Messages below this level are dropped by `Logger` before reaching the handler.
    public var logLevel: Logger.Level
    /// Metadata attached to every message from this logger.
    public var metadata: Logger.Metadata = [:]
    /// Contextual metadata (for example task-local request ids) added at log time.
    public var metadataProvider: Logger.MetadataProvider?
    private let output: Output

    /// - Parameters:
    ///   - label: The logger's label, printed in brackets to tell subsystems apart.
    ///   - style: Defaults to detecting whether stderr is the journal.
    ///   - output: Defaults to stderr.
    public init(
        label: String,
        style: Style = JournalLogHandler.detectStyle(),
        output: Output = .standardError,
        logLevel: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.style = style
        self.output = output
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, new in new }
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit) { _, new in new }
        }
        if let error = event.error, merged["error"] == nil {
            merged["error"] = .string(String(describing: error))
        }
        let line = Self.format(
            style: style,
            label: label,
            level: event.level,
            message: event.message.description,
            metadata: merged,
            timestamp: style == .plain ? POSIX.wallClock() : nil
        )
        output.emit(line)
    }

    // MARK: Setup

    /// Installs this handler for every `Logger` in the process, detecting once whether
    /// stderr is the journal. Call it once, first thing in `main` (swift-log allows
    /// only one bootstrap per process).
    public static func bootstrap(
        level: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        let style = detectStyle(environment: environment)
        LoggingSystem.bootstrap(
            { label, provider in
                JournalLogHandler(label: label, style: style, logLevel: level, metadataProvider: provider)
            },
            metadataProvider: metadataProvider
        )
    }

    /// `.journal` when `fd` (stderr by default) is the journal stream, else `.plain`.
    public static func detectStyle(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        fd: Int32 = 2
    ) -> Style {
        isJournalStream(fd: fd, environment: environment) ? .journal : .plain
    }

    /// True when `fd` is the stream systemd connected to journald.
    ///
    /// systemd sets `$JOURNAL_STREAM` to `device:inode` of that stream. The variable
    /// alone proves nothing: it is inherited by children whose stderr was redirected
    /// elsewhere (a shell pipeline, a log file). So compare it with `fstat` of the
    /// descriptor, as systemd.exec(5) advises.
    public static func isJournalStream(
        fd: Int32 = 2,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]),
              let actual = POSIX.deviceAndInode(of: fd)
        else { return false }
        return actual.device == device && actual.inode == inode
    }

    /// The syslog priority journald records for a level. swift-log has no `alert` or
    /// `emerg`; `critical` maps to `crit` (2), and `trace` shares `debug` (7).
    public static func syslogPriority(for level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    // MARK: Formatting

    /// Builds one line, without the trailing newline. `timestamp` (seconds since the
    /// epoch and milliseconds) is used in the plain style only.
    static func format(
        style: Style,
        label: String,
        level: Logger.Level,
        message: String,
        metadata: Logger.Metadata,
        timestamp: (seconds: Int, milliseconds: Int)?
    ) -> String {
        var line = ""
        line.reserveCapacity(64 + message.utf8.count)
        switch style {
        case .journal:
            line += "<\(syslogPriority(for: level))>"
        case .plain:
            if let timestamp {
                line += iso8601(seconds: timestamp.seconds, milliseconds: timestamp.milliseconds)
                line += " "
            }
            line += level.rawValue
            line += " "
        }
        if !label.isEmpty {
            line += "["
            line += escape(label)
            line += "] "
        }
        line += escape(message)
        for key in metadata.keys.sorted() {
            line += " "
            line += renderKey(key)
            line += "="
            line += renderValue(text(of: metadata[key]!))
        }
        return line
    }

    /// `2025-06-01T09:30:00.123Z`, built by hand: `gmtime_r` is thread-safe and far
    /// cheaper per line than a date formatter.
    static func iso8601(seconds: Int, milliseconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil else { return "1970-01-01T00:00:00.000Z" }
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
        }
        return pad(parts.tm_year + 1900, 4) + "-" + pad(parts.tm_mon + 1, 2) + "-" + pad(parts.tm_mday, 2)
            + "T" + pad(parts.tm_hour, 2) + ":" + pad(parts.tm_min, 2) + ":" + pad(parts.tm_sec, 2)
            + "." + pad(Int32(milliseconds), 3) + "Z"
    }

    /// Escapes everything that would break the one-message-one-line rule or reach a
    /// terminal as a control sequence: `\n`, `\r` and other C0/C1 control characters
    /// and DEL. Tabs are kept.
    static func escape(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var result = ""
        result.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            if !needsEscape(scalar) {
                result.unicodeScalars.append(scalar)
            } else if scalar == "\n" {
                result += "\\n"
            } else if scalar == "\r" {
                result += "\\r"
            } else {
                let hex = String(scalar.value, radix: 16, uppercase: false)
                result += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            }
        }
        return result
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        return (value < 0x20 && value != 0x09) || (value >= 0x7F && value <= 0x9F)
    }

    /// Keys are identifiers; whitespace or `=` in one would make the pair unparseable.
    private static func renderKey(_ key: String) -> String {
        let cleaned = key.map { $0.isWhitespace || $0 == "=" || $0 == "\"" ? "_" : $0 }
        return escape(String(cleaned))
    }

    /// A metadata value as text. Arrays and dictionaries are rendered without the
    /// Swift-literal quoting of their `description`, which would otherwise be escaped
    /// again by the value quoting below: `[a, b]`, `[k: v]`.
    static func text(of value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string):
            return string
        case .stringConvertible(let convertible):
            return convertible.description
        case .array(let items):
            return "[" + items.map(text(of:)).joined(separator: ", ") + "]"
        case .dictionary(let dictionary):
            return "[" + dictionary.keys.sorted().map { "\($0): \(text(of: dictionary[$0]!))" }.joined(separator: ", ") + "]"
        }
    }

    /// Quotes a value when a reader splitting on spaces and `=` would misread it.
    private static func renderValue(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains { $0.isWhitespace || $0 == "\"" || $0 == "=" }
        guard needsQuotes else { return escape(value) }
        var quoted = "\""
        for character in value {
            switch character {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            default: quoted.append(character)
            }
        }
        quoted += "\""
        return escape(quoted)
    }
}

/// Serialises writes from every handler instance: `Logger`s are values copied freely
/// across threads, but they all share the one stderr.
private let outputLock = NSLock()
