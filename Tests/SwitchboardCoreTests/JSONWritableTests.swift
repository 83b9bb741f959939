import Foundation
import Testing
@testable import SwitchboardCore

/// The hand-written JSON of the ingest path's types (`JSONWritable`) gives the same bytes as
/// their Codable encoding, for every shape: optionals present and absent, escapes, unknown
/// members, each part type.
@Suite("JSONWritable")
struct JSONWritableTests {
    static func bothWays<T: Encodable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fast = try StreamingJSONEncoder.encode(value)
        let codable = try StreamingJSONEncoder.encode(value, fastPaths: false)
        #expect(String(decoding: fast, as: UTF8.self) == String(decoding: codable, as: UTF8.self), sourceLocation: sourceLocation)
    }

    static let tricky = "quote \" backslash \\ slash / tab \t newline \n nul \u{0} bell \u{7} é 漢字 🙂 \u{2028}"

    static func part(_ json: String) throws -> Part { try JSON.decode(Part.self, from: Array(json.utf8)) }

    @Test func theFixtureMessagesAreWrittenAlike() throws {
        try Self.bothWays(Sample.inboundMessage)
        try Self.bothWays(Sample.outboundMessage)
        try Self.bothWays([Sample.inboundMessage, Sample.outboundMessage])
    }

    @Test func everyPartTypeAndUnknownMembersAreWrittenAlike() throws {
        let parts: [Part] = [
            .text(Self.tricky),
            .text("*bold*", format: .markdown),
            .text(Open(TextFields(text: "hej", format: .plain, lang: "sv"))),
            .text(Open(TextFields(text: "with extra"), extra: ["zeta": .int(1), "alpha": .string("a"), "type": .string("bogus")])),
            try Self.part(#"{"type":"media","kind":"image","media_id":"med_1","mime_type":"image/jpeg","size":12,"caption":"c \" q"}"#),
            try Self.part(#"{"type":"location","lat":52.5,"long":13.4,"name":"Berlin"}"#),
            try Self.part(#"{"type":"reaction","emoji":"👍","action":"react"}"#),
            try Self.part(#"{"type":"unsupported","description":"sticker","channel_type":"whatsapp"}"#),
            try Self.part(#"{"type":"future_kind","b":1,"a":{"y":[1,2,{"x":null}]}}"#),
        ]
        for p in parts { try Self.bothWays(p) }
        var m = Sample.inboundMessage
        m.parts = parts
        m.textFallback = parts.textFallback
        try Self.bothWays(m)
    }

    @Test func optionalMembersPresentOrAbsentAreWrittenAlike() throws {
        // Every combination of the message's optional members, over a seeded sequence.
        var rng = SplitMix(seed: 0x5EED)
        for _ in 0..<300 {
            func maybe<T>(_ v: T) -> T? { rng.next() % 2 == 0 ? v : nil }
            let sender: Participant? = maybe(Participant(role: maybe("customer") ?? "bot", identityID: maybe("ident_1"),
                                                         channelUserID: maybe(Self.tricky), displayName: maybe("Zoë \"Z\"")))
            let raw: RawRef? = maybe(RawRef(format: "whatsapp", inline: maybe(.object(["k": .array([.int(1), .double(2.5), .string(Self.tricky), .null, .bool(true)])])),
                                            ref: maybe("/v1/messages/msg_1/raw"), size: maybe(1234), sha256: maybe("ab12")))
            var fields = MessageFields(
                id: "msg_1", conversationID: "conv_1", direction: maybe(.inbound) ?? .outbound, origin: maybe(.customer) ?? "future_origin",
                channel: maybe(Sample.channel) ?? ChannelRef(ChannelRefFields(type: "webchat", id: "w"), extra: ["note": .string("x")]),
                sender: sender, externalID: maybe("wamid.\(rng.next())"),
                replyTo: maybe(MessageRef(messageID: maybe("msg_0"), externalID: maybe("wamid.0"))),
                sentAt: maybe(Timestamp(milliseconds: Int64(rng.next() % 4_000_000_000_000))), receivedAt: Sample.t0,
                parts: maybe([.text(Self.tricky)]) ?? [], textFallback: Self.tricky,
                metadata: maybe(["b": .int(2), "a": .object(["z": .string("é"), "y": .null])]), channelData: maybe(["wa": .object([:])]),
                raw: raw)
            if rng.next() % 4 == 0 { fields.parts.append(.text("second")) }
            let extra: JSONObject = rng.next() % 5 == 0 ? ["x_future": .string("kept"), "aaa": .int(1)] : [:]
            try Self.bothWays(Message(fields, extra: extra))
        }
    }

    @Test func aMessageWrittenFastReadsBackTheSame() throws {
        let bytes = try JSON.bytes(Sample.inboundMessage)
        #expect(try JSON.decode(Message.self, from: bytes) == Sample.inboundMessage)
    }

    /// A small seeded generator (SplitMix64), so a failure repeats.
    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
