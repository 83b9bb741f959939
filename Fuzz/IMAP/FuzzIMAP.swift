import EmailParsing
import FuzzSupport
import Foundation

// libFuzzer target for the IMAP response parser: a byte string is a server's stream of
// responses. The parser must either return a response and how many bytes it used (at least one,
// never more than it was given), ask for more bytes, or throw `malformed` — never trap or loop.
// `make fuzz` builds it with -sanitize=fuzzer; a plain build is a replay tool over files.

func fuzzOneStream(_ bytes: [UInt8]) {
    var buffer = bytes
    while !buffer.isEmpty {
        let result: (IMAPResponse, consumed: Int)?
        do { result = try IMAPParser.parse(buffer) } catch { return }
        guard let (response, consumed) = result else { return }
        precondition(consumed > 0 && consumed <= buffer.count, "consumed \(consumed) of \(buffer.count)")
        if case .data(let values) = response { _ = values.map(\.text) }
        buffer.removeFirst(consumed)
    }
}

/// libFuzzer calls this with each input.
private let callback: FuzzCallback = { data, size in
    fuzzOneStream(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

@main
struct FuzzIMAP {
    static func main() {
        FuzzMain.run(name: "fuzz-imap", callback: callback, body: fuzzOneStream)
    }
}
