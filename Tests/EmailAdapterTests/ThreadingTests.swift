import Foundation
import Testing
@testable import EmailAdapter
@testable import EmailParsing

@Suite("Email threading")
struct ThreadingTests {
    static let codec = ThreadCodec(secret: Array("threading-secret-0123456789abcdef".utf8), domain: "Example.com")
    static let conv = "conv_01HXYZABCDEFGHJKMNPQRSTVWX"

    @Test func messageIDRoundTrip() throws {
        let id = Self.codec.makeMessageID(conversationID: Self.conv)
        #expect(id.hasPrefix("sb.conv_01hxyzabcdefghjkmnpqrstvwx."))
        #expect(id.hasSuffix("@example.com"))
        #expect(id.split(separator: ".").count == 5) // sb, conv, random, tag@example, com
        #expect(Self.codec.conversationID(fromMessageID: id) == Self.conv)
        #expect(Self.codec.conversationID(fromMessageID: "<\(id)>") == Self.conv)
        // Some systems change case; the id still maps back to the canonical form.
        #expect(Self.codec.conversationID(fromMessageID: id.uppercased()) == Self.conv)
        // Two ids for the same conversation differ (random part).
        #expect(Self.codec.makeMessageID(conversationID: Self.conv) != id)
        #expect(String(describing: Self.codec).contains("redacted"))
        #expect(!String(describing: Self.codec).contains("threading-secret"))
    }

    @Test func forgedMessageIDsAreRejected() throws {
        let id = Self.codec.makeMessageID(conversationID: Self.conv)
        var pieces = id.split(separator: ".").map(String.init)
        // Another conversation with the same random and tag.
        pieces[1] = "conv_01hxyzabcdefghjkmnpqrstvwy"
        #expect(Self.codec.conversationID(fromMessageID: pieces.joined(separator: ".")) == nil)
        // Same shape, wrong tag.
        let fixed = Self.codec.makeMessageID(conversationID: Self.conv, random: "aaaaaaaaaaaaaaaa")
        let tampered = fixed.replacingOccurrences(of: ".aaaaaaaaaaaaaaaa.", with: ".aaaaaaaaaaaaaaab.")
        #expect(Self.codec.conversationID(fromMessageID: fixed) == Self.conv)
        #expect(Self.codec.conversationID(fromMessageID: tampered) == nil)
        // A different secret does not accept it.
        let other = ThreadCodec(secret: Array("another-secret".utf8), domain: "example.com")
        #expect(other.conversationID(fromMessageID: id) == nil)
        #expect(Self.codec.conversationID(fromMessageID: "CAKx=abc@mail.gmail.com") == nil)
        #expect(Self.codec.conversationID(fromMessageID: "sb.only.three@example.com") == nil)
        #expect(Self.codec.conversationID(fromMessageID: "") == nil)
    }

    @Test func plusAddressRoundTrip() {
        let addr = Self.codec.plusAddress(base: "Support@Example.com", conversationID: Self.conv)
        #expect(addr.hasPrefix("support+conv_01hxyzabcdefghjkmnpqrstvwx-"))
        #expect(addr.hasSuffix("@example.com"))
        #expect(addr.split(separator: "@")[0].utf8.count <= 64)
        #expect(Self.codec.conversationID(fromPlusAddress: addr, base: "support@example.com") == Self.conv)
        #expect(Self.codec.conversationID(fromPlusAddress: addr.uppercased(), base: "support@example.com") == Self.conv)
        // Wrong base address, wrong domain, forged tag, other conversation.
        #expect(Self.codec.conversationID(fromPlusAddress: addr, base: "sales@example.com") == nil)
        #expect(Self.codec.conversationID(fromPlusAddress: addr.replacingOccurrences(of: "@example.com", with: "@example.org"), base: "support@example.com") == nil)
        let forged = addr.replacingOccurrences(of: "vwx-", with: "vwy-")
        #expect(Self.codec.conversationID(fromPlusAddress: forged, base: "support@example.com") == nil)
        #expect(Self.codec.conversationID(fromPlusAddress: "support@example.com", base: "support@example.com") == nil)
        #expect(Self.codec.conversationID(fromPlusAddress: "support+junk@example.com", base: "support@example.com") == nil)
        // A base that already has a plus tag is replaced, not nested.
        #expect(Self.codec.plusAddress(base: "support+old@example.com", conversationID: Self.conv) == addr)
    }

    func message(_ headers: [String]) -> ParsedEmail {
        parseMail((["From: Customer <c@example.org>", "To: Support <support@example.com>", "Message-ID: <own-1@example.org>"] + headers)
            .joined(separator: "\r\n") + "\r\n\r\nbody")
    }

    @Test func resolverPrefersInReplyToThenReferences() async {
        let ours = Self.codec.makeMessageID(conversationID: Self.conv)
        let other = "conv_01HXYZABCDEFGHJKMNPQRSTVWY"
        let ours2 = Self.codec.makeMessageID(conversationID: other)

        let byInReplyTo = await ThreadResolver.resolve(message(["In-Reply-To: <\(ours)>", "References: <\(ours2)>"]),
                                                       codec: Self.codec, supportAddress: "support@example.com")
        #expect(byInReplyTo == .conversation(id: Self.conv, via: .inReplyTo(ours)))

        // References newest (right-most) first.
        let byRefs = await ThreadResolver.resolve(message(["In-Reply-To: <unknown@x>", "References: <\(ours2)> <\(ours)> <unknown@x>"]),
                                                  codec: Self.codec, supportAddress: "support@example.com")
        #expect(byRefs == .conversation(id: Self.conv, via: .references(ours)))
    }

    @Test func resolverUsesLookupThenPlusToken() async throws {
        let known = await ThreadResolver.resolve(message(["In-Reply-To: <customer-first@example.org>"]), codec: Self.codec,
                                                 supportAddress: "support@example.com") { id in
            id == "customer-first@example.org" ? "conv_KNOWN" : nil
        }
        #expect(known == .conversation(id: "conv_KNOWN", via: .knownMessage("customer-first@example.org")))

        let plus = Self.codec.plusAddress(base: "support@example.com", conversationID: Self.conv)
        let byPlus = await ThreadResolver.resolve(message(["Cc: <\(plus)>", "In-Reply-To: <unknown@x>"]), codec: Self.codec,
                                                  supportAddress: "support@example.com")
        #expect(byPlus == .conversation(id: Self.conv, via: .plusAddress(plus)))
        let byEnvelope = await ThreadResolver.resolve(message([]), codec: Self.codec, supportAddress: "support@example.com",
                                                      envelopeRecipients: ["<\(plus.uppercased())>"])
        #expect(byEnvelope == .conversation(id: Self.conv, via: .plusAddress(plus)))
        let byDeliveredTo = await ThreadResolver.resolve(message(["Delivered-To: \(plus)"]), codec: Self.codec,
                                                         supportAddress: "support@example.com")
        #expect(byDeliveredTo == .conversation(id: Self.conv, via: .plusAddress(plus)))
    }

    @Test func resolverNeverUsesTheSubject() async {
        // A subject naming a conversation (or a Re: of ours) is ignored; the thread root is the
        // first reference, else the message's own id.
        let subjectOnly = await ThreadResolver.resolve(message(["Subject: Re: [\(Self.conv)] Your order"]), codec: Self.codec,
                                                       supportAddress: "support@example.com")
        #expect(subjectOnly == .newThread(root: "own-1@example.org"))
        let unknownRefs = await ThreadResolver.resolve(message(["References: <root@x> <mid@x>", "In-Reply-To: <mid@x>"]),
                                                       codec: Self.codec, supportAddress: "support@example.com")
        #expect(unknownRefs == .newThread(root: "root@x"))
    }

    @Test func threadHeadersOfFixtures() throws {
        let email = try Fixture.parse("reply-gmail-en")
        #expect(email.inReplyTo == ["orig-reply-gmail-en@example.com"])
        #expect(email.references == ["root-reply-gmail-en@example.com", "orig-reply-gmail-en@example.com"])
        #expect(email.messageID == "reply-gmail-en@example.org")
    }
}
