import Foundation
import Testing
@testable import EmailAdapter
import EmailParsing
@testable import SwitchboardCore
@testable import SwitchboardRuntime

/// Shared pieces of the email tests: a registry with the email type, a real LMTP client (Python,
/// raw socket — smtplib.LMTP reads only one reply after DATA) and an aiosmtpd sink that writes
/// every received message to a directory.
enum EmailFixture {
    static let support = "support@example.test"
    static let secret = "test-thread-secret-0123456789"
    static var codec: ThreadCodec { ThreadCodec(secret: Array(secret.utf8), domain: "example.test") }

    static func registry() -> AdapterRegistry {
        var r = TestRegistry.make()
        r.register(EmailChannelAdapter.type, EmailChannelAdapter.factory)
        return r
    }

    /// A channel block; `extra` is more YAML keys at channel level (an smtp block…).
    static func channelYAML(_ id: String, lmtpSocket: String, maxSize: String = "1MB", extra: String = "") -> String {
        """
        channels:
          - id: \(id)
            type: email
            address: "\(support)"
            display_name: "Example Support"
            thread_secret: "\(secret)"
            lmtp: { listen: "\(lmtpSocket)", max_message_size: \(maxSize), hostname: lmtp.example.test }
        \(extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        """
    }

    static let lmtpClientScript = #"""
import socket, sys
target, mail_from, rcpts, path, pipelined = sys.argv[1], sys.argv[2], sys.argv[3].split(','), sys.argv[4], sys.argv[5] == '1'
size = sys.argv[6] if len(sys.argv) > 6 else ''
if target.startswith('/'):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(target)
else:
    h, p = target.rsplit(':', 1); s = socket.create_connection((h, int(p)))
f = s.makefile('rb')
def reply():
    lines = []
    while True:
        l = f.readline()
        if not l: raise SystemExit('connection closed')
        l = l.decode().rstrip('\r\n'); lines.append(l)
        if len(l) < 4 or l[3] != '-': break
    for l in lines: print('S: ' + l)
    return int(lines[-1][:3])
def send(line): print('C: ' + line); s.sendall((line + '\r\n').encode())
reply()
send('LHLO client.example.org'); reply()
cmds = ['MAIL FROM:<%s>%s' % (mail_from, (' SIZE=' + size) if size else '')] + ['RCPT TO:<%s>' % r for r in rcpts] + ['DATA']
codes = []
if pipelined:
    for c in cmds: print('C: ' + c)
    s.sendall(''.join(c + '\r\n' for c in cmds).encode())
    codes = [reply() for c in cmds]
else:
    for c in cmds:
        send(c); codes.append(reply())
        if codes[-1] >= 400 and c.startswith('MAIL'): break
if codes and codes[-1] == 354:
    data = open(path, 'rb').read().replace(b'\r\n', b'\n').split(b'\n')
    if data and data[-1] == b'': data = data[:-1]
    out = b''.join((b'.' + l if l.startswith(b'.') else l) + b'\r\n' for l in data) + b'.\r\n'
    s.sendall(out)
    accepted = sum(1 for c in codes[1:-1] if c < 300)
    for i in range(accepted): reply()
send('QUIT'); reply()
"""#

    static let sinkScript = #"""
import json, os, signal, socket, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
outdir, portfile = sys.argv[1], sys.argv[2]
class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith('temp'): return '450 4.2.1 Mailbox busy, try later'
        if address.startswith('perm'): return '550 5.1.1 No such user here'
        envelope.rcpt_tos.append(address)
        return '250 OK'
    async def auth_XOAUTH2(self, server, args):
        import base64
        from aiosmtpd.smtp import LoginPassword
        raw = base64.b64decode(args[1]) if len(args) > 1 else b''
        if raw == b'user=agent\x01auth=Bearer token-123\x01\x01':
            return AuthResult(success=True, handled=False, auth_data=LoginPassword(b'agent', b'xoauth2'))
        # Like Gmail: a 334 challenge with a JSON error; the client answers with an empty line.
        await server.challenge_auth(b'{"status":"401","schemes":"bearer"}')
        return AuthResult(success=False, handled=False)
    async def handle_DATA(self, server, session, envelope):
        n = len([x for x in os.listdir(outdir) if x.endswith('.json')])
        rec = {'mail_from': envelope.mail_from, 'rcpt_tos': envelope.rcpt_tos, 'mail_options': envelope.mail_options,
               'login': (session.auth_data.login.decode() if session.auth_data is not None else None),
               'content': envelope.original_content.decode('latin-1')}
        tmp = os.path.join(outdir, '%04d.tmp' % n)
        with open(tmp, 'w') as f: json.dump(rec, f)
        os.rename(tmp, os.path.join(outdir, '%04d.json' % n))
        return '250 2.0.0 Ok: queued as Q%04d' % n
def auth(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b'agent' and auth_data.password == b'secret'
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
if len(sys.argv) > 4:
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    c = Controller(Handler(), hostname='127.0.0.1', port=port, authenticator=auth, tls_context=ctx, require_starttls=True, auth_require_tls=True)
else:
    c = Controller(Handler(), hostname='127.0.0.1', port=port, authenticator=auth, auth_require_tls=False)
c.start()
with open(portfile + '.tmp', 'w') as f: f.write(str(port))
os.rename(portfile + '.tmp', portfile)
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
while True: time.sleep(1)
"""#

    /// Runs the LMTP client; returns its transcript lines ("C: …" / "S: …").
    static func lmtp(_ target: String, from: String, to: [String], message: String, pipelined: Bool = false,
                     size: Int? = nil, dir: TempDir) async throws -> [String] {
        let script = dir.file("lmtp_client.py")
        try lmtpClientScript.write(toFile: script, atomically: true, encoding: .utf8)
        let msg = dir.file("msg-\(UUID().uuidString.prefix(6)).eml")
        try message.write(toFile: msg, atomically: true, encoding: .utf8)
        var args = [script, target, from, to.joined(separator: ","), msg, pipelined ? "1" : "0"]
        if let size { args.append(String(size)) }
        let (status, output) = try await Spawned.run("python3", args, timeout: 30)
        #expect(status == 0, "LMTP client failed: \(output)")
        return output.split(separator: "\n").map(String.init)
    }

    /// Server lines only, without the greeting and LHLO answer.
    static func replies(_ transcript: [String]) -> [String] {
        transcript.filter { $0.hasPrefix("S: ") }.map { String($0.dropFirst(3)) }
            .filter { !$0.hasPrefix("220 ") && !$0.hasPrefix("250-") && !$0.hasPrefix("250 SIZE") }
    }

    static func message(from: String = "Jane Doe <jane@example.org>", to: String = support, subject: String = "Order 42 is late",
                        messageID: String = "<cust1.\(UUID().uuidString.prefix(8))@example.org>", headers: [String] = [],
                        body: String = "Hello, my order is late.\n") -> String {
        (["From: \(from)", "To: \(to)", "Subject: \(subject)", "Message-ID: \(messageID)", "Date: Sun, 22 Nov 2026 10:00:00 +0000",
          "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"] + headers).joined(separator: "\r\n")
            + "\r\n\r\n" + body.replacingOccurrences(of: "\n", with: "\r\n")
    }
}

/// An aiosmtpd server on a loopback port, writing each message to `dir/NNNN.json`.
final class SMTPSink: Sendable {
    let process: Spawned
    let port: Int
    let dir: String

    /// `tls`: certificate and key PEM paths: the server then requires STARTTLS.
    static func start(in temp: TempDir, tls: (cert: String, key: String)? = nil) async throws -> SMTPSink {
        let script = temp.file("sink.py")
        try EmailFixture.sinkScript.write(toFile: script, atomically: true, encoding: .utf8)
        let out = temp.file("sink-out")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let portFile = temp.file("sink.port")
        let p = try Spawned("python3", [script, out, portFile] + (tls.map { [$0.cert, $0.key] } ?? []))
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let s = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(s) {
                return SMTPSink(process: p, port: port, dir: out)
            }
            if !p.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let output = p.output
        p.cleanUp()
        throw DaemonError(message: "aiosmtpd did not start: \(output)")
    }

    private init(process: Spawned, port: Int, dir: String) { self.process = process; self.port = port; self.dir = dir }

    struct Received: Sendable {
        var mailFrom: String
        var rcptTos: [String]
        var mailOptions: [String]
        var login: String?
        var content: String
    }

    var messages: [Received] {
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
        return files.compactMap { name in
            guard let data = FileManager.default.contents(atPath: "\(dir)/\(name)"), let v = try? JSONValue.parse(data) else { return nil }
            return Received(mailFrom: v["mail_from"]?.stringValue ?? "", rcptTos: v["rcpt_tos"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                            mailOptions: v["mail_options"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                            login: v["login"]?.stringValue, content: v["content"]?.stringValue ?? "")
        }
    }

    func stop() async {
        // SIGKILL: a SIGTERM handler may never run when the test runner's signal mask is inherited.
        process.signal(SIGKILL)
        _ = await process.wait(timeout: 5)
        process.cleanUp()
    }
}

extension JSONValue {
    /// The array element at `i`, nil when out of range or not an array.
    func element(_ i: Int) -> JSONValue? {
        guard let a = arrayValue, a.indices.contains(i) else { return nil }
        return a[i]
    }
}

/// A self-signed certificate for localhost and 127.0.0.1 (cert.pem, key.pem in `dir`).
func makeTestCertificate(in dir: TempDir) async throws -> (cert: String, key: String) {
    let cert = dir.file("cert.pem"), key = dir.file("key.pem")
    let (status, output) = try await Spawned.run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                                             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                                                             "-keyout", key, "-out", cert], timeout: 60)
    guard status == 0 else { throw DaemonError(message: "openssl failed: \(output)") }
    return (cert, key)
}
