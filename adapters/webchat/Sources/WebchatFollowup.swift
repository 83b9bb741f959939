import Foundation
import Logging
import Metrics
import SwitchboardCore

/// The email follow-up (`email_followup`): an agent's reply that the visitor hasn't read after
/// `delay` — they left the page, or never opened the chat again — goes to the email address they
/// gave (pre-chat form or signed identity), through an email channel of the same daemon. Their
/// answer to that email comes back into this web conversation (the email channel routes it by
/// the Reply-To address it put on the follow-up), so nobody repeats themselves.
///
/// State, per visitor, in the adapter state store (so a restart loses nothing):
/// `fu:<peer>` — a follow-up is due (conversation, address, when); `fusent:<peer>` — the log
/// seq of the newest agent message already emailed (never email the same message twice).
public struct EmailFollowup: Sendable, Hashable {
    /// The email channel to send through.
    public var channel: String
    /// How long an agent's message may stay unread in the widget before it goes by email.
    public var delay: Double = 180
    /// The subject; default by the channel's locale.
    public var subject: String?
    public init(channel: String, delay: Double = 180, subject: String? = nil) {
        self.channel = channel; self.delay = delay; self.subject = subject
    }
}

/// A follow-up waiting for its time (`fu:<peer>`).
struct PendingFollowup: Codable, Sendable {
    var conversation: String
    var email: String
    var name: String?
    /// When it is due, in ms since the epoch.
    var due: Int64
}

extension WebchatChannelAdapter {
    static func followupKey(_ peer: String) -> String { "fu:\(peer)" }
    static func followupSentKey(_ peer: String) -> String { "fusent:\(peer)" }

    /// After an agent's message reached the widget log: the visitor with an email gets a
    /// follow-up unless they read it in time. An earlier pending one keeps its time (it will
    /// carry this message too).
    func scheduleFollowup(_ message: OutboundMessage, context: any AdapterContext) async {
        guard let followup = settings.emailFollowup,
              let email = message.recipient.profile?["email"]?.stringValue, Self.looksLikeEmail(email) else { return }
        let key = Self.followupKey(message.recipient.channelUserID)
        let pending = PendingFollowup(conversation: message.conversation.id, email: email, name: message.recipient.displayName,
                                      due: Timestamp.now().milliseconds + Int64(followup.delay * 1000))
        do {
            try await followupLock.run {
                if try await context.state.get(key) != nil { return }
                try await context.state.set(key, JSON.string(pending))
            }
        } catch {
            context.logger.warning("cannot schedule an email follow-up", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
        }
    }

    static func looksLikeEmail(_ s: String) -> Bool {
        s.count <= 200 && s.range(of: "^[^@\\s<>]+@[^@\\s<>]+\\.[^@\\s<>]+$", options: .regularExpression) != nil
    }

    /// Sends the follow-ups that are due, until the channel stops. Polls the (indexed, usually
    /// empty) `fu:` range at a quarter of the delay, between every 1 s and every 5 s.
    func runFollowups(_ followup: EmailFollowup, context: any AdapterContext) async {
        let tick = max(1, min(followup.delay / 4, 5))
        while !Task.isCancelled {
            do {
                let now = Timestamp.now().milliseconds
                for (key, value) in try await context.state.entries(prefix: "fu:") {
                    guard let pending = try? JSON.decode(PendingFollowup.self, from: Array(value.utf8)) else {
                        try await context.state.set(key, nil)
                        continue
                    }
                    if pending.due <= now {
                        await sendFollowup(peer: String(key.dropFirst(3)), pending, followup, context: context)
                    }
                }
            } catch {
                context.logger.warning("cannot read pending email follow-ups", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(Int64(tick * 1000)))
        }
    }

    /// Emails the agent's messages the visitor hasn't read (and that no earlier follow-up
    /// carried), in one message; nothing when they read everything meanwhile.
    func sendFollowup(peer: String, _ pending: PendingFollowup, _ followup: EmailFollowup, context: any AdapterContext) async {
        let key = Self.followupKey(peer)
        let meta: Logger.Metadata = ["channel": "\(channel.id)", "conversation": "\(pending.conversation)", "via": "\(followup.channel)"]
        do {
            let read = Int64(try await context.state.get("read:\(peer)") ?? "0") ?? 0
            let emailed = Int64(try await context.state.get(Self.followupSentKey(peer)) ?? "0") ?? 0
            let unread = try await LogWriter.entries(peer: peer, after: max(read, emailed), limit: 50, context: context)
                .filter { $0.direction == "out" }
            guard let newest = unread.last else {
                try await context.state.set(key, nil)
                Self.count(channel, "read_in_time")
                return
            }
            let record = (try await context.state.get("vis:\(peer)")).flatMap { try? JSONValue.parse(Array($0.utf8)).objectValue } ?? [:]
            let strings = FollowupStrings(locale: settings.locale ?? record["locale"]?.stringValue)
            var parts: [Part] = [.text(Open(TextFields(text: strings.intro)))]
            for entry in unread {
                for part in entry.parts {
                    switch part {
                    case .text, .media: parts.append(part)  // media go along as attachments
                    default:
                        // Buttons, cards, lists: as the text they fall back to.
                        let text = [part].textFallback
                        if !text.isEmpty { parts.append(.text(Open(TextFields(text: text)))) }
                    }
                }
            }
            parts.append(.text(Open(TextFields(text: strings.outro(pageURL: followupLink(record["page_url"]?.stringValue))))))
            let messageIDs: [JSONValue] = unread.map { .string($0.externalID.hasPrefix("wc_") ? String($0.externalID.dropFirst(3)) : $0.externalID) }
            let metadata: JSONObject = [
                "email_followup": .object(["messages": .array(messageIDs), "to": .string(pending.email)]),
                "email_subject": .string(followup.subject ?? strings.subject),
            ]
            let id = try await context.relay(RelayRequest(
                conversationID: pending.conversation, channelID: followup.channel,
                recipient: Peer(channelUserID: pending.email, displayName: pending.name), parts: parts, metadata: metadata,
                idempotencyKey: "followup:\(peer):\(newest.seq)"))
            try await context.state.set(Self.followupSentKey(peer), String(newest.seq))
            try await finishFollowup(peer: peer, pending, emailedUpTo: newest.seq, followup, context: context)
            Self.count(channel, "queued")
            context.logger.info("email follow-up queued", metadata: meta.merging(["message": "\(id)", "count": "\(unread.count)"]) { a, _ in a })
        } catch let e as RelayError {
            // The email channel is gone or can't send: this follow-up can never go; say so once.
            try? await context.state.set(key, nil)
            Self.count(channel, "refused")
            context.logger.error("email follow-up refused", metadata: meta.merging(["error": "\(e)"]) { a, _ in a })
        } catch {
            // The store is unavailable: keep it pending, the next tick tries again.
            context.logger.warning("email follow-up failed; will retry", metadata: meta.merging(["error": "\(error)"]) { a, _ in a })
        }
    }

    /// After a follow-up carried the log up to `emailedUpTo`: done, unless an agent message came
    /// in meanwhile (its scheduling saw this follow-up pending and left it): then it waits its
    /// own delay. Under the lock scheduling takes, so nothing slips between the look and the
    /// delete.
    func finishFollowup(peer: String, _ pending: PendingFollowup, emailedUpTo: Int64, _ followup: EmailFollowup,
                        context: any AdapterContext) async throws {
        let key = Self.followupKey(peer)
        try await followupLock.run {
            let later = try await LogWriter.entries(peer: peer, after: emailedUpTo, limit: 50, context: context).contains { $0.direction == "out" }
            if later {
                var next = pending
                next.due = Timestamp.now().milliseconds + Int64(followup.delay * 1000)
                try await context.state.set(key, JSON.string(next))
            } else {
                try await context.state.set(key, nil)
            }
        }
    }

    /// The visitor answered a follow-up by email: the widget shows it in their history too.
    public func conversationContinued(_ message: InboundMessage, messageID: String, via: ChannelRef, conversation: Conversation,
                                      customer: Identity, context: any AdapterContext) async {
        let peer = customer.channelUserID
        do {
            let entry = try await log.append(peer: peer, direction: "in", externalID: "wce_" + messageID, parts: message.parts,
                                             text: message.parts.textFallback, clientID: nil, context: context)
            hub.push(peer: peer, seq: entry.seq, frame: frame(entry, context: context))
        } catch {
            context.logger.warning("cannot add an email answer to the widget history",
                                   metadata: ["channel": "\(channel.id)", "via": "\(via.id)", "error": "\(error)"])
        }
    }

    /// The page to continue the chat on, only when it is on one of the sites allowed to embed
    /// the chat (never with `*`): the page URL comes from the visitor's browser, and the email
    /// goes out from the support address to an address the visitor typed.
    func followupLink(_ pageURL: String?) -> String? {
        guard let pageURL, let url = URLComponents(string: pageURL), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = url.host?.lowercased(), !host.isEmpty else { return nil }
        let origin = "\(scheme)://\(host)" + (url.port.map { ":\($0)" } ?? "")
        guard settings.allowedOrigins.contains(where: { $0 != "*" && $0.lowercased() == origin }) else { return nil }
        return url.string
    }

    static func count(_ channel: ChannelRef, _ result: String) {
        Counter(label: "switchboard_webchat_email_followups_total", dimensions: [("channel", channel.id), ("result", result)]).increment()
    }
}

/// The follow-up's own words, in the widget's languages.
struct FollowupStrings {
    let language: String
    init(locale: String?) {
        let l = (locale ?? "en").lowercased()
        language = l.hasPrefix("ko") ? "ko" : l.hasPrefix("ja") ? "ja" : "en"
    }

    var subject: String {
        switch language {
        case "ko": return "채팅에 새 답변이 있습니다"
        case "ja": return "チャットに新しい返信があります"
        default: return "New reply to your chat"
        }
    }

    var intro: String {
        switch language {
        case "ko": return "채팅에 읽지 않은 답변이 있습니다:"
        case "ja": return "チャットに未読の返信があります："
        default: return "You have an unread reply to your chat with us:"
        }
    }

    func outro(pageURL link: String?) -> String {
        switch language {
        case "ko": return "이 이메일에 답장하시면 같은 대화로 전달됩니다." + (link.map { " 채팅에서 계속하려면: \($0)" } ?? "")
        case "ja": return "このメールに返信すると、同じ会話に届きます。" + (link.map { "チャットで続ける場合：\($0)" } ?? "")
        default: return "Reply to this email to answer; it reaches the same conversation." + (link.map { " Or continue in the chat: \($0)" } ?? "")
        }
    }
}
