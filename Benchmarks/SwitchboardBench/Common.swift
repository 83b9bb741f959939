import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds on CLOCK_MONOTONIC. On Linux this clock is the same for every process on the
/// machine, so a time taken by the load generator and one taken by the helpdesk receiver can be
/// subtracted directly (and NTP adjustments cannot skew the difference).
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Latency samples in nanoseconds and their summary.
struct LatencySummary: Sendable {
    var count: Int = 0
    var p50: Double = 0
    var p90: Double = 0
    var p99: Double = 0
    var p999: Double = 0
    var max: Double = 0
    var mean: Double = 0

    /// Summarises samples given in nanoseconds; the results are milliseconds.
    init(nanos samples: [UInt64]) {
        guard !samples.isEmpty else { return }
        let sorted = samples.sorted()
        func at(_ q: Double) -> Double {
            // Nearest-rank percentile.
            let rank = Int((q * Double(sorted.count)).rounded(.up))
            return Double(sorted[Swift.max(0, Swift.min(sorted.count - 1, rank - 1))]) / 1e6
        }
        count = sorted.count
        p50 = at(0.50); p90 = at(0.90); p99 = at(0.99); p999 = at(0.999)
        max = Double(sorted[sorted.count - 1]) / 1e6
        var total: Double = 0
        for s in sorted { total += Double(s) }
        mean = total / Double(sorted.count) / 1e6
    }

    init() {}
}

func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }

/// Lower-case hex, without Foundation's per-byte String(format:).
func hexString<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits: [UInt8] = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(64)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Writes a line to stdout and flushes it, so a script reading our output through a pipe or
/// file sees it at once (stdout is block-buffered when it is not a terminal).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func warn(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
