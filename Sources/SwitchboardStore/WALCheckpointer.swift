import Foundation
import GRDB
import Logging
import ServiceLifecycle
import Synchronization

/// Copies committed pages from the write-ahead log into the database file beside the writer.
///
/// SQLite checkpoints automatically inside the commit that makes the WAL cross a threshold, so
/// every so often one group of webhooks waits for thousands of page writes and an fsync of the
/// database file. This service does that work on its own connection instead, in PASSIVE mode
/// (it never waits for or blocks the writer or readers), whenever the WAL has grown past
/// `threshold` bytes. Hot pages written by many commits are copied once per checkpoint rather
/// than once per thousand pages of log.
public final class WALCheckpointer: Service, Sendable {
    let store: Store
    let connection: DatabaseQueue
    let threshold: Int
    let interval: Duration
    let logger: Logger
    private let done = Atomic<Int>(0)
    /// Checkpoints that found new frames and copied all of them.
    public var completed: Int { done.load(ordering: .relaxed) }

    public init(store: Store, threshold: Int = 4 * 1024 * 1024, interval: Duration = .milliseconds(250), logger: Logger) throws {
        self.store = store
        var config = Configuration()
        config.busyMode = .timeout(1)
        // A checkpoint must not steal the writer's lock; PASSIVE mode never takes it.
        self.connection = try DatabaseQueue(path: store.path, configuration: config)
        self.threshold = threshold
        self.interval = interval
        self.logger = logger
    }

    var walSize: Int {
        ((try? FileManager.default.attributesOfItem(atPath: store.path + "-wal"))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// One passive checkpoint: how many frames the log has and how many are now in the database.
    @discardableResult
    public func checkpoint() async throws -> (walFrames: Int, checkpointed: Int) {
        let r = try await connection.writeWithoutTransaction { db in try db.checkpoint(.passive) }
        return (r.walFrameCount, r.checkpointedFrameCount)
    }

    public func run() async throws {
        var lastFrames = -1
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: interval)
            // The WAL file keeps its size after SQLite rewinds it; checkpoint only when there is
            // new log to copy (the frame count changed) and the file is large enough to matter.
            guard walSize >= threshold else { continue }
            do {
                let r = try await checkpoint()
                if r.walFrames == lastFrames && r.walFrames == r.checkpointed { continue }
                lastFrames = r.walFrames
                if r.walFrames == r.checkpointed { done.add(1, ordering: .relaxed) }
            } catch let e as DatabaseError where e.resultCode == .SQLITE_BUSY || e.resultCode == .SQLITE_LOCKED {
                // Another checkpoint (the writer's safety net) is running: try again next round.
                continue
            } catch {
                logger.warning("WAL checkpoint failed; SQLite will checkpoint in the writer instead", metadata: ["error": "\(error)"])
            }
        }
        try? await connection.close()
    }
}
