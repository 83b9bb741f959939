#if canImport(Glibc)
import Glibc
#endif

/// glibc's allocator tuned for a daemon that allocates and frees a little per event.
public enum HeapTuning {
    /// By default glibc gives a heap's free top back to the kernel once 128 KiB are free
    /// (`madvise(MADV_DONTNEED)`), and grows it again (`mprotect`) on the next burst. Per event
    /// that churn cost two system calls, fresh zeroed pages and, on every return, a TLB
    /// shootdown across cores. Keeping up to `bytes` free at each heap's top stops it; the
    /// memory stays reusable by the process. A no-op on other C libraries.
    ///
    /// Returns whether the setting was applied.
    @discardableResult
    public static func keepFreeHeapTop(upTo bytes: Int32) -> Bool {
        #if canImport(Glibc)
        // `mallopt` is declared in <malloc.h>, which Swift's Glibc module does not import.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let M_TRIM_THRESHOLD: Int32 = -1
        return mallopt(M_TRIM_THRESHOLD, bytes) == 1
        #else
        return false
        #endif
    }
}
