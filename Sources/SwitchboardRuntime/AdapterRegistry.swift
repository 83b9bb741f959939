import AsyncHTTPClient
import Foundation
import Logging
import SwitchboardCore

/// What an adapter factory may use besides its own config.
public struct AdapterEnvironment: Sendable {
    public var httpClient: HTTPClient
    public var publicURL: String
    public var logger: Logger
    public init(httpClient: HTTPClient, publicURL: String, logger: Logger) {
        self.httpClient = httpClient; self.publicURL = publicURL; self.logger = logger
    }
}

/// Builds an adapter from its config node. Problems go to `node.diagnostics` with key paths;
/// return nil when the adapter can't be built.
public typealias AdapterFactory = @Sendable (_ channel: ChannelRef, _ node: ConfigNode, _ env: AdapterEnvironment) -> (any ChannelAdapter)?

/// The explicit list of channel types this build knows. No plug-in loading: Swift has no stable
/// ABI on Linux; third-party channels run out of process.
public struct AdapterRegistry: Sendable {
    public private(set) var factories: [String: AdapterFactory] = [:]
    /// Keys every channel has, besides the adapter's own.
    public static let commonKeys = ["id", "type"]

    public init() {}

    public mutating func register(_ type: String, _ factory: @escaping AdapterFactory) { factories[type] = factory }

    public var kinds: Set<String> { Set(factories.keys) }

    public func make(_ config: ChannelConfig, env: AdapterEnvironment) -> (any ChannelAdapter)? {
        guard let f = factories[config.type] else { return nil }
        return f(ChannelRef(type: config.type, id: config.id), config.node, env)
    }
}
