import Foundation

/// Runs a fuzz target's function over files, the way libFuzzer runs a corpus: each argument is a
/// file (one input) or a directory (each regular file in it, sorted, is one input). Used by the
/// replay build of the fuzz targets, so a crash file or the seed corpus can be re-run under a
/// debugger or in CI without the fuzzer runtime.
public enum FuzzReplay {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Returns how many inputs ran.
    public static func run(arguments: [String], _ body: ([UInt8]) -> Void) throws -> Int {
        guard !arguments.isEmpty else { throw Failure(description: "usage: <file or directory>…") }
        var count = 0
        let files = FileManager.default
        for path in arguments {
            var isDirectory: ObjCBool = false
            guard files.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw Failure(description: "\(path): no such file or directory")
            }
            let inputs = isDirectory.boolValue
                ? try files.contentsOfDirectory(atPath: path).sorted().map { path + "/" + $0 }
                : [path]
            for input in inputs {
                guard let data = files.contents(atPath: input) else { continue }
                body(Array(data))
                count += 1
            }
        }
        return count
    }
}

/// The C entry point libFuzzer calls with each input.
public typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

#if FUZZING
// libFuzzer's driver, for programs that keep their own `main` (SwiftPM gives every executable
// target one, so libFuzzer's own `main` is never linked in).
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: FuzzCallback
) -> CInt
#endif

public enum FuzzMain {
    /// In the fuzz build (`-sanitize=fuzzer -DFUZZING`) hands the command line to libFuzzer;
    /// otherwise replays the files and directories named on it through `body`.
    public static func run(name: String, callback: FuzzCallback, body: ([UInt8]) -> Void) -> Never {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
        #else
        do {
            let count = try FuzzReplay.run(arguments: Array(CommandLine.arguments.dropFirst()), body)
            print("\(name): replayed \(count) inputs")
            exit(0)
        } catch {
            FileHandle.standardError.write(Data("\(name): \(error)\n".utf8))
            exit(2)
        }
        #endif
    }
}
