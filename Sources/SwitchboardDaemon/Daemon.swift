import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import SwitchboardCore
import SwitchboardHTTP
import SwitchboardRuntime
import SwitchboardSystemd
import UnixSignals

/// A configuration that did not pass validation: one line per problem, each naming its key.
public struct ConfigProblems: Error, CustomStringConvertible {
    public var problems: [String]
    public var description: String { problems.joined(separator: "\n") }
}

/// The whole daemon: runtime, listeners, systemd integration and reload, as one ServiceGroup.
/// `switchboard serve` runs it; tests run it in-process with their own adapters.
public final class Daemon: Sendable {
    public let runtime: Runtime
    public let configPath: String?
    let registry: AdapterRegistry
    let environment: ConfigEnvironment
    let logger: Logger
    let notifier: SystemdNotifier
    let ready = Mutex<(addresses: [String: String], waiters: [CheckedContinuation<[String: String], Never>])>(([:], []))
    let group = Mutex<ServiceGroup?>(nil)
    let expectedListeners = Mutex(Int.max)

    /// Reads and validates everything (config keys and every adapter's own keys) and returns
    /// the config and the adapters built from it, or every problem found.
    public static func validate(text: String, registry: AdapterRegistry, environment: ConfigEnvironment,
                                logger: Logger) -> Result<(SwitchboardConfig, [String: any ChannelAdapter]), ConfigProblems> {
        let diagnostics = ConfigDiagnostics()
        let config = ConfigLoader.load(text: text, environment: environment, adapterKinds: registry.kinds, diagnostics: diagnostics)
        let env = AdapterEnvironment(httpClient: HTTPClient.shared, publicURL: config.publicURL, logger: logger)
        let adapters = Runtime.buildAdapters(config, registry: registry, env: env)
        if !diagnostics.isEmpty { return .failure(ConfigProblems(problems: diagnostics.problems)) }
        return .success((config, adapters))
    }

    public static func readConfig(path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigProblems(problems: ["cannot read the configuration file \(path)"])
        }
        return String(decoding: data, as: UTF8.self)
    }

    public init(configText: String, configPath: String?, registry: AdapterRegistry, environment: ConfigEnvironment,
                logger: Logger, notifier: SystemdNotifier = SystemdNotifier()) throws {
        // Metrics first: swift-metrics binds each metric to the factory present when it is made.
        _ = SwitchboardMetrics.registry
        let (config, adapters) = try Self.validate(text: configText, registry: registry, environment: environment, logger: logger).get()
        // Opening the store may migrate a large database: ask systemd for time beyond the unit's
        // start timeout (READY=1 ends the wait as soon as the daemon is up).
        _ = notifier.extendTimeout(by: .seconds(600))
        self.runtime = try Runtime(config: config, registry: registry, httpClient: HTTPClient.shared, logger: logger)
        self.configPath = configPath
        self.registry = registry
        self.environment = environment
        self.logger = logger
        self.notifier = notifier
        runtime.apply(config, adapters: adapters)
    }

    /// Listener name → bound address, once every listener is up (READY).
    public func waitUntilReady() async -> [String: String] {
        await withCheckedContinuation { c in
            let now = ready.withLock { s -> [String: String]? in
                if s.addresses.count >= expectedListeners.withLock({ $0 }) { return s.addresses }
                s.waiters.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }

    /// Starts a graceful shutdown (what SIGTERM does).
    public func shutdown() async {
        let g = group.withLock { $0 }
        await g?.triggerGracefulShutdown()
    }

    func listenerUp(_ name: String, _ address: String) async {
        if name == "api-socket", let path = runtime.config.apiSocket, address == path {
            chmod(path, mode_t(runtime.config.apiSocketMode))
            // Bound here, not by switchboard.socket: hand it to the helpdesks' group ourselves.
            if let groupName = runtime.config.apiSocketGroup {
                let gid = getgrnam(groupName)?.pointee.gr_gid
                if gid == nil || chown(path, uid_t.max, gid!) != 0 {
                    logger.warning("cannot give the API socket to its group", metadata: ["group": "\(groupName)", "path": "\(path)"])
                }
            }
        }
        logger.info("listening", metadata: ["listener": "\(name)", "address": "\(address)"])
        let (waiters, all) = ready.withLock { s -> ([CheckedContinuation<[String: String], Never>], [String: String]?) in
            s.addresses[name] = address
            guard s.addresses.count >= expectedListeners.withLock({ $0 }) else { return ([], nil) }
            defer { s.waiters = [] }
            return (s.waiters, s.addresses)
        }
        if let all {
            // Listeners bound, store open, adapters started: now systemd may route traffic.
            _ = notifier.ready(status: await runtime.statusLine())
            logger.info("ready", metadata: ["version": "\(SwitchboardVersion.current)"])
            for w in waiters { w.resume(returning: all) }
        }
    }

    public func run() async throws {
        let config = runtime.config
        var services: [any Service] = [runtime.pipeline, runtime.supervisor, runtime.checkpointer, runtime.retention]
        let onRunning: Listeners.OnRunning = { [self] name, address in await self.listenerUp(name, address) }
        // Sockets passed by systemd (switchboard.socket / switchboard-public.socket) replace the
        // matching configured addresses; everything else is bound here.
        let activated = SocketActivation.takeListeners()
        var listeners: [any Service] = []
        let metrics = SwitchboardMetrics.text
        if let fd = activated.first(named: "public")?.fd {
            listeners.append(ActivatedListener(fd: fd, name: "public", publicRouter: Listeners.publicRouter(runtime: runtime, logger: logger),
                                               runtime: runtime, logger: logger, onRunning: onRunning))
        } else {
            listeners.append(Listeners.bound("public", router: Listeners.publicRouter(runtime: runtime, logger: logger),
                                             server: Listeners.publicServer(runtime: runtime), address: .hostname(config.listen.host, port: config.listen.port), logger: logger, onRunning: onRunning))
        }
        var apiSocketActivated = false
        if let fd = activated.first(named: "api")?.fd {
            if let configured = config.apiSocket, let passed = SocketActivation.unixPath(fd: fd), passed != configured {
                logger.warning("the API socket systemd passes is not api.socket; clients using the configured path (switchboard tail) will not reach it",
                               metadata: ["passed": "\(passed)", "configured": "\(configured)"])
            }
            // A Unix socket is authorised by its permissions; a TCP one needs tokens.
            let isUnix = SocketActivation.socketKind(fd: fd) == .unix
            apiSocketActivated = isUnix
            listeners.append(ActivatedListener(fd: fd, name: isUnix ? "api-socket" : "api",
                                               router: Listeners.apiRouter(runtime: runtime, requireToken: !isUnix, logger: logger, metrics: metrics),
                                               logger: logger, onRunning: onRunning))
        }
        if let api = config.apiListen, activated.first(named: "api") == nil || apiSocketActivated {
            listeners.append(Listeners.bound("api", router: Listeners.apiRouter(runtime: runtime, requireToken: true, logger: logger, metrics: metrics),
                                             address: .hostname(api.host, port: api.port), logger: logger, onRunning: onRunning))
        }
        if let path = config.apiSocket, !apiSocketActivated {
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            listeners.append(Listeners.bound("api-socket", router: Listeners.apiRouter(runtime: runtime, requireToken: false, logger: logger, metrics: metrics),
                                             address: .unixDomainSocket(path: path), logger: logger, onRunning: onRunning))
        }
        for name in activated.map(\.name) where name != "public" && name != "api" {
            logger.warning("ignoring a socket passed by systemd with an unknown name", metadata: ["name": "\(name)"])
        }
        expectedListeners.withLock { $0 = listeners.count }
        services += listeners
        services.append(SystemdService(daemon: self))
        var groupConfig = ServiceGroupConfiguration(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        // Drain within server.shutdown_grace (keep it below systemd's TimeoutStopSec=), then cancel.
        groupConfig.maximumGracefulShutdownDuration = .milliseconds(Int64(config.shutdownGraceSeconds * 1000))
        let serviceGroup = ServiceGroup(configuration: groupConfig)
        group.withLock { $0 = serviceGroup }
        try await serviceGroup.run()
        logger.info("stopped")
    }

    /// SIGHUP: validate the file again; apply it only if it is entirely valid.
    func reload() async {
        _ = notifier.reloading()
        logger.info("reloading configuration")
        guard let path = configPath else {
            logger.warning("no configuration file to reload (started from embedded text)")
            _ = notifier.ready(status: await runtime.statusLine())
            return
        }
        let result: Result<(SwitchboardConfig, [String: any ChannelAdapter]), ConfigProblems>
        do {
            result = Self.validate(text: try Self.readConfig(path: path), registry: registry, environment: environment, logger: logger)
        } catch let p as ConfigProblems {
            result = .failure(p)
        } catch {
            result = .failure(ConfigProblems(problems: ["\(error)"]))
        }
        switch result {
        case .failure(let p):
            for line in p.problems { logger.error("reload refused", metadata: ["problem": "\(line)"]) }
            _ = notifier.ready(status: "reload failed (\(p.problems.count) problems); running the previous configuration")
        case .success(let (config, adapters)):
            let old = runtime.config
            let restartOnly = Self.restartOnlyChanges(old, config)
            if !restartOnly.isEmpty {
                logger.warning("changes that take effect only after a restart", metadata: ["keys": "\(restartOnly.joined(separator: ", "))"])
            }
            runtime.apply(Self.keepingRestartOnly(running: old, new: config), adapters: adapters)
            logger.info("configuration reloaded", metadata: ["channels": "\(config.channels.count)", "helpdesks": "\(config.helpdesks.count)"])
            _ = notifier.ready(status: await runtime.statusLine())
        }
    }
}

extension Daemon {
    /// The configuration a reload actually runs: the new one, with the values only a restart
    /// changes kept as they are running. The next reload then compares with what runs (so its
    /// warning names every pending change, and going back to the running value warns of
    /// nothing), and a `public_url` derived from `server.listen` keeps naming the port in use.
    static func keepingRestartOnly(running old: SwitchboardConfig, new: SwitchboardConfig) -> SwitchboardConfig {
        var c = new
        if new.publicURL == "http://\(new.listen)" && new.listen != old.listen { c.publicURL = "http://\(old.listen)" }
        c.listen = old.listen
        c.shutdownGraceSeconds = old.shutdownGraceSeconds
        c.apiListen = old.apiListen
        c.apiSocket = old.apiSocket
        c.apiSocketMode = old.apiSocketMode
        c.apiSocketGroup = old.apiSocketGroup
        c.storagePath = old.storagePath
        c.durability = old.durability
        c.mediaPath = old.mediaPath
        c.mediaMaxBytes = old.mediaMaxBytes
        c.logLevel = old.logLevel
        return c
    }

    /// Keys a reload cannot apply: listeners and the store are opened once, logging is set up
    /// once. Named in the reload's log line so nobody waits for a change that needs a restart.
    static func restartOnlyChanges(_ old: SwitchboardConfig, _ new: SwitchboardConfig) -> [String] {
        var keys: [String] = []
        if old.listen != new.listen { keys.append("server.listen") }
        if old.shutdownGraceSeconds != new.shutdownGraceSeconds { keys.append("server.shutdown_grace") }
        if old.apiListen != new.apiListen { keys.append("api.listen") }
        if old.apiSocket != new.apiSocket || old.apiSocketMode != new.apiSocketMode || old.apiSocketGroup != new.apiSocketGroup {
            keys.append("api.socket")
        }
        if old.storagePath != new.storagePath { keys.append("storage.path") }
        if old.durability != new.durability { keys.append("storage.durability") }
        if old.mediaPath != new.mediaPath { keys.append("media.path") }
        if old.mediaMaxBytes != new.mediaMaxBytes { keys.append("media.max_bytes") }
        if old.logLevel != new.logLevel { keys.append("logging.level") }
        return keys
    }
}

/// systemd's side of the lifecycle: STATUS= lines, WATCHDOG=1 while healthy, RELOADING on
/// SIGHUP, STOPPING=1 when shutdown begins (this service is last in the group, so it is the
/// first to hear of it).
struct SystemdService: Service {
    let daemon: Daemon

    func run() async throws {
        let notifier = daemon.notifier
        let watchdog = Watchdog.interval()
        let tick: Duration = watchdog.map { min($0, .seconds(10)) } ?? .seconds(10)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
                    await daemon.reload()
                }
            }
            group.addTask {
                var lastStatus = ""
                while !Task.isCancelled && !Task.isShuttingDownGracefully {
                    // Ping only when the store answers: a blind timer would prove nothing.
                    if (try? await daemon.runtime.store.ping()) != nil, watchdog != nil { _ = notifier.watchdog() }
                    let line = await daemon.runtime.statusLine()
                    if line != lastStatus { _ = notifier.status(line); lastStatus = line }
                    try? await Task.sleep(for: tick)
                }
            }
            await withGracefulShutdownHandler {
                await group.next()
            } onGracefulShutdown: {
                _ = notifier.stopping(status: "draining")
                daemon.logger.info("shutting down: draining in-flight work")
            }
            group.cancelAll()
        }
    }
}
