import Crypto
import Foundation
import MetaAdapter
import SwitchboardCore

extension WhatsAppChannelAdapter {
    /// What `switchboard simulate` can send.
    public enum SampleKind: String, Sendable, CaseIterable {
        case text, image, location, button
    }

    /// A WhatsApp `messages` webhook body as Meta sends it, for `switchboard simulate`: one entry,
    /// one change, one message from `from` (digits of a phone number; anything else is turned into
    /// a stable fake number) with `name` as the profile name. Sign it with `MetaWebhook.sign`.
    public static func sampleWebhook(kind: SampleKind = .text, text: String, from: String, name: String, phoneNumberID: String,
                                     now: Timestamp = .now()) -> [UInt8] {
        let digits = from.filter(\.isNumber)
        let waID = (8...15).contains(digits.count) && digits.count == from.filter({ $0 != "+" }).count
            ? digits : "1555" + String(SHA256.hash(data: Array(from.utf8)).prefix(4).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } % 10_000_000).leftPadded(7)
        let wamid = "wamid.SIM" + Hex.encode((0..<12).map { _ in UInt8.random(in: 0...255) }).uppercased()
        var message: JSONObject = ["from": .string(waID), "id": .string(wamid), "timestamp": .string(String(now.milliseconds / 1000))]
        switch kind {
        case .text:
            message["type"] = "text"
            message["text"] = ["body": .string(text)]
        case .image:
            message["type"] = "image"
            message["image"] = ["id": .string("sim" + String(now.milliseconds)), "mime_type": "image/jpeg", "caption": .string(text),
                                "sha256": .string(Hex.encode(SHA256.hash(data: Array(text.utf8))))]
        case .location:
            message["type"] = "location"
            message["location"] = ["latitude": 37.4847, "longitude": -122.1477, "name": "Meta HQ", "address": "1 Hacker Way, Menlo Park, CA"]
        case .button:
            message["type"] = "interactive"
            message["interactive"] = ["type": "button_reply", "button_reply": ["id": "simulated-button", "title": .string(String(text.prefix(20)))]]
        }
        let value: JSONObject = [
            "messaging_product": "whatsapp",
            "metadata": ["display_phone_number": "15550000000", "phone_number_id": .string(phoneNumberID)],
            "contacts": [["profile": ["name": .string(name)], "wa_id": .string(waID)]],
            "messages": [.object(message)],
        ]
        let body: JSONObject = ["object": .string(webhookObject),
                                "entry": [["id": "0", "changes": [["field": "messages", "value": .object(value)]]]]]
        return Array((try? JSON.encode(body)) ?? Data())
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
