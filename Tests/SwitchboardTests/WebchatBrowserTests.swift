import Foundation
import Testing
@testable import SwitchboardCore
@testable import SwitchboardRuntime
@testable import WebchatAdapter

/// The widget in real headless Chromium (Debian's `chromium` + `chromium-driver`, Python
/// selenium; `make test` installs them). The browser side is adapters/webchat/Tests/browser_check.py;
/// this test runs it against a real daemon and checks what reached the helpdesk.
@Suite(.serialized) struct WebchatBrowserTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let available = FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")

    @Test(.enabled(if: available, "needs chromium and chromium-driver (make deps)"))
    func demoPageWidgetInChromium() async throws {
        try await withHelpdesk { helpdesk in
            let ch = uniqueID("site")
            let channel = WebchatFixture.channel(ch, #"demo_page: true, greeting: "Hi there!", prechat: { fields: [ { name: name, required: true }, { name: email } ] }"#)
            try await withWebchat([channel], helpdesk: helpdesk) { d in
                let work = d.dir.file("browser")
                try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
                let shot = d.dir.file("widget.png")
                let script = Self.root.appendingPathComponent("adapters/webchat/Tests/browser_check.py").path
                let (status, output) = try await Spawned.run("python3", [script, d.publicBase, d.apiBase, TestDaemon.token, ch, shot, work],
                                                             timeout: 150)
                #expect(status == 0, "browser_check.py:\n\(output)")
                let line = try #require(output.split(separator: "\n").last { $0.hasPrefix("RESULT ") }, "no RESULT line:\n\(output)")
                let result = try JSONValue.parse(Array(line.dropFirst(7).utf8))
                #expect(result["input_font_px"]?.stringValue == "16px", "iOS must not zoom into the input")
                #expect(result["log_role"]?.stringValue == "log")
                #expect(result["log_live"]?.stringValue == "polite")
                #expect(result["xss_literal"]?.boolValue == true)
                #expect(result["xss_img_elements"]?.intValue == 0)
                #expect(result["image_width"]?.intValue == 8)
                #expect(result["history_same"]?.boolValue == true)
                #expect(result["messages_after_reload"]?.intValue == result["messages_before_reload"]?.intValue)
                #expect(result["console_errors"]?.arrayValue?.isEmpty == true, "\(result["console_errors"] ?? .null)")
                #expect(result["card_titles"]?.arrayValue == [.string("Blue mug"), .string("Red mug")])
                #expect(result["badge"]?.stringValue == "1")
                #expect(result["launcher_label"]?.stringValue == "Open chat (1 unread)")

                // What the helpdesk saw.
                let received = helpdesk.events.filter { $0.type == "switchboard.message.received" }.compactMap(\.data)
                #expect(received.first?["text_fallback"]?.stringValue == "Hello from Chromium")
                #expect(received.first?["channel_data"]?["page_url"]?.stringValue == d.publicBase + "/")
                #expect(received.first?["channel_data"]?["user_agent"]?.stringValue?.contains("Chrome") == true)
                let interaction = received.compactMap { $0["parts"]?.arrayValue?.first }.first { $0["type"]?.stringValue == "interaction" }
                #expect(interaction?["payload"]?.stringValue == "YES")
                #expect(interaction?["kind"]?.stringValue == "quick_reply")
                let listReply = received.compactMap { $0["parts"]?.arrayValue?.first }.first { $0["kind"]?.stringValue == "list_reply" }
                #expect(listReply?["payload"]?.stringValue == "T17")
                #expect(received.contains { $0["text_fallback"]?.stringValue == "<img src=x onerror=alert(1)>" })
                let media = received.compactMap { $0["parts"]?.arrayValue?.first }.first { $0["type"]?.stringValue == "media" }
                #expect(media?["mime_type"]?.stringValue == "image/png")
                #expect(helpdesk.events.contains { $0.type == "switchboard.identity.updated" && $0.data?["display_name"]?.stringValue == "Browser Kim" })
                #expect(helpdesk.events.contains { $0.type == "switchboard.message.status" && $0.data?["status"]?.stringValue == "read" })

                // Keep the screenshot for the adapter's README when asked to.
                if let keep = ProcessInfo.processInfo.environment["WEBCHAT_SCREENSHOT"] {
                    _ = try? FileManager.default.removeItem(atPath: keep)
                    try FileManager.default.copyItem(atPath: shot, toPath: keep)
                }
            }
        }
    }
}
