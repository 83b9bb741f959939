import Crypto
import Foundation
import Testing
@testable import SwitchboardCore
@testable import SwitchboardRuntime
@testable import SwitchboardDaemon
@testable import WebchatAdapter

@Suite struct WebchatProtocolTests {
    @Test func visitorMessageReachesTheHelpdeskAndTheReplyReachesTheVisitor() async throws {
        try await withHelpdesk { helpdesk in
            let ch = uniqueID("site")
            try await withWebchat([WebchatFixture.channel(ch)], helpdesk: helpdesk) { d in
                let v = WebchatVisitor.connect(d, ch)
                let welcome = try #require(try await v.hello(extra: #""new_visit":true,"context":{"url":"https://shop.example.com/cart","title":"Cart","referrer":"https://search.example/","locale":"ko-KR","time_zone":"Asia/Seoul","pages":["https://shop.example.com/","https://shop.example.com/cart"]}"#))
                let token = try #require(welcome["token"]?.stringValue)
                #expect(token.count >= 43, "256-bit token")
                let visitor = try #require(welcome["visitor"]?["id"]?.stringValue)
                #expect(visitor.hasPrefix("v_"))
                #expect(welcome["hours"]?["open"]?.boolValue == true)

                // 1. Visitor → helpdesk, acknowledged with its sequence number.
                v.message("c1", "Where is my order?")
                let ack = try await v.waitFor("ack") { $0["type"]?.stringValue == "ack" }
                #expect(ack["client_id"]?.stringValue == "c1")
                #expect(ack["seq"]?.intValue == 1)
                try await eventually("message.received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                let received = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" })
                #expect(received.data?["text_fallback"]?.stringValue == "Where is my order?")
                #expect(received.data?["sender"]?["channel_user_id"]?.stringValue == visitor)
                #expect(ack["message_id"]?.stringValue == received.data?["id"]?.stringValue)
                let cd = try #require(received.data?["channel_data"])
                #expect(cd["page_url"]?.stringValue == "https://shop.example.com/cart")
                #expect(cd["page_title"]?.stringValue == "Cart")
                #expect(cd["referrer"]?.stringValue == "https://search.example/")
                #expect(cd["locale"]?.stringValue == "ko-KR")
                #expect(cd["time_zone"]?.stringValue == "Asia/Seoul")
                #expect(cd["visit_count"]?.intValue == 1)
                #expect(cd["pages"]?.arrayValue?.count == 2)
                // Tokens never leave the widget: not in events, not in the stored log.
                #expect(!helpdesk.deliveries.contains { String(decoding: $0.body, as: UTF8.self).contains(token) })
                let conversation = try #require(received.subject)

                // 2. Typing both ways.
                v.send(#"{"type":"typing","on":true}"#)
                try await eventually("typing.started") { helpdesk.events.contains { $0.type == "switchboard.typing.started" } }
                #expect(try await d.api("POST", "/v1/conversations/\(conversation)/activity", json: #"{"type":"typing_start"}"#).status < 300)
                try await v.waitFor("typing on") { $0["type"]?.stringValue == "typing" && $0["on"]?.boolValue == true }

                // 3. The helpdesk's reply (rich parts kept native) reaches the open socket.
                let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages",
                                        json: #"{"parts":[{"type":"text","text":"<b>It ships today</b>"},{"type":"quick_replies","text":"Anything else?","options":[{"title":"No, thanks","payload":"DONE"}]}]}"#)
                #expect(r.status == 202)
                let messageID = try #require(r.json?["id"]?.stringValue)
                #expect(r.json?["degradations"]?.arrayValue?.isEmpty ?? true)
                let reply = try await v.waitFor("reply") { $0["type"]?.stringValue == "message" && $0["direction"]?.stringValue == "out" }
                #expect(reply["seq"]?.intValue == 2)
                #expect(reply["parts"]?.arrayValue?.first?["text"]?.stringValue == "<b>It ships today</b>")
                #expect(reply["parts"]?.arrayValue?.last?["type"]?.stringValue == "quick_replies")
                #expect(reply["parts"]?.arrayValue?.last?["options"]?.arrayValue?.first?["payload"]?.stringValue == "DONE")

                // 4. Receipts from the visitor: delivered, then read.
                v.send(#"{"type":"delivered","seq":2}"#)
                v.send(#"{"type":"read","seq":2}"#)
                for status in ["sent", "delivered", "read"] {
                    try await eventually("message.status \(status)") {
                        helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["message_id"]?.stringValue == messageID
                            && $0.data?["status"]?.stringValue == status }
                    }
                }

                // 5. The quick reply click comes back as an interaction part.
                v.send(#"{"type":"message","client_id":"c2","parts":[{"type":"interaction","kind":"quick_reply","payload":"DONE","title":"No, thanks","source_message_id":"wc_x"}]}"#)
                try await eventually("interaction") {
                    helpdesk.events.contains { $0.type == "switchboard.message.received" && $0.data?["parts"]?.arrayValue?.first?["type"]?.stringValue == "interaction" }
                }
                let interaction = try #require(helpdesk.events.last { $0.type == "switchboard.message.received" }?.data?["parts"]?.arrayValue?.first)
                #expect(interaction["kind"]?.stringValue == "quick_reply")
                #expect(interaction["payload"]?.stringValue == "DONE")

                // 6. The helpdesk's mark_read shows as read in the widget (up to the last message).
                #expect(try await d.api("POST", "/v1/conversations/\(conversation)/activity", json: #"{"type":"mark_read"}"#).status < 300)
                try await v.waitFor("read") { $0["type"]?.stringValue == "read" && $0["seq"]?.intValue == 3 }
                await v.close()
            }
        }
    }

    @Test func resumeAfterReconnectLosesNothingAndDuplicatesNothing() async throws {
        try await withHelpdesk { helpdesk in
            let ch = uniqueID("site")
            try await withWebchat([WebchatFixture.channel(ch)], helpdesk: helpdesk) { d in
                let v1 = WebchatVisitor.connect(d, ch)
                let token = try #require(try await v1.hello()?["token"]?.stringValue)
                v1.message("m1", "first")
                try await v1.waitFor("ack") { $0["type"]?.stringValue == "ack" }
                try await eventually("received") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                let conversation = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.subject)
                await v1.close()

                // Two replies while the visitor is away: kept for them.
                for text in ["reply one", "reply two"] {
                    let r = try await d.api("POST", "/v1/conversations/\(conversation)/messages", json: #"{"parts":[{"type":"text","text":"\#(text)"}]}"#)
                    #expect(r.status == 202)
                }
                try await eventually("both sent") {
                    helpdesk.events.filter { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "sent" }.count == 2
                }

                // Reconnect from the last seen message: exactly the two replies, in order, then synced.
                let v2 = WebchatVisitor.connect(d, ch)
                let welcome = try #require(try await v2.hello(token: token, lastSeq: 1))
                #expect(welcome["token"] == nil, "a resumed visitor keeps its token")
                #expect(welcome["last_seq"]?.intValue == 3)
                let replayed = v2.frames("message")
                #expect(replayed.map { $0["seq"]?.intValue } == [2, 3])
                #expect(replayed.map { $0["text"]?.stringValue } == ["reply one", "reply two"])
                #expect(v2.frames("synced").first?["last_seq"]?.intValue == 3)

                // A message re-sent after the reconnect (no ack seen) is acknowledged, not stored twice.
                v2.message("m1", "first")
                let dup = try await v2.waitFor("duplicate ack") { $0["type"]?.stringValue == "ack" }
                #expect(dup["duplicate"]?.boolValue == true)
                #expect(dup["seq"]?.intValue == 1)
                try await Task.sleep(for: .milliseconds(200))
                #expect(helpdesk.events.filter { $0.type == "switchboard.message.received" }.count == 1)

                // REST history: the token as a bearer header, never in the URL.
                let all = try await http("GET", d.publicBase + "/webchat/\(ch)/history", headers: ["authorization": "Bearer \(token)"])
                #expect(all.status == 200)
                #expect(all.json?["messages"]?.arrayValue?.map { $0["text"]?.stringValue } == ["first", "reply one", "reply two"])
                #expect(all.json?["messages"]?.arrayValue?.map { $0["direction"]?.stringValue } == ["in", "out", "out"])
                let after = try await http("GET", d.publicBase + "/webchat/\(ch)/history?after=2", headers: ["authorization": "Bearer \(token)"])
                #expect(after.json?["messages"]?.arrayValue?.map { $0["seq"]?.intValue } == [3])
                #expect(all.headers["cache-control"] == "no-store")
                await v2.close()
            }
        }
    }

    @Test func aTokenReadsOnlyItsOwnConversation() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch)]) { d in
            let a = WebchatVisitor.connect(d, ch)
            let tokenA = try #require(try await a.hello()?["token"]?.stringValue)
            a.message("a1", "secret order 42")
            try await a.waitFor("ack") { $0["type"]?.stringValue == "ack" }
            // A's upload.
            let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 0, count: 32)
            let up = try await http("POST", d.publicBase + "/webchat/\(ch)/upload", body: png,
                                    headers: ["authorization": "Bearer \(tokenA)", "content-type": "image/png"])
            #expect(up.status == 200)
            let mediaA = try #require(up.json?["media_id"]?.stringValue)

            let b = WebchatVisitor.connect(d, ch)
            let welcomeB = try #require(try await b.hello())
            let tokenB = try #require(welcomeB["token"]?.stringValue)
            #expect(tokenA != tokenB)
            #expect(welcomeB["visitor"]?["id"]?.stringValue != a.frames("welcome").first?["visitor"]?["id"]?.stringValue)
            #expect(b.frames("message").isEmpty, "B sees nothing of A's conversation")
            let historyB = try await http("GET", d.publicBase + "/webchat/\(ch)/history", headers: ["authorization": "Bearer \(tokenB)"])
            #expect(historyB.json?["messages"]?.arrayValue?.isEmpty == true)
            // B can't send A's upload.
            b.send(#"{"type":"message","client_id":"b1","parts":[{"type":"media","media_id":"\#(mediaA)"}]}"#)
            let refused = try await b.waitFor("error") { $0["type"]?.stringValue == "error" }
            #expect(refused["code"]?.stringValue == "invalid_media")
            #expect(refused["client_id"]?.stringValue == "b1")
            // No token, a wrong token: nothing.
            #expect(try await http("GET", d.publicBase + "/webchat/\(ch)/history").status == 401)
            #expect(try await http("GET", d.publicBase + "/webchat/\(ch)/history", headers: ["authorization": "Bearer \(String(tokenA.reversed()))"]).status == 401)
            let forged = WebchatVisitor.connect(d, ch)
            // One character changed (not "x" + the rest: a token starting with "x" would stay
            // the same, 1 run in 64).
            _ = try await forged.hello(token: (tokenA.first == "x" ? "y" : "x") + tokenA.dropFirst())
            #expect(forged.frames("error").first?["code"]?.stringValue == "invalid_token")
            #expect(forged.frames("message").isEmpty && forged.frames("welcome").isEmpty)
            try await eventually("refused socket closed") { forged.isClosed }
            // Tokens are stored only hashed.
            let stored = try await d.context(ch).state.entries(prefix: "")
            #expect(!stored.contains { $0.key.contains(tokenA) || $0.value.contains(tokenA) })
            #expect(stored.contains { $0.key == WebchatChannelAdapter.tokenKey(tokenA) })
            await a.close(); await b.close(); await forged.close()
        }
    }

    /// A socket that never says hello is closed after the deadline (it held memory for as
    /// long as the client answered pings).
    @Test func aSocketWithoutHelloIsClosed() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch)]) { d in
            let silent = WebchatVisitor.connect(d, ch)
            try await eventually(timeout: 20, "closed") { silent.isClosed }
            #expect(silent.frames("error").first?["code"]?.stringValue == "hello_required")
            await silent.close()
        }
    }

    /// Sign-out (SwitchboardChat.reset → logout): the token no longer opens the conversation.
    @Test func logoutRevokesTheToken() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch)]) { d in
            let a = WebchatVisitor.connect(d, ch)
            let token = try #require(try await a.hello()?["token"]?.stringValue)
            a.send(#"{"type":"logout"}"#)
            _ = try await a.waitFor("logged_out") { $0["type"]?.stringValue == "logged_out" }
            await a.close()
            let again = WebchatVisitor.connect(d, ch)
            _ = try await again.hello(token: token)
            #expect(again.frames("error").first?["code"]?.stringValue == "invalid_token")
            #expect(try await http("GET", d.publicBase + "/webchat/\(ch)/history", headers: ["authorization": "Bearer \(token)"]).status == 401)
            await again.close()
            // Over HTTP too (what the widget's reset() uses: its socket may not be up yet).
            let b = WebchatVisitor.connect(d, ch)
            let tokenB = try #require(try await b.hello()?["token"]?.stringValue)
            await b.close()
            #expect(try await http("POST", d.publicBase + "/webchat/\(ch)/logout", headers: ["authorization": "Bearer \(tokenB)"]).status == 204)
            #expect(try await http("GET", d.publicBase + "/webchat/\(ch)/history", headers: ["authorization": "Bearer \(tokenB)"]).status == 401)
        }
    }

    /// A visitor who identifies in the middle of a chat gets the verified user's log from the
    /// start: the position the browser had in the anonymous log says nothing about it. User ids
    /// with ":" don't share another user's keys.
    @Test func identifyingMidChatReplaysTheUsersLogFromTheStart() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch, "identity_secret: \"\(WebchatFixture.secret)\"")]) { d in
            func identity(_ user: String) -> String {
                #""identity":{"user_id":"\#(user)","user_hash":"\#(WebchatChannelAdapter.identityHash(userID: user, secret: WebchatFixture.secret))"}"#
            }
            let phone = WebchatVisitor.connect(d, ch)
            _ = try await phone.hello(extra: identity("alice"))
            phone.message("p1", "from the phone")
            _ = try await phone.waitFor("ack") { $0["type"]?.stringValue == "ack" }
            let other = WebchatVisitor.connect(d, ch)
            _ = try await other.hello(extra: identity("alice:x"))
            other.message("x1", "alice:x writes")
            _ = try await other.waitFor("ack") { $0["type"]?.stringValue == "ack" }

            let laptop = WebchatVisitor.connect(d, ch)
            let anonToken = try #require(try await laptop.hello()?["token"]?.stringValue)
            laptop.message("l1", "anonymous one")
            laptop.message("l2", "anonymous two")
            _ = try await laptop.waitFor("acks") { _ in laptop.frames("ack").count == 2 }
            await laptop.close()
            // The site identifies its user; the browser still holds the anonymous log's seq 2.
            let identified = WebchatVisitor.connect(d, ch)
            _ = try await identified.hello(token: anonToken, lastSeq: 2, extra: identity("alice"))
            let texts = identified.frames("message").compactMap { $0["text"]?.stringValue }
            #expect(texts == ["from the phone"], "\(texts)")
            await phone.close(); await other.close(); await identified.close()
        }
    }

    @Test func identityVerificationGivesOneVisitorOnEveryDeviceAndRefusesForgeries() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch, "identity_secret: \"\(WebchatFixture.secret)\"")]) { d in
            let hash = WebchatChannelAdapter.identityHash(userID: "alice-7", secret: WebchatFixture.secret)
            let identity = #""identity":{"user_id":"alice-7","user_hash":"\#(hash)"}"#
            let phone = WebchatVisitor.connect(d, ch)
            let w1 = try #require(try await phone.hello(extra: identity))
            #expect(w1["visitor"]?["id"]?.stringValue == "u:alice-7")
            #expect(w1["visitor"]?["verified"]?.boolValue == true)
            phone.message("p1", "from my phone")
            try await phone.waitFor("ack") { $0["type"]?.stringValue == "ack" }

            // A second device: its own token, the same visitor and the whole history.
            let laptop = WebchatVisitor.connect(d, ch)
            let w2 = try #require(try await laptop.hello(extra: identity))
            #expect(w2["visitor"]?["id"]?.stringValue == "u:alice-7")
            #expect(w2["token"]?.stringValue != w1["token"]?.stringValue)
            #expect(laptop.frames("message").map { $0["text"]?.stringValue } == ["from my phone"])
            // …and live: the laptop sees what the phone sends next.
            phone.message("p2", "still me")
            try await laptop.waitFor("mirrored") { $0["type"]?.stringValue == "message" && $0["text"]?.stringValue == "still me" }

            // A forged hash is refused and the socket closed.
            let forged = WebchatVisitor.connect(d, ch)
            _ = try await forged.hello(extra: #""identity":{"user_id":"alice-7","user_hash":"\#(String(repeating: "0", count: 64))"}"#)
            #expect(forged.frames("error").first?["code"]?.stringValue == "identity_unverified")
            #expect(forged.frames("welcome").isEmpty && forged.frames("message").isEmpty)
            try await eventually("closed") { forged.isClosed }
            // Someone else's user id with Alice's hash: refused too.
            let other = WebchatVisitor.connect(d, ch)
            _ = try await other.hello(extra: #""identity":{"user_id":"bob","user_hash":"\#(hash)"}"#)
            #expect(other.frames("error").first?["code"]?.stringValue == "identity_unverified")
            await phone.close(); await laptop.close(); await forged.close(); await other.close()
        }
        // require_identity: an anonymous visitor is refused.
        let strict = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(strict, "identity_secret: \"\(WebchatFixture.secret)\", require_identity: true")]) { d in
            let anon = WebchatVisitor.connect(d, strict)
            _ = try await anon.hello()
            #expect(anon.frames("error").first?["code"]?.stringValue == "identity_required")
            #expect(anon.frames("welcome").isEmpty)
            await anon.close()
            // A verified visitor's token keeps working on its own.
            let hash = WebchatChannelAdapter.identityHash(userID: "dave", secret: WebchatFixture.secret)
            let first = WebchatVisitor.connect(d, strict)
            let token = try #require(try await first.hello(extra: #""identity":{"user_id":"dave","user_hash":"\#(hash)"}"#)?["token"]?.stringValue)
            await first.close()
            let again = WebchatVisitor.connect(d, strict)
            #expect(try await again.hello(token: token)?["visitor"]?["id"]?.stringValue == "u:dave")
            await again.close()
        }
    }

    static func jwt(_ claims: String, secret: String = WebchatFixture.secret, alg: String = "HS256") -> String {
        func b64(_ b: [UInt8]) -> String {
            Data(b).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let signing = b64(Array(#"{"alg":"\#(alg)","typ":"JWT"}"#.utf8)) + "." + b64(Array(claims.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Array(signing.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return signing + "." + b64(Array(mac))
    }

    @Test func aShortLivedJWTVerifiesTheVisitorToo() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch, "identity_secret: \"\(WebchatFixture.secret)\"")]) { d in
            let now = Int(Date().timeIntervalSince1970)
            let good = Self.jwt(#"{"sub":"carol","exp":\#(now + 600),"name":"Carol Signed","email":"carol@example.com"}"#)
            let v = WebchatVisitor.connect(d, ch)
            let w = try #require(try await v.hello(extra: #""identity":{"jwt":"\#(good)"},"profile":{"name":"Typed Name"}"#))
            #expect(w["visitor"]?["id"]?.stringValue == "u:carol")
            #expect(w["visitor"]?["profile"]?["name"]?.stringValue == "Carol Signed", "signed claims win over typed ones")
            #expect(w["visitor"]?["profile"]?["email"]?.stringValue == "carol@example.com")
            let refused: [(String, String)] = [
                ("expired", Self.jwt(#"{"sub":"carol","exp":\#(now - 5)}"#)),
                ("no exp", Self.jwt(#"{"sub":"carol"}"#)),
                ("too long-lived", Self.jwt(#"{"sub":"carol","exp":\#(now + 3 * 86_400)}"#)),
                ("other secret", Self.jwt(#"{"sub":"carol","exp":\#(now + 600)}"#, secret: "another-secret-0123456789abcdef")),
                ("alg none", Self.jwt(#"{"sub":"carol","exp":\#(now + 600)}"#, alg: "none")),
                ("garbage", "a.b.c"),
            ]
            for (what, token) in refused {
                let bad = WebchatVisitor.connect(d, ch)
                _ = try await bad.hello(extra: #""identity":{"jwt":"\#(token)"}"#)
                #expect(bad.frames("error").first?["code"]?.stringValue == "identity_unverified", "\(what)")
                #expect(bad.frames("welcome").isEmpty, "\(what)")
                await bad.close()
            }
            await v.close()
        }
    }

    @Test func rateLimitsSayslowDownPerVisitorAndPerAddress() async throws {
        let ch = uniqueID("site")
        let limits = "rate_limits: { visitor_messages_per_minute: 3, ip_new_visitors_per_hour: 2 }"
        try await withWebchat([WebchatFixture.channel(ch, limits)]) { d in
            let v = WebchatVisitor.connect(d, ch)
            _ = try await v.hello()
            for i in 1...4 { v.message("r\(i)", "message \(i)") }
            let slow = try await v.waitFor("slow_down") { $0["type"]?.stringValue == "slow_down" }
            #expect(slow["client_id"]?.stringValue == "r4")
            #expect((slow["retry_after"]?.intValue ?? 0) >= 1)
            try await eventually("three acks") { v.frames("ack").count == 3 }
            #expect(v.frames("ack").map { $0["client_id"]?.stringValue } == ["r1", "r2", "r3"])

            // The first visitor counted as one new visitor from 127.0.0.1; one more is allowed.
            let second = WebchatVisitor.connect(d, ch)
            #expect(try await second.hello()?["token"] != nil)
            let third = WebchatVisitor.connect(d, ch)
            _ = try await third.hello()
            #expect(third.frames("slow_down").count == 1)
            #expect(third.frames("welcome").isEmpty)
            // A returning visitor (token) is not a new one.
            let back = WebchatVisitor.connect(d, ch)
            #expect(try await back.hello(token: v.frames("welcome").first?["token"]?.stringValue) != nil)
            await v.close(); await second.close(); await third.close(); await back.close()
        }
    }

    @Test func thePerAddressLimitCoversEveryVisitorBehindIt() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch, "rate_limits: { ip_messages_per_minute: 2 }")]) { d in
            let a = WebchatVisitor.connect(d, ch), b = WebchatVisitor.connect(d, ch)
            _ = try await a.hello(); _ = try await b.hello()
            a.message("a1", "one")
            try await a.waitFor("ack a1") { $0["type"]?.stringValue == "ack" }
            b.message("b1", "two")
            try await b.waitFor("ack b1") { $0["type"]?.stringValue == "ack" }
            b.message("b2", "three")
            let slow = try await b.waitFor("slow_down") { $0["type"]?.stringValue == "slow_down" }
            #expect(slow["client_id"]?.stringValue == "b2")
            await a.close(); await b.close()
        }
    }

    @Test("behind a trusted proxy (loopback by default) the per-address limit counts the forwarded client address")
    func perAddressLimitBehindAProxy() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch, "rate_limits: { ip_messages_per_minute: 2 }")]) { d in
            // The test client connects from 127.0.0.1, a trusted proxy: its header names the client.
            let a = WebchatVisitor.connect(d, ch, headers: ["X-Forwarded-For": "198.51.100.4, 203.0.113.7"])
            // b also sends a Forwarded header of its own choosing: ignored (X-Forwarded-For is the configured one).
            let b = WebchatVisitor.connect(d, ch, headers: ["X-Forwarded-For": "203.0.113.8", "Forwarded": "for=203.0.113.7"])
            _ = try await a.hello(); _ = try await b.hello()
            for i in 1...3 { a.message("a\(i)", "message \(i)") }
            let slow = try await a.waitFor("slow_down") { $0["type"]?.stringValue == "slow_down" }
            #expect(slow["client_id"]?.stringValue == "a3")
            // Another client behind the same proxy has its own allowance.
            b.message("b1", "hello")
            let ack = try await b.waitFor("ack or slow_down") { ["ack", "slow_down"].contains($0["type"]?.stringValue ?? "") }
            #expect(ack["type"]?.stringValue == "ack")
            await a.close(); await b.close()
        }
    }

    @Test func aVisitorWhoOnlyLooksCreatesNothingAndLeavingEndsTyping() async throws {
        try await withHelpdesk { helpdesk in
            let ch = uniqueID("site")
            try await withWebchat([WebchatFixture.channel(ch)], helpdesk: helpdesk) { d in
                let looker = WebchatVisitor.connect(d, ch)
                _ = try await looker.hello()
                await looker.close()
                let writer = WebchatVisitor.connect(d, ch)
                _ = try await writer.hello()
                writer.message("w1", "hi")
                try await writer.waitFor("ack") { $0["type"]?.stringValue == "ack" }
                writer.send(#"{"type":"typing","on":true}"#)
                try await eventually("typing.started") { helpdesk.events.contains { $0.type == "switchboard.typing.started" } }
                await writer.close()
                try await eventually("typing.stopped after leaving") { helpdesk.events.contains { $0.type == "switchboard.typing.stopped" } }
                let conversations = try await d.runtime.store.conversations(channelID: ch, limit: 10, cursor: nil).0
                #expect(conversations.count == 1, "only the visitor who wrote has a conversation")
            }
        }
    }

    @Test func sizeLimitsAndBadFrames() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch, "max_text_length: 10")]) { d in
            let v = WebchatVisitor.connect(d, ch)
            v.message("early", "before hello")
            try await v.waitFor("hello_required") { $0["code"]?.stringValue == "hello_required" }
            _ = try await v.hello()
            v.message("long", "01234567890")
            let tooLong = try await v.waitFor("too_long") { $0["type"]?.stringValue == "error" && $0["client_id"]?.stringValue == "long" }
            #expect(tooLong["code"]?.stringValue == "too_long")
            v.send("not json")
            try await v.waitFor("invalid_frame") { $0["code"]?.stringValue == "invalid_frame" }
            v.send(#"{"type":"message","client_id":"h","parts":[{"type":"template","name":"x"}]}"#)
            try await v.waitFor("visitor parts") { $0["client_id"]?.stringValue == "h" && $0["code"]?.stringValue == "invalid_frame" }
            v.message("ok", "short")
            try await v.waitFor("ack") { $0["type"]?.stringValue == "ack" && $0["client_id"]?.stringValue == "ok" }
            await v.close()
        }
    }
}

@Suite struct WebchatLogTests {
    /// An agent's reply and the visitor's messages written at once each get a sequence number
    /// of their own (two appends used to read the same last number and write over each other);
    /// the same client_id twice is one entry.
    @Test func concurrentAppendsNeverShareASequenceNumber() async throws {
        let channel = uniqueID("rec")
        try await withDaemon("channels: [ { id: \(channel), type: recording } ]") { d in
            let context = d.context(channel)
            let log = LogWriter()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        _ = try await log.append(peer: "v:abc", direction: i % 2 == 0 ? "in" : "out", externalID: "e\(i)",
                                                 parts: [.text("m\(i)")], text: "m\(i)", clientID: i % 2 == 0 ? "c\(i)" : nil, context: context)
                    }
                }
                // The same client message again, from a second socket.
                group.addTask {
                    _ = try await log.append(peer: "v:abc", direction: "in", externalID: "again", parts: [.text("m0")], text: "m0",
                                             clientID: "c0", context: context)
                }
                try await group.waitForAll()
            }
            let entries = try await LogWriter.entries(peer: "v:abc", after: 0, limit: 100, context: context)
            #expect(entries.map(\.seq) == Array(1...40))
            #expect(Set(entries.map(\.externalID)).count == 40)
            #expect(try await log.lastSeq(peer: "v:abc", context: context) == 40)
        }
    }
}

@Suite struct WebchatChannelTests {
    @Test func businessHoursInTheChannelsTimeZone() throws {
        // Mon–Fri 09:00–18:00 in Seoul (UTC+9), closed at weekends.
        let tz = TimeZone(identifier: "Asia/Seoul")!
        let weekday = [BusinessHours.parseRange("09:00-18:00")!]
        let hours = BusinessHours(timeZone: tz, days: [[], weekday, weekday, weekday, weekday, weekday, []])
        func utc(_ s: String) -> Date { ISO8601DateFormatter().date(from: s)! }
        // Monday 2026-11-23 10:00 KST = 01:00 UTC: open.
        #expect(hours.status(at: utc("2026-11-23T01:00:00Z")).open)
        // Monday 18:00 KST sharp: closed; next opening Tuesday 09:00 KST = 00:00 UTC.
        let evening = hours.status(at: utc("2026-11-23T09:00:00Z"))
        #expect(!evening.open)
        #expect(evening.nextOpen == utc("2026-11-24T00:00:00Z"))
        // Saturday noon KST: next opening Monday 09:00 KST.
        let saturday = hours.status(at: utc("2026-11-28T03:00:00Z"))
        #expect(!saturday.open)
        #expect(saturday.nextOpen == utc("2026-11-30T00:00:00Z"))
        // Early Monday 08:59 KST: opens the same day.
        #expect(hours.status(at: utc("2026-11-22T23:59:00Z")).nextOpen == utc("2026-11-23T00:00:00Z"))
        #expect(BusinessHours.parseRange("18:00-09:00") == nil)
        #expect(BusinessHours.parseRange("9-5") == nil)
    }

    @Test func awayMessageOutsideBusinessHours() async throws {
        let ch = uniqueID("site")
        let closed = #"business_hours: { time_zone: "Asia/Tokyo", mon: closed }, away_message: "We answer within one business day.", prechat: { fields: [ { name: email, required: true } ] }"#
        try await withWebchat([WebchatFixture.channel(ch, closed)]) { d in
            let v = WebchatVisitor.connect(d, ch)
            let welcome = try #require(try await v.hello())
            #expect(welcome["hours"]?["open"]?.boolValue == false)
            #expect(welcome["hours"]?["time_zone"]?.stringValue == "Asia/Tokyo")
            #expect(welcome["config"]?["away_message"]?.stringValue == "We answer within one business day.")
            #expect(welcome["config"]?["prechat"]?.arrayValue?.first?["required"]?.boolValue == true)
            // The pre-chat form comes first…
            v.message("x1", "hello?")
            let needForm = try await v.waitFor("prechat_required") { $0["client_id"]?.stringValue == "x1" }
            #expect(needForm["code"]?.stringValue == "prechat_required")
            v.send(#"{"type":"profile","profile":{"email":"not-an-email"}}"#)
            try await v.waitFor("invalid_profile") { $0["code"]?.stringValue == "invalid_profile" }
            v.send(#"{"type":"profile","profile":{"email":"kim@example.com","name":"Kim"}}"#)
            try await v.waitFor("profile") { $0["type"]?.stringValue == "profile" }
            // …then the message goes through, with the away notice. It promises no email answer:
            // this channel has no email_followup (WebchatFollowupTests checks the promise).
            v.message("x2", "hello?")
            try await v.waitFor("ack") { $0["type"]?.stringValue == "ack" }
            let notice = try await v.waitFor("notice") { $0["type"]?.stringValue == "notice" }
            #expect(notice["kind"]?.stringValue == "away")
            #expect(notice["text"]?.stringValue == "We answer within one business day.")
            #expect(notice["email"]?.boolValue == false)
            let identities = try await d.runtime.store.conversations(channelID: ch, limit: 5, cursor: nil).0
            #expect(identities.count == 1)
            await v.close()
        }
    }

    @Test func widgetFilesHeadersAndOrigins() async throws {
        let ch = uniqueID("site")
        try await withWebchat([WebchatFixture.channel(ch, "demo_page: true")]) { d in
            let base = d.publicBase + "/webchat/\(ch)"
            let loader = try await http("GET", base + "/widget.js")
            #expect(loader.status == 200)
            #expect(loader.body.count < 5 * 1024, "the loader stays under 5 KB")
            #expect(loader.headers["content-type"] == "text/javascript; charset=utf-8")
            #expect(loader.headers["cache-control"] == "public, max-age=300")
            let page = try await http("GET", base + "/chat")
            #expect(page.status == 200)
            #expect(page.headers["content-security-policy"]?.hasSuffix("frame-ancestors 'self' https://shop.example.com") == true)
            #expect(page.headers["x-content-type-options"] == "nosniff")
            let app = try await http("GET", base + "/chat.js")
            let css = try await http("GET", base + "/chat.css")
            #expect(app.status == 200 && css.status == 200)
            #expect(app.body.count + css.body.count + page.body.count < 40 * 1024, "the chat app is under 40 KB before compression")
            #expect(app.headers["cache-control"] == "public, max-age=3600")
            // The chat app never puts network text into HTML.
            let js = String(decoding: app.body, as: UTF8.self)
            #expect(!js.contains("innerHTML") && !js.contains("insertAdjacentHTML") && !js.contains("document.write"))
            // The demo page at / embeds the widget.
            let home = try await http("GET", d.publicBase + "/")
            #expect(home.status == 200)
            #expect(String(decoding: home.body, as: UTF8.self).contains("/webchat/\(ch)/widget.js"))
            #expect(try await http("GET", base + "/nope").status == 404)
            #expect(try await http("GET", d.publicBase + "/webchat/unknown-channel/widget.js").status == 404)

            // WebSockets: a page on another origin can't open one; the daemon's own origin can.
            let evil = WebchatVisitor.connect(d, ch, origin: "https://evil.example")
            try await eventually("refused") { evil.isClosed }
            #expect(evil.frames.isEmpty)
            let own = WebchatVisitor.connect(d, ch, origin: "http://\(d.addresses["public"]!)")
            #expect(try await own.hello() != nil)
            await own.close(); await evil.close()
        }
    }

    @Test func uploadsAreCheckedAndArriveAsMediaParts() async throws {
        try await withHelpdesk { helpdesk in
            let ch = uniqueID("site")
            try await withWebchat([WebchatFixture.channel(ch, "upload_max_bytes: 1KB")], helpdesk: helpdesk) { d in
                let v = WebchatVisitor.connect(d, ch)
                let token = try #require(try await v.hello()?["token"]?.stringValue)
                let url = d.publicBase + "/webchat/\(ch)/upload"
                let auth = ["authorization": "Bearer \(token)"]
                let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 7, count: 100)
                #expect(try await http("POST", url, body: png, headers: ["content-type": "image/png"]).status == 401)
                #expect(try await http("POST", url, body: Array("<script>".utf8), headers: auth.merging(["content-type": "text/html"]) { a, _ in a }).status == 415)
                #expect(try await http("POST", url, body: Array("<html>".utf8), headers: auth.merging(["content-type": "image/png"]) { a, _ in a }).status == 415)
                #expect(try await http("POST", url, body: png + Array(repeating: 0, count: 1024), headers: auth.merging(["content-type": "image/png"]) { a, _ in a }).status == 413)
                let ok = try await http("POST", url, body: png, headers: auth.merging(["content-type": "image/png", "x-filename": "photo.png"]) { a, _ in a })
                #expect(ok.status == 200)
                let mediaID = try #require(ok.json?["media_id"]?.stringValue)
                #expect(ok.json?["url"]?.stringValue?.hasPrefix("/media/\(mediaID)?exp=") == true, "a link relative to the daemon")
                v.send(#"{"type":"message","client_id":"img","parts":[{"type":"media","media_id":"\#(mediaID)"}]}"#)
                try await v.waitFor("ack") { $0["type"]?.stringValue == "ack" }
                try await eventually("media message") { helpdesk.events.contains { $0.type == "switchboard.message.received" } }
                let part = try #require(helpdesk.events.first { $0.type == "switchboard.message.received" }?.data?["parts"]?.arrayValue?.first)
                #expect(part["type"]?.stringValue == "media")
                #expect(part["kind"]?.stringValue == "image")
                #expect(part["media_id"]?.stringValue == mediaID)
                #expect(part["mime_type"]?.stringValue == "image/png")
                #expect(part["filename"]?.stringValue == "photo.png")
                // Served back with nosniff and a sandbox; an image shows inline.
                let link = try #require(ok.json?["url"]?.stringValue)
                let served = try await http("GET", d.publicBase + link)
                #expect(served.status == 200 && served.headers["x-content-type-options"] == "nosniff")
                #expect(served.headers["content-security-policy"]?.contains("sandbox") == true && served.headers["content-disposition"] == nil)
                // A PDF is a download, under its real name (the widget percent-encodes it).
                let pdf = try await http("POST", url, body: Array("%PDF-1.4 x".utf8), headers: auth.merging([
                    "content-type": "application/pdf", "x-filename": "Rechnung%20M%C3%A4rz.pdf"]) { a, _ in a })
                #expect(pdf.status == 200)
                let pdfServed = try await http("GET", d.publicBase + (try #require(pdf.json?["url"]?.stringValue)))
                #expect(pdfServed.headers["content-disposition"] == "attachment; filename=\"Rechnung M_rz.pdf\"; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf")
                await v.close()
            }
        }
        // Types a browser would run can't be configured for uploads.
        let yaml = "instance: t\nserver: { listen: \"127.0.0.1:0\" }\n"
            + #"channels: [ { id: site, type: webchat, allowed_origins: ["https://shop.example"], upload_types: ["image/png", "image/svg+xml"] } ]"#
        let result = Daemon.validate(text: yaml, registry: WebchatFixture.registry(), environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"), logger: testLogger)
        guard case .failure(let problems) = result else { Issue.record("expected a problem"); return }
        #expect(problems.problems.contains { $0.contains("upload_types") && $0.contains("image/svg+xml") }, "\(problems.problems)")
    }

    @Test func stoppingTheDaemonClosesOpenWidgetsAtOnce() async throws {
        let ch = uniqueID("site")
        let d = try await TestDaemon.start("channels: [ \(WebchatFixture.channel(ch)) ]", registry: WebchatFixture.registry())
        let v = WebchatVisitor.connect(d, ch)
        #expect(try await v.hello() != nil)
        let started = ContinuousClock.now
        await d.stop()
        // Without closing them, open sockets would hold the shutdown for server.shutdown_grace
        // (20 s); a loaded test machine can take several seconds for the rest of the shutdown.
        #expect(ContinuousClock.now - started < .seconds(15))
        try await eventually("socket closed") { v.isClosed }
        await v.close()
    }

    @Test func sampleYAMLValidates() throws {
        let dir = TempDir()
        defer { dir.remove() }
        try "a-long-enough-identity-secret-0123".write(toFile: dir.file("webchat-identity-secret"), atomically: true, encoding: .utf8)
        let sample = try String(contentsOfFile: WebchatBrowserTests.root.appendingPathComponent("adapters/webchat/sample.yaml").path, encoding: .utf8)
        let yaml = "instance: t\nserver: { listen: \"127.0.0.1:0\" }\napi: { listen: \"127.0.0.1:0\", tokens: [ { name: a, token: \"0123456789abcdef0123\" } ] }\n" + sample
        let result = Daemon.validate(text: yaml, registry: WebchatFixture.registry(), environment: ConfigEnvironment(variables: [:], baseDirectory: dir.path), logger: testLogger)
        switch result {
        case .success(let (config, adapters)):
            let adapter = try #require(adapters["site"] as? WebchatChannelAdapter)
            #expect(config.channels.count == 1)
            #expect(adapter.settings.prechat == [PrechatField(name: "name", required: true), PrechatField(name: "email", required: false)])
            #expect(adapter.settings.hours?.timeZone.identifier == "Asia/Seoul")
            #expect(adapter.settings.hours?.days[6].isEmpty == true)
            #expect(adapter.settings.uploadMaxBytes == 5_000_000)
            #expect(adapter.secret != nil && "\(adapter.secret!)" == "<redacted>")
        case .failure(let p):
            Issue.record("sample.yaml does not validate:\n\(p.problems.joined(separator: "\n"))")
        }
    }

    @Test func configProblemsNameTheKey() throws {
        let bad = """
            channels:
              - { id: site, type: webchat, allowed_origins: ["shop.example.com/"], color: "red", position: top,
                  require_identity: true, business_hours: { time_zone: "Mars/Olympus", mon: "9-5" }, bogus: 1 }
            """
        let yaml = "instance: t\nserver: { listen: \"127.0.0.1:0\" }\napi: { listen: \"127.0.0.1:0\", tokens: [ { name: a, token: \"0123456789abcdef0123\" } ] }\n" + bad
        let result = Daemon.validate(text: yaml, registry: WebchatFixture.registry(), environment: ConfigEnvironment(variables: [:], baseDirectory: "/tmp"), logger: testLogger)
        guard case .failure(let problems) = result else { Issue.record("expected problems"); return }
        let text = problems.problems.joined(separator: "\n")
        #expect(text.contains("allowed_origins"))
        #expect(text.contains("color"))
        #expect(text.contains("position"))
        #expect(text.contains("require_identity"))
        #expect(text.contains("business_hours.time_zone") || text.contains("time_zone"))
        #expect(text.contains("bogus"))
    }
}
