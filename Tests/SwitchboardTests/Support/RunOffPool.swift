import Foundation

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
