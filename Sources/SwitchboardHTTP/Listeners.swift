import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle
import NIOCore
import SwitchboardCore
import SwitchboardRuntime

/// Builds the daemon's HTTP listeners as services: the public listener, the API over TCP
/// (bearer tokens) and the API over a Unix socket (file permissions).
public enum Listeners {
    public typealias OnRunning = @Sendable (_ name: String, _ address: String) async -> Void

    public static func publicRouter(runtime: Runtime, logger: Logger) -> Router<SwitchboardRequestContext> {
        let router = Router(context: SwitchboardRequestContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger))
        router.add(middleware: PublicAreaMiddleware(runtime: runtime))
        PublicRoutes.register(on: router, runtime: runtime)
        return router
    }

    /// The public listener's server: HTTP/1.1 plus WebSocket upgrades for channels that serve
    /// live connections (`ChannelAdapter.acceptLive`).
    public static func publicServer(runtime: Runtime) -> HTTPServerBuilder {
        PublicRoutes.server(runtime: runtime)
    }

    public static func apiRouter(runtime: Runtime, requireToken: Bool, logger: Logger,
                                 metrics: @escaping @Sendable () -> String) -> Router<SwitchboardRequestContext> {
        let router = Router(context: SwitchboardRequestContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger, routes: APIRoutes.all))
        router.add(middleware: AuthMiddleware(tokens: { runtime.config.tokens }, required: requireToken))
        APIRoutes.register(on: router, runtime: runtime, metrics: metrics)
        return router
    }

    /// A listener the daemon binds itself (no socket activation).
    public static func bound(_ name: String, router: Router<SwitchboardRequestContext>, server: HTTPServerBuilder = .http1(),
                             address: BindAddress, logger: Logger, onRunning: @escaping OnRunning) -> some Service {
        Application(router: router, server: server, configuration: .init(address: address, serverName: nil),
                    onServerRunning: { ch in await onRunning(name, describe(ch, address)) }, logger: logger)
    }

    static func describe(_ channel: any Channel, _ address: BindAddress) -> String {
        if let a = channel.localAddress {
            if let path = a.pathname { return path }
            if let ip = a.ipAddress, let port = a.port { return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)" }
        }
        return "\(address)"
    }
}
