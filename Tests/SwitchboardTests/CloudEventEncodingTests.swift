import Foundation
import Testing
@testable import SwitchboardCore
@testable import SwitchboardStore

/// The event log's hand-written CloudEvent envelope against the Codable encoding of the same
/// CloudEvent: same bytes, whichever optional members are present and whatever needs escaping.
@Suite struct CloudEventEncodingTests {
    @Test func theWrittenEnvelopeIsTheCodableOne() throws {
        let data = Data(#"{"b":[1,2,{"c":null}],"a":"x\"y"}"#.utf8)
        let times: [Int64] = [0, 1_746_094_530_123, 951_868_799_999, 4_107_542_400_005]
        let cases: [(subject: String?, sequence: Int64?, channel: String?)] = [
            ("conv_01JTB2K9S0T1V2W3X4Y5Z6A7B8", 1, "wa-main"),
            ("conv_\u{1}\"odd\\", 9_223_372_036_854_775_807, nil),
            (nil, nil, "line-jp"),
            (nil, nil, nil),
        ]
        for (i, c) in cases.enumerated() {
            let time = Timestamp(milliseconds: times[i])
            let source = i == 1 ? "urn:switchboard:gw \"1\"\n" : "urn:switchboard:gw-1"
            let written = Store.encodeCloudEvent(id: "evt_01JTB2K9S0T1V2W3X4Y5Z6A7B\(i)", source: source, type: .messageReceived,
                                                 subject: c.subject, time: time, sequence: c.sequence, channel: c.channel, data: data)
            let expected = CloudEvent(CloudEventFields(
                id: "evt_01JTB2K9S0T1V2W3X4Y5Z6A7B\(i)", source: source, type: EventType.messageReceived.cloudEventType, subject: c.subject,
                time: time, sequence: c.sequence.map(CloudEvent.sequenceString), partitionkey: c.subject, channel: c.channel,
                data: try JSONParser.parse(data)))
            #expect(try JSONParser.parse(written) == JSONParser.parse(Data(JSON.bytes(expected))), "case \(i)")
            #expect(try JSON.decode(CloudEvent.self, from: written) == expected, "case \(i)")
            // The data member is the stored bytes as they were, not a re-encoding.
            #expect(String(decoding: written, as: UTF8.self).contains(#""data":{"b":[1,2,{"c":null}],"a":"x\"y"}"#))
        }
    }
}
