import Foundation
import Testing
@testable import SwitchboardRuntime

@Suite struct TrustedProxiesTests {
    @Test func rangesParseAndMatch() throws {
        let v4 = try #require(IPRange("10.0.0.0/8"))
        #expect(v4.contains(IPRange.bytes("10.200.3.4")!))
        #expect(!v4.contains(IPRange.bytes("11.0.0.1")!))
        #expect(try #require(IPRange("192.168.1.7")).contains(IPRange.bytes("192.168.1.7")!))
        #expect(!(try #require(IPRange("192.168.1.7"))).contains(IPRange.bytes("192.168.1.8")!))
        let odd = try #require(IPRange("172.16.0.0/12"))
        #expect(odd.contains(IPRange.bytes("172.31.255.255")!) && !odd.contains(IPRange.bytes("172.32.0.0")!))
        let v6 = try #require(IPRange("fd00::/8"))
        #expect(v6.contains(IPRange.bytes("fd12:3456::1")!) && !v6.contains(IPRange.bytes("fe80::1")!))
        // An IPv4-mapped IPv6 peer address is the IPv4 address.
        #expect(try #require(IPRange("127.0.0.0/8")).contains(IPRange.bytes("::ffff:127.0.0.1")!))
        #expect(IPRange("10.0.0.0/33") == nil && IPRange("example.com") == nil && IPRange("10.0.0.0/x") == nil && IPRange("") == nil)
        #expect(IPRange("10.0.0.0/8")?.description == "10.0.0.0/8" && IPRange("::1")?.description == "::1")
    }

    @Test func theClientIsTheFirstUntrustedHopFromTheNearest() {
        let proxies = TrustedProxies([IPRange("127.0.0.0/8")!, IPRange("10.0.0.0/8")!])
        // From a trusted proxy: the nearest untrusted hop.
        #expect(proxies.clientAddress(peer: "127.0.0.1", headers: ["x-forwarded-for": "203.0.113.9"]) == "203.0.113.9")
        // A client can put anything on the left; only what trusted hops appended counts.
        #expect(proxies.clientAddress(peer: "127.0.0.1", headers: ["x-forwarded-for": "1.2.3.4, 203.0.113.9, 10.1.1.1"]) == "203.0.113.9")
        // From anyone else the header is ignored: nobody picks their own address.
        #expect(proxies.clientAddress(peer: "198.51.100.1", headers: ["x-forwarded-for": "203.0.113.9"]) == "198.51.100.1")
        // No header, or nothing trusted configured: the peer.
        #expect(proxies.clientAddress(peer: "127.0.0.1", headers: [:]) == "127.0.0.1")
        #expect(TrustedProxies([]).clientAddress(peer: "127.0.0.1", headers: ["x-forwarded-for": "203.0.113.9"]) == "127.0.0.1")
        // A hop that is not an address stops the walk at the proxy that reported it.
        #expect(proxies.clientAddress(peer: "127.0.0.1", headers: ["x-forwarded-for": "203.0.113.9, unknown"]) == "127.0.0.1")
        // Only trusted hops: the farthest of them.
        #expect(proxies.clientAddress(peer: "127.0.0.1", headers: ["x-forwarded-for": "10.0.0.5, 10.0.0.6"]) == "10.0.0.5")
        // Only the configured header counts: a client's own Forwarded, passed through by a proxy
        // that writes X-Forwarded-For, changes nothing.
        #expect(proxies.clientAddress(peer: "127.0.0.1", headers: [
            "forwarded": "for=192.0.2.99", "x-forwarded-for": "198.51.100.1",
        ]) == "198.51.100.1")
        #expect(proxies.clientAddress(peer: "127.0.0.1", headers: ["forwarded": "for=192.0.2.99"]) == "127.0.0.1")
        // With `client_address_header: Forwarded` (RFC 7239): quoted, bracketed IPv6, ports.
        let rfc = TrustedProxies(proxies.ranges, header: .forwarded)
        #expect(rfc.clientAddress(peer: "127.0.0.1", headers: [
            "forwarded": #"for=192.0.2.60:4711;proto=https, for="[2001:db8:cafe::17]:4711""#, "x-forwarded-for": "198.51.100.1",
        ]) == "2001:db8:cafe::17")
        #expect(rfc.clientAddress(peer: "127.0.0.1", headers: ["forwarded": "for=192.0.2.60;by=10.0.0.1, for=10.0.0.2"]) == "192.0.2.60")
        #expect(rfc.clientAddress(peer: "127.0.0.1", headers: ["forwarded": "for=_hidden"]) == "127.0.0.1")
        #expect(rfc.clientAddress(peer: "127.0.0.1", headers: ["x-forwarded-for": "198.51.100.1"]) == "127.0.0.1")
    }

    @Test func configDefaultsToLoopbackAndNamesBadEntries() {
        func load(_ yaml: String) -> (SwitchboardConfig, [String]) {
            let d = ConfigDiagnostics()
            let c = ConfigLoader.load(text: yaml, environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"), adapterKinds: [], diagnostics: d)
            return (c, d.problems)
        }
        let (defaults, none) = load("storage: { path: /tmp/x.sqlite }")
        #expect(none.isEmpty, "\(none)")
        #expect(defaults.trustedProxies.trusts("127.0.0.1") && defaults.trustedProxies.trusts("::1") && !defaults.trustedProxies.trusts("10.0.0.1"))
        let (given, problems) = load(#"server: { trusted_proxies: ["10.0.0.0/8", "proxy.example.com", "::1"] }"#)
        #expect(problems == [#"server.trusted_proxies[1]: expected an IP address or a range like 10.0.0.0/8, got "proxy.example.com""#])
        #expect(given.trustedProxies.trusts("10.9.9.9") && !given.trustedProxies.trusts("127.0.0.1"))
        #expect(load("server: { trusted_proxies: [] }").0.trustedProxies.ranges.isEmpty)
        #expect(load("server: { client_address_header: Forwarded }").0.trustedProxies.header == .forwarded)
        #expect(load("server: { client_address_header: X-Real-IP }").1 == ["server.client_address_header: expected X-Forwarded-For or Forwarded"])
    }
}
