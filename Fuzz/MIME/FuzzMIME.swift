import EmailParsing
import FuzzSupport
import Foundation

// libFuzzer target for the inbound email path: every byte string is a message that must parse,
// classify, strip and resolve its thread ids without trapping, hanging or reading out of bounds
// (the fuzz build adds AddressSanitizer). `make fuzz` builds it with -sanitize=fuzzer; a plain
// build runs the same code over files instead (the seed corpus, a crash input).

private let codec = ThreadCodec(secret: Array("fuzz-secret-fuzz-secret".utf8), domain: "example.com")
// Small limits so deep nesting and huge part counts are reached within a fuzz input's size.
private let limits = MIMELimits(maxDepth: 8, maxParts: 64, maxMessageBytes: 1 << 20)

func fuzzOneMessage(_ bytes: [UInt8]) {
    let email = EmailParser.parse(bytes, limits: limits)
    let stripped = QuoteStripper.strip(email.text)
    precondition(stripped.fullText.utf8.count <= email.text.utf8.count + 1, "strip grew the text")
    if let html = email.html { _ = HTMLText.toText(html) }
    _ = EmailClassifier.classify(email, ownAddresses: ["support@example.com"], codec: codec)
    for id in email.inReplyTo + email.references { _ = codec.conversationID(fromMessageID: id) }
    for address in email.to + email.cc { _ = codec.conversationID(fromPlusAddress: address.address, base: "support@example.com") }
    for attachment in email.attachments { precondition(!attachment.filename.isEmpty, "attachment without a name") }
}

/// libFuzzer calls this with each input.
private let callback: FuzzCallback = { data, size in
    fuzzOneMessage(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

@main
struct FuzzMIME {
    static func main() {
        FuzzMain.run(name: "fuzz-mime", callback: callback, body: fuzzOneMessage)
    }
}
