import Testing
@testable import SwitchboardCore

@Suite("Header text helpers")
struct TextTests {
    @Test func trimmingSpacesAndTabs() {
        #expect("  sha256=ab \t".trimmingSpacesAndTabs == "sha256=ab")
        #expect("x".trimmingSpacesAndTabs == "x")
        #expect(" \t ".trimmingSpacesAndTabs == "")
        #expect("".trimmingSpacesAndTabs == "")
        #expect(" a b ".trimmingSpacesAndTabs == "a b", "inner blanks stay")
        #expect("\u{00A0}é ".trimmingSpacesAndTabs == "\u{00A0}é", "only ASCII space and tab are blanks here")
        let sub = "[ v ]".dropFirst().dropLast()
        #expect(sub.trimmingSpacesAndTabs == "v")
    }
}
