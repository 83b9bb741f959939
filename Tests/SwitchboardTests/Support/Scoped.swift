import Foundation
import SwitchboardRuntime

/// Runs `body` with a daemon and always stops it (and removes its temp dir) afterwards.
func withDaemon<T: Sendable>(_ yaml: String, registry: AdapterRegistry = TestRegistry.make(), heartbeat: String = "15s",
                             dir: TempDir? = nil, publicURL: String = "http://127.0.0.1:1",
                             _ body: (TestDaemon) async throws -> T) async throws -> T {
    let d = try await TestDaemon.start(yaml, registry: registry, heartbeat: heartbeat, dir: dir, publicURL: publicURL)
    do {
        let r = try await body(d)
        await d.stop()
        return r
    } catch {
        await d.stop()
        throw error
    }
}

/// Runs `body` with a helpdesk receiver and always stops it.
func withHelpdesk<T: Sendable>(socketPath: String? = nil, _ body: (TestHelpdesk) async throws -> T) async throws -> T {
    let h = try await TestHelpdesk.start(socketPath: socketPath)
    do {
        let r = try await body(h)
        await h.stop()
        return r
    } catch {
        await h.stop()
        throw error
    }
}
