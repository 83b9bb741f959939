import Foundation
import Testing
@testable import SwitchboardCore

/// Checks real serialized output of the model against docs/schema/switchboard.schema.json, with
/// Tests/tools/validate_schema.py (python3 + jsonschema).
enum SchemaCheck {
    static let repoRoot: URL = {
        // <root>/Tests/SwitchboardCoreTests/SchemaTests.swift (symlinks resolved: the test folder may be linked elsewhere).
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }()
    static let schema = repoRoot.appendingPathComponent("docs/schema/switchboard.schema.json")
    static let script = repoRoot.appendingPathComponent("Tests/tools/validate_schema.py")

    struct Run { var status: Int32; var output: String }

    /// Writes `files` into a fresh temporary directory and validates them against `#/$defs/<def>`.
    static func validate(_ def: String, _ files: [(name: String, data: Data)]) async throws -> Run {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("switchboard-schema-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var paths: [String] = []
        for file in files {
            let url = dir.appendingPathComponent(file.name)
            try file.data.write(to: url)
            paths.append(url.path)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, schema.path, def] + paths
        let (status, output) = try await runOffPool(process)
        return Run(status: status, output: String(decoding: output, as: UTF8.self))
    }

    static func file<T: Encodable>(_ name: String, _ value: T) throws -> (name: String, data: Data) {
        (name, try JSON.encode(value))
    }

    /// One NDJSON file, one value per line.
    static func ndjson(_ name: String, _ values: [JSONValue]) throws -> (name: String, data: Data) {
        var data = Data()
        for v in values {
            data.append(try JSON.encode(v))
            data.append(UInt8(ascii: "\n"))
        }
        return (name, data)
    }
}

@Suite("JSON Schema check of serialized output")
struct SchemaTests {
    static let definitions = ["message", "part", "conversation", "identity", "message_status", "message_reaction", "message_updated",
                              "message_deleted", "conversation_read", "typing", "channel_status", "cloudevent", "render_report",
                              "send_accepted", "action", "card"]

    static func examples(for def: String) throws -> [(name: String, data: Data)] {
        typealias F = SchemaCheck
        switch def {
        case "message":
            let minimal = Message(MessageFields(id: ID.make(.message), conversationID: ID.make(.conversation), direction: .inbound,
                                                origin: .customer, channel: ChannelRef(type: "email", id: "support-mail"),
                                                receivedAt: .now(), parts: [.text("hello")], textFallback: "hello"))
            var withUnknowns = try tree(of: Sample.inboundMessage).objectValue!
            withUnknowns["priority"] = "high"
            withUnknowns["parts"] = .array((withUnknowns["parts"]?.arrayValue ?? []) + [["type": "poll", "question": "When?"]])
            return [try F.file("inbound.json", Sample.inboundMessage), try F.file("outbound.json", Sample.outboundMessage),
                    try F.file("echo.json", Sample.echoMessage), try F.file("minimal.json", minimal),
                    try F.file("unknowns.json", JSONValue.object(withUnknowns))]
        case "part":
            let all = try Sample.allParts.map { try JSONValue.from($0) }
            return [try F.ndjson("parts.ndjson", all + [["type": "poll", "question": "When?", "options": ["am", "pm"]]])]
        case "conversation":
            return [try F.file("conversation.json", Sample.conversation)]
        case "identity":
            return [try F.file("identity.json", Sample.identity)]
        case "message_status":
            return [try F.file("delivered.json", Sample.delivered), try F.file("failed.json", Sample.failed)]
        case "message_reaction":
            return [try F.file("reaction.json", Sample.reactionEvent)]
        case "message_updated":
            return [try F.file("updated.json", Sample.updated)]
        case "message_deleted":
            return [try F.file("deleted.json", Sample.deleted)]
        case "conversation_read":
            return [try F.file("read.json", Sample.read)]
        case "typing":
            return [try F.file("typing.json", Sample.typing)]
        case "channel_status":
            return [try F.file("channel-status.json", Sample.channelStatus)]
        case "cloudevent":
            let all = try EventType.all.map { try JSONValue.from(Sample.event($0)) }
            var unknown = try tree(of: Sample.event(.messageReceived)).objectValue!
            unknown["type"] = "switchboard.line.follow"
            unknown["data"] = ["conversation_id": .string(Sample.conversationID), "source_type": "user"]
            unknown["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            return [try F.file("message-received.json", Sample.event(.messageReceived)),
                    try F.file("message-status.json", Sample.event(.messageStatus)),
                    try F.ndjson("all-events.ndjson", all + [.object(unknown)])]
        case "render_report":
            let rendered = try Renderer.render(parts: [.text("Size?"), Sample.buttons, Sample.location], fallbackText: nil,
                                               capabilities: .textOnly, channelType: "email")
            let report: JSONValue = ["channel": "email", "degradations": try JSONValue.from(rendered.degradations)]
            return [try F.file("rendered.json", rendered), try F.file("report.json", report)]
        case "send_accepted":
            let rendered = try Renderer.render(parts: [Sample.carousel], fallbackText: nil, capabilities: .textOnly, channelType: "email")
            let accepted: JSONValue = ["id": .string(Sample.outboundMessageID), "conversation_id": .string(Sample.conversationID),
                                       "status": "accepted",
                                       "render": ["channel": "email", "degradations": try JSONValue.from(rendered.degradations)]]
            return [try F.file("accepted.json", accepted)]
        case "action":
            guard case .buttons(let b) = Sample.buttons, case .card(let c) = Sample.card else { return [] }
            return [try F.ndjson("actions.ndjson", try (b.actions + (c.actions ?? [])).map { try JSONValue.from($0) })]
        case "card":
            guard case .carousel(let c) = Sample.carousel else { return [] }
            return [try F.ndjson("cards.ndjson", try c.cards.map { try JSONValue.from($0) })]
        default:
            Issue.record("no examples for \(def)")
            return []
        }
    }

    @Test("realistic examples validate", arguments: definitions)
    func valid(_ def: String) async throws {
        let files = try Self.examples(for: def)
        #expect(!files.isEmpty)
        let run = try await SchemaCheck.validate(def, files)
        #expect(run.status == 0, "\(def): \(run.output)")
        #expect(run.output.hasSuffix(" valid\n"), "\(run.output)")
    }

    @Test func directionMustBeAString() async throws {
        var message = try tree(of: Sample.inboundMessage).objectValue!
        message["direction"] = 42
        let run = try await SchemaCheck.validate("message", [("bad-direction.json", try JSON.encode(JSONValue.object(message)))])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("$.direction"), "\(run.output)")
    }

    @Test func mediaPartNeedsAKind() async throws {
        var message = try tree(of: Sample.inboundMessage).objectValue!
        var parts = message["parts"]!.arrayValue!
        var media = parts[0].objectValue!
        #expect(media["type"] == "media")
        media["kind"] = nil
        parts[0] = .object(media)
        message["parts"] = .array(parts)
        let inMessage = try await SchemaCheck.validate("message", [("no-kind.json", try JSON.encode(JSONValue.object(message)))])
        #expect(inMessage.status == 1, "\(inMessage.output)")
        #expect(inMessage.output.contains("$.parts[0]") && inMessage.output.contains("'kind' is a required property"), "\(inMessage.output)")

        let alone = try await SchemaCheck.validate("part", [("no-kind.json", Data(#"{"type":"media","media_id":"med_01JTB2K3M4N5P6Q7R8S9TAVBWD"}"#.utf8))])
        #expect(alone.status == 1, "\(alone.output)")
    }

    @Test func eventDataIsCheckedAgainstItsType() async throws {
        // A status event carrying a message is wrong even though both are valid on their own.
        var event = try tree(of: Sample.event(.messageStatus)).objectValue!
        event["data"] = try JSONValue.from(Sample.inboundMessage)
        let run = try await SchemaCheck.validate("cloudevent", [("status-with-message.json", try JSON.encode(JSONValue.object(event)))])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains("$.data"), "\(run.output)")
    }

    @Test func envelopeRulesAreEnforced() async throws {
        var event = try tree(of: Sample.event(.messageReceived)).objectValue!
        event["sequence"] = "42"                       // not zero-padded
        event["time"] = "2025-05-01T10:15:30Z"         // no milliseconds
        event["id"] = "evt_123"                        // not a ULID
        let run = try await SchemaCheck.validate("cloudevent", [("bad-envelope.json", try JSON.encode(JSONValue.object(event)))])
        #expect(run.status == 1)
        for path in ["$.sequence", "$.time", "$.id"] {
            #expect(run.output.contains(path), "\(path) in \(run.output)")
        }
    }

    /// Every example in docs/format.md preceded by `<!-- schema: <def> -->` must validate, and
    /// the examples must include a CloudEvent of every event type.
    @Test func documentationExamplesValidate() async throws {
        let doc = try String(contentsOf: SchemaCheck.repoRoot.appendingPathComponent("docs/format.md"), encoding: .utf8)
        var byDef: [String: [(name: String, data: Data)]] = [:]
        var pending: String?
        var block: [String]?
        var count = 0
        for line in doc.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if var lines = block {
                if line.hasPrefix("```") {
                    count += 1
                    byDef[pending!, default: []].append(("example-\(count).json", Data(lines.joined(separator: "\n").utf8)))
                    block = nil
                    pending = nil
                } else {
                    lines.append(line)
                    block = lines
                }
            } else if let m = line.wholeMatch(of: /<!--\s*schema:\s*([a-z_]+)\s*-->\s*/) {
                pending = String(m.1)
            } else if pending != nil, line.hasPrefix("```json") {
                block = []
            } else if pending != nil, !line.trimmingCharacters(in: .whitespaces).isEmpty {
                Issue.record("`<!-- schema: \(pending!) -->` is not followed by a ```json block")
                pending = nil
            }
        }
        #expect(count >= 30, "only \(count) annotated examples in docs/format.md")
        for (def, files) in byDef.sorted(by: { $0.key < $1.key }) {
            let run = try await SchemaCheck.validate(def, files)
            #expect(run.status == 0, "docs/format.md examples for \(def): \(run.output)")
        }
        let documentedTypes = Set(try (byDef["cloudevent"] ?? []).compactMap { try JSONValue.parse($0.data)["type"]?.stringValue })
        for type in EventType.all {
            #expect(documentedTypes.contains(type.cloudEventType), "docs/format.md has no CloudEvent example for \(type.rawValue)")
        }
        // The examples are real model output: each CloudEvent decodes and re-encodes to the same tree.
        for file in byDef["cloudevent"] ?? [] {
            let event = try JSON.decode(CloudEvent.self, from: file.data)
            #expect(try tree(of: event) == JSONValue.parse(file.data), "\(event.type)")
        }
    }
}

/// Runs a child process without blocking Swift's cooperative thread pool (two threads on a
/// two-core machine: a blocking wait there starves every other test running in parallel).
/// Waits for the process to exit rather than for end-of-file on its output: another process
/// spawned concurrently by another test can inherit the pipe's write end and hold it open.
func runOffPool(_ process: Process) async throws -> (Int32, Data) {
    final class Output: @unchecked Sendable {
        let lock = NSLock()
        var data = Data()
        func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
        var value: Data { lock.lock(); defer { lock.unlock() }; return data }
    }
    let pipe = Pipe()
    let output = Output()
    process.standardOutput = pipe
    process.standardError = pipe
    pipe.fileHandleForReading.readabilityHandler = { h in
        let d = h.availableData
        if !d.isEmpty { output.append(d) }
    }
    try process.run()
    while process.isRunning { try await Task.sleep(for: .milliseconds(10)) }
    // Let the handler drain what the child wrote just before exiting.
    try await Task.sleep(for: .milliseconds(50))
    pipe.fileHandleForReading.readabilityHandler = nil
    return (process.terminationStatus, output.value)
}
