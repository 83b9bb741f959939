import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import SwitchboardCore
import SwitchboardDaemon
import SwitchboardDelivery
import SwitchboardRuntime
import SwitchboardSystemd
import InstagramAdapter
import EmailAdapter
import LineAdapter
import MessengerAdapter
import MetaAdapter
import WhatsAppAdapter
import WebhookAdapter
import WebchatAdapter

/// The channel types this build knows, explicitly.
func builtInAdapters() -> AdapterRegistry {
    var r = AdapterRegistry()
    r.register(WebhookChannelAdapter.type, WebhookChannelAdapter.factory)
    r.register(LineChannelAdapter.type, LineChannelAdapter.factory)
    r.register(WhatsAppChannelAdapter.type, WhatsAppChannelAdapter.factory)
    r.register(MessengerChannelAdapter.type, MessengerChannelAdapter.factory)
    r.register(InstagramChannelAdapter.type, InstagramChannelAdapter.factory)
    r.register(WebchatChannelAdapter.type, WebchatChannelAdapter.factory)
    r.register(EmailChannelAdapter.type, EmailChannelAdapter.factory)
    return r
}

struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Configuration file (YAML or JSON). Default: $SWITCHBOARD_CONFIG or /etc/switchboard/switchboard.yaml.")
    var config: String?

    var path: String {
        config ?? ProcessInfo.processInfo.environment["SWITCHBOARD_CONFIG"] ?? ConfigLoader.defaultPath
    }

    func environment() -> ConfigEnvironment {
        ConfigEnvironment(baseDirectory: (URL(fileURLWithPath: path).deletingLastPathComponent().path))
    }
}

/// EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a broken config from restart-looping.
let exitConfig: Int32 = 78

@main
struct Switchboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "Connects customer-messaging channels to any helpdesk.",
        version: SwitchboardVersion.current,
        subcommands: [Serve.self, CheckConfig.self, Version.self, Tail.self, Simulate.self, GenerateSecret.self],
        defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the daemon.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        HeapTuning.keepFreeHeapTop(upTo: 8 << 20)
        let path = options.path
        let text: String
        do { text = try Daemon.readConfig(path: path) } catch {
            FileHandle.standardError.write(Data("switchboard: \(error)\n".utf8))
            throw ExitCode(exitConfig)
        }
        // The level comes from the file; read it before anything logs.
        let level = Logger.Level(rawValue: ConfigLoader.load(text: text, environment: options.environment(), adapterKinds: [],
                                                             diagnostics: ConfigDiagnostics()).logLevel) ?? .info
        JournalLogHandler.bootstrap(level: level)
        _ = SwitchboardMetrics.registry
        let logger = Logger(label: "switchboard")
        let daemon: Daemon
        do {
            daemon = try Daemon(configText: text, configPath: path, registry: builtInAdapters(), environment: options.environment(), logger: logger)
        } catch let p as ConfigProblems {
            for line in p.problems { logger.critical("configuration problem", metadata: ["problem": "\(line)"]) }
            throw ExitCode(exitConfig)
        }
        try await daemon.run()
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config",
                                                    abstract: "Validate the configuration; exit 78 with one line per problem.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let path = options.path
        let text: String
        do { text = try Daemon.readConfig(path: path) } catch {
            print("\(path): \(error)")
            throw ExitCode(exitConfig)
        }
        switch Daemon.validate(text: text, registry: builtInAdapters(), environment: options.environment(), logger: Logger(label: "check-config")) {
        case .failure(let p):
            for line in p.problems { print("\(path): \(line)") }
            throw ExitCode(exitConfig)
        case .success(let (config, _)):
            print("\(path): OK (\(config.channels.count) channels, \(config.helpdesks.count) helpdesks)")
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version.")
    func run() { print("switchboard \(SwitchboardVersion.current)") }
}

struct GenerateSecret: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate-secret", abstract: "Print a new whsec_ webhook signing secret.")
    func run() { print(WebhookSigner.generateSecret()) }
}

/// Where the API is, from flags or the config: the Unix socket first (no token needed).
struct APITarget: ParsableArguments {
    @Option(help: "The API's Unix socket (default: api.socket from the config).") var socket: String?
    @Option(help: "The API's base URL, e.g. http://127.0.0.1:8081 (default: api.listen from the config).") var url: String?
    @Option(name: .customLong("token-file"), help: "A file holding an API token (for --url).") var tokenFile: String?

    func resolve(config: ConfigOption) throws -> (base: String, token: String?) {
        if let socket { return ("http+unix://" + Self.encode(socket), nil) }
        if let url { return (url, try tokenFile.map { try String(contentsOfFile: $0, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }) }
        let diagnostics = ConfigDiagnostics()
        let text = try Daemon.readConfig(path: config.path)
        let c = ConfigLoader.load(text: text, environment: config.environment(), adapterKinds: [], diagnostics: diagnostics)
        if let s = c.apiSocket { return ("http+unix://" + Self.encode(s), nil) }
        if let l = c.apiListen { return ("http://\(l)", c.tokens.first?.token) }
        throw ValidationError("no API address: give --socket or --url")
    }

    static func encode(_ path: String) -> String {
        path.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? path
    }
}

struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print events live from the daemon's event stream.")
    @OptionGroup var options: ConfigOption
    @OptionGroup var target: APITarget
    @Option(help: "Start after this event id (default: only new events; \"0\" for the whole log).") var after: String?
    @Option(help: "Only these event types, comma-separated (message.*, message.status, …).") var types: String?
    @Flag(help: "Print each CloudEvent as JSON instead of a summary line.") var json = false

    func run() async throws {
        // One write(2) per line, unbuffered even into a pipe or file, so `switchboard tail | grep …`
        // shows events as they come (print() would hold them in stdio's block buffer).
        func emit(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
        let (base, token) = try target.resolve(config: options)
        var query: [String] = []
        if let after { query.append("after=\(after)") }
        if let types { query.append("types=\(types)") }
        var req = HTTPClientRequest(url: base + "/v1/events/stream" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
        if let token { req.headers.add(name: "authorization", value: "Bearer \(token)") }
        let response = try await HTTPClient.shared.execute(req, timeout: .hours(24 * 365))
        guard response.status.code == 200 else {
            let body = try await response.body.collect(upTo: 64 * 1024)
            throw ValidationError("the daemon answered \(response.status.code): \(String(buffer: body))")
        }
        var pending = Data()
        for try await chunk in response.body {
            pending.append(contentsOf: chunk.readableBytesView)
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = pending[pending.startIndex..<nl]
                pending = Data(pending[(nl + 1)...])
                if json { emit(String(decoding: line, as: UTF8.self)); continue }
                guard let e = try? JSON.decode(CloudEvent.self, from: Data(line)) else { continue }
                if e.type == "switchboard.heartbeat" { continue }
                var summary = e.data?["text_fallback"]?.stringValue ?? e.data?["status"]?.stringValue ?? ""
                if let who = e.data?["sender"]?["display_name"]?.stringValue { summary = "\(who): \(summary)" }
                emit("\(e.time.rfc3339) \(e.type.replacingOccurrences(of: "switchboard.", with: "")) \(e.subject ?? "-") \(summary)")
            }
        }
    }
}

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Post a correctly signed sample webhook for a configured channel to the running daemon.")
    @OptionGroup var options: ConfigOption
    @Argument(help: "The channel id from the config.") var channel: String
    @Option(help: "The message text.") var text: String = "Hello from switchboard simulate"
    @Option(help: "The simulated customer's id on the channel.") var from: String = "simulated-customer"
    @Option(help: "The simulated customer's display name.") var name: String = "Sam Simulator"
    @Option(help: "The kind of sample message, where the channel type has several (whatsapp: text, image, location, button).")
    var kind: String = "text"
    @Option(help: "webchat: continue as the visitor this token belongs to (printed by an earlier run).")
    var token: String?

    func run() async throws {
        let text = try Daemon.readConfig(path: options.path)
        let diagnostics = ConfigDiagnostics()
        let config = ConfigLoader.load(text: text, environment: options.environment(), adapterKinds: builtInAdapters().kinds, diagnostics: diagnostics)
        guard let ch = config.channels.first(where: { $0.id == channel }) else {
            throw ValidationError("no channel \(channel) in \(options.path)")
        }
        let host = config.listen.host == "0.0.0.0" ? "127.0.0.1" : config.listen.host
        if ch.type == WebchatChannelAdapter.type {
            // A widget visitor on the channel's WebSocket, not a webhook.
            try await WebchatSimulator.run(channel: ch, base: "http://\(HostPort(host: host, port: config.listen.port))",
                                           text: self.text, from: from, name: name, token: token)
            return
        }
        let (body, headers) = try SampleWebhooks.make(for: ch, text: self.text, from: from, name: name, kind: kind)
        var req = HTTPClientRequest(url: "http://\(HostPort(host: host, port: config.listen.port))/webhooks/\(channel)")
        req.method = .POST
        for (k, v) in headers { req.headers.add(name: k, value: v) }
        req.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(req, timeout: .seconds(10))
        let answer = try await response.body.collect(upTo: 64 * 1024)
        print("\(response.status.code) \(String(buffer: answer))")
        if response.status.code >= 300 { throw ExitCode(1) }
    }
}

/// Builds signed sample webhooks per channel type.
enum SampleWebhooks {
    static func make(for channel: ChannelConfig, text: String, from: String, name: String, kind: String = "text") throws -> ([UInt8], [String: String]) {
        switch channel.type {
        case WhatsAppChannelAdapter.type:
            guard let secret = channel.node.secret("app_secret") else { throw ValidationError("channel \(channel.id) has no app_secret") }
            guard let phone = channel.node.string("phone_number_id") else { throw ValidationError("channel \(channel.id) has no phone_number_id") }
            guard let sample = WhatsAppChannelAdapter.SampleKind(rawValue: kind) else {
                throw ValidationError("--kind for whatsapp is one of \(WhatsAppChannelAdapter.SampleKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let body = WhatsAppChannelAdapter.sampleWebhook(kind: sample, text: text, from: from, name: name, phoneNumberID: phone)
            return (body, ["content-type": "application/json",
                           MetaWebhook.signatureHeader: MetaWebhook.sign(body, appSecret: secret.trimmingCharacters(in: .whitespacesAndNewlines))])
        case WebhookChannelAdapter.type:
            guard let secret = channel.node.secret("secret") else { throw ValidationError("channel \(channel.id) has no secret") }
            let payload: JSONObject = [
                "id": .string("sim-" + ID.ulid(milliseconds: Timestamp.now().milliseconds)),
                "from": ["id": .string(from), "name": .string(name)],
                "text": .string(text),
                "timestamp": .string(Timestamp.now().rfc3339),
            ]
            let body = Array(try JSON.encode(payload))
            return (body, ["content-type": "application/json",
                           WebhookChannelAdapter.signatureHeader: WebhookChannelAdapter.sign(body, secret: Array(secret.utf8))])
        case LineChannelAdapter.type:
            guard let secret = channel.node.secret("channel_secret") else { throw ValidationError("channel \(channel.id) has no channel_secret") }
            let body = LineChannelAdapter.sampleTextWebhook(text: text, userID: from)
            return (body, ["content-type": "application/json",
                           LineChannelAdapter.signatureHeader: LineChannelAdapter.signature(body, secret: secret.trimmingCharacters(in: .whitespacesAndNewlines))])
        case MessengerChannelAdapter.type, InstagramChannelAdapter.type:
            let flavor: MessengerPlatform.Flavor = channel.type == MessengerChannelAdapter.type ? .messenger : .instagram
            let idKey = flavor == .messenger ? "page_id" : "account_id"
            guard let secret = channel.node.secret("app_secret") else { throw ValidationError("channel \(channel.id) has no app_secret") }
            guard let own = channel.node.string(idKey) else { throw ValidationError("channel \(channel.id) has no \(idKey)") }
            guard kind == "text" else { throw ValidationError("--kind for \(channel.type) is text") }
            let body = MessengerPlatform.sampleTextWebhook(flavor: flavor, ownID: own, text: text, userID: from)
            return (body, ["content-type": "application/json",
                           MetaWebhook.signatureHeader: MetaWebhook.sign(body, appSecret: secret.trimmingCharacters(in: .whitespacesAndNewlines))])
        default:
            throw ValidationError("simulate does not support \(channel.type) channels yet")
        }
    }
}
