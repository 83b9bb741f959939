import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The baseline: a Hummingbird 2 HTTP/1.1 server that accepts the same POST the daemon's
/// webhook listener gets, reads the whole body and answers 200 with a small JSON body of about
/// the daemon's answer size. No signature check, no parsing, no storage: what the same HTTP
/// stack costs when it does nothing.
struct BareServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bare-server",
                                                    abstract: "A bare Hummingbird 2 POST endpoint (the throughput baseline).")

    @Option(help: "TCP port on 127.0.0.1 (0 = any free port; the bound port is printed).") var port: Int = 0
    @Option(help: "Bind address.") var host: String = "127.0.0.1"

    func run() async throws {
        let router = Router()
        // Same size class as the daemon's `{"result":"committed","message_id":…,"conversation_id":…}`.
        let answer = ByteBuffer(string: #"{"result":"bare","message_id":"msg_01JBARE0000000000000000000","conversation_id":"conv_01JBARE0000000000000000000"}"#)
        let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            _ = try await request.body.collect(upTo: 4 * 1024 * 1024)
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
