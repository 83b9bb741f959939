import Foundation
import Testing
@testable import SwitchboardCore

@Suite("Identifiers: prefixed, sortable ULIDs")
struct IdentifierTests {
    static let crockford = Set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    /// The 48-bit millisecond time in the first 10 characters of a ULID.
    static func milliseconds(of id: String) -> Int64 {
        let ulid = id.split(separator: "_").last!
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        return ulid.prefix(10).reduce(Int64(0)) { $0 * 32 + Int64(alphabet.firstIndex(of: $1)!) }
    }

    @Test(arguments: IDKind.allCases)
    func format(_ kind: IDKind) {
        let id = ID.make(kind)
        let parts = id.split(separator: "_", omittingEmptySubsequences: false)
        #expect(parts.count == 2)
        #expect(parts[0] == Substring(kind.rawValue))
        #expect(parts[1].count == 26)
        #expect(parts[1].allSatisfy { Self.crockford.contains($0) })
        #expect(!id.contains("."), "ids go into Standard Webhooks' signed content, which is split on dots")
        #expect(ID.isValid(id, kind: kind))
        for other in IDKind.allCases where other != kind {
            #expect(!ID.isValid(id, kind: other))
        }
    }

    @Test func prefixes() {
        #expect(IDKind.allCases.map(\.rawValue) == ["msg", "conv", "evt", "ident", "med"])
        #expect(ID.make(.message).hasPrefix("msg_"))
        #expect(ID.make(.conversation).hasPrefix("conv_"))
        #expect(ID.make(.event).hasPrefix("evt_"))
        #expect(ID.make(.identity).hasPrefix("ident_"))
        #expect(ID.make(.media).hasPrefix("med_"))
    }

    @Test func encodesTheCreationTime() {
        let before = Timestamp.now()
        let id = ID.make(.event, at: before)
        let encoded = Self.milliseconds(of: id)
        // Never earlier than asked; later only if another test made an id in a later millisecond meanwhile.
        #expect(encoded >= before.milliseconds)
        #expect(encoded - before.milliseconds < 1000)
        #expect(ID.ulid(milliseconds: before.milliseconds).count == 26)
    }

    @Test func laterIDsSortAfterEarlierOnes() async throws {
        var ids: [String] = []
        for _ in 0..<5 {
            ids.append(ID.make(.message))
            try await Task.sleep(for: .milliseconds(3))
        }
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == ids.count)
        #expect(Self.milliseconds(of: ids.last!) > Self.milliseconds(of: ids.first!))
    }

    @Test func idsWithinOneMillisecondStillSortInCreationOrder() {
        let t = Timestamp.now()
        let ids = (0..<10_000).map { _ in ID.make(.event, at: t) }
        #expect(Set(ids).count == ids.count)
        #expect(ids == ids.sorted())
        // Strictly increasing pairwise, not just sorted.
        #expect(zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test func idsMadeConcurrentlyAreUnique() async {
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 { group.addTask { (0..<1000).map { _ in ID.make(.message) } } }
            var all: [String] = []
            for await chunk in group { all += chunk }
            return all
        }
        #expect(Set(ids).count == 8000)
    }

    @Test func clockSteppingBackDoesNotBreakOrder() {
        let now = Timestamp.now()
        let a = ID.make(.message, at: now)
        let b = ID.make(.message, at: Timestamp(milliseconds: now.milliseconds - 60_000))
        #expect(a < b)
    }

    @Test func isValid() {
        #expect(ID.isValid("msg_01JTB2K3M4N5P6Q7R8S9TAVBWC", kind: .message))
        #expect(ID.isValid("ident_00000000000000000000000000", kind: .identity))
        #expect(ID.isValid("med_7ZZZZZZZZZZZZZZZZZZZZZZZZZ", kind: .media))
        #expect(!ID.isValid("msg_01JTB2K3M4N5P6Q7R8S9TAVBW", kind: .message))    // 25 characters
        #expect(!ID.isValid("msg_01JTB2K3M4N5P6Q7R8S9TAVBWCD", kind: .message))  // 27 characters
        #expect(!ID.isValid("msg_01jtb2k3m4n5p6q7r8s9tavbwc", kind: .message))   // lower case
        #expect(!ID.isValid("msg_01JTB2K3M4N5P6Q7R8S9TAVBWI", kind: .message))   // I is not Crockford
        #expect(!ID.isValid("msg_01JTB2K3M4N5P6Q7R8S9TAVBWL", kind: .message))   // nor L
        #expect(!ID.isValid("msg_01JTB2K3M4N5P6Q7R8S9TAVBWO", kind: .message))   // nor O
        #expect(!ID.isValid("msg_01JTB2K3M4N5P6Q7R8S9TAVBWU", kind: .message))   // nor U
        #expect(!ID.isValid("msg-01JTB2K3M4N5P6Q7R8S9TAVBWC", kind: .message))
        #expect(!ID.isValid("01JTB2K3M4N5P6Q7R8S9TAVBWC", kind: .message))
        #expect(!ID.isValid("conv_01JTB2K3M4N5P6Q7R8S9TAVBWC", kind: .message))
        #expect(!ID.isValid("msg_01JTB2K3M4N5P6Q7R8S9TAVBWÉ", kind: .message))
        #expect(!ID.isValid("", kind: .event))
        #expect(!ID.isValid("evt_", kind: .event))
    }
}

@Suite("EventType")
struct EventTypeTests {
    @Test func wildcardMatchesEverything() {
        for type in EventType.all + [EventType(rawValue: "line.follow")] {
            #expect(type.matches("*"))
        }
    }

    @Test func familyPattern() {
        let message = EventType.all.filter { $0.matches("message.*") }
        #expect(message == [.messageReceived, .messageEcho, .messageStatus, .messageReaction, .messageUpdated, .messageDeleted])
        #expect(EventType.all.filter { $0.matches("conversation.*") } == [.conversationCreated, .conversationRead])
        #expect(EventType.all.filter { $0.matches("typing.*") } == [.typingStarted, .typingStopped])
        #expect(EventType(rawValue: "message.pinned").matches("message.*"))
        #expect(!EventType(rawValue: "messages.received").matches("message.*"))
        #expect(!EventType(rawValue: "message").matches("message.*"))
        #expect(!EventType.channelStatus.matches("message.*"))
    }

    @Test func exactPattern() {
        #expect(EventType.messageStatus.matches("message.status"))
        #expect(!EventType.messageStatus.matches("message.statuses"))
        #expect(!EventType.messageStatus.matches("message"))
        #expect(!EventType.messageStatus.matches("Message.Status"))
        #expect(!EventType.messageStatus.matches("switchboard.message.status"))
        #expect(!EventType.messageStatus.matches(""))
        for type in EventType.all {
            #expect(EventType.all.filter { $0.matches(type.rawValue) } == [type])
        }
    }

    @Test func cloudEventType() {
        #expect(EventType.all.count == 12)
        #expect(Set(EventType.all).count == 12)
        #expect(EventType.messageReceived.cloudEventType == "switchboard.message.received")
        #expect(EventType.channelStatus.cloudEventType == "switchboard.channel.status")
        #expect(EventType.all.map(\.rawValue) == ["message.received", "message.echo", "message.status", "message.reaction",
                                                  "message.updated", "message.deleted", "conversation.created", "conversation.read",
                                                  "typing.started", "typing.stopped", "identity.updated", "channel.status"])
    }
}
