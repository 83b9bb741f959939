import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardCore

/// A small Graph API client: `{base}/{version}/{path}` with the access token as a bearer header
/// (or, for endpoints that want it, the `access_token` query parameter), optional
/// `appsecret_proof`, JSON in and out, multipart uploads and size-limited media downloads.
/// Every failure is thrown as a `GraphError` (Meta's error envelope, an HTTP status, or a network
/// failure), except an oversize download, which throws `MediaTooLarge`.
public struct GraphAPI: Sendable {
    public enum TokenPlacement: Sendable { case bearerHeader, query }

    public let base: String
    public let version: String
    let accessToken: MetaSecret
    let client: HTTPClient
    let timeout: TimeAmount
    let tokenPlacement: TokenPlacement
    let appSecretProof: String?
    /// Answers larger than this are not read (JSON bodies; downloads have their own limit).
    let maxJSONBytes = 4 * 1024 * 1024

    /// `appSecretProof`: the app secret, when the app requires `appsecret_proof` on calls
    /// (App Dashboard > Settings > Advanced > "Require App Secret").
    public init(base: String, version: String, accessToken: MetaSecret, client: HTTPClient, timeout: TimeAmount,
                tokenPlacement: TokenPlacement = .bearerHeader, appSecretProof: MetaSecret? = nil) {
        var b = base
        while b.hasSuffix("/") { b.removeLast() }
        self.base = b; self.version = version; self.accessToken = accessToken; self.client = client; self.timeout = timeout
        self.tokenPlacement = tokenPlacement
        self.appSecretProof = appSecretProof.map {
            Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(accessToken.value.utf8), using: SymmetricKey(data: Array($0.value.utf8))))
        }
    }

    /// `{base}/{version}/{path}?query` — `path` like `<phone_number_id>/messages`, with or without a leading slash.
    public func url(_ path: String, query: [(String, String)] = []) -> String {
        let p = path.hasPrefix("/") ? String(path.dropFirst()) : path
        var items = query
        if tokenPlacement == .query { items.append(("access_token", accessToken.value)) }
        if let proof = appSecretProof { items.append(("appsecret_proof", proof)) }
        var s = "\(base)/\(version)/\(p)"
        if !items.isEmpty { s += "?" + items.map { "\(Self.escape($0.0))=\(Self.escape($0.1))" }.joined(separator: "&") }
        return s
    }

    static func escape(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
    }

    func request(_ url: String, method: HTTPMethod, authorized: Bool = true) -> HTTPClientRequest {
        var req = HTTPClientRequest(url: url)
        req.method = method
        if authorized && tokenPlacement == .bearerHeader { req.headers.add(name: "authorization", value: "Bearer \(accessToken.value)") }
        req.headers.add(name: "user-agent", value: "switchboard/\(SwitchboardVersion.current)")
        return req
    }

    /// `POST {path}` with a JSON body.
    public func post(_ path: String, json: JSONValue) async throws -> JSONValue {
        var req = request(url(path), method: .POST)
        req.headers.add(name: "content-type", value: "application/json")
        req.body = .bytes(ByteBuffer(bytes: Array(try JSON.encode(json))))
        return try await execute(req)
    }

    /// `GET {path}?query`.
    public func get(_ path: String, query: [(String, String)] = []) async throws -> JSONValue {
        try await execute(request(url(path, query: query), method: .GET))
    }

    /// `DELETE {path}`.
    public func delete(_ path: String, query: [(String, String)] = []) async throws -> JSONValue {
        try await execute(request(url(path, query: query), method: .DELETE))
    }

    /// `POST {path}` as `multipart/form-data`: the text `fields` in order, then the file as `file`.
    public func upload(_ path: String, fields: [(String, String)], file: [UInt8], mimeType: String, filename: String) async throws -> JSONValue {
        let boundary = "switchboard-" + Hex.encode((0..<12).map { _ in UInt8.random(in: 0...255) })
        var body: [UInt8] = []
        body.reserveCapacity(file.count + 512)
        func line(_ s: String) { body += Array(s.utf8) + [13, 10] }
        for (name, value) in fields {
            line("--\(boundary)")
            line("Content-Disposition: form-data; name=\"\(Self.quoted(name))\"")
            line("")
            line(value)
        }
        line("--\(boundary)")
        line("Content-Disposition: form-data; name=\"file\"; filename=\"\(Self.quoted(filename))\"")
        line("Content-Type: \(mimeType)")
        line("")
        body += file
        body += [13, 10]
        line("--\(boundary)--")
        var req = request(url(path), method: .POST)
        req.headers.add(name: "content-type", value: "multipart/form-data; boundary=\(boundary)")
        req.body = .bytes(ByteBuffer(bytes: body))
        return try await execute(req, timeout: max(timeout, .seconds(120)))
    }

    static func quoted(_ s: String) -> String {
        String(s.map { $0 == "\"" || $0 == "\r" || $0 == "\n" ? "_" : $0 })
    }

    /// Sends a request and returns the JSON answer of a 2xx, or throws a `GraphError`.
    func execute(_ req: HTTPClientRequest, timeout t: TimeAmount? = nil) async throws -> JSONValue {
        let response: HTTPClientResponse
        do { response = try await client.execute(req, timeout: t ?? timeout) } catch {
            throw GraphError.network(error)
        }
        let status = Int(response.status.code)
        let bytes: ByteBuffer
        do { bytes = try await response.body.collect(upTo: maxJSONBytes) } catch {
            throw GraphError(httpStatus: status, message: "Graph API answer unreadable: \(error)", isTransient: (200..<300).contains(status) ? nil : true)
        }
        let json = bytes.readableBytes == 0 ? nil : try? JSONValue.parse(Data(bytes.readableBytesView))
        if (200..<300).contains(status), json?["error"] == nil {
            return json ?? .object([:])
        }
        let retryAfter = response.headers.first(name: "retry-after").flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        throw GraphError(httpStatus: status, body: json, retryAfter: retryAfter)
    }

    /// Downloads a media URL (WhatsApp's lookaside URL needs the bearer token: `authorized`;
    /// CDN URLs of Messenger/Instagram don't). Redirects are followed by the HTTP client.
    /// Throws `MediaTooLarge` when the file exceeds `maxBytes`, `GraphError` otherwise.
    public func download(url: String, authorized: Bool, maxBytes: Int64) async throws -> (bytes: [UInt8], mimeType: String?) {
        let req = request(url, method: .GET, authorized: authorized)
        let response: HTTPClientResponse
        do { response = try await client.execute(req, timeout: max(timeout, .seconds(120))) } catch {
            throw GraphError.network(error)
        }
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            let bytes = try? await response.body.collect(upTo: 64 * 1024)
            let json = bytes.flatMap { try? JSONValue.parse(Data($0.readableBytesView)) }
            throw GraphError(httpStatus: status, body: json)
        }
        if let len = response.headers.first(name: "content-length").flatMap(Int64.init), len > maxBytes {
            throw MediaTooLarge(limit: maxBytes)
        }
        let bytes: ByteBuffer
        do { bytes = try await response.body.collect(upTo: Int(clamping: maxBytes)) } catch is NIOTooManyBytesError {
            throw MediaTooLarge(limit: maxBytes)
        } catch {
            throw GraphError.network(error)
        }
        let mime = response.headers.first(name: "content-type")?.split(separator: ";").first
            .map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        return (Array(bytes.readableBytesView), mime)
    }
}
