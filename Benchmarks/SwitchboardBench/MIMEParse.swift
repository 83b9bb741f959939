import ArgumentParser
import EmailParsing
import Foundation

/// MIME parse throughput: the inbound email path up to the store — parse (MIME tree, transfer
/// encodings, charsets, HTML → text, attachments decoded), quoted-history stripping and the
/// loop/noise guard — over a corpus of .eml files, round-robin, single-threaded.
/// Benchmarks/mime_baseline.py runs Python's `email` package over the same corpus as the baseline.
struct MIMEParse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mime", abstract: "Parse a corpus of .eml files for a while; report messages/s and MB/s.")

    @Option(help: "Directory of .eml files.") var corpus: String
    @Option(help: "Measured seconds.") var seconds: Double = 5
    @Option(help: "Unmeasured warm-up seconds.") var warmup: Double = 1

    func run() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus).filter { $0.hasSuffix(".eml") }.sorted()
        let messages = files.compactMap { FileManager.default.contents(atPath: corpus + "/" + $0).map { Array($0) } }
        guard !messages.isEmpty else { throw ValidationError("no .eml files in \(corpus)") }
        let codec = ThreadCodec(secret: Array("bench-secret-bench-secret".utf8), domain: "example.com")
        let corpusBytes = messages.reduce(0) { $0 + $1.count }

        var checksum = 0   // keeps the optimizer from dropping the work
        func runFor(_ duration: Double) -> (count: Int, bytes: Int, elapsed: Double) {
            let clock = ContinuousClock()
            let start = clock.now
            var count = 0, bytes = 0, index = 0
            while true {
                let raw = messages[index]
                let email = EmailParser.parse(raw)
                let stripped = QuoteStripper.strip(email.text)
                let kind = EmailClassifier.classify(email, ownAddresses: ["support@example.com"], codec: codec)
                checksum &+= stripped.text.utf8.count &+ email.attachments.count &+ "\(kind)".utf8.count
                count += 1; bytes += raw.count
                index = (index + 1) % messages.count
                if count % 16 == 0 {
                    let elapsed = (clock.now - start) / .seconds(1)
                    if elapsed >= duration { return (count, bytes, elapsed) }
                }
            }
        }
        _ = runFor(warmup)
        let (count, bytes, elapsed) = runFor(seconds)
        let rate = Double(count) / elapsed
        let mbps = Double(bytes) / elapsed / 1_048_576
        say("corpus: \(messages.count) messages, \(corpusBytes) bytes")
        say(String(format: "parsed %d messages in %.2f s: %.0f messages/s, %.1f MB/s", count, elapsed, rate, mbps))
        say(String(format: "RESULT messages_per_s=%.0f mb_per_s=%.2f messages=%d corpus_files=%d checksum=%d",
                   rate, mbps, count, messages.count, checksum & 0xffff))
    }
}
