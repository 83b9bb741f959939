import Foundation
import Logging
import Testing
import SwitchboardCore
import SwitchboardDaemon
import SwitchboardHTTP
import SwitchboardRuntime
import WebchatAdapter
import WebhookAdapter

/// The documents others rely on, checked against the code they describe:
/// docs/openapi.yaml against the router, Config/switchboard.yaml and Config/demo.yaml against
/// the configuration loader, and the shape of `check-config` problem lines (in-process and from
/// the real binary).
@Suite("Contract: docs and reference configuration match the code")
struct ContractTests {

    // MARK: - Files and parsing

    /// The repository root: this file is <root>/Tests/SwitchboardTests/ContractTests.swift.
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ relative: String) throws -> String {
        let url = root.appendingPathComponent(relative)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ContractFailure("cannot read \(relative)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Parses YAML (or JSON) with the daemon's own parser into a JSON tree.
    static func yaml(_ text: String, file: String) throws -> JSONValue {
        let diagnostics = ConfigDiagnostics()
        let node = ConfigNode.parse(yaml: text, diagnostics: diagnostics, environment: ConfigEnvironment(variables: [:]))
        guard diagnostics.isEmpty, let value = node.value else {
            throw ContractFailure("\(file) does not parse: \(diagnostics.problems.joined(separator: "; "))")
        }
        return value
    }

    struct ContractFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static let httpMethods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    static func openAPI() throws -> JSONValue { try yaml(try text("docs/openapi.yaml"), file: "docs/openapi.yaml") }

    /// "METHOD /path" → the operation object.
    static func operations(_ spec: JSONValue) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for (path, item) in spec["paths"]?.objectValue ?? [:] {
            for (method, op) in item.objectValue ?? [:] where httpMethods.contains(method) {
                out["\(method.uppercased()) \(path)"] = op
            }
        }
        return out
    }

    /// Follows a local `$ref` (`#/components/...`) once.
    static func resolve(_ v: JSONValue, in spec: JSONValue) -> JSONValue {
        guard let ref = v["$ref"]?.stringValue, ref.hasPrefix("#/") else { return v }
        var cur: JSONValue? = spec
        for token in ref.dropFirst(2).split(separator: "/") {
            cur = cur?[String(token).replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")]
        }
        return cur ?? v
    }

    static let logger = Logger(label: "contract-tests")

    static func registry() -> AdapterRegistry {
        var r = AdapterRegistry()
        r.register(WebhookChannelAdapter.type, WebhookChannelAdapter.factory)
        r.register(WebchatChannelAdapter.type, WebchatChannelAdapter.factory)
        return r
    }

    /// A fresh directory under the system temp directory, removed by `cleanup`.
    static func tempDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sb-contract-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func matches(_ pattern: String, in text: String, group: Int = 1) -> [String] {
        guard let re = try? NSRegularExpression(pattern: pattern) else { return [] }
        let ns = text as NSString
        return re.matches(in: text, range: NSRange(location: 0, length: ns.length)).compactMap { m in
            m.range(at: group).location == NSNotFound ? nil : ns.substring(with: m.range(at: group))
        }
    }

    // MARK: - (a) docs/openapi.yaml describes exactly the served routes

    @Test("every route in APIRoutes.all is in openapi.yaml, and nothing else")
    func openAPIRoutesMatchRouter() async throws {
        let documented = Set(Self.operations(try Self.openAPI()).keys)
        let served = Set(APIRoutes.all)
        #expect(served.count == APIRoutes.all.count, "APIRoutes.all lists a route twice")
        let missing = served.subtracting(documented).sorted()
        let extra = documented.subtracting(served).sorted()
        #expect(missing.isEmpty && extra.isEmpty, """
            docs/openapi.yaml and APIRoutes.all differ.
              served but not documented: \(missing.isEmpty ? "none" : missing.joined(separator: ", "))
              documented but not served: \(extra.isEmpty ? "none" : extra.joined(separator: ", "))
            """)
    }

    @Test("every {param} in a documented path is declared as a path parameter")
    func openAPIPathParametersDeclared() async throws {
        let spec = try Self.openAPI()
        for (path, item) in spec["paths"]?.objectValue ?? [:] {
            let names = Self.matches(#"\{([^}]+)\}"#, in: path)
            let itemParams = item["parameters"]?.arrayValue ?? []
            for (method, op) in item.objectValue ?? [:] where Self.httpMethods.contains(method) {
                let declared = Set((itemParams + (op["parameters"]?.arrayValue ?? [])).map { Self.resolve($0, in: spec) }
                    .filter { $0["in"]?.stringValue == "path" }.compactMap { $0["name"]?.stringValue })
                for n in names {
                    #expect(declared.contains(n), "\(method.uppercased()) \(path): path parameter {\(n)} is not declared")
                }
            }
        }
    }

    // MARK: - (b) OpenAPI 3.1, problem+json errors, stable codes

    @Test("openapi.yaml is OpenAPI 3.1 and every operation documents a 4xx problem+json answer")
    func openAPIErrorsAreProblems() async throws {
        let spec = try Self.openAPI()
        let version = spec["openapi"]?.stringValue ?? ""
        #expect(version.hasPrefix("3.1."), "openapi must be 3.1.x, is \(version)")
        #expect(spec["components"]?["securitySchemes"]?["bearerAuth"]?["scheme"]?.stringValue == "bearer")
        let ops = Self.operations(spec)
        #expect(!ops.isEmpty)
        for (name, op) in ops.sorted(by: { $0.key < $1.key }) {
            let responses = op["responses"]?.objectValue ?? [:]
            let problems4xx = responses.filter { code, response in
                guard let status = Int(code), (400..<500).contains(status) else { return false }
                return Self.resolve(response, in: spec)["content"]?["application/problem+json"] != nil
            }
            #expect(!problems4xx.isEmpty, "\(name) documents no 4xx response with application/problem+json")
            let successes = responses.keys.filter { $0.hasPrefix("2") }
            #expect(!successes.isEmpty, "\(name) documents no 2xx response")
        }
    }

    @Test("the NDJSON stream, /metrics and the Idempotency-Key header are described")
    func openAPISpecialRoutes() async throws {
        let spec = try Self.openAPI()
        let ops = Self.operations(spec)
        #expect(ops["GET /v1/events/stream"]?["responses"]?["200"]?["content"]?["application/x-ndjson"] != nil)
        #expect(ops["GET /metrics"]?["responses"]?["200"]?["content"]?["text/plain"] != nil)
        for send in ["POST /v1/conversations/{id}/messages", "POST /v1/conversations"] {
            let params = (ops[send]?["parameters"]?.arrayValue ?? []).map { Self.resolve($0, in: spec) }
            #expect(params.contains { $0["name"]?.stringValue == "Idempotency-Key" && $0["in"]?.stringValue == "header" },
                    "\(send) does not document the Idempotency-Key header")
        }
        let queryParams = Set(ops.values.flatMap { ($0["parameters"]?.arrayValue ?? []).map { Self.resolve($0, in: spec) } }
            .filter { $0["in"]?.stringValue == "query" }.compactMap { $0["name"]?.stringValue })
        for q in ["limit", "cursor", "channel", "after", "types", "since", "filename"] {
            #expect(queryParams.contains(q), "query parameter \(q) is not documented")
        }
    }

    /// Every problem code the sources can produce must be listed in the spec's Problem schema,
    /// so a helpdesk developer reading openapi.yaml knows every code it may see.
    @Test("every problem code used in Sources is documented")
    func problemCodesDocumented() async throws {
        let spec = try Self.openAPI()
        let documented = Set((spec["components"]?["schemas"]?["Problem"]?["properties"]?["code"]?["examples"]?.arrayValue ?? [])
            .compactMap(\.stringValue))
        let stable = ["not_found", "invalid_request", "unauthorized", "window_closed", "capability_unsupported",
                      "idempotency_key_reused", "channel_unavailable", "payload_too_large", "method_not_allowed", "internal", "rate_limited"]
        for code in stable { #expect(documented.contains(code), "stable code \(code) is missing from the Problem schema") }

        var used = Set<String>()
        let sources = Self.root.appendingPathComponent("Sources")
        let walker = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)
        while let url = walker?.nextObject() as? URL {
            guard url.pathExtension == "swift", let data = FileManager.default.contents(atPath: url.path) else { continue }
            let source = String(decoding: data, as: UTF8.self)
            used.formUnion(Self.matches(#"APIProblem\(\s*\d+\s*,\s*"([a-z_]+)""#, in: source))
            used.formUnion(Self.matches(#"(?:RenderRejection|SendRejection)\(\s*code:\s*"([a-z_]+)""#, in: source))
            if source.contains("APIProblem.notFound(") || source.contains(".notFound(") { used.insert("not_found") }
            if source.contains("APIProblem.invalid(") || source.contains(".invalid(") { used.insert("invalid_request") }
        }
        #expect(!used.isEmpty)
        let undocumented = used.subtracting(documented).sorted()
        #expect(undocumented.isEmpty, "problem codes used in Sources but not documented in openapi.yaml: \(undocumented)")
    }

    /// The spec checked by an independent validator (resolves the external $refs into
    /// docs/schema/switchboard.schema.json too). Skipped only when python3 is missing.
    @Test("openapi-spec-validator accepts openapi.yaml", .enabled(if: ContractTests.python3 != nil, "python3 is not installed"))
    func openAPIValidatesWithPython() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python3!)
        process.arguments = ["-c", """
            import sys
            try:
                from openapi_spec_validator import validate
                from openapi_spec_validator.readers import read_from_filename
            except ImportError:
                print("openapi-spec-validator is not installed: pip install openapi-spec-validator (make deps)")
                sys.exit(3)
            spec, url = read_from_filename(sys.argv[1])
            validate(spec, base_uri=url)
            print("valid")
            """, Self.root.appendingPathComponent("docs/openapi.yaml").path]
        let (status, output) = try await Self.run(process)
        #expect(status == 0, "openapi-spec-validator rejected docs/openapi.yaml:\n\(output)")
    }

    static let python3: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/python3"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    /// Runs the configured command with `Spawned` (posix_spawn; see Support/Spawned.swift).
    static func run(_ process: Process) async throws -> (Int32, String) {
        try await Spawned.run(process.executableURL!.path, process.arguments ?? [], environment: process.environment ?? [:])
    }

    // MARK: - (c) Config/switchboard.yaml is valid, documented and honest about defaults

    /// The environment the reference config documents at its top.
    static let referenceVariables = ["SWITCHBOARD_PUBLIC_URL": "https://chat.example.com"]
    /// Its credentials (`*_file` values) and test contents that satisfy each key's rules.
    static let referenceCredentials = [
        "api-token": "api-token-0123456789abcdef\n",
        "desk-webhook-secret": "whsec_c3dpdGNoYm9hcmQtZXhhbXBsZS1rZXktMzItYnl0ZXM=\n",
        "desk-authorization": "Token token=desk-api-token-0123456789\n",
        "app-chat-secret": "app-chat-secret-0123456789\n",
    ]

    /// Lines of the file that are not comments, with trailing comments removed.
    static func activeLines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).compactMap { line in
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { return nil }
            if let r = line.range(of: " #") { return String(line[..<r.lowerBound]) }
            return String(line)
        }
    }

    /// Validates the reference config with its documented environment; returns the config.
    static func validateReference(text: String) throws -> (SwitchboardConfig, [String: any ChannelAdapter]) {
        let creds = try tempDirectory()
        defer { try? FileManager.default.removeItem(at: creds) }
        for (name, content) in referenceCredentials {
            FileManager.default.createFile(atPath: creds.appendingPathComponent(name).path, contents: Data(content.utf8))
        }
        var variables = referenceVariables
        variables["CREDENTIALS_DIRECTORY"] = creds.path
        let env = ConfigEnvironment(variables: variables, baseDirectory: root.appendingPathComponent("Config").path)
        switch Daemon.validate(text: text, registry: registry(), environment: env, logger: logger) {
        case .success(let r): return r
        case .failure(let p): throw ContractFailure("Config/switchboard.yaml does not validate:\n" + p.problems.joined(separator: "\n"))
        }
    }

    @Test("Config/switchboard.yaml passes Daemon.validate with its documented environment")
    func referenceConfigValidates() async throws {
        let text = try Self.text("Config/switchboard.yaml")
        let active = Self.activeLines(text).joined(separator: "\n")

        // The test's environment is exactly what the file uses, and the header documents it.
        let used = Set(Self.matches(#"\$\{([A-Za-z_][A-Za-z0-9_]*)\}"#, in: active))
        #expect(used == Set(Self.referenceVariables.keys), "${…} variables used: \(used.sorted())")
        let header = text.split(separator: "\n").prefix { $0.hasPrefix("#") }.joined(separator: "\n")
        for v in used { #expect(header.contains(v), "environment variable \(v) is not documented at the top") }
        // `x_file: name`, and `{ file: name }` (a header value).
        let credentials = Set(Self.matches(#"(?:_file|[{,]\s*file):\s*"?([A-Za-z0-9._-]+)"?"#, in: active))
        #expect(credentials == Set(Self.referenceCredentials.keys), "credentials used: \(credentials.sorted())")
        for c in credentials { #expect(header.contains(c), "credential \(c) is not documented at the top") }

        let (config, adapters) = try Self.validateReference(text: text)
        #expect(config.publicURL == "https://chat.example.com")
        #expect(config.tokens.count == 1)
        #expect(config.helpdesks.count == 1)
        #expect(config.helpdesks.first?.headers.first { $0.0 == "Authorization" }?.1 == "Token token=desk-api-token-0123456789")
        #expect(config.helpdesks.first?.secret?.hasPrefix("whsec_") == true)
        #expect(config.channels.map(\.type) == [WebhookChannelAdapter.type])
        #expect(adapters.count == config.channels.count)
        #expect(config.apiListen != nil && config.apiSocket != nil)
    }

    /// Every key the loader and the webhook adapter accept appears (active, not only in a
    /// comment) in the reference config.
    @Test("Config/switchboard.yaml shows every key the loader reads")
    func referenceConfigCoversEveryKey() async throws {
        let tree = try Self.yaml(try Self.text("Config/switchboard.yaml"), file: "Config/switchboard.yaml")
        var present = Set<String>()
        func collect(_ v: JSONValue) {
            switch v {
            case .object(let o): for (k, child) in o { present.insert(k); collect(child) }
            case .array(let a): a.forEach(collect)
            default: break
            }
        }
        collect(tree)
        // `delivery` is accepted at the top level but read nowhere: nothing to document.
        let notReadAnywhere: Set<String> = ["delivery"]
        var accepted = Set<String>()
        for file in ["Sources/SwitchboardRuntime/Config.swift", "adapters/webhook/Sources/WebhookAdapter.swift"] {
            let source = try Self.text(file)
            for list in Self.matches(#"rejectUnknownKeys\((?:AdapterRegistry\.commonKeys\s*\+\s*)?\[([^\]]*)\]\)"#, in: source) {
                accepted.formUnion(Self.matches(#""([a-z_]+)""#, in: list))
            }
        }
        accepted.formUnion(AdapterRegistry.commonKeys)
        #expect(accepted.count > 20, "could not read the accepted keys from the sources")
        let missing = accepted.subtracting(notReadAnywhere).filter { key in
            !present.contains(key) && !present.contains(key + "_file")
        }.sorted()
        #expect(missing.isEmpty, "keys the loader reads but Config/switchboard.yaml does not show: \(missing)")
    }

    /// Where the reference config says "Default: X" and sets X, removing the key must not change
    /// anything: the documented defaults are the real ones.
    @Test("the defaults written in Config/switchboard.yaml are the loader's defaults")
    func referenceConfigDefaultsAreReal() async throws {
        let text = try Self.text("Config/switchboard.yaml")
        let tree = try Self.yaml(text, file: "Config/switchboard.yaml")
        guard case .object(var root) = tree else { throw ContractFailure("not a mapping") }
        func drop(_ section: String, _ keys: [String]) {
            guard case .object(var o)? = root[section] else { return }
            for k in keys { o.removeValue(forKey: k) }
            root[section] = .object(o)
        }
        drop("server", ["listen", "shutdown_grace"])
        drop("api", ["socket_mode", "heartbeat"])
        drop("storage", ["path", "durability"])
        drop("media", ["path", "max_bytes"])
        drop("logging", ["level"])
        drop("outbound", ["retry"])
        if case .array(var hs)? = root["helpdesks"], case .object(var h)? = hs.first {
            for k in ["type", "timeout", "max_in_flight", "retry"] { h.removeValue(forKey: k) }
            hs[0] = .object(h)
            root["helpdesks"] = .array(hs)
        }
        let stripped = String(decoding: try JSON.encode(JSONValue.object(root)), as: UTF8.self)

        let (full, _) = try Self.validateReference(text: text)
        let (defaults, _) = try Self.validateReference(text: stripped)
        #expect(full.listen == defaults.listen)
        #expect(full.shutdownGraceSeconds == defaults.shutdownGraceSeconds)
        #expect(full.apiSocketMode == defaults.apiSocketMode)
        #expect(full.apiSocketMode == 0o660)
        #expect(full.heartbeatSeconds == defaults.heartbeatSeconds)
        #expect(full.storagePath == defaults.storagePath)
        #expect(full.durability == defaults.durability)
        #expect(full.mediaPath == defaults.mediaPath)
        #expect(full.mediaMaxBytes == defaults.mediaMaxBytes)
        #expect(full.logLevel == defaults.logLevel)
        #expect(full.sendRetry == defaults.sendRetry)
        let (h, d) = (full.helpdesks[0], defaults.helpdesks[0])
        #expect(h.kind == d.kind)
        #expect(h.timeout == d.timeout)
        #expect(h.maxInFlight == d.maxInFlight)
        #expect(h.retry == d.retry)
    }

    // MARK: - (d) Config/demo.yaml

    @Test("Config/demo.yaml passes Daemon.validate without any environment, and keeps its files in ./.switchboard/ as documented")
    func demoConfigValidates() async throws {
        // As `switchboard serve --config Config/demo.yaml` reads it: relative to Config/.
        let env = ConfigEnvironment(variables: [:], baseDirectory: Self.root.appendingPathComponent("Config").path)
        let result = Daemon.validate(text: try Self.text("Config/demo.yaml"), registry: Self.registry(), environment: env, logger: Self.logger)
        switch result {
        case .success(let (config, adapters)):
            let dotDir = Self.root.appendingPathComponent(".switchboard").standardizedFileURL.path
            #expect(config.apiSocket.map { URL(fileURLWithPath: $0).standardizedFileURL.path } == dotDir + "/api.sock")
            #expect(URL(fileURLWithPath: config.storagePath).standardizedFileURL.path == dotDir + "/switchboard.sqlite")
            #expect(config.channels.count == 2)
            #expect(adapters["demo"] != nil)
            #expect(adapters["site"] != nil)
        case .failure(let p):
            Issue.record("Config/demo.yaml does not validate:\n\(p.problems.joined(separator: "\n"))")
        }
    }

    // MARK: - (e) problems: one line per issue, key path first, no secret values

    static let leakySecret = "not-a-whsec-Sup3rSecretValue-42"
    static let badConfig = """
        sever:
          listen: "127.0.0.1:8080"
        storage:
          path: "/tmp/switchboard-contract-never-opened.sqlite"
        helpdesks:
          - name: desk
            url: "ftp://desk.example.com/hooks"
            secret: "\(leakySecret)"
        channels:
          - id: app
            type: webhook
            outbound_url: "https://app.example.com/out"
        """
    /// Key path → a word the message must contain.
    static let expectedProblems = [
        "sever": "did you mean server",
        "helpdesks[0].url": "http",
        "helpdesks[0].secret": "whsec_",
        "channels[0].secret": "missing",
    ]

    static func checkProblemLines(_ lines: [String], prefix: String = "") {
        #expect(lines.count == expectedProblems.count, "expected one line per problem, got:\n\(lines.joined(separator: "\n"))")
        var seen: [String: String] = [:]
        for line in lines {
            #expect(line.hasPrefix(prefix), "line does not start with \(prefix): \(line)")
            let rest = String(line.dropFirst(prefix.count))
            guard let colon = rest.range(of: ": ") else {
                Issue.record("no key path in: \(line)")
                continue
            }
            seen[String(rest[..<colon.lowerBound])] = String(rest[colon.upperBound...])
            #expect(!line.contains(leakySecret) && !line.contains("Sup3rSecret"), "a secret value leaked: \(line)")
        }
        for (path, word) in expectedProblems {
            guard let message = seen[path] else {
                Issue.record("no problem reported for \(path); lines:\n\(lines.joined(separator: "\n"))")
                continue
            }
            #expect(message.contains(word), "\(path): \(message) (expected to mention \(word))")
        }
    }

    @Test("a broken config gives one problem per issue, each starting with its key path")
    func badConfigProblems() async throws {
        let env = ConfigEnvironment(variables: [:], baseDirectory: FileManager.default.temporaryDirectory.path)
        switch Daemon.validate(text: Self.badConfig, registry: Self.registry(), environment: env, logger: Self.logger) {
        case .success: Issue.record("the broken config was accepted")
        case .failure(let p): Self.checkProblemLines(p.problems)
        }
    }

    /// Problems that used to slip through: a YAML syntax error quoted the offending line (a
    /// secret, here) over several lines; negative durations passed and trapped at the first
    /// retry; a missing systemd credential lacked its `LoadCredential=` hint.
    @Test("YAML syntax errors are one line without the file's text; negative durations and missing credentials are named")
    func subtleProblems() async throws {
        let env = ConfigEnvironment(variables: [:], baseDirectory: FileManager.default.temporaryDirectory.path)
        func problems(_ text: String, env: ConfigEnvironment) -> [String] {
            switch Daemon.validate(text: text, registry: Self.registry(), environment: env, logger: Self.logger) {
            case .success: return []
            case .failure(let p): return p.problems
            }
        }
        let syntax = problems("api: { tokens: [ { name: a, token: Sup3rSecret-0123456789: x } ] }\n", env: env)
        #expect(syntax.count == 1 && syntax.allSatisfy { !$0.contains("\n") && !$0.contains("Sup3rSecret") && $0.contains("line 1") },
                "\(syntax)")

        let negative = problems("""
            helpdesks: [ { name: d, url: "http://127.0.0.1:1/x", secret: "\(testSecret)", timeout: -3s, retry: { schedule: ["1s", "-5s"] } } ]
            outbound: { retry: { schedule: ["-1m"] } }
            """, env: env)
        for path in ["helpdesks[0].timeout", "helpdesks[0].retry.schedule", "outbound.retry.schedule"] {
            #expect(negative.contains { $0.hasPrefix(path + ": ") || $0.hasPrefix(path + "[") }, "no problem for \(path): \(negative)")
        }

        let creds = TempDir()
        defer { creds.remove() }
        let withCreds = ConfigEnvironment(variables: ["CREDENTIALS_DIRECTORY": creds.path], baseDirectory: creds.path)
        let missing = problems("api: { tokens: [ { name: a, token_file: missing-token } ] }\n", env: withCreds)
        #expect(missing.contains { $0.hasPrefix("api.tokens[0].token_file: ") && $0.contains("LoadCredential=missing-token:") }, "\(missing)")
    }

    @Test("every event type an adapter emits is known to the event filters")
    func adapterEventTypesAreKnown() throws {
        let adapters = Self.root.appendingPathComponent("adapters")
        var found: Set<String> = []
        let files = FileManager.default.enumerator(atPath: adapters.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        let pattern = try Regex(#"custom\("([a-z_]+\.[a-z_.]+)""#)
        for f in files {
            let text = try String(contentsOf: adapters.appendingPathComponent(f), encoding: .utf8)
            for m in text.matches(of: pattern) { if let s = m.output[1].substring { found.insert(String(s)) } }
        }
        #expect(found.count >= 10, "\(found)")
        for t in found { #expect(EventType.known.contains(EventType(rawValue: t)), "\(t) is emitted but a filter can't name it") }
    }

    static var binary: URL { root.appendingPathComponent(".build/debug/switchboard") }

    @Test("switchboard check-config exits 78 with the problem lines for a broken config")
    func checkConfigBinaryOnBadConfig() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary.path) else {
            Issue.record("\(Self.binary.path) is missing: run `swift build` first")
            return
        }
        let dir = try Self.tempDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("bad.yaml")
        try Data(Self.badConfig.utf8).write(to: file)
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["check-config", "--config", file.path]
        process.environment = ["PATH": "/usr/bin:/bin", "HOME": dir.path]
        let (status, output) = try await Self.run(process)
        #expect(status == 78, "exit status \(status), output:\n\(output)")
        let lines = output.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        Self.checkProblemLines(lines, prefix: "\(file.path): ")
    }

    @Test("switchboard check-config accepts Config/switchboard.yaml with its documented environment")
    func checkConfigBinaryOnReference() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary.path) else {
            Issue.record("\(Self.binary.path) is missing: run `swift build` first")
            return
        }
        let creds = try Self.tempDirectory()
        defer { try? FileManager.default.removeItem(at: creds) }
        for (name, content) in Self.referenceCredentials {
            FileManager.default.createFile(atPath: creds.appendingPathComponent(name).path, contents: Data(content.utf8))
        }
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["check-config", "--config", Self.root.appendingPathComponent("Config/switchboard.yaml").path]
        var env = Self.referenceVariables
        env["CREDENTIALS_DIRECTORY"] = creds.path
        env["PATH"] = "/usr/bin:/bin"
        process.environment = env
        let (status, output) = try await Self.run(process)
        #expect(status == 0, "exit status \(status), output:\n\(output)")
        #expect(output.contains("OK"), "\(output)")
    }
}
