import Foundation
import Testing
@testable import SwitchboardCore
@testable import SwitchboardDelivery
@testable import SwitchboardRuntime

/// The core promise, end to end over Unix sockets: an adapter emits → the helpdesk (listening on a
/// Unix socket) receives a signed CloudEvent → it replies through the Unix-socket API → the
/// adapter's `send` gets the rendered message → `message.status` reaches the helpdesk.
@Suite struct EndToEndTests {
    @Test func adapterToHelpdeskAndBackOverUnixSockets() async throws {
        let dir = TempDir()
        defer { dir.remove() }
        let helpdesk = try await TestHelpdesk.start(socketPath: dir.file("desk.sock"))
        defer { Task { await helpdesk.stop() } }
        let channel = uniqueID("rec")
        let d = try await TestDaemon.start("""
            helpdesks: [ { name: desk, url: "\(helpdesk.url)", secret: "\(testSecret)" } ]
            channels: [ { id: \(channel), type: recording } ]
            """)
        defer { Task { await d.stop() } }

        // 1. The adapter emits; emit returns only after the commit.
        let result = try await d.context(channel).customerSays("Hello, my order is late", from: "cust-1", name: "Jane")
        guard case .committed(_, let messageID?, let conversationID?) = result else { Issue.record("not committed: \(result)"); return }

        // 2. The helpdesk gets conversation.created then message.received, signed.
        try await eventually("message.received at the helpdesk") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
        let signer = try WebhookSigner(secrets: testSecret)
        for delivery in helpdesk.deliveries {
            let id = try #require(delivery.headers["webhook-id"])
            let ts = try #require(delivery.headers["webhook-timestamp"].flatMap { Int64($0) })
            let sig = try #require(delivery.headers["webhook-signature"])
            #expect(signer.verify(id: id, timestamp: ts, body: delivery.body, header: sig, now: Int64(Date().timeIntervalSince1970)))
            #expect(delivery.headers["content-type"]?.hasPrefix("application/cloudevents+json") == true)
            #expect(delivery.event?.id == id)
        }
        let received = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" })
        #expect(received.subject == conversationID)
        #expect(received.data?["id"]?.stringValue == messageID)
        #expect(received.data?["text_fallback"]?.stringValue == "Hello, my order is late")
        #expect(received.data?["sender"]?["display_name"]?.stringValue == "Jane")
        #expect(received.data?["origin"]?.stringValue == "customer")
        #expect(received.source == "urn:switchboard:test")
        #expect(helpdesk.events.map(\.type).first == "switchboard.conversation.created")

        // 3. The helpdesk replies over the Unix-socket API (no token needed there) with buttons
        //    the text-only channel can't show: numbered text, reported as a degradation.
        let reply = """
            {"parts":[{"type":"buttons","text":"Which would you like?","actions":[
              {"type":"reply","title":"Refund","payload":"REFUND"},{"type":"reply","title":"Resend","payload":"RESEND"}]}],
             "metadata":{"ticket":"T-77"}}
            """
        let accepted = try await d.api("POST", "/v1/conversations/\(conversationID)/messages", json: reply, socket: true)
        #expect(accepted.status == 202)
        let degradations = try #require(accepted.json?["render"]?["degradations"]?.arrayValue)
        #expect(degradations.first?["from"]?.stringValue == "buttons")
        #expect(degradations.first?["to"]?.stringValue == "numbered_text")
        let outboundID = try #require(accepted.json?["id"]?.stringValue)

        // 4. The adapter receives the rendered message.
        let adapter = TestRegistry.adapter(channel)
        try await eventually("adapter send") { adapter.sent.count == 1 }
        let sent = try #require(adapter.sent.first)
        #expect(sent.message.id == outboundID)
        #expect(sent.recipient.channelUserID == "cust-1")
        guard case .text(let t) = sent.rendered.parts.first else { Issue.record("expected text, got \(sent.rendered.parts)"); return }
        #expect(t.text == "Which would you like?\n1. Refund\n2. Resend")

        // 5. message.status sent arrives, with the helpdesk's metadata echoed.
        try await eventually("message.status sent") {
            helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == outboundID }
        }
        let status = try #require(helpdesk.events.first { $0.type == "switchboard.message.status" })
        #expect(status.data?["status"]?.stringValue == "sent")
        #expect(status.data?["metadata"]?["ticket"]?.stringValue == "T-77")
        #expect(status.data?["external_ids"]?.arrayValue?.first?.stringValue == "ext-\(outboundID)")

        // 6. The customer answers "2": the message carries an interaction part for "Resend".
        _ = try await d.context(channel).customerSays("2", from: "cust-1")
        try await eventually("index reply") {
            helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 2
        }
        let answer = try #require(helpdesk.events.last { $0.type == "switchboard.message.received" })
        let parts = try #require(answer.data?["parts"]?.arrayValue)
        #expect(parts.count == 2)
        #expect(parts.last?["type"]?.stringValue == "interaction")
        #expect(parts.last?["kind"]?.stringValue == "index_reply")
        #expect(parts.last?["payload"]?.stringValue == "RESEND")
        #expect(parts.last?["source_message_id"]?.stringValue == outboundID)

        // 7. Every event of the conversation carries an increasing sequence.
        let seqs = helpdesk.events.filter { $0.subject == conversationID }.compactMap(\.sequence)
        #expect(seqs == seqs.sorted() && Set(seqs).count == seqs.count && seqs.allSatisfy { $0.count == 20 })
    }
}
