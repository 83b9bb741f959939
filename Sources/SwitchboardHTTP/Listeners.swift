import Foundation
import Hummingbird
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
        PublicRoutes.register(on: router, runtime: runtime)
        return router
    }

    public static func apiRouter(runtime: Runtime, requireToken: Bool, logger: Logger,
                                 metrics: @escaping @Sendable () -> String) -> Router<SwitchboardRequestContext> {
        let router = Router(context: SwitchboardRequestContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger))
        router.add(middleware: AuthMiddleware(tokens: { runtime.config.tokens }, required: requireToken))
        APIRoutes.register(on: router, runtime: runtime, metrics: metrics)
        return router
    }

    /// A listener the daemon binds itself (no socket activation).
    public static func bound(_ name: String, router: Router<SwitchboardRequestContext>, address: BindAddress, logger: Logger,
                             onRunning: @escaping OnRunning) -> some Service {
        Application(router: router, configuration: .init(address: address, serverName: nil),
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
