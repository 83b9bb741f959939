import EmailParsing
import Crypto
import Foundation
import Logging
import NIOCore
import Synchronization
import SwitchboardCore
import SwitchboardRuntime

/// A value that must never reach a log line or a diagnostic.
struct EmailSecret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    let value: String
    init(_ value: String) { self.value = value }
    var description: String { "<redacted>" }
    var debugDescription: String { "<redacted>" }
}

/// The email channel (`type: email`): one support mailbox.
///
/// Inbound: an LMTP listener (`lmtp.listen`, `host:port` or a Unix socket path) for an MTA's
/// transport map. Each message is parsed, classified by the loop guard and committed before the
/// MTA gets its 250; a store failure answers 451 so the MTA retries.
///
/// Conversation = thread. The runtime keys conversations by (identity, thread), so the adapter
/// decides the thread string: a reply whose In-Reply-To/References carries one of our Message-IDs
/// (which encode the conversation, HMAC-tagged), or a Message-ID we stored, or whose recipient is
/// our plus address, gets the thread of that conversation (kept in the adapter state store as
/// `conv:<id>` → thread); anything else starts a thread rooted at its first References id, its
/// In-Reply-To, or its own Message-ID. Never by subject. Identity = the lower-cased From address.
///
/// Outbound: SMTP submission (`smtp`), one multipart/alternative (text + HTML from the
/// markdown-ish text) message per reply, attachments from the media store, threaded with
/// In-Reply-To/References to the customer's last message and a Reply-To plus address.
public struct EmailChannelAdapter: ChannelAdapter {
    public static let type = "email"

    public static let emailCapabilities = ChannelCapabilities(
        textFormats: [.plain, .markdown], maxTextLength: nil, mediaKinds: [.image, .video, .audio, .voice, .file],
        maxButtons: 0, maxQuickReplies: 0, cards: false, location: false, contactCard: false,
        reactions: false, typing: false, markRead: false)

    public struct LMTPSettings: Sendable {
        public var listen: LMTPListenAddress
        public var maxMessageBytes: Int
        public var hostname: String
        /// A Unix socket's mode, set after binding (the unit's UMask=0077 would leave it
        /// owner-only, and the MTA could not connect).
        public var socketMode: Int = 0o660
    }

    public let channel: ChannelRef
    public var capabilities: ChannelCapabilities { Self.emailCapabilities }
    /// Other channels (the web chat's email follow-up) may send through this one when it can send.
    public var acceptsRelays: Bool { smtp != nil }
    /// The support address (lower-cased); replies come from it.
    public let address: String
    public let displayName: String?
    /// Our addresses besides `address` (aliases the MTA delivers here too).
    public let aliases: [String]
    let threadSecret: EmailSecret?
    public let lmtp: LMTPSettings?
    let smtp: SMTPClientConfig?
    public let imap: IMAPSettings?
    /// The subject of a message that starts a conversation (no customer mail to answer).
    public let defaultSubject: String
    let codecCache = CodecBox()

    public init(channel: ChannelRef, address: String, displayName: String? = nil, aliases: [String] = [], threadSecret: String? = nil,
                lmtp: LMTPSettings? = nil, smtp: SMTPClientConfig? = nil, imap: IMAPSettings? = nil, defaultSubject: String = "Message from support") {
        self.channel = channel; self.address = address.lowercased(); self.displayName = displayName
        self.aliases = aliases.map { $0.lowercased() }; self.threadSecret = threadSecret.map(EmailSecret.init)
        self.lmtp = lmtp; self.smtp = smtp; self.imap = imap; self.defaultSubject = defaultSubject
    }

    var domain: String { address.split(separator: "@").last.map(String.init) ?? "localhost" }
    var ownAddresses: [String] { [address] + aliases }

    // MARK: config

    public static let factory: AdapterFactory = { channel, node, env in
        node.rejectUnknownKeys(AdapterRegistry.commonKeys + ["address", "display_name", "aliases", "imap", "lmtp", "smtp", "default_subject"],
                               secrets: ["thread_secret"])
        let address = node.string("address", required: true)?.trimmingCharacters(in: .whitespaces)
        if let a = address, !isAddress(a) { node["address"].problem("expected an email address such as support@example.com") }
        let aliases = node.stringList("aliases", default: [])
        for (i, a) in aliases.enumerated() where !isAddress(a) { node["aliases"].diagnostics.add("\(node["aliases"].path)[\(i)]", "expected an email address") }
        let threadSecret = node.secret("thread_secret")
        if let s = threadSecret, s.count < 16 { node["thread_secret"].problem("too short: use at least 16 random characters") }

        var imapSettings: IMAPSettings? = nil
        let imap = node["imap"]
        if imap.isPresent {
            imap.rejectUnknownKeys(["host", "port", "tls", "username", "mailbox", "processed_folder", "poll_interval", "ca_file", "tls_verify", "timeout",
                                    "oauth_token_file", "max_message_size"], secrets: ["password"])
            let imapMax = imap.bytes("max_message_size", default: 25 * 1024 * 1024)
            if imapMax < 1024 { imap["max_message_size"].problem("must be at least 1KiB") }
            let imapToken = tokenFile(imap)
            let host = imap.string("host", required: true)
            let tlsName = imap.string("tls", default: "implicit") ?? "implicit"
            let tls = SMTPTLSMode(rawValue: tlsName.lowercased())
            if tls == nil { imap["tls"].problem("expected implicit, starttls or none") }
            let port = imap.int("port", default: tls == .implicit || tls == nil ? 993 : 143, range: 1...65535) ?? 993
            let username = imap.string("username", required: true)
            let password = imapToken == nil ? imap.secret("password", required: true) : ""
            let caFile = imap.string("ca_file").map { imap.resolvePath($0) }
            if let caFile, !FileManager.default.fileExists(atPath: caFile) { imap["ca_file"].problem("file \(caFile) does not exist") }
            let poll = imap.seconds("poll_interval", default: 60)
            if poll <= 0 || poll > 1500 { imap["poll_interval"].problem("must be between 0s and 25m") }
            let timeout = imap.seconds("timeout", default: 60)
            if let host, let username, let password {
                imapSettings = IMAPSettings(
                    client: IMAPClientConfig(host: host, port: port, tls: tls ?? .implicit, username: username, password: password,
                                             oauthTokenFile: imapToken, caFile: caFile,
                                             verifyCertificate: imap.bool("tls_verify", default: true),
                                             timeout: .milliseconds(Int64(max(timeout, 1) * 1000))),
                    mailbox: imap.string("mailbox", default: "INBOX") ?? "INBOX", processedFolder: imap.string("processed_folder"),
                    pollInterval: min(max(poll, 0.05), 1500), maxMessageBytes: max(imapMax, 1024))
            }
        }

        var lmtpSettings: LMTPSettings? = nil
        let lmtp = node["lmtp"]
        if lmtp.isPresent {
            lmtp.rejectUnknownKeys(["listen", "max_message_size", "hostname", "socket_mode", "allow_remote"])
            let listen = lmtp.string("listen", required: true)
            var parsed = listen.flatMap(LMTPListenAddress.parse)
            if listen != nil && parsed == nil { lmtp["listen"].problem("expected host:port (127.0.0.1:2424) or a Unix socket path") }
            switch parsed {
            case .unix(let path)?:
                // Relative paths are relative to the config file, like every other path.
                parsed = .unix(path: lmtp.resolvePath(path))
            case .tcp(let host, _)? where !lmtp.bool("allow_remote", default: false):
                // LMTP has no authentication: anyone who reaches the port can hand in mail
                // under any sender.
                if !["127.0.0.1", "::1", "localhost"].contains(host.lowercased()) && !host.hasPrefix("127.") {
                    lmtp["listen"].problem("LMTP has no authentication: listen on loopback or a Unix socket (or set allow_remote: true behind a firewall)")
                }
            default: break
            }
            let socketMode = lmtp.fileMode("socket_mode", default: 0o660)
            let limit = lmtp.bytes("max_message_size", default: 25 * 1024 * 1024)
            if limit < 1024 || limit > 1 << 30 { lmtp["max_message_size"].problem("must be between 1KiB and 1GiB") }
            let hostname = lmtp.string("hostname", default: ProcessInfo.processInfo.hostName) ?? "localhost"
            if let parsed {
                lmtpSettings = LMTPSettings(listen: parsed, maxMessageBytes: Int(min(max(limit, 1024), 1 << 30)), hostname: hostname,
                                            socketMode: socketMode)
            }
        }

        var smtpConfig: SMTPClientConfig? = nil
        let smtp = node["smtp"]
        if smtp.isPresent {
            smtp.rejectUnknownKeys(["host", "port", "tls", "username", "helo_name", "ca_file", "tls_verify", "timeout", "oauth_token_file"],
                                   secrets: ["password"])
            let smtpToken = tokenFile(smtp)
            let host = smtp.string("host", required: true)
            let tlsName = smtp.string("tls", default: "starttls") ?? "starttls"
            let tls = SMTPTLSMode(rawValue: tlsName.lowercased())
            if tls == nil { smtp["tls"].problem("expected starttls, implicit or none") }
            let port = smtp.int("port", default: tls == .implicit ? 465 : 587, range: 1...65535) ?? 587
            let username = smtp.string("username")
            let password = smtp.secret("password")
            if smtpToken != nil && password != nil { smtp["oauth_token_file"].problem("give either a password or oauth_token_file, not both") }
            if (username == nil) != (password == nil && smtpToken == nil) {
                (username == nil ? smtp["username"] : smtp["password"]).problem("username and password go together")
            }
            let caFile = smtp.string("ca_file").map { smtp.resolvePath($0) }
            if let caFile, !FileManager.default.fileExists(atPath: caFile) { smtp["ca_file"].problem("file \(caFile) does not exist") }
            let timeout = smtp.seconds("timeout", default: 60)
            if let host {
                smtpConfig = SMTPClientConfig(host: host, port: port, tls: tls ?? .starttls, username: username, password: password,
                                              oauthTokenFile: smtpToken,
                                              caFile: caFile, verifyCertificate: smtp.bool("tls_verify", default: true),
                                              heloName: smtp.string("helo_name", default: address.map { String($0.split(separator: "@").last ?? "localhost") }) ?? "localhost",
                                              timeout: .milliseconds(Int64(max(timeout, 1) * 1000)))
            }
        }
        if !imap.isPresent && !lmtp.isPresent && !smtp.isPresent {
            node.problem("an email channel needs at least one of imap, lmtp or smtp")
        }
        guard let address else { return nil }
        return EmailChannelAdapter(channel: channel, address: address, displayName: node.string("display_name"), aliases: aliases,
                                   threadSecret: threadSecret, lmtp: lmtpSettings, smtp: smtpConfig, imap: imapSettings,
                                   defaultSubject: node.string("default_subject", default: "Message from support") ?? "Message from support")
    }

    /// `oauth_token_file`: a path (relative ones under $CREDENTIALS_DIRECTORY), read at every login.
    static func tokenFile(_ node: ConfigNode) -> String? {
        guard let p = node.string("oauth_token_file") else { return nil }
        let path = node.resolvePath(p, credential: true)
        if !FileManager.default.fileExists(atPath: path) { node["oauth_token_file"].problem("file \(path) does not exist") }
        return path
    }

    static func isAddress(_ s: String) -> Bool {
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") || parts.count == 2 && parts[1] == "localhost"
            ? !s.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" }) : false
    }

    // MARK: threading state

    /// The codec with the configured secret, or one generated once and kept in the state store.
    func codec(_ context: any AdapterContext) async throws -> ThreadCodec {
        if let c = codecCache.withLock({ $0 }) { return c }
        let secret: [UInt8]
        if let s = threadSecret {
            secret = Array(s.value.utf8)
        } else if let stored = try await context.state.get("thread_secret"), let bytes = Data(base64Encoded: stored) {
            secret = Array(bytes)
        } else {
            let fresh = (0..<32).map { _ in UInt8.random(in: 0...255) }
            try await context.state.set("thread_secret", Data(fresh).base64EncodedString())
            secret = fresh
        }
        let c = ThreadCodec(secret: secret, domain: domain)
        codecCache.withLock { $0 = c }
        return c
    }

    static func threadKey(_ conversationID: String) -> String { "conv:\(conversationID)" }
    static func messageKey(_ messageID: String) -> String { "mid:\(messageID.lowercased())" }
    /// The customer a sent message went to (lower-cased), to tell their bounce from a copy's.
    static func recipientKey(_ messageID: String) -> String { "to:\(messageID.lowercased())" }
    static func lastKey(_ conversationID: String) -> String { "last:\(conversationID)" }
    /// Our latest mail in a conversation (`LastSent`): what the next one threads under when the
    /// customer hasn't written (a conversation the helpdesk started), and its subject.
    static func sentKey(_ conversationID: String) -> String { "sent:\(conversationID)" }
    static func relayKey(_ conversationID: String) -> String { "relay:\(conversationID)" }

    /// Another channel's conversation we emailed on its behalf, and to whom.
    struct RelayedConversation: Codable, Sendable {
        var address: String
        var channel: String
    }

    /// What a reply needs from the customer's latest message in a conversation.
    struct LastInbound: Codable, Sendable {
        var messageID: String
        var references: [String]
        var subject: String?
        var from: String
        var name: String?
    }

    struct LastSent: Codable, Sendable {
        var messageID: String
        var references: [String]
        var subject: String?
    }

    /// Whether a RCPT TO address is ours: the support address, an alias, or a plus address of either.
    func isOurs(_ recipient: String) -> Bool {
        let r = recipient.lowercased()
        for own in ownAddresses {
            if r == own { return true }
            guard let at = own.lastIndex(of: "@"), let rat = r.lastIndex(of: "@"), own[at...] == r[rat...] else { continue }
            if r[..<rat].hasPrefix(own[..<at] + "+") { return true }
        }
        return false
    }

    // MARK: inbound

    /// The result of one message's ingest.
    public enum IngestOutcome: Sendable, Hashable {
        case committed(conversationID: String?, thread: String)
        case duplicate
        /// Our own mail came back (not stored).
        case ignored(String)
    }

    /// Parses, classifies, threads and commits one RFC 822 message (LMTP now, IMAP later).
    /// Throws when it could not be stored (the sender must retry).
    public func ingest(_ raw: [UInt8], envelope: (from: String?, to: [String])?, context: any AdapterContext,
                       adjust: ((inout EmailInbound) -> Void)? = nil) async throws -> IngestOutcome {
        let codec = try await codec(context)
        var inbound = EmailInbound(parsing: raw, ownAddresses: ownAddresses, codec: codec, envelope: envelope)
        adjust?(&inbound)
        if case .ownMessage(let reason) = inbound.classification {
            context.logger.info("own message came back; not stored", metadata: ["channel": "\(channel.id)", "reason": "\(reason)"])
            return .ignored(reason)
        }
        let match = try await ThreadResolver.resolve(inbound.email, codec: codec, supportAddress: address,
                                                     envelopeRecipients: envelope?.to ?? [],
                                                     lookup: { id in try await context.state.get(Self.messageKey(id)) })
        var thread: String
        var matchedConversation: String? = nil
        var continues: String? = nil
        switch match {
        case .conversation(let id, _):
            matchedConversation = id
            if let t = try await context.state.get(Self.threadKey(id)) {
                thread = t
            } else if let r = try await context.state.get(Self.relayKey(id)),
                      let relay = try? JSONDecoder().decode(RelayedConversation.self, from: Data(r.utf8)),
                      relay.address == inbound.peer.channelUserID.lowercased() {
                // An answer to a follow-up we sent for another channel's conversation, from the
                // address we sent it to: it continues that conversation. From anyone else it
                // starts a conversation of its own here (anyone can write to a Reply-To address).
                continues = id
                thread = inbound.email.references.first ?? inbound.email.inReplyTo.first ?? inbound.externalID
            } else {
                thread = inbound.email.references.first ?? inbound.email.inReplyTo.first ?? inbound.externalID
                context.logger.warning("matched a conversation whose thread is unknown here; starting a new thread",
                                       metadata: ["channel": "\(channel.id)", "conversation": "\(id)"])
            }
        case .newThread(let root):
            thread = root
        }
        thread = thread.lowercased()
        let ready = try await inbound.storeMedia(in: context.media)
        if let status = ready.bounceStatusEvent() {
            // Only the customer's address failing fails the message: a Cc or Bcc copy that
            // bounced leaves it delivered (the report is still stored below).
            var customer: String? = nil
            if case .bounce(let report, _) = ready.classification, let original = report.originalMessageID {
                customer = try await context.state.get(Self.recipientKey(original))
            }
            // The addresses the report says failed, when it names any (in any of its blocks,
            // final or original: a forwarded customer address shows as the original).
            var failed: [String] = []
            if case .bounce(let report, _) = ready.classification {
                failed = report.failedRecipients.isEmpty ? report.recipient.map { [$0] } ?? [] : report.failedRecipients
            }
            if let customer, !failed.isEmpty, !failed.contains(customer) {
                context.logger.info("a copy of our mail bounced; the message stays delivered",
                                    metadata: ["channel": "\(channel.id)", "recipients": "\(failed.joined(separator: ", "))"])
            } else {
                _ = try await context.emit(status)
            }
        }
        if let read = ready.readStatusEvent() { _ = try await context.emit(read) }
        var event = ready.inboundEvent(thread: thread)
        event.conversationID = continues
        event.stateUpdates = Self.threadingState(ready, thread: thread, ownThread: continues == nil)
        if let matchedConversation, var data = event.channelData?["email"]?.objectValue {
            data["matched_conversation"] = .string(matchedConversation)
            event.channelData?["email"] = .object(data)
        }
        let result = try await context.emit(event)
        switch result {
        case .committed(_, _, let conversationID):
            return .committed(conversationID: conversationID, thread: thread)
        case .duplicate:
            return .duplicate
        case .ignored(let reason):
            return .ignored(reason)
        }
    }

    /// What threading needs, committed with the message (one transaction per mail, and never
    /// for a duplicate): the conversation's thread (not for another channel's conversation that
    /// this mail continues), the Message-ID → conversation map, and the customer's latest
    /// message (what the next reply answers).
    static func threadingState(_ inbound: EmailInbound, thread: String, ownThread: Bool) -> [StateUpdate] {
        let conversation = StateUpdate.conversationIDPlaceholder
        var updates: [StateUpdate] = [.conversationID(under: messageKey(inbound.externalID))]
        if ownThread { updates.append(StateUpdate(key: threadKey(conversation), value: thread)) }
        if inbound.classification == .customer {
            let last = LastInbound(messageID: inbound.externalID, references: inbound.email.references, subject: inbound.email.subject,
                                   from: inbound.peer.channelUserID, name: inbound.peer.displayName)
            if let json = try? JSONEncoder().encode(last) {
                updates.append(StateUpdate(key: lastKey(conversation), value: String(decoding: json, as: UTF8.self)))
            }
        }
        return updates
    }

    /// The LMTP hand-off: commit, then answer.
    func deliver(_ raw: [UInt8], mailFrom: String, recipients: [String], context: any AdapterContext) async -> LMTPDelivery {
        // The final delivery agent records the envelope sender (RFC 5321 §4.4).
        let withReturnPath = Array("Return-Path: <\(mailFrom)>\r\n".utf8) + raw
        do {
            switch try await ingest(withReturnPath, envelope: (mailFrom, recipients), context: context) {
            case .committed(let conv, _): return .accepted(detail: "Stored" + (conv.map { " in \($0)" } ?? ""))
            case .duplicate: return .accepted(detail: "Already stored")
            case .ignored(let why): return .accepted(detail: "Ignored: \(why)")
            }
        } catch {
            context.logger.error("cannot store an email", metadata: ["channel": "\(channel.id)", "error": "\(error)"])
            return .temporaryFailure(detail: "Temporarily unable to store the message; try again later")
        }
    }

    public func run(context: any AdapterContext) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let imap { group.addTask { await self.runIMAP(imap, context: context) } }
            if let lmtp { group.addTask { try await self.runLMTP(lmtp, context: context) } }
            if imap == nil && lmtp == nil {
                group.addTask { while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) } }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    func runLMTP(_ lmtp: LMTPSettings, context: any AdapterContext) async throws {
        let server = LMTPServer(hostname: lmtp.hostname, maxMessageBytes: lmtp.maxMessageBytes, logger: context.logger,
                                acceptsRecipient: { self.isOurs($0) },
                                deliver: { raw, from, to in await self.deliver(raw, mailFrom: from, recipients: to, context: context) })
        do {
            try await server.run(listen: lmtp.listen) { bound in
                if case .unix(let path) = lmtp.listen, chmod(path, mode_t(lmtp.socketMode)) != 0 {
                    context.logger.warning("cannot set the LMTP socket's mode", metadata: ["channel": "\(channel.id)", "path": "\(path)"])
                }
                context.logger.info("email LMTP listener bound", metadata: ["channel": "\(channel.id)", "listen": "\(bound)"])
            }
        } catch {
            if Task.isCancelled { return }
            await context.reportStatus(.degraded, detail: "LMTP listener on \(lmtp.listen): \(error)")
            throw error
        }
    }

    public func resolveAddress(_ address: String, context: any AdapterContext) async throws -> (peer: Peer, thread: String) {
        guard let a = AddressParser.parse(address).first, Self.isAddress(a.address) else {
            throw SendRejection(code: "invalid_request", status: 422, detail: "an email address such as jane@example.com is expected")
        }
        // A new thread: its root is made up here; the first message's Message-ID carries the conversation.
        return (Peer(channelUserID: a.address, displayName: a.displayName), "thread.\(ID.ulid(milliseconds: Timestamp.now().milliseconds).lowercased())@\(domain)")
    }
}

/// The thread codec, made once per adapter instance.
final class CodecBox: Sendable {
    private let m = Mutex<ThreadCodec?>(nil)
    func withLock<T>(_ body: (inout ThreadCodec?) -> T) -> T { m.withLock { body(&$0) } }
}
