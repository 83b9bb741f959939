#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import Testing
@testable import SwitchboardSystemd

@Suite("JournalLogHandler")
struct JournalLogHandlerTests {
    // MARK: Journal detection

    @Test func detectsTheJournalStreamByDeviceAndInode() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("stream", "")
        let fd = open(path, O_WRONLY)
        defer { close(fd) }
        var info = stat()
        #expect(fstat(fd, &info) == 0)
        let matching = "\(UInt64(truncatingIfNeeded: info.st_dev)):\(UInt64(truncatingIfNeeded: info.st_ino))"

        #expect(JournalLogHandler.isJournalStream(fd: fd, environment: ["JOURNAL_STREAM": matching]))
        #expect(JournalLogHandler.detectStyle(environment: ["JOURNAL_STREAM": matching], fd: fd) == .journal)

        // Set but describing another stream (inherited by a redirected child): plain.
        let other = "\(UInt64(truncatingIfNeeded: info.st_dev)):\(UInt64(truncatingIfNeeded: info.st_ino) &+ 1)"
        #expect(!JournalLogHandler.isJournalStream(fd: fd, environment: ["JOURNAL_STREAM": other]))
        #expect(JournalLogHandler.detectStyle(environment: ["JOURNAL_STREAM": other], fd: fd) == .plain)

        #expect(!JournalLogHandler.isJournalStream(fd: fd, environment: [:]))
        #expect(!JournalLogHandler.isJournalStream(fd: fd, environment: ["JOURNAL_STREAM": "garbage"]))
        #expect(!JournalLogHandler.isJournalStream(fd: fd, environment: ["JOURNAL_STREAM": "1:2:3"]))
        #expect(!JournalLogHandler.isJournalStream(fd: -1, environment: ["JOURNAL_STREAM": matching]))
    }

    // MARK: Journal style

    @Test func journalLinesCarrySyslogPriorities() {
        let capture = LineCapture()
        var logger = Logger(label: "sb.test") { label in
            JournalLogHandler(label: label, style: .journal, output: capture.output)
        }
        logger.logLevel = .trace
        logger.trace("t")
        logger.debug("d")
        logger.info("i")
        logger.notice("n")
        logger.warning("w")
        logger.error("e")
        logger.critical("c")
        #expect(capture.lines == [
            "<7>[sb.test] t", "<7>[sb.test] d", "<6>[sb.test] i", "<5>[sb.test] n",
            "<4>[sb.test] w", "<3>[sb.test] e", "<2>[sb.test] c",
        ])
    }

    @Test func levelFilteringIsTheLoggers() {
        let capture = LineCapture()
        let logger = Logger(label: "sb") { JournalLogHandler(label: $0, style: .journal, output: capture.output) }
        logger.debug("hidden at the default info level")
        logger.info("shown")
        #expect(capture.lines == ["<6>[sb] shown"])
    }

    @Test func metadataIsSortedAndQuoted() {
        let capture = LineCapture()
        var logger = Logger(label: "sb") { JournalLogHandler(label: $0, style: .journal, output: capture.output) }
        logger[metadataKey: "channel"] = "wa-sales"
        logger[metadataKey: "zone"] = "Asia/Seoul"
        logger.info("delivered", metadata: [
            "attempt": "3",
            "helpdesk": "my desk",
            "empty": "",
            "quote": "say \"hi\"",
            "pair": "a=b",
            "list": .array(["x", "y"]),
            "map": .dictionary(["b": "2", "a": .array(["1"])]),
            "zone": "overridden",
        ])
        #expect(capture.lines == [
            #"<6>[sb] delivered attempt=3 channel=wa-sales empty="" helpdesk="my desk" list="[x, y]" map="[a: [1], b: 2]" pair="a=b" quote="say \"hi\"" zone=overridden"#,
        ])
    }

    @Test func newlinesAndControlCharactersAreEscaped() {
        let capture = LineCapture()
        let logger = Logger(label: "sb") { JournalLogHandler(label: $0, style: .journal, output: capture.output) }
        logger.warning("line one\nline two\r\nred:\u{1B}[31m bell:\u{07} tab:\t.", metadata: ["body": "a\nb"])
        #expect(capture.lines.count == 1)
        let line = capture.lines.first ?? ""
        #expect(!line.contains("\n") && !line.contains("\r") && !line.contains("\u{1B}"))
        #expect(line == #"<4>[sb] line one\nline two\r\nred:\x1b[31m bell:\x07 tab:"# + "\t" + #". body="a\nb""#)
    }

    @Test func errorsBecomeMetadata() {
        struct Boom: Error, CustomStringConvertible { var description: String { "boom happened" } }
        let capture = LineCapture()
        let logger = Logger(label: "sb") { JournalLogHandler(label: $0, style: .journal, output: capture.output) }
        logger.error("send failed", error: Boom())
        logger.error("explicit wins", error: Boom(), metadata: ["error": "mine"])
        #expect(capture.lines == [#"<3>[sb] send failed error="boom happened""#, "<3>[sb] explicit wins error=mine"])
    }

    @Test func metadataProviderIsMerged() {
        let capture = LineCapture()
        let provider = Logger.MetadataProvider { ["request": "r-1", "channel": "from-provider"] }
        var logger = Logger(label: "sb") {
            JournalLogHandler(label: $0, style: .journal, output: capture.output, metadataProvider: provider)
        }
        logger[metadataKey: "channel"] = "from-handler"
        logger.info("x", metadata: ["request": "r-2"])
        #expect(capture.lines == ["<6>[sb] x channel=from-provider request=r-2"])
    }

    @Test func emptyLabelIsOmitted() {
        let capture = LineCapture()
        let logger = Logger(label: "") { JournalLogHandler(label: $0, style: .journal, output: capture.output) }
        logger.info("bare")
        #expect(capture.lines == ["<6>bare"])
    }

    // MARK: Plain style

    @Test func plainLinesHaveTimestampAndLevel() throws {
        let capture = LineCapture()
        let logger = Logger(label: "sb.http") { JournalLogHandler(label: $0, style: .plain, output: capture.output) }
        logger.notice("listening", metadata: ["address": "127.0.0.1:8080"])
        let line = try #require(capture.lines.first)
        let pattern = #/^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z notice \[sb\.http\] listening address=127\.0\.0\.1:8080$/#
        let match = try #require(line.wholeMatch(of: pattern), "unexpected line: \(line)")
        // The timestamp is now, in UTC.
        var components = DateComponents()
        components.timeZone = TimeZone(identifier: "UTC")
        components.year = Int(match.1)
        components.month = Int(match.2)
        components.day = Int(match.3)
        components.hour = Int(match.4)
        components.minute = Int(match.5)
        components.second = Int(match.6)
        let stamp = try #require(Calendar(identifier: .gregorian).date(from: components))
        #expect(abs(stamp.timeIntervalSinceNow) < 60)
        #expect(!line.hasPrefix("<"))
    }

    @Test func iso8601Formatting() {
        #expect(JournalLogHandler.iso8601(seconds: 0, milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(JournalLogHandler.iso8601(seconds: 1_700_000_000, milliseconds: 5) == "2023-11-14T22:13:20.005Z")
        #expect(JournalLogHandler.iso8601(seconds: 951_825_600, milliseconds: 999) == "2000-02-29T12:00:00.999Z")
    }

    @Test func plainFormatIsDeterministicGivenATimestamp() {
        let line = JournalLogHandler.format(
            style: .plain, label: "sb", level: .warning, message: "slow\nhelpdesk",
            metadata: ["ms": "1200"], timestamp: (1_700_000_000, 42)
        )
        #expect(line == #"2023-11-14T22:13:20.042Z warning [sb] slow\nhelpdesk ms=1200"#)
    }

    @Test func priorityTable() {
        #expect(Logger.Level.allCases.map(JournalLogHandler.syslogPriority(for:)) == [7, 7, 6, 5, 4, 3, 2])
    }

    // MARK: Writing to a descriptor

    @Test func writesOneNewlineTerminatedLinePerMessage() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("log", "")
        let fd = open(path, O_WRONLY | O_APPEND)
        defer { close(fd) }
        let logger = Logger(label: "sb") { JournalLogHandler(label: $0, style: .journal, output: .fileDescriptor(fd)) }
        logger.info("first")
        logger.error("second\nstill second")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == "<6>[sb] first\n<3>[sb] second\\nstill second\n")
    }

    @Test func concurrentWritersNeverInterleave() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = try directory.write("log", "")
        let fd = open(path, O_WRONLY | O_APPEND)
        defer { close(fd) }
        let logger = Logger(label: "sb") { JournalLogHandler(label: $0, style: .journal, output: .fileDescriptor(fd)) }
        // Long lines make torn writes likely if writes were not serialised.
        let padding = String(repeating: "x", count: 3000)
        let threads = 8, perThread = 100
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<perThread {
                logger.info("thread \(thread) line \(index) \(padding)")
            }
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == threads * perThread)
        let wellFormed = lines.allSatisfy { $0.hasPrefix("<6>[sb] thread ") && $0.hasSuffix(padding) }
        #expect(wellFormed)
    }
}

/// Collects emitted lines for inspection.
final class LineCapture: @unchecked Sendable {
    private var stored: [String] = []
    private let lock = NSLock()

    var output: JournalLogHandler.Output {
        .lines { [self] line in
            lock.lock()
            stored.append(line)
            lock.unlock()
        }
    }

    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}
