import AsyncHTTPClient
import Foundation
import Testing
@testable import MetaAdapter
@testable import SwitchboardCore
@testable import SwitchboardRuntime

/// The shared Meta pieces: webhook handshake and signatures, the Graph client against the fake
/// Graph API, error classification, and the common config keys.
@Suite struct MetaWebhookTests {
    static let appSecret = "6f1b2c3d4e5f60718293a4b5c6d7e8f9"

    static func get(_ query: [String: String]) -> WebhookRequest {
        WebhookRequest(method: "GET", path: "/webhooks/x", query: query, headers: [:], body: [])
    }

    @Test func handshakeEchoesTheChallengeOnlyForTheRightTokenAndMode() {
        let token = MetaSecret("my-verify-token")
        let ok = MetaWebhook.handshake(Self.get(["hub.mode": "subscribe", "hub.verify_token": "my-verify-token", "hub.challenge": "1158201444"]),
                                       verifyToken: token)
        #expect(ok.status == 200)
        #expect(String(decoding: ok.body, as: UTF8.self) == "1158201444")
        #expect(ok.headers["content-type"]?.hasPrefix("text/plain") == true)
        let wrong = MetaWebhook.handshake(Self.get(["hub.mode": "subscribe", "hub.verify_token": "my-verify-tokem", "hub.challenge": "1"]), verifyToken: token)
        #expect(wrong.status == 403)
        #expect(!String(decoding: wrong.body, as: UTF8.self).contains("1"), "the challenge is not echoed on refusal")
        let prefix = MetaWebhook.handshake(Self.get(["hub.mode": "subscribe", "hub.verify_token": "my-verify", "hub.challenge": "1"]), verifyToken: token)
        #expect(prefix.status == 403)
        let mode = MetaWebhook.handshake(Self.get(["hub.mode": "unsubscribe", "hub.verify_token": "my-verify-token", "hub.challenge": "1"]), verifyToken: token)
        #expect(mode.status == 403)
        let missing = MetaWebhook.handshake(Self.get(["hub.verify_token": "my-verify-token", "hub.challenge": "1"]), verifyToken: token)
        #expect(missing.status == 403)
        // PHP-style underscores are not the parameter names Meta sends.
        let underscores = MetaWebhook.handshake(Self.get(["hub_mode": "subscribe", "hub_verify_token": "my-verify-token", "hub_challenge": "1"]), verifyToken: token)
        #expect(underscores.status == 403)
    }

    @Test func signatureIsHMACOfTheRawBytes() {
        // Meta escapes non-ASCII and slashes; the signature covers exactly those bytes.
        let raw = Array(#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"text":{"body":"Caf\u00e9 \/ 50% off"}}]}}]}]}"#.utf8)
        let header = MetaWebhook.sign(raw, appSecret: Self.appSecret)
        #expect(header.hasPrefix("sha256=") && header.count == 7 + 64)
        // Known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        #expect(MetaWebhook.sign(Array("The quick brown fox jumps over the lazy dog".utf8), appSecret: "key")
                == "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
        let secret = MetaSecret(Self.appSecret)
        #expect(MetaWebhook.signatureIsValid(body: raw, header: header, appSecret: secret))
        #expect(MetaWebhook.signatureIsValid(body: raw, header: "sha256=" + header.dropFirst(7).uppercased(), appSecret: secret), "hex in either case")
        // The same JSON re-encoded: "\u00e9" → "é", "\/" → "/": other bytes, so it must fail.
        let unescaped = Array(String(decoding: raw, as: UTF8.self).replacingOccurrences(of: #"\u00e9"#, with: "é").utf8)
        #expect(!MetaWebhook.signatureIsValid(body: unescaped, header: header, appSecret: secret))
        let slashes = Array(String(decoding: raw, as: UTF8.self).replacingOccurrences(of: #"\/"#, with: "/").utf8)
        #expect(!MetaWebhook.signatureIsValid(body: slashes, header: header, appSecret: secret))
        // Both parse to the same JSON: that is exactly why the check must not re-encode.
        #expect(try! JSONValue.parse(Data(raw)) == (try! JSONValue.parse(Data(unescaped))))
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: header, appSecret: MetaSecret("0" + Self.appSecret.dropFirst())))
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: nil, appSecret: secret))
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: "", appSecret: secret))
        #expect(MetaWebhook.signatureIsValid(body: raw, header: " \t" + header + " ", appSecret: secret), "blanks around the value")
        #expect(MetaWebhook.signatureIsValid(body: raw, header: "SHA256=" + header.dropFirst(7), appSecret: secret), "the prefix in either case")
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: "sha256=", appSecret: secret))
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: "sha1=" + header.dropFirst(7), appSecret: secret))
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: String(header.dropFirst(7)), appSecret: secret), "prefix required")
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: "sha1=" + header.dropFirst(7), appSecret: secret))
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: String(header.dropLast(2)), appSecret: secret), "truncated")
        #expect(!MetaWebhook.signatureIsValid(body: raw, header: "sha256=zz" + header.dropFirst(9), appSecret: secret), "not hex")
    }

    @Test func secretsNeverPrint() {
        let s = MetaSecret("EAAG-very-secret")
        #expect("\(s)" == "<redacted>" && String(reflecting: s) == "<redacted>")
        let graph = GraphAPI(base: "https://graph.facebook.com/", version: "v23.0", accessToken: s, client: .shared, timeout: .seconds(5))
        #expect(!"\(graph)".contains("very-secret"))
        #expect(graph.url("123/messages") == "https://graph.facebook.com/v23.0/123/messages")
        #expect(graph.url("/456", query: [("fields", "name,profile_pic")]) == "https://graph.facebook.com/v23.0/456?fields=name%2Cprofile_pic")
    }

    @Test func errorCodesAreClassified() {
        func rule(_ code: Int, _ sub: Int? = nil, http: Int = 400) -> GraphErrorCodes.Rule {
            GraphErrorCodes.classify(code: code, subcode: sub, httpStatus: http, isTransient: nil)
        }
        for code in [4, 17, 32, 613, 80007, 130429, 131056] {
            #expect(rule(code).code == "rate_limited" && rule(code).retryable, "\(code)")
        }
        for code in [1, 2, 131000, 131016, 131057] { #expect(rule(code).retryable, "\(code) is transient") }
        #expect(rule(131047).code == "window_closed" && !rule(131047).retryable)
        #expect(rule(131026).code == "recipient_unavailable" && !rule(131026).retryable)
        #expect(rule(100).code == "invalid_request" && !rule(100).retryable)
        #expect(rule(190, 463, http: 401).code == "auth_expired" && !rule(190, 463).retryable)
        #expect(rule(131050).code == "recipient_opted_out" && rule(131049).code == "recipient_limited")
        for code in [132000, 132001, 132015, 132016] { #expect(rule(code).code == "template_error" && !rule(code).retryable) }
        #expect(rule(131048).code == "account_problem" && !rule(131048).retryable, "spam limit: stop, don't hammer")
        #expect(rule(10, 2018278).code == "window_closed", "Messenger outside the window")
        #expect(rule(10).code == "forbidden")
        #expect(rule(100, 2018218).code == "not_found")
        #expect(rule(100, 2018001).code == "invalid_recipient", "Messenger: no matching user")
        #expect(rule(294).code == "forbidden", "the 2xx permission family")
        // Unknown codes and bare statuses fall back on HTTP semantics and Graph's is_transient.
        #expect(rule(99999, http: 500).retryable && !rule(99999, http: 400).retryable)
        #expect(GraphErrorCodes.classify(code: 99999, subcode: nil, httpStatus: 400, isTransient: true).retryable)
        #expect(GraphErrorCodes.classify(code: nil, subcode: nil, httpStatus: 503, isTransient: nil).retryable)
        #expect(GraphErrorCodes.classify(code: nil, subcode: nil, httpStatus: 429, isTransient: nil).code == "rate_limited")
        #expect(GraphErrorCodes.classify(code: nil, subcode: nil, httpStatus: 0, isTransient: nil) == .init("channel_unreachable", retryable: true))

        // The envelope → SendError.
        let expired = GraphError(httpStatus: 401, body: ["error": ["message": "Error validating access token: Session has expired", "type": "OAuthException",
                                                                  "code": 190, "error_subcode": 463, "fbtrace_id": "Ax1"]])
        #expect(expired.isAuthExpired && !expired.retryable)
        let se = expired.sendError
        #expect(se.code == "auth_expired" && se.channelCode == "190/463" && se.channelState == .authExpired)
        #expect(se.retryable, "a send waits on the outbound schedule for a renewed token")
        let window = GraphError(httpStatus: 400, body: ["error": ["message": "(#131047) Re-engagement message", "code": 131047,
                                                                 "error_data": ["messaging_product": "whatsapp", "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."]]])
        #expect(window.sendError.code == "window_closed" && window.sendError.channelCode == "131047" && window.sendError.channelState == nil)
        #expect(window.sendError.message.contains("more than 24 hours"), "error_data.details is kept")
        let rate = GraphError(httpStatus: 400, body: ["error": ["message": "(#130429) Rate limit hit", "code": 130429]], retryAfter: 3)
        #expect(rate.sendError.retryable && rate.sendError.retryAfter == 3)
        #expect(GraphError(httpStatus: 400, body: ["error": ["message": "(#131056) pair rate limit", "code": 131056]]).sendError.retryAfter == 6)
        let net = GraphError.network(CancellationError())
        #expect(net.retryable && net.sendError.code == "channel_unreachable")
        let html = GraphError(httpStatus: 502, body: nil)
        #expect(html.retryable && html.sendError.channelCode == "http_502")
        // An async failure (WhatsApp `failed` status) classified the same way.
        let st = GraphError.statusError(code: 131026, title: "Message undeliverable", message: "Message undeliverable", details: "Receiver is incapable of receiving this message")
        #expect(st.code == "recipient_unavailable" && st.channelCode == "131026" && !st.retryable && st.message.contains("incapable"))
    }

    @Test func settingsReadTheCommonKeysWithDiagnostics() {
        let d = ConfigDiagnostics()
        let env = ConfigEnvironment(variables: ["VT": "from-env"], baseDirectory: "/tmp")
        let node = ConfigNode.parse(yaml: """
            { app_secret: "short", verify_token: "${VT}", graph_api_base: "ftp://graph", graph_api_version: "23", timeout: 0 }
            """, diagnostics: d, environment: env)
        let s = MetaChannelSettings(node: node)
        #expect(s.verifyToken?.value == "from-env")
        let p = d.problems
        #expect(p.contains { $0.hasPrefix("app_secret: too short") }, "\(p)")
        #expect(p.contains { $0.hasPrefix("graph_api_base:") } && p.contains { $0.hasPrefix("graph_api_version:") } && p.contains { $0.hasPrefix("timeout:") }, "\(p)")
        #expect(!p.joined().contains("short\""), "no secret values in problems")

        let d2 = ConfigDiagnostics()
        let ok = MetaChannelSettings(node: ConfigNode.parse(yaml: "{ app_secret: \"\(Self.appSecret)\", verify_token: t }", diagnostics: d2, environment: env))
        #expect(d2.isEmpty, "\(d2.problems)")
        #expect(ok.graphAPIBase == "https://graph.facebook.com" && ok.graphAPIVersion == "v23.0" && ok.timeout == 15)
        let d3 = ConfigDiagnostics()
        _ = MetaChannelSettings(node: ConfigNode.parse(yaml: "{ }", diagnostics: d3, environment: env))
        #expect(d3.problems.contains { $0.hasPrefix("app_secret: missing") } && d3.problems.contains { $0.hasPrefix("verify_token: missing") })
    }
}

/// The Graph client against the fake Graph API: headers, bodies, uploads, downloads, errors.
@Suite struct GraphAPIClientTests {
    func withGraph(_ body: (FakeGraph, GraphAPI) async throws -> Void) async throws {
        let fake = try await FakeGraph.start()
        let api = GraphAPI(base: fake.base, version: "v23.0", accessToken: MetaSecret(FakeGraph.defaultToken), client: .shared, timeout: .seconds(5))
        do { try await body(fake, api) } catch { await fake.stop(); throw error }
        await fake.stop()
    }

    @Test func postGetAndUploadCarryTheTokenAndTheBody() async throws {
        try await withGraph { fake, api in
            let answer = try await api.post("123/messages", json: ["messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": ["body": "hi"]])
            #expect(answer["messages"]?.arrayValue?.first?["id"]?.stringValue?.hasPrefix("wamid.") == true)
            let rec = try #require(fake.requests("POST", "/v23.0/123/messages").first)
            #expect(rec.headers["authorization"] == "Bearer \(FakeGraph.defaultToken)")
            #expect(rec.headers["content-type"] == "application/json")
            #expect(rec.json == ["messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": ["body": "hi"]])

            let file: [UInt8] = Array("%PDF-1.4 fake".utf8) + [0, 13, 10, 255]
            let up = try await api.upload("123/media", fields: [("messaging_product", "whatsapp"), ("type", "application/pdf")], file: file,
                                          mimeType: "application/pdf", filename: "a \"b\".pdf")
            #expect(up["id"]?.stringValue != nil)
            let u = try #require(fake.requests("POST", "/v23.0/123/media").first)
            #expect(u.form["messaging_product"] == "whatsapp" && u.form["type"] == "application/pdf")
            #expect(u.file == file && u.fileType == "application/pdf" && u.fileName == "a _b_.pdf")
            #expect(fake.violations.isEmpty, "\(fake.violations)")

            fake.serveWhatsAppMedia(id: "777", bytes: [1, 2, 3], mimeType: "image/jpeg")
            let info = try await api.get("777", query: [("phone_number_id", "123")])
            #expect(fake.requests("GET", "/v23.0/777").first?.query["phone_number_id"] == "123")
            let url = try #require(info["url"]?.stringValue)
            let got = try await api.download(url: url, authorized: true, maxBytes: 10)
            #expect(got.bytes == [1, 2, 3] && got.mimeType == "image/jpeg")
            // The lookaside URL needs the token.
            await #expect(throws: GraphError.self) { try await api.download(url: url, authorized: false, maxBytes: 10) }
        }
    }

    @Test func downloadsBeyondTheLimitThrowMediaTooLarge() async throws {
        try await withGraph { fake, api in
            let big = Array(repeating: UInt8(7), count: 300_000)
            let withLength = fake.serveFile("/cdn/big.bin", bytes: big, contentType: "application/octet-stream")
            let streamed = fake.serveFile("/cdn/streamed.bin", bytes: big, contentType: "application/octet-stream", contentLength: false)
            await #expect(throws: MediaTooLarge.self) { try await api.download(url: withLength, authorized: false, maxBytes: 100_000) }
            await #expect(throws: MediaTooLarge.self) { try await api.download(url: streamed, authorized: false, maxBytes: 100_000) }
            let whole = try await api.download(url: streamed, authorized: false, maxBytes: 300_000)
            #expect(whole.bytes.count == 300_000)
        }
    }

    @Test func errorAnswersBecomeGraphErrors() async throws {
        try await withGraph { fake, api in
            fake.queue("POST", "/v23.0/123/messages", [FakeGraph.graphError(code: 130429, message: "(#130429) Rate limit hit", headers: ["Retry-After": "2"])])
            do {
                _ = try await api.post("123/messages", json: ["messaging_product": "whatsapp", "to": "1", "type": "text", "text": ["body": "x"]])
                Issue.record("expected a GraphError")
            } catch let e as GraphError {
                #expect(e.code == 130429 && e.httpStatus == 400 && e.retryable && e.retryAfter == 2 && e.fbtraceID == "AZfakeTrace123")
            }
            let bad = GraphAPI(base: fake.base, version: "v23.0", accessToken: MetaSecret("wrong"), client: .shared, timeout: .seconds(5))
            do { _ = try await bad.get("me"); Issue.record("expected 190") } catch let e as GraphError {
                #expect(e.isAuthExpired && e.sendError.channelState == .authExpired)
                #expect(!"\(e)".contains("wrong"), "the token is not in the error")
            }
            // Nothing listening: a retryable network error.
            let down = GraphAPI(base: "http://127.0.0.1:1", version: "v23.0", accessToken: MetaSecret("t"), client: .shared, timeout: .seconds(2))
            do { _ = try await down.get("me"); Issue.record("expected a network error") } catch let e as GraphError {
                #expect(e.httpStatus == 0 && e.retryable)
            }
            // The query-token variant and appsecret_proof.
            let q = GraphAPI(base: fake.base, version: "v23.0", accessToken: MetaSecret(FakeGraph.defaultToken), client: .shared, timeout: .seconds(5),
                             tokenPlacement: .query, appSecretProof: MetaSecret("app-secret"))
            _ = try? await q.get("me")
            let rec = try #require(fake.requests("GET", "/v23.0/me").last)
            #expect(rec.query["access_token"] == FakeGraph.defaultToken && rec.headers["authorization"] == nil)
            #expect(rec.query["appsecret_proof"] == MetaWebhook.sign(Array(FakeGraph.defaultToken.utf8), appSecret: "app-secret").dropFirst(7).description)
        }
    }
}
