import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import SwitchboardStore

/// Keeps the database from growing with traffic for ever: once a minute after start, then
/// every hour, removes events older than `storage.event_retention` that every helpdesk is past,
/// and dedupe keys older than `storage.dedupe_retention` (`Store.prune`). A reload sets new
/// values (`setRetention`) for the next run.
public final class StoreRetention: Service, Sendable {
    let store: Store
    /// Seconds; 0 keeps them for ever.
    private let settings = Mutex<(events: Double, dedupe: Double)>((0, 0))
    let firstRun: Duration
    let interval: Duration
    let logger: Logger

    public init(store: Store, firstRun: Duration = .seconds(60), interval: Duration = .seconds(3600), logger: Logger) {
        self.store = store; self.firstRun = firstRun; self.interval = interval; self.logger = logger
    }

    public func setRetention(events: Double, dedupe: Double) { settings.withLock { $0 = (events, dedupe) } }

    public func run() async throws {
        var first = true
        while true {
            let wait = first ? firstRun : interval
            first = false
            // An hour's sleep must not hold up a shutdown.
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) } } catch { return }
            await pruneOnce()
        }
    }

    /// One run: what was removed, or nil when the store refused (logged; the next run tries again).
    @discardableResult
    public func pruneOnce(now: Int64 = Store.nowMS()) async -> Store.Pruned? {
        let (events, dedupe) = settings.withLock { $0 }
        guard events > 0 || dedupe > 0 else { return Store.Pruned() }
        do {
            let pruned = try await store.prune(eventsBefore: events > 0 ? now - Int64(events * 1000) : nil,
                                               dedupeBefore: dedupe > 0 ? now - Int64(dedupe * 1000) : nil)
            if pruned.events > 0 || pruned.dedupeKeys > 0 {
                logger.info("pruned the store", metadata: ["events": "\(pruned.events)", "dedupe_keys": "\(pruned.dedupeKeys)"])
            }
            return pruned
        } catch {
            logger.warning("cannot prune the store; trying again at the next run", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
