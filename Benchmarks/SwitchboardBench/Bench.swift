import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// Load generators and receivers for `make bench` (see Benchmarks/README.md).
@main
struct SwitchboardBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "SwitchboardBench",
        abstract: "Benchmark tools for Switchboard: a bare baseline server, a helpdesk receiver and a load generator.",
        subcommands: [BareServer.self, Helpdesk.self, Load.self, FreePort.self, MIMEParse.self])
}

/// Prints a TCP port on 127.0.0.1 that was free a moment ago (for the daemon's config, which
/// needs a concrete port; the bench's own servers take `--port 0` and report what they got).
struct FreePort: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "free-port", abstract: "Print a free TCP port on 127.0.0.1.")

    func run() async throws {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        say("\(port)")
    }
}
