import Testing
@testable import SwitchboardSystemd

@Suite struct HeapTuningTests {
    /// The daemon finds glibc's `mallopt` (not in Swift's Glibc module) and glibc takes the value.
    @Test(.enabled(if: isGlibc)) func theTrimThresholdIsApplied() {
        #expect(HeapTuning.keepFreeHeapTop(upTo: 8 << 20))
    }
}

#if canImport(Glibc)
let isGlibc = true
#else
let isGlibc = false
#endif
