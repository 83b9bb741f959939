import ArgumentParser
import Crypto
import Foundation
import GRDB
import Hummingbird
import Logging
import NIOCore
import SwitchboardCore

/// The baseline: a Hummingbird 2 HTTP/1.1 server that accepts the same POST the daemon's
/// webhook listener gets, reads the whole body and answers 200 with a small JSON body of about
/// the daemon's answer size. No signature check, no parsing, no storage: what the same HTTP
/// stack costs when it does nothing.
///
/// `--work` climbs a ladder of the least any webhook receiver must do, each step adding to the
/// one before: `verify` checks the HMAC-SHA256 signature header, `parse` also parses the body as
/// JSON, `store` also appends the raw body to an SQLite table in WAL mode and answers only after
/// the fsync'd commit (one writer thread, group commit — the daemon's durability, without its
/// normalization, identities, conversations or event log). The ladder shows what this machine
/// allows before any of Switchboard's own work: a target above the `store` step's rate cannot be
/// met here by a receiver that never acknowledges a webhook it could lose.
struct BareServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bare-server",
                                                    abstract: "A bare Hummingbird 2 POST endpoint (the throughput baseline), optionally doing a receiver's minimum work.")

    enum Work: String, ExpressibleByArgument, CaseIterable, Sendable { case none, verify, parse, store }

    @Option(help: "TCP port on 127.0.0.1 (0 = any free port; the bound port is printed).") var port: Int = 0
    @Option(help: "Bind address.") var host: String = "127.0.0.1"
    @Option(help: "What each request costs: none (the baseline), verify (+ HMAC-SHA256 signature), parse (+ JSON parse), store (+ durable SQLite append).")
    var work: Work = .none
    @Option(help: "The HMAC secret the load generator signs with (verify, parse, store).") var secret: String = ""
    @Option(help: "The SQLite file for --work store (created; removed by the caller).") var database: String?

    func run() async throws {
        let work = self.work
        if work != .none && secret.isEmpty { throw ValidationError("--work \(work.rawValue) needs --secret") }
        let secretBytes = Array(secret.utf8)
        var appender: RawAppender? = nil
        if work == .store {
            guard let database else { throw ValidationError("--work store needs --database") }
            appender = try RawAppender(path: database)
        }
        let store = appender
        let router = Router()
        // Same size class as the daemon's `{"result":"committed","message_id":…,"conversation_id":…}`.
        let answer = ByteBuffer(string: #"{"result":"bare","message_id":"msg_01JBARE0000000000000000000","conversation_id":"conv_01JBARE0000000000000000000"}"#)
        let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            let body = try await request.body.collect(upTo: 4 * 1024 * 1024)
            if work != .none {
                let bytes = Array(body.readableBytesView)
                let header = request.headers[.init("x-hub-signature-256")!] ?? request.headers[.init("x-switchboard-signature")!] ?? ""
                // The key made per request, as the daemon's Meta adapters do.
                let mac = Array(HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: secretBytes)))
                guard header.hasPrefix("sha256="), let sent = Hex.decode(header.dropFirst(7)), constantTimeEqual(sent, mac) else {
                    return Response(status: .unauthorized)
                }
                if work == .parse || work == .store {
                    guard case .object = try JSONValue.parse(bytes) else { return Response(status: .badRequest) }
                }
                if let store { try await store.append(bytes) }
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: answer))
        }
        router.post("webhooks/:channel", use: handler)
        router.post("/", use: handler)
        router.get("healthz") { _, _ in "ok\n" }

        var logger = Logger(label: "bare-server")
        logger.logLevel = .warning
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                say("ready \(host):\(channel.localAddress?.port ?? port)")
            },
            logger: logger)
        try await app.runService()
    }
}

/// The `store` step: raw bodies appended by one writer thread, a batch per fsync'd transaction,
/// each caller resumed after the commit holding its body (how the daemon's ingest writer works).
final class RawAppender: Sendable {
    private let queue: DatabaseQueue
    private let wake = NSCondition()
    private nonisolated(unsafe) var pending: [(bytes: [UInt8], done: CheckedContinuation<Void, any Error>)] = []
    private nonisolated(unsafe) var waiting = false

    init(path: String) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        queue = try DatabaseQueue(path: path, configuration: config)
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE IF NOT EXISTS webhooks (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, body BLOB NOT NULL)")
        }
        // Lives as long as the benchmark process: the server runs until it is killed.
        let writer = Thread { [self] in writeForever() }
        writer.name = "raw-appender"
        writer.start()
    }

    func append(_ bytes: [UInt8]) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            wake.lock()
            pending.append((bytes, c))
            let signal = waiting
            wake.unlock()
            if signal { wake.signal() }
        }
    }

    private func writeForever() {
        while true {
            wake.lock()
            while pending.isEmpty {
                waiting = true
                wake.wait()
                waiting = false
            }
            let batch = pending
            pending.removeAll(keepingCapacity: true)
            wake.unlock()
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            do {
                try queue.inTransaction { db in
                    let insert = try db.cachedStatement(sql: "INSERT INTO webhooks (received_at, body) VALUES (?, ?)")
                    for item in batch { try insert.execute(arguments: [now, Data(item.bytes)]) }
                    return .commit
                }
                for item in batch { item.done.resume() }
            } catch {
                for item in batch { item.done.resume(throwing: error) }
            }
        }
    }
}
