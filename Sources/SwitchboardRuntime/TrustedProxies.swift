import Foundation

/// An IPv4 or IPv6 address range (`10.0.0.0/8`, `::1`, `fd00::/8`).
public struct IPRange: Sendable, Hashable, CustomStringConvertible {
    let network: [UInt8]
    let prefixLength: Int

    /// Parses `address` or `address/prefix`; nil when it is neither.
    public init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = IPRange.bytes(String(parts[0])) else { return nil }
        let bits = bytes.count * 8
        var length = bits
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...bits).contains(n) else { return nil }
            length = n
        }
        network = bytes; prefixLength = length
    }

    /// The address's bytes: 4 for IPv4, 16 for IPv6 (an IPv4-mapped IPv6 address as IPv4).
    public static func bytes(_ address: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, address, &v6) == 1 else { return nil }
        let b = withUnsafeBytes(of: &v6) { Array($0) }
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff { return Array(b[12...]) }
        return b
    }

    public func contains(_ address: [UInt8]) -> Bool {
        guard address.count == network.count else { return false }
        var remaining = prefixLength
        for i in 0..<network.count where remaining > 0 {
            let take = min(8, remaining)
            let mask: UInt8 = take == 8 ? 0xff : ~(0xff >> UInt8(take))
            if address[i] & mask != network[i] & mask { return false }
            remaining -= take
        }
        return true
    }

    public var description: String {
        let family = network.count == 4 ? AF_INET : AF_INET6
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var copy = network
        let text = copy.withUnsafeMutableBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }.map { _ in
            String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } ?? "?"
        return prefixLength == network.count * 8 ? text : "\(text)/\(prefixLength)"
    }
}

/// `server.trusted_proxies`: the reverse proxies whose forwarding header (`server.client_address_header`:
/// X-Forwarded-For, or RFC 7239 Forwarded) names the real client. Behind nginx every visitor would otherwise come from the proxy's
/// address, and per-IP limits (the web chat's) would throttle everyone together.
public struct TrustedProxies: Sendable, Hashable {
    /// The header the proxies write: only that one is read, because a proxy passes any other
    /// one through from the client unchanged (nginx appends to X-Forwarded-For and leaves a
    /// client's own `Forwarded` alone).
    public enum Header: String, Sendable, Hashable, CaseIterable {
        case xForwardedFor = "x-forwarded-for"
        case forwarded
    }
    public var ranges: [IPRange]
    public var header: Header
    public init(_ ranges: [IPRange], header: Header = .xForwardedFor) { self.ranges = ranges; self.header = header }

    /// Loopback: a proxy on the same machine (the usual nginx setup) is trusted by default;
    /// nothing else can connect from there.
    public static let loopback = TrustedProxies([IPRange("127.0.0.0/8")!, IPRange("::1")!])

    public func trusts(_ address: String) -> Bool {
        guard let b = IPRange.bytes(address) else { return false }
        return ranges.contains { $0.contains(b) }
    }

    /// The client's address: the connection's peer, unless the peer is a trusted proxy; then
    /// the hops its forwarding header lists are walked from the nearest, and the first one that
    /// isn't a trusted proxy is the client. A hop that isn't an address (`unknown`, an
    /// obfuscated node) ends the walk at the proxy that reported it.
    /// `headers` has lower-case names, repeated fields joined with ", ".
    public func clientAddress(peer: String?, headers: [String: String]) -> String? {
        guard !ranges.isEmpty, let peer, trusts(peer) else { return peer }
        guard let value = headers[header.rawValue] else { return peer }
        let hops = header == .forwarded ? Self.forwardedFor(value)
            : value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        var client = peer
        for hop in hops.reversed() {
            guard IPRange.bytes(hop) != nil else { return client }
            client = hop
            if !trusts(hop) { return hop }
        }
        return client
    }

    /// The `for=` values of an RFC 7239 `Forwarded` header, nearest last, without quotes,
    /// brackets or ports.
    static func forwardedFor(_ header: String) -> [String] {
        header.split(separator: ",").compactMap { element -> String? in
            for pair in element.split(separator: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard kv.count == 2, kv[0].lowercased() == "for" else { continue }
                var v = kv[1]
                if v.hasPrefix("\""), v.hasSuffix("\""), v.count >= 2 { v = String(v.dropFirst().dropLast()) }
                if v.hasPrefix("[") {
                    // [2001:db8::1]:4711
                    return v.dropFirst().split(separator: "]", maxSplits: 1).first.map(String.init) ?? v
                }
                // 192.0.2.60:4711 (one colon: IPv4 with a port)
                if v.filter({ $0 == ":" }).count == 1 { return String(v.split(separator: ":")[0]) }
                return v
            }
            return "unknown"
        }
    }
}
