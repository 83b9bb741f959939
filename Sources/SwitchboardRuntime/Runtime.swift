import AsyncHTTPClient
import Foundation
import Logging
import Synchronization
import SwitchboardCore
import SwitchboardDelivery
import SwitchboardStore

/// The daemon minus its listeners: store, ingest pipeline, channels, delivery and send workers.
/// The HTTP layer calls into it; `apply(_:)` starts it and applies reloads.
public final class Runtime: Sendable {
    public let store: Store
    public let media: FileMediaStore
    public let pipeline: IngestPipeline
    public let hub: ChannelHub
    public let supervisor: Supervisor
    /// Fires when events are committed (delivery workers, event streams).
    public let eventSignal = ChangeSignal()
    /// Fires when a send is queued (send workers).
    public let outboundSignal = ChangeSignal()
    /// Keeps SQLite's checkpoints out of the commits webhooks wait for.
    public let checkpointer: WALCheckpointer
    public let retention: StoreRetention
    public let registry: AdapterRegistry
    /// Signs the public media links (`/media/{id}?exp=…&sig=…`).
    public let mediaSigner: MediaURLSigner
    public let httpClient: HTTPClient
    public let logger: Logger
    private let configBox: Mutex<SwitchboardConfig>
    private let sinkNames = Mutex<[String: HelpdeskConfig]>([:])
    private let channelConfigs = Mutex<[String: String]>([:])

    public var config: SwitchboardConfig { configBox.withLock { $0 } }
    /// `server.trusted_proxies`, read per public request (cheaper than copying the whole config).
    public var trustedProxies: TrustedProxies { configBox.withLock { $0.trustedProxies } }

    public init(config: SwitchboardConfig, registry: AdapterRegistry, httpClient: HTTPClient, logger: Logger) throws {
        self.store = try Store(path: config.storagePath, durability: config.durability == "normal" ? .normal : .full)
        // Before any channel can commit: a helpdesk without a position would start at the end
        // of the log when its worker starts, after events it should get (`apply` does it again
        // for a reload).
        try store.prepareSinkPositions(config.helpdesks.map(\.name))
        self.media = try FileMediaStore(root: config.mediaPath, maxBytes: config.mediaMaxBytes, store: store)
        self.pipeline = IngestPipeline(store: store, eventSignal: eventSignal, context: Self.eventContext(config), logger: logger)
        self.checkpointer = try WALCheckpointer(store: store, logger: logger)
        self.retention = StoreRetention(store: store, logger: logger)
        self.hub = ChannelHub(store: store, pipeline: pipeline, eventSignal: eventSignal)
        self.supervisor = Supervisor(logger: logger)
        self.mediaSigner = MediaURLSigner(key: try store.installationSecret("media_url_key"))
        self.registry = registry
        self.httpClient = httpClient
        self.logger = logger
        self.configBox = Mutex(config)
    }

    static func eventContext(_ c: SwitchboardConfig) -> EventContext {
        EventContext(source: c.eventSource)
    }

    /// Builds every adapter of `config` without starting anything (used by `check-config` and
    /// before a reload is applied); each factory reports problems through its config node.
    public static func buildAdapters(_ config: SwitchboardConfig, registry: AdapterRegistry, env: AdapterEnvironment) -> [String: any ChannelAdapter] {
        var out: [String: any ChannelAdapter] = [:]
        for c in config.channels {
            if let a = registry.make(c, env: env) { out[c.id] = a }
        }
        // Channels that send through others (the web chat's email follow-up) must name one
        // that is configured and can.
        for c in config.channels {
            for target in out[c.id]?.relayTargets ?? [] {
                let node = target.configKey.reduce(c.node) { $0[$1] }
                if let t = out[target.channelID] {
                    if !t.acceptsRelays {
                        node.problem("channel \(target.channelID) (\(t.channel.type)) can't send on behalf of other channels"
                                     + (t.channel.type == "email" ? " (it has no smtp settings)" : ""))
                    }
                } else if !config.channels.contains(where: { $0.id == target.channelID }) {
                    node.problem("no channel with id \(target.channelID)")
                }
            }
        }
        return out
    }

    /// Starts (first call) or reconciles (reload) sinks and channels with `config`. Channels
    /// and sinks whose configuration is unchanged keep running untouched.
    public func apply(_ config: SwitchboardConfig, adapters: [String: any ChannelAdapter]) {
        configBox.withLock { $0 = config }
        retention.setRetention(events: config.eventRetentionSeconds, dedupe: config.dedupeRetentionSeconds)
        pipeline.setEventContext(Self.eventContext(config))

        // Helpdesk sinks. A new one gets its position in the event log before anything can
        // be committed for it to miss.
        do {
            try store.prepareSinkPositions(config.helpdesks.map(\.name))
        } catch {
            logger.error("cannot record the helpdesks' positions in the event log; each sink starts at the end of the log when it starts",
                         metadata: ["error": "\(error)"])
        }
        let wanted = Dictionary(uniqueKeysWithValues: config.helpdesks.map { ($0.name, $0) })
        let current = sinkNames.withLock { $0 }
        for name in current.keys where wanted[name] == nil {
            supervisor.stop("sink:\(name)")
        }
        for (name, h) in wanted where current[name].map({ !Self.same($0, h) }) ?? true {
            startSink(h)
        }
        sinkNames.withLock { $0 = wanted }

        // Channels.
        let newFingerprints = Dictionary(uniqueKeysWithValues: config.channels.map { ($0.id, Self.fingerprint($0, in: config)) })
        let old = channelConfigs.withLock { $0 }
        for id in old.keys where newFingerprints[id] == nil {
            supervisor.stop("channel:\(id)")
            supervisor.stop("send:\(id)")
            hub.remove(id)
        }
        for c in config.channels where old[c.id] != newFingerprints[c.id] {
            guard let adapter = adapters[c.id] else { continue }
            startChannel(adapter)
        }
        channelConfigs.withLock { $0 = newFingerprints }
    }

    /// Files an adapter reads each time it needs them (an OAuth token refreshed by another
    /// process): a new one needs no restart.
    static let readAtUse: Set<String> = ["oauth_token_file"]

    /// What a running channel was built from: its own mapping, the contents of the files it
    /// names (a rotated token behind the same `*_file` path must restart it), and the
    /// settings its context and send worker take from elsewhere (`server.public_url`,
    /// `outbound.retry`). A reload restarts the channel when any of it changed.
    static func fingerprint(_ c: ChannelConfig, in config: SwitchboardConfig) -> String {
        var files = Hasher()
        func walk(_ v: JSONValue?, _ node: ConfigNode) {
            switch v {
            case .object(let o)?:
                for k in o.keys.sorted() {
                    if k.hasSuffix("_file"), !Self.readAtUse.contains(k), let path = o[k]?.stringValue {
                        // Secrets resolve under $CREDENTIALS_DIRECTORY, other files (ca_file) next
                        // to the config: whichever exists.
                        let secret = node.resolvePath(path, credential: true)
                        files.combine(k)
                        files.combine(FileManager.default.contents(atPath: secret) ?? FileManager.default.contents(atPath: node.resolvePath(path)))
                    } else {
                        walk(o[k], node)
                    }
                }
            case .array(let a)?: for e in a { walk(e, node) }
            default: break
            }
        }
        walk(c.node.value, c.node)
        return [JSON.string(c.node.value), config.publicURL, "\(config.sendRetry)", String(files.finalize())].joined(separator: "\n")
    }

    static func same(_ a: HelpdeskConfig, _ b: HelpdeskConfig) -> Bool {
        a.kind == b.kind && a.secret == b.secret && a.events == b.events && a.timeout == b.timeout && a.maxInFlight == b.maxInFlight
            && a.retry == b.retry && a.headers.map { "\($0.0)=\($0.1)" } == b.headers.map { "\($0.0)=\($0.1)" }
    }

    func startSink(_ h: HelpdeskConfig) {
        let sink: any EventSink
        switch h.kind {
        case .console: sink = ConsoleSink(name: h.name)
        case .http(let url):
            sink = HTTPSink(name: h.name, url: url, signer: h.secret.flatMap { try? WebhookSigner(secrets: $0) }, headers: h.headers,
                            timeout: .milliseconds(Int64(h.timeout * 1000)), maxConnections: h.maxInFlight)
        }
        var log = logger
        log[metadataKey: "sink"] = "\(h.name)"
        let worker = DeliveryWorker(sink: sink, store: store, signal: eventSignal, events: h.events, schedule: h.retry,
                                    maxInFlight: h.maxInFlight, logger: log)
        supervisor.start(.init(id: "sink:\(h.name)", drains: true) {
            // Only a worker that finished (stop, reload) closes its connections: one that threw
            // is started again by the supervisor with the same sink. Idle ones close by themselves.
            try await worker.run()
            await sink.close()
        })
    }

    func startChannel(_ adapter: any ChannelAdapter) {
        let channel = adapter.channel
        var log = logger
        log[metadataKey: "channel"] = "\(channel.id)"
        let context = RuntimeAdapterContext(channel: channel, logger: log, publicURL: config.publicURL,
                                            state: StoreAdapterState(store: store, channelID: channel.id), media: media,
                                            pipeline: pipeline, hub: hub, mediaSigner: mediaSigner,
                                            outboundSignal: outboundSignal)
        hub.put(ChannelHub.Entry(adapter: adapter, context: context,
                                 info: ChannelInfo(id: channel.id, type: channel.type, state: .connected, detail: nil, since: .now(),
                                                   capabilities: adapter.capabilities)))
        supervisor.start(.init(id: "channel:\(channel.id)") { try await adapter.run(context: context) })
        let worker = SendWorker(adapter: adapter, context: context, store: store, outboundSignal: outboundSignal, eventSignal: eventSignal,
                                schedule: config.sendRetry, pipeline: pipeline, hub: hub)
        supervisor.start(.init(id: "send:\(channel.id)", drains: true) { try await worker.run() })
    }

    /// A one-line summary for systemd's STATUS=.
    public func statusLine() async -> String {
        let channels = hub.all
        let up = channels.filter { $0.info.state == .connected }.count
        var pending = 0
        for h in config.helpdesks { pending += (try? await store.sinkStats(h.name).pending) ?? 0 }
        let queued = (try? await store.counts().sendQueue) ?? 0
        return "\(up)/\(channels.count) channels connected; outbox \(pending) pending; \(queued) replies queued"
    }
}
