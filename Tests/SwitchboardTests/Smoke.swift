import Testing
@Test func placeholderUntilRealTests() { #expect(Bool(true)) }
