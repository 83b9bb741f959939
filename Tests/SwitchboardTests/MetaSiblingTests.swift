import Foundation
import Testing
@testable import MessengerAdapter
@testable import MetaAdapter
@testable import SwitchboardCore
@testable import SwitchboardRuntime
@testable import WhatsAppAdapter

/// A Meta app calls one webhook URL for all its phone numbers and Pages: what it sends for an
/// account configured as another channel reaches that channel, never dropped.
@Suite struct MetaSiblingTests {
    static let secondPhone = "106540352249999"
    static let otherAppPhone = "106540352250000"

    @Test("WhatsApp: changes for the app's other number are stored by that number's channel, and its replies go out from it")
    func whatsappNumbersShareTheAppsWebhook() async throws {
        let one = uniqueID("wa"), two = uniqueID("wa"), other = uniqueID("wa")
        try await withWhatsApp({ graph in
            func yaml(_ id: String, _ phone: String, _ secret: String) -> String {
                """
                { id: \(id), type: whatsapp, phone_number_id: "\(phone)", access_token: "\(graph.token)", app_secret: "\(secret)",
                  verify_token: "\(WAFixture.verifyToken)", graph_api_base: "\(graph.base)", graph_api_version: "\(graph.version)" }
                """
            }
            return "channels: [ \(yaml(one, WAFixture.phoneID, WAFixture.appSecret)), \(yaml(two, Self.secondPhone, WAFixture.appSecret)), \(yaml(other, Self.otherAppPhone, "another-apps-secret-0123456789ab")) ]"
        }) { d, graph in
            let body = WAFixture.body(entries: [
                [WAFixture.value(messages: [WAFixture.text("for one", id: "wamid.S1")]),
                 WAFixture.value(messages: [WAFixture.text("for two", id: "wamid.S2")], phone: Self.secondPhone)],
                [WAFixture.value(messages: [WAFixture.text("another app's number", id: "wamid.S3")], phone: Self.otherAppPhone)],
            ])
            #expect(try await WAFixture.post(d, one, body).status == 200)
            // Meta retries the POST: nothing twice.
            #expect(try await WAFixture.post(d, one, body).status == 200)
            let received = try await d.storedEvents("message.received")
            #expect(received.count == 2)
            func channelOf(_ wamid: String) -> String? {
                received.first { $0["data"]?["external_id"]?.stringValue == wamid }?["data"]?["channel"]?["id"]?.stringValue
            }
            #expect(channelOf("wamid.S1") == one)
            #expect(channelOf("wamid.S2") == two)
            // A number of another app (another secret) is not trusted on this app's signature.
            #expect(channelOf("wamid.S3") == nil)

            let conversation = try #require(try await d.runtime.store.conversations(channelID: two, limit: 5, cursor: nil).0.first?.id)
            #expect(try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"From number two"}]}"#).status == 202)
            try await eventually("sent from the second number") { !graph.requests("POST", "/v23.0/\(Self.secondPhone)/messages").isEmpty }
            #expect(graph.requests("POST", "/v23.0/\(WAFixture.phoneID)/messages").isEmpty)
        }
    }

    @Test("Messenger: events for the app's other Page are stored by that Page's channel")
    func messengerPagesShareTheAppsWebhook() async throws {
        let first = uniqueID("fb"), second = uniqueID("fb")
        let secondPage = "106540352243333"
        try await withMessaging({ graph in
            let other = MP.messengerYAML(second, graph: graph).replacingOccurrences(of: "page_id: \"\(MP.page)\"", with: "page_id: \"\(secondPage)\"")
            return "channels: [ \(MP.messengerYAML(first, graph: graph)), \(other) ]"
        }) { d, _ in
            // m_P4 comes under page one's entry but is addressed to page two: page two's.
            let body = MP.body([(MP.page, [MP.text("hello page one", mid: "m_P1"),
                                           MP.text("to page two, in page one's entry", mid: "m_P4", to: secondPage)]),
                                (secondPage, [MP.text("hello page two", mid: "m_P2", to: secondPage)]),
                                ("106540352244444", [MP.text("nobody's page", mid: "m_P3", to: "106540352244444")])])
            #expect(try await MP.post(d, first, body).status == 200)
            #expect(try await MP.post(d, first, body).status == 200)
            let received = try await d.mpEvents("message.received")
            #expect(received.count == 3)
            #expect(received.first { $0["data"]?["external_id"] == "m_P4" }?["data"]?["channel"]?["id"]?.stringValue == second)
            #expect(received.first { $0["data"]?["external_id"] == "m_P1" }?["data"]?["channel"]?["id"]?.stringValue == first)
            #expect(received.first { $0["data"]?["external_id"] == "m_P2" }?["data"]?["channel"]?["id"]?.stringValue == second)
        }
    }
}
