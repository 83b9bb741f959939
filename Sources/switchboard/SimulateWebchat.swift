import ArgumentParser
import Foundation
import HummingbirdWSClient
import Logging
import Synchronization
import SwitchboardCore
import SwitchboardRuntime
import WebchatAdapter

/// `switchboard simulate <webchat channel>`: acts as a widget visitor. It opens the channel's
/// WebSocket on the running daemon, says hello (with a verified identity for `--from` when the
/// channel has an identity secret, so repeated runs are the same visitor; else a new anonymous
/// visitor, or the one `--token` names), fills the pre-chat profile from `--name`, sends the text
/// and waits for the daemon's acknowledgement, which comes after the store commit.
enum WebchatSimulator {
    struct Outcome: Sendable {
        var welcome: JSONValue?
        var ack: JSONValue?
        var error: JSONValue?
    }

    static func run(channel: ChannelConfig, base: String, text: String, from: String, name: String, token: String?) async throws {
        let url = base.replacingOccurrences(of: "http://", with: "ws://").replacingOccurrences(of: "https://", with: "wss://")
            + "/webchat/\(channel.id)/ws"
        var hello: JSONObject = ["type": "hello", "last_seq": 0]
        if let token { hello["token"] = .string(token) }
        if let secret = channel.node.secret("identity_secret")?.trimmingCharacters(in: .whitespacesAndNewlines) {
            hello["identity"] = ["user_id": .string(from),
                                 "user_hash": .string(WebchatChannelAdapter.identityHash(userID: from, secret: secret))]
        }
        // Every pre-chat field gets a value, so a required one never stops the sample.
        hello["profile"] = ["name": .string(name), "email": .string("\(slug(from))@example.invalid"), "phone": "+15550100"]
        hello["context"] = ["url": .string(base + "/"), "title": "switchboard simulate", "locale": "en-US"]
        // A fresh client_id per run: the widget's re-send dedupe would take a repeated one for a retry.
        let clientID = "simulate-" + ID.ulid(milliseconds: Timestamp.now().milliseconds)
        let message: JSONObject = ["type": "message", "client_id": .string(clientID), "text": .string(text)]
        let helloFrame = hello

        let logger = { var l = Logger(label: "switchboard.simulate"); l.logLevel = .critical; return l }()
        let outcome = try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask {
                let outcome = Mutex(Outcome())
                try await WebSocketClient.connect(url: url, configuration: .init(), logger: logger) { inbound, outbound, _ in
                    try await outbound.write(.text(String(decoding: try JSON.encode(helloFrame), as: UTF8.self)))
                    for try await frame in inbound.messages(maxSize: 4 << 20) {
                        guard case .text(let s) = frame, let value = try? JSONValue.parse(Array(s.utf8)) else { continue }
                        switch value["type"]?.stringValue {
                        case "welcome": outcome.withLock { $0.welcome = value }
                        case "synced":
                            try await outbound.write(.text(String(decoding: try JSON.encode(message), as: UTF8.self)))
                        case "ack":
                            outcome.withLock { $0.ack = value }
                            try await outbound.close(.normalClosure, reason: nil)
                            return
                        case "error", "slow_down":
                            outcome.withLock { $0.error = value }
                            try await outbound.close(.normalClosure, reason: nil)
                            return
                        default: continue
                        }
                    }
                }
                return outcome.withLock { $0 }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(15))
                throw ValidationError("no answer from \(url) within 15 s")
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        if let error = outcome.error {
            throw ValidationError("the daemon refused the visitor: \(error["code"]?.stringValue ?? "slow_down") \(error["message"]?.stringValue ?? "")")
        }
        guard let ack = outcome.ack else { throw ValidationError("the connection closed before the message was acknowledged") }
        let visitor = outcome.welcome?["visitor"]?["id"]?.stringValue ?? "?"
        print("stored \(ack["message_id"]?.stringValue ?? "?") (seq \(ack["seq"]?.intValue.map(String.init) ?? "?")) from visitor \(visitor)")
        if let issued = outcome.welcome?["token"]?.stringValue {
            print("visitor token (pass --token to continue as this visitor): \(issued)")
        }
    }

    private static func slug(_ s: String) -> String {
        let kept = s.lowercased().unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) || $0 == "-" }
        return kept.isEmpty ? "visitor" : String(String.UnicodeScalarView(kept))
    }
}
