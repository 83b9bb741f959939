import EmailParsing
import Foundation
import NIOCore
import SwitchboardCore

extension EmailChannelAdapter {
    public struct IMAPSettings: Sendable {
        public var client: IMAPClientConfig
        public var mailbox: String
        /// `UID MOVE` here after the commit; nil: set \Seen and leave the message.
        public var processedFolder: String?
        public var pollInterval: Double
        /// Larger messages are not downloaded: their headers are stored with an `unsupported` part.
        public var maxMessageBytes: Int64 = 25 * 1024 * 1024
    }

    static func imapCursorKey(_ mailbox: String) -> String { "imap_cursor:\(mailbox)" }
    /// Stored messages not filed yet (`validity:uid uid …`): written between the commit and the
    /// move, cleared once filed.
    static func imapUnfiledKey(_ mailbox: String) -> String { "imap_unfiled:\(mailbox)" }

    /// Connects, syncs, polls; reconnects with backoff (1 s doubling to 5 min) on any error and
    /// reports the channel's state.
    func runIMAP(_ settings: IMAPSettings, context: any AdapterContext) async {
        var backoff = 1.0
        while !Task.isCancelled {
            do {
                try await imapSession(settings, context: context) { backoff = 1 }
            } catch {
                if Task.isCancelled { return }
                let auth = (error as? IMAPError)?.isAuthentication == true
                await context.reportStatus(auth ? .authExpired : .degraded, detail: "IMAP \(settings.client.host): \(error)")
                context.logger.warning("IMAP session failed", metadata: ["channel": "\(channel.id)", "error": "\(error)", "retry_in": "\(backoff)"])
            }
            try? await Task.sleep(for: .milliseconds(Int64(backoff * 1000)))
            backoff = min(backoff * 2, 300)
        }
    }

    /// One connection: login, select, then sync every `pollInterval` until an error or cancellation.
    func imapSession(_ settings: IMAPSettings, context: any AdapterContext, connected: () -> Void) async throws {
        let (channel, ssl) = try await IMAPSession.open(settings.client)
        try await channel.executeThenClose { inbound, outbound in
            var s = IMAPSession(inbound: inbound.makeAsyncIterator(), outbound: outbound, channel: channel.channel)
            s.readTimeout = settings.client.timeout
            try await s.login(settings.client, sslContext: ssl)
            if let folder = settings.processedFolder {
                // Made once here: MOVE to a folder that doesn't exist is refused.
                do { _ = try await s.command("CREATE \(IMAPParser.mailbox(folder))") } catch let e as IMAPError where e.refusal != nil {
                    if !(e.refusal ?? "").uppercased().contains("[ALREADYEXISTS]") {
                        context.logger.warning("IMAP server refused to create processed_folder", metadata: [
                            "channel": "\(self.channel.id)", "folder": "\(folder)", "error": "\(e)"])
                    }
                }
            }
            let (validity, _) = try await s.select(settings.mailbox)
            await context.reportStatus(.connected, detail: nil)
            connected()
            try await fileLeftovers(&s, validity: validity, settings: settings, context: context)
            while !Task.isCancelled {
                s.sawExists = false
                try await sync(&s, validity: validity, settings: settings, context: context)
                // Mail that arrived while syncing was announced then, not in the IDLE that follows.
                if s.sawExists { continue }
                if s.capabilities.contains("IDLE") {
                    // Near-real-time: wait in IDLE for new mail, at most poll_interval (and never
                    // past 25 minutes, inside servers' 30-minute autologout), then sync anyway.
                    _ = try await s.idle(maxSeconds: min(settings.pollInterval, 1500))
                } else {
                    try await Task.sleep(for: .milliseconds(Int64(settings.pollInterval * 1000)))
                    _ = try await s.command("NOOP")
                }
            }
        }
    }

    /// The cursor stored for this mailbox, when it belongs to the mailbox's current UIDVALIDITY.
    func storedCursor(_ settings: IMAPSettings, validity: Int64, context: any AdapterContext) async throws -> Int64 {
        guard let stored = try await context.state.get(Self.imapCursorKey(settings.mailbox)) else { return 0 }
        let f = stored.split(separator: ":")
        guard f.count == 2, Int64(f[0]) == validity, let uid = Int64(f[1]) else { return 0 }
        return uid
    }

    /// With `processed_folder`: moves there the messages stored earlier but not filed — the
    /// connection (or the daemon) went down between the commit and the move — which nothing
    /// would ever file otherwise. Only those recorded as stored (`imapUnfiledKey`) and still in
    /// the mailbox. (Flagging \Seen is not redone: without a processed folder, unread mail may
    /// be someone marking it unread on purpose.)
    func fileLeftovers(_ s: inout IMAPSession, validity: Int64, settings: IMAPSettings, context: any AdapterContext) async throws {
        guard settings.processedFolder != nil else { return }
        let recorded = try await unfiled(settings, validity: validity, context: context)
        guard let highest = recorded.max() else { return }
        let present = Set(try await s.uids(through: highest))
        let leftovers = recorded.filter { present.contains($0) }.sorted()
        if !leftovers.isEmpty {
            context.logger.info("IMAP: filing messages stored earlier but left in the mailbox", metadata: [
                "channel": "\(channel.id)", "count": "\(leftovers.count)"])
            for uid in leftovers { try await file(&s, uid: uid, settings: settings, context: context) }
        }
        try await saveUnfiled([], settings, validity: validity, context: context)
    }

    func saveUnfiled(_ uids: [Int64], _ settings: IMAPSettings, validity: Int64, context: any AdapterContext) async throws {
        try await context.state.set(Self.imapUnfiledKey(settings.mailbox),
                                    uids.isEmpty ? nil : "\(validity):" + uids.map(String.init).joined(separator: " "))
    }

    /// The stored-but-unfiled UIDs recorded for this mailbox's UIDVALIDITY.
    func unfiled(_ settings: IMAPSettings, validity: Int64, context: any AdapterContext) async throws -> [Int64] {
        guard let s = try await context.state.get(Self.imapUnfiledKey(settings.mailbox)) else { return [] }
        let f = s.split(separator: ":", maxSplits: 1)
        guard f.count == 2, Int64(f[0]) == validity else { return [] }
        return f[1].split(separator: " ").compactMap { Int64($0) }
    }

    /// Marks a stored message (`\Seen`) or moves it to `processed_folder`. A refusal (a missing
    /// or read-only folder) is logged and leaves the message where it is; false then.
    @discardableResult
    func file(_ s: inout IMAPSession, uid: Int64, settings: IMAPSettings, context: any AdapterContext) async throws -> Bool {
        do {
            if let folder = settings.processedFolder {
                if s.capabilities.contains("MOVE") {
                    _ = try await s.command("UID MOVE \(uid) \(IMAPParser.mailbox(folder))")
                } else {
                    _ = try await s.command("UID COPY \(uid) \(IMAPParser.mailbox(folder))")
                    _ = try await s.command("UID STORE \(uid) +FLAGS.SILENT (\\Deleted)")
                    if s.capabilities.contains("UIDPLUS") { _ = try await s.command("UID EXPUNGE \(uid)") }
                }
            } else {
                _ = try await s.command("UID STORE \(uid) +FLAGS.SILENT (\\Seen)")
            }
            return true
        } catch let e as IMAPError where e.refusal != nil {
            context.logger.warning("IMAP server refused to file a stored message; it stays in the mailbox", metadata: [
                "channel": "\(channel.id)", "uid": "\(uid)", "error": "\(e)"])
            return false
        }
    }

    /// Fetches every message above the cursor, commits it, then marks or moves it and advances
    /// the cursor. A message that can't be stored stops the round (it is fetched again next time);
    /// UIDVALIDITY changes restart from 0 (dedupe by Message-ID absorbs the repeats).
    func sync(_ s: inout IMAPSession, validity: Int64, settings: IMAPSettings, context: any AdapterContext) async throws {
        let key = Self.imapCursorKey(settings.mailbox)
        let last = try await storedCursor(settings, validity: validity, context: context)
        // Read once: this session is the only one writing it.
        var unfiledUIDs = settings.processedFolder == nil ? [] : try await unfiled(settings, validity: validity, context: context)
        for uid in try await s.uids(after: last) {
            let size = try await s.size(uid: uid)
            if let size, size > settings.maxMessageBytes {
                // Too large to download: its headers are stored (sender, subject, thread) with an
                // unsupported part saying so, and the mailbox moves on; the mail stays on the server
                // (flagged or moved to processed_folder like any other).
                let header = try await s.fetch(uid: uid, headerOnly: true) ?? []
                let note = "message of \(size) bytes exceeds imap.max_message_size (\(settings.maxMessageBytes) bytes); not downloaded, it stays on the IMAP server"
                _ = try await ingest(header, envelope: nil, context: context) { inbound in
                    inbound.parts = [.unsupported(Open(UnsupportedFields(description: note, channelType: "email")))]
                    inbound.pendingMedia = []
                    if var data = inbound.channelData["email"]?.objectValue {
                        data["too_large"] = .int(size)
                        data["imap_uid"] = .int(uid)
                        inbound.channelData["email"] = .object(data)
                    }
                }
            } else {
                guard let raw = try await s.fetch(uid: uid) else {
                    context.logger.warning("IMAP message vanished before fetch", metadata: ["channel": "\(channel.id)", "uid": "\(uid)"])
                    continue
                }
                _ = try await ingest(raw, envelope: nil, context: context)
            }
            // Stored: the cursor moves on before the message is filed, so a flag or move the
            // server refuses (a missing or read-only folder) leaves one message where it is
            // instead of stopping the mailbox on it for good.
            // Recorded as stored-but-unfiled until the move, so a connection lost in between
            // leaves it for the next login to file (the last 1,000 at most).
            if settings.processedFolder != nil {
                unfiledUIDs = Array((unfiledUIDs + [uid]).suffix(1000))
                try await saveUnfiled(unfiledUIDs, settings, validity: validity, context: context)
            }
            try await context.state.set(key, "\(validity):\(uid)")
            if try await file(&s, uid: uid, settings: settings, context: context), settings.processedFolder != nil {
                unfiledUIDs.removeAll { $0 == uid }
                try await saveUnfiled(unfiledUIDs, settings, validity: validity, context: context)
            }
        }
    }
}
