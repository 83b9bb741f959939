import Foundation
import Synchronization
import SwitchboardCore
import SwitchboardSystemd
import Yams

/// Problems found while reading a configuration, each naming the key's path
/// (`channels[1].access_token: missing`). Reading continues after a problem so that
/// `check-config` reports everything at once.
public final class ConfigDiagnostics: Sendable {
    private let list = Mutex<[String]>([])
    public init() {}
    public func add(_ path: String, _ message: String) { list.withLock { $0.append(path.isEmpty ? message : "\(path): \(message)") } }
    public var problems: [String] { list.withLock { $0 } }
    public var isEmpty: Bool { problems.isEmpty }
}

/// Where `${ENV}` values and `*_file` secrets come from.
public struct ConfigEnvironment: Sendable {
    public var variables: [String: String]
    /// `$CREDENTIALS_DIRECTORY`: relative `*_file` paths resolve here (systemd credentials).
    public var credentialsDirectory: String?
    /// Relative paths without a credentials directory resolve against the config file's folder.
    public var baseDirectory: String
    public init(variables: [String: String] = ProcessInfo.processInfo.environment, baseDirectory: String = FileManager.default.currentDirectoryPath) {
        self.variables = variables
        self.credentialsDirectory = variables["CREDENTIALS_DIRECTORY"].flatMap { $0.isEmpty ? nil : $0 }
        self.baseDirectory = baseDirectory
    }
}

/// A position in the configuration tree, with typed readers that record problems instead of
/// throwing. Secrets are read through `secret(_:)`, which never puts a value into a message.
public struct ConfigNode: Sendable {
    public let value: JSONValue?
    public let path: String
    public let diagnostics: ConfigDiagnostics
    public let environment: ConfigEnvironment

    public init(value: JSONValue?, path: String, diagnostics: ConfigDiagnostics, environment: ConfigEnvironment) {
        self.value = value; self.path = path; self.diagnostics = diagnostics; self.environment = environment
    }

    public static func parse(yaml: String, diagnostics: ConfigDiagnostics, environment: ConfigEnvironment) -> ConfigNode {
        do {
            let any = try Yams.load(yaml: yaml)
            return ConfigNode(value: any.map(Self.json) ?? .object([:]), path: "", diagnostics: diagnostics, environment: environment)
        } catch {
            diagnostics.add("", "not valid YAML or JSON: \(Self.describe(error))")
            return ConfigNode(value: .object([:]), path: "", diagnostics: diagnostics, environment: environment)
        }
    }

    /// A YAML error on one line, by position only. Yams' own description quotes the offending
    /// line of the file, which may hold a secret, and spans several lines.
    static func describe(_ error: any Error) -> String {
        func at(_ m: Mark) -> String { "line \(m.line), column \(m.column)" }
        func context(_ c: YamlError.Context?) -> String { c.map { " (\($0.text) at \(at($0.mark)))" } ?? "" }
        guard let e = error as? YamlError else { return "cannot parse it" }
        switch e {
        case .scanner(let c, let problem, let mark, _), .parser(let c, let problem, let mark, _), .composer(let c, let problem, let mark, _):
            return "\(problem) at \(at(mark))\(context(c))"
        case .reader(let problem, let offset, _, _):
            return "\(problem)\(offset.map { " at byte \($0)" } ?? "")"
        case .duplicatedKeysInMapping(let duplicates, let c):
            return "duplicate key \(duplicates.sorted().joined(separator: ", ")) at \(at(c.mark))"
        default:
            return String(describing: e).split(whereSeparator: \.isNewline).first.map(String.init) ?? "cannot parse it"
        }
    }

    static func json(_ any: Any) -> JSONValue {
        switch any {
        case let b as Bool: return .bool(b)
        case let i as Int: return .int(Int64(i))
        case let d as Double: return .double(d)
        case let s as String: return .string(s)
        case let a as [Any]: return .array(a.map(json))
        case let o as [AnyHashable: Any]:
            var out: JSONObject = [:]
            for (k, v) in o { out["\(k.base)"] = json(v) }
            return .object(out)
        case is NSNull: return .null
        default: return .string("\(any)")
        }
    }

    func child(_ key: String) -> ConfigNode {
        ConfigNode(value: value?[key], path: path.isEmpty ? key : "\(path).\(key)", diagnostics: diagnostics, environment: environment)
    }

    public subscript(key: String) -> ConfigNode { child(key) }

    public var isPresent: Bool { value != nil && value != .null }

    public func problem(_ message: String) { diagnostics.add(path, message) }

    /// Expands `${NAME}` from the environment; an unset variable is a problem.
    func expand(_ s: String, at p: String) -> String {
        guard s.contains("${") else { return s }
        var out = ""
        var rest = Substring(s)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { out += rest[start.lowerBound...]; rest = ""; break }
            let name = String(rest[start.upperBound..<end])
            if let v = environment.variables[name] { out += v } else { diagnostics.add(p, "environment variable \(name) is not set") }
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }

    public func string(_ key: String, default def: String? = nil, required: Bool = false) -> String? {
        let c = child(key)
        switch c.value {
        case nil, .null?:
            if required { c.problem("missing (required)") }
            return def
        case .string(let s)?: return expand(s, at: c.path)
        case .int(let i)?: return String(i)
        case .double(let d)?: return String(d)
        case .bool(let b)?: return String(b)
        default:
            c.problem("expected a string")
            return def
        }
    }

    public func int(_ key: String, default def: Int? = nil, range: ClosedRange<Int>? = nil) -> Int? {
        let c = child(key)
        guard let v = c.value, v != .null else { return def }
        var n: Int? = v.intValue.map { Int($0) }
        if n == nil, let s = v.stringValue { n = Int(expand(s, at: c.path)) }
        guard let n else { c.problem("expected a whole number"); return def }
        if let range, !range.contains(n) { c.problem("must be between \(range.lowerBound) and \(range.upperBound)"); return def }
        return n
    }

    public func bool(_ key: String, default def: Bool) -> Bool {
        let c = child(key)
        switch c.value {
        case nil, .null?: return def
        case .bool(let b)?: return b
        case .string(let s)? where ["true", "yes", "on"].contains(expand(s, at: c.path).lowercased()): return true
        case .string(let s)? where ["false", "no", "off"].contains(expand(s, at: c.path).lowercased()): return false
        default: c.problem("expected true or false"); return def
        }
    }

    /// A file mode as a quoted octal string (`"0660"`). A bare 0660 in YAML is read as a number
    /// (octal 0660 = 432), which is ambiguous: it is a problem asking for quotes.
    public func fileMode(_ key: String, default def: Int) -> Int {
        let c = child(key)
        if case .int? = c.value {
            c.problem("quote the mode so it is read as octal: \(key): \"0660\"")
            return def
        }
        guard let text = string(key) else { return def }
        if let m = Int(text, radix: 8), (0...0o777).contains(m) { return m }
        c.problem("expected an octal mode such as \"0660\"")
        return def
    }

    /// The largest size accepted: 1 TiB (larger is a typo, and would overflow byte counts).
    public static let maxBytes: Int64 = 1 << 40
    /// The longest duration accepted: a year (longer is a typo; converting more to milliseconds
    /// or nanoseconds would trap).
    public static let maxDuration: Double = 365 * 86400

    /// Sizes: a number of bytes or `25MB`, `512KiB`, `1G` (0 up to 1 TiB).
    public func bytes(_ key: String, default def: Int64) -> Int64 {
        let c = child(key)
        switch c.value {
        case nil, .null?: return def
        case .int(let i)? where i >= 0 && i <= Self.maxBytes: return i
        case .string(let s)?:
            if let n = Self.parseBytes(expand(s, at: c.path)) { return n }
            c.problem("expected a size such as 26214400, 25MB or 512KiB, at most 1TiB"); return def
        default: c.problem("expected a size such as 26214400, 25MB or 512KiB, at most 1TiB"); return def
        }
    }

    /// Bytes from `25MB` (10^6), `25MiB`/`25M` (2^20), …; nil when negative, over `maxBytes`
    /// or not a size.
    static func parseBytes(_ s: String) -> Int64? {
        let t = s.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Int64)] = [("KIB", 1024), ("MIB", 1 << 20), ("GIB", 1 << 30), ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000),
                                        ("K", 1024), ("M", 1 << 20), ("G", 1 << 30), ("B", 1)]
        var n: Int64? = Int64(t)
        for (u, m) in units where n == nil && t.hasSuffix(u) {
            guard let v = Int64(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)) else { return nil }
            let (product, overflow) = v.multipliedReportingOverflow(by: m)
            n = overflow ? nil : product
            break
        }
        guard let n, n >= 0, n <= maxBytes else { return nil }
        return n
    }

    /// Durations: seconds as a number, or `500ms`, `30s`, `5m`, `2h`, `3d` (0 up to a year).
    public func seconds(_ key: String, default def: Double) -> Double {
        let c = child(key)
        guard let v = c.value, v != .null else { return def }
        if let d = v.doubleValue, d >= 0, d <= Self.maxDuration { return d }
        if let s = v.stringValue, let d = Self.parseDuration(expand(s, at: c.path)) { return d }
        c.problem("expected a duration such as 30s, 5m or 2h (not negative, at most a year)")
        return def
    }

    /// A list of durations (`["1s", "2s", "4s"]`; numbers are seconds), each read like `seconds`.
    public func durations(_ key: String, default def: [Double]) -> [Double] {
        let c = child(key)
        guard let v = c.value, v != .null else { return def }
        // A single value is a list of one (as it always was read).
        let items = v.arrayValue ?? [v]
        var out: [Double] = []
        for (i, item) in items.enumerated() {
            if let d = item.doubleValue, d >= 0, d <= Self.maxDuration { out.append(d); continue }
            if let s = item.stringValue, let d = Self.parseDuration(expand(s, at: "\(c.path)[\(i)]")) { out.append(d); continue }
            diagnostics.add("\(c.path)[\(i)]", "expected a duration such as 500ms, 30s or 5m (not negative, at most a year)")
        }
        return out
    }

    /// Seconds from `30s`, `500ms`, `5m`, `2h`, `3d` or a plain number; nil for anything else,
    /// including negative, non-finite and over-a-year values (a negative retry delay would
    /// trap later, and so would a huge one on its way to nanoseconds).
    static func parseDuration(_ s: String) -> Double? {
        let t = s.trimmingCharacters(in: .whitespaces).lowercased()
        var value = Double(t)
        for (u, m) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)] where value == nil && t.hasSuffix(u) {
            value = Double(t.dropLast(u.count)).map { $0 * m }
            break
        }
        guard let value, value >= 0, value <= maxDuration else { return nil }
        return value
    }

    public func stringList(_ key: String, default def: [String]) -> [String] {
        let c = child(key)
        switch c.value {
        case nil, .null?: return def
        case .string(let s)?: return [expand(s, at: c.path)]
        case .array(let a)?:
            return a.enumerated().compactMap { i, v in
                if let s = v.stringValue { return expand(s, at: "\(c.path)[\(i)]") }
                diagnostics.add("\(c.path)[\(i)]", "expected a string"); return nil
            }
        default: c.problem("expected a list of strings"); return def
        }
    }

    public func list(_ key: String) -> [ConfigNode] {
        let c = child(key)
        switch c.value {
        case nil, .null?: return []
        case .array(let a)?:
            return a.enumerated().map { i, v in ConfigNode(value: v, path: "\(c.path)[\(i)]", diagnostics: diagnostics, environment: environment) }
        default: c.problem("expected a list"); return []
        }
    }

    /// A secret given inline as `key`, or as `key_file` (a path; relative paths resolve under
    /// `$CREDENTIALS_DIRECTORY`). Problems name the key and the file, never the content.
    public func secret(_ key: String, required: Bool = false) -> String? {
        let inline = child(key)
        let file = child(key + "_file")
        if inline.isPresent && file.isPresent {
            file.problem("give either \(key) or \(key)_file, not both")
        }
        if let s = string(key), !s.isEmpty { return s }
        if file.isPresent { return secretFile(key + "_file") }
        if required { inline.problem("missing (required; or give \(key)_file)") }
        return nil
    }

    /// The content of the secret file named by `key` (a path; relative paths resolve under
    /// `$CREDENTIALS_DIRECTORY`), minus one trailing newline. Problems name the key and the
    /// file, never the content.
    public func secretFile(_ key: String) -> String? {
        guard let p = string(key) else { return nil }
        let resolved = resolvePath(p, credential: true)
        do {
            // The credentials directory lets a missing credential's problem name the
            // `LoadCredential=` line to add.
            let s = try Credentials.readSecret(path: resolved, environment: environment.credentialsDirectory.map { ["CREDENTIALS_DIRECTORY": $0] } ?? [:])
            if s.isEmpty { child(key).problem("secret file \(resolved) is empty") }
            return s
        } catch {
            child(key).problem("\(error)")
            return nil
        }
    }

    public func resolvePath(_ p: String, credential: Bool = false) -> String {
        if p.hasPrefix("/") { return p }
        if credential, let dir = environment.credentialsDirectory { return "\(dir)/\(p)" }
        return "\(environment.baseDirectory)/\(p)"
    }

    /// Reports keys this node doesn't know — usually a typo that would otherwise be silently
    /// ignored. `secrets` may also be given as `<key>_file`.
    public func rejectUnknownKeys(_ known: [String], secrets: [String] = []) {
        guard case .object(let o)? = value else {
            if isPresent { problem("expected a mapping") }
            return
        }
        let allowed = Set(known + secrets + secrets.map { $0 + "_file" })
        for key in o.keys.sorted() where !allowed.contains(key) {
            let candidates = known + secrets
            let hint = candidates.min { Self.distance($0, key) < Self.distance($1, key) }.flatMap { Self.distance($0, key) <= 2 ? $0 : nil }
            diagnostics.add(path.isEmpty ? key : "\(path).\(key)", "unknown key" + (hint.map { " (did you mean \($0)?)" } ?? ""))
        }
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var prev = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var cur = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return prev[b.count]
    }
}
