// Shared pieces of the Meta channels (WhatsApp Cloud API, Messenger, Instagram): secrets that
// never print, the channel keys all three read the same way, webhook verification
// (MetaWebhook.swift), the Graph API client (GraphAPI.swift) and its error classification
// (GraphError.swift). See adapters/meta/README.md.

import AsyncHTTPClient
import Foundation
import NIOCore
import SwitchboardCore
import SwitchboardDelivery
import SwitchboardRuntime

/// A token or app secret. Its descriptions are redacted, so it can sit in structs that get
/// logged or interpolated without leaking; use `value` only where the platform needs it.
public struct MetaSecret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    /// HMAC-SHA256 keyed with this secret, its two key blocks already hashed: an app secret signs
    /// every webhook, and keying a fresh HMAC per request was a measurable part of each one.
    let keyedHMAC: KeyedHMAC
    public init(_ value: String) { self.value = value; self.keyedHMAC = KeyedHMAC(key: Array(value.utf8)) }
    /// Equal, compared in constant time.
    public func matches(_ other: MetaSecret) -> Bool { constantTimeEqual(Array(value.utf8), Array(other.value.utf8)) }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public static func == (a: MetaSecret, b: MetaSecret) -> Bool { a.value == b.value }
    public func hash(into hasher: inout Hasher) { hasher.combine(value) }
}

/// The keys every Meta channel reads the same way, checked with diagnostics that name the key
/// path (never a secret's value):
///
/// - `app_secret` / `app_secret_file` (required): signs every webhook POST (`X-Hub-Signature-256`).
/// - `verify_token` / `verify_token_file` (required): the "Verify token" typed into the App
///   Dashboard, echoed back in the `GET` handshake.
/// - `graph_api_base` (default `https://graph.facebook.com`): tests and staging point it at a fake.
/// - `graph_api_version` (default `v23.0`): pinned, bumped on purpose (Graph versions live ~2 years).
/// - `timeout` (default `15s`): per Graph API call.
public struct MetaChannelSettings: Sendable {
    public static let defaultGraphAPIBase = "https://graph.facebook.com"
    public static let defaultGraphAPIVersion = "v23.0"

    /// Plain keys, for `rejectUnknownKeys(_:secrets:)`.
    public static let keys = ["graph_api_base", "graph_api_version", "timeout"]
    /// Secret keys (each may also be given as `<key>_file`), for `rejectUnknownKeys(_:secrets:)`.
    public static let secretKeys = ["app_secret", "verify_token"]

    public var appSecret: MetaSecret?
    public var verifyToken: MetaSecret?
    public var graphAPIBase: String
    public var graphAPIVersion: String
    /// Seconds.
    public var timeout: Double
    public var timeAmount: TimeAmount { .milliseconds(Int64(timeout * 1000)) }

    /// Reads the common keys of `node`; problems are recorded in `node.diagnostics`.
    /// `defaultBase`: Instagram-Login channels use `https://graph.instagram.com`.
    public init(node: ConfigNode, defaultBase: String = MetaChannelSettings.defaultGraphAPIBase) {
        let secret = node.secret("app_secret", required: true)?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let s = secret, s.count < 16 {
            node["app_secret"].problem("too short for a Meta app secret (32 hex characters expected)")
        }
        appSecret = secret.map(MetaSecret.init)
        verifyToken = node.secret("verify_token", required: true)?.trimmingCharacters(in: .whitespacesAndNewlines).nilIfEmpty.map(MetaSecret.init)
        var base = node.string("graph_api_base", default: defaultBase) ?? defaultBase
        if !(base.hasPrefix("https://") || base.hasPrefix("http://")) { node["graph_api_base"].problem("expected an https:// URL") }
        while base.hasSuffix("/") { base.removeLast() }
        graphAPIBase = base
        let version = node.string("graph_api_version", default: Self.defaultGraphAPIVersion) ?? Self.defaultGraphAPIVersion
        if !Self.isVersion(version) { node["graph_api_version"].problem("expected a Graph API version such as v23.0") }
        graphAPIVersion = version
        let t = node.seconds("timeout", default: 15)
        if t <= 0 || t > 300 { node["timeout"].problem("must be between 0s and 300s") }
        timeout = min(max(t, 0.1), 300)
    }

    static func isVersion(_ s: String) -> Bool {
        let parts = s.dropFirst().split(separator: ".", omittingEmptySubsequences: false)
        return s.hasPrefix("v") && parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
    }

    /// A Graph client for this channel's base, version and timeout.
    public func graphAPI(accessToken: MetaSecret, client: HTTPClient, appSecretProof: Bool = false) -> GraphAPI {
        GraphAPI(base: graphAPIBase, version: graphAPIVersion, accessToken: accessToken, client: client, timeout: timeAmount,
                 appSecretProof: appSecretProof ? appSecret : nil)
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
