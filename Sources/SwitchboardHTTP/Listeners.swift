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

    public static func publicListener(runtime: Runtime, address: BindAddress, logger: Logger,
                                      extraRoutes: [@Sendable (Router<SwitchboardRequestContext>) -> Void] = [],
                                      onRunning: @escaping OnRunning) -> some Service {
        let router = Router(context: SwitchboardRequestContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger))
        PublicRoutes.register(on: router, runtime: runtime)
        for r in extraRoutes { r(router) }
        return Application(router: router, configuration: .init(address: address, serverName: nil),
                           onServerRunning: { ch in await onRunning("public", describe(ch, address)) }, logger: logger)
    }

    public static func apiListener(runtime: Runtime, address: BindAddress, requireToken: Bool, logger: Logger,
                                   metrics: @escaping @Sendable () -> String, onRunning: @escaping OnRunning) -> some Service {
        let router = Router(context: SwitchboardRequestContext.self)
        router.add(middleware: ProblemMiddleware(logger: logger))
        router.add(middleware: AuthMiddleware(tokens: { runtime.config.tokens }, required: requireToken))
        APIRoutes.register(on: router, runtime: runtime, metrics: metrics)
        let name = requireToken ? "api" : "api-socket"
        return Application(router: router, configuration: .init(address: address, serverName: nil),
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
