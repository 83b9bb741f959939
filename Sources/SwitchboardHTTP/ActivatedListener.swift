import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
import SwitchboardRuntime

/// Serves a router on a listening socket inherited from systemd (`switchboard.socket`,
/// `FileDescriptorName=api` / `public`). Hummingbird's Application binds its own sockets only,
/// so this wires its HTTP/1.1 channel to NIO's bind-to-descriptor directly. The socket unit
/// owns the path and its permissions (SocketGroup=), which is the point: the daemon's user
/// never needs to create a socket a helpdesk group can reach.
public struct ActivatedListener: Service {
    let fd: Int32
    let name: String
    let responder: RouterResponder<SwitchboardRequestContext>
    let logger: Logger
    let onRunning: Listeners.OnRunning
    /// The public listener's runtime, for WebSocket upgrades; nil serves plain HTTP/1.1.
    let runtime: Runtime?

    public init(fd: Int32, name: String, router: Router<SwitchboardRequestContext>, logger: Logger, onRunning: @escaping Listeners.OnRunning) {
        self.fd = fd; self.name = name; self.responder = router.buildResponder(); self.logger = logger; self.onRunning = onRunning
        self.runtime = nil
    }

    /// The public listener on an inherited socket, with the same WebSocket upgrades as a bound one.
    public init(fd: Int32, name: String, publicRouter router: Router<SwitchboardRequestContext>, runtime: Runtime, logger: Logger,
                onRunning: @escaping Listeners.OnRunning) {
        self.fd = fd; self.name = name; self.responder = router.buildResponder(); self.logger = logger; self.onRunning = onRunning
        self.runtime = runtime
    }

    public func run() async throws {
        let responder = self.responder
        let logger = self.logger
        let respond: HTTPChannelHandler.Responder = { request, writer, channel in
            let context = SwitchboardRequestContext(source: .init(channel: channel, logger: logger))
            let response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch {
                response = Response(status: .internalServerError)
            }
            try await writer.write(response: response.head, body: response.body)
        }
        if let runtime {
            try await serve(PublicChildChannel(responder: respond, runtime: runtime))
        } else {
            try await serve(HTTP1Channel(responder: respond))
        }
    }

    private func serve<C: ServerChildChannel>(_ http: C) async throws {
        let logger = self.logger
        // The quiescing helper tells idle keep-alive connections to close on shutdown, as
        // Hummingbird's own server does; without it shutdown would wait out the grace period.
        let quiesce = ServerQuiescingHelper(group: MultiThreadedEventLoopGroup.singleton)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
            .bind(NIOBSDSocket.Handle(fd)) { channel in http.setup(channel: channel, logger: logger) }
        await onRunning(name, Listeners.describe(server.channel, .hostname("fd", port: Int(fd))))
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await child in inbound {
                        group.addTask { await http.handle(value: child, logger: logger) }
                    }
                }
            }
        } onGracefulShutdown: {
            // Stop accepting, close idle connections; requests in flight finish (the group waits).
            quiesce.initiateShutdown(promise: nil)
        }
    }
}
