import Foundation

/// Runs a child process without blocking Swift's cooperative thread pool (two threads on a
/// two-core machine: a blocking wait there starves every other test running in parallel).
func runOffPool(_ process: Process) async throws -> (Int32, Data) {
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    return try await withCheckedThrowingContinuation { continuation in
        Thread {
            do {
                try process.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, data))
            } catch {
                continuation.resume(throwing: error)
            }
        }.start()
    }
}
