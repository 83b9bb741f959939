import Foundation
import SwitchboardCore
import SwitchboardStore

/// The events a sink's worker has read from the event log past the sink's position and not yet
/// settled, with the bookkeeping that keeps each conversation in order without writing
/// anything per event.
///
/// An event is settled when it was delivered, when the sink isn't subscribed to its type, or
/// when it has a committed outbox row (waiting for a retry, parked, or held behind another
/// event of its conversation that has one). The position moves up to the first unsettled
/// event; after a crash everything past it is read and delivered again, with the same ids.
struct LogWindow {
    enum State: Equatable {
        /// Waiting for an earlier event of its conversation that is under way, or for a slot.
        case queued
        case inFlight
        /// Goes to the outbox (`Entry.row`) with the next write.
        case deferred
        /// Its outbox row is being written.
        case writing
        case settled
    }

    struct Entry {
        var item: OutboxItem
        var state: State
        var row: Store.Deferred.Kind? = nil
    }

    /// How an in-flight event's attempt ended, as the worker judged it.
    enum Outcome: Equatable {
        case delivered
        case retry(at: Int64, error: String)
        /// No retry left: parked in the outbox; it no longer holds back its conversation.
        case parked(error: String)
        /// 410: the sink is being disabled; the event waits in the outbox for recovery.
        case refused
    }

    private var entries: [Int64: Entry] = [:]
    /// Sequence numbers in log order; `order[start...]` are the entries still held.
    private var order: [Int64] = []
    private var start = 0
    /// `order[start..<prefixEnd]` are settled or have their row written or about to be: the
    /// position can move to the last of them. Only grows (those states never go back).
    private var prefixEnd = 0
    /// Per conversation, its queued and in-flight events in order. The first is in flight or
    /// in `ready`; the others wait for it.
    private var lines: [String: [Int64]] = [:]
    /// Events free to go, in the order they became free.
    private var ready: [Int64] = []
    private var readyStart = 0
    private var deferredCount = 0
    private var writingCount = 0
    /// The position a write under way will record.
    private var writingPosition: Int64? = nil

    /// The last event read from the log.
    private(set) var readThrough: Int64
    /// The position last committed.
    private(set) var position: Int64
    /// Conversations with events waiting in the outbox: their new events go there too, behind
    /// those (`refreshBlocked`).
    private(set) var blocked: Set<String> = []
    let wants: @Sendable (String) -> Bool

    init(position: Int64, wants: @escaping @Sendable (String) -> Bool) {
        self.position = position
        self.readThrough = position
        self.wants = wants
    }

    /// Events held (read and not yet behind the position).
    var count: Int { order.count - start }
    var readyCount: Int { ready.count - readyStart }
    /// Whether a write would change anything: rows to write, or a position to move.
    var needsWrite: Bool {
        mutating get {
            advancePrefix()
            return deferredCount > 0 || (prefixEnd > start && order[prefixEnd - 1] > position)
        }
    }

    /// Whether a write would store outbox rows (not only move the position).
    var hasRowsToWrite: Bool { deferredCount > 0 }

    /// Takes in events read from the log after `readThrough`, in log order.
    mutating func read(_ items: [OutboxItem]) {
        for item in items where item.eventSeq > readThrough {
            let seq = item.eventSeq
            let k = item.conversationID
            readThrough = seq
            order.append(seq)
            if !wants(item.eventType) {
                entries[seq] = Entry(item: Self.withoutBody(item), state: .settled)
            } else if lines[k] != nil {
                // Behind the conversation's events already here, whatever the outbox holds: a
                // row that appears there meanwhile (a parked event recovered) no longer holds
                // back its conversation anyway.
                entries[seq] = Entry(item: item, state: .queued)
                lines[k]!.append(seq)
            } else if blocked.contains(k) {
                entries[seq] = Entry(item: item, state: .deferred, row: .held)
                deferredCount += 1
            } else {
                entries[seq] = Entry(item: item, state: .queued)
                lines[k] = [seq]
                ready.append(seq)
            }
        }
    }

    /// Up to `n` events free to go, marked in flight.
    mutating func take(_ n: Int) -> [OutboxItem] {
        var out: [OutboxItem] = []
        while out.count < n, readyStart < ready.count {
            let seq = ready[readyStart]
            readyStart += 1
            // Spilled to the outbox while it waited here.
            guard entries[seq]?.state == .queued else { continue }
            entries[seq]!.state = .inFlight
            out.append(entries[seq]!.item)
        }
        if readyStart > 256 {
            ready.removeFirst(readyStart)
            readyStart = 0
        }
        return out
    }

    /// Records how an in-flight event's attempt ended and frees what waited for it.
    mutating func finished(_ seq: Int64, _ outcome: Outcome) {
        guard var entry = entries[seq], entry.state == .inFlight else { return }
        let k = entry.item.conversationID
        switch outcome {
        case .delivered:
            entry.state = .settled
            entry.item = Self.withoutBody(entry.item)
        case .retry(let at, let error): entry.row = .retry(at: at, error: error)
        case .parked(let error): entry.row = .failed(error: error)
        case .refused: entry.row = .held
        }
        if entry.state != .settled {
            entry.state = .deferred
            deferredCount += 1
        }
        entries[seq] = entry
        var line = lines[k] ?? []
        if line.first == seq { line.removeFirst() }
        switch outcome {
        case .delivered, .parked:
            // The conversation's next event may go.
            if let next = line.first {
                lines[k] = line
                ready.append(next)
            } else {
                lines[k] = nil
            }
        case .retry, .refused:
            // The conversation now waits in the outbox: what was queued behind this event goes
            // there too, behind it, and so does whatever of it is read later.
            blocked.insert(k)
            for s in line {
                entries[s]!.state = .deferred
                entries[s]!.row = .held
                deferredCount += 1
            }
            lines[k] = nil
        }
    }

    /// Replaces the blocked conversations with what the outbox holds plus those of rows not
    /// written yet or being written (the read may or may not have seen them).
    mutating func refreshBlocked(_ inOutbox: Set<String>) {
        var b = inOutbox
        if deferredCount > 0 || writingCount > 0 {
            for i in start..<order.count {
                let e = entries[order[i]]!
                if e.state == .deferred || e.state == .writing, let row = e.row, Self.holdsBack(row) { b.insert(e.item.conversationID) }
            }
        }
        blocked = b
    }

    /// A settled event is kept only for the position's sake: its body can go.
    static func withoutBody(_ item: OutboxItem) -> OutboxItem {
        var item = item
        item.body = Data()
        return item
    }

    static func holdsBack(_ row: Store.Deferred.Kind) -> Bool {
        if case .failed = row { return false }
        return true
    }

    /// Starts a write: the outbox rows to insert and the position to record (nil when it
    /// stays). Call `written` or `writeFailed` when it ends.
    mutating func beginWrite() -> (rows: [Store.Deferred], position: Int64?) {
        advancePrefix()
        var rows: [Store.Deferred] = []
        if deferredCount > 0 {
            for i in start..<order.count where entries[order[i]]!.state == .deferred {
                let seq = order[i]
                entries[seq]!.state = .writing
                rows.append(Store.Deferred(item: entries[seq]!.item, kind: entries[seq]!.row!))
            }
            writingCount += deferredCount
            deferredCount = 0
        }
        writingPosition = prefixEnd > start && order[prefixEnd - 1] > position ? order[prefixEnd - 1] : nil
        return (rows, writingPosition)
    }

    /// The write is committed: its rows settle their events, and events up to the new
    /// position are let go.
    mutating func written() {
        if writingCount > 0 {
            for i in start..<order.count where entries[order[i]]!.state == .writing {
                entries[order[i]]!.state = .settled
                entries[order[i]]!.item = Self.withoutBody(entries[order[i]]!.item)
            }
            writingCount = 0
        }
        if let p = writingPosition {
            position = p
            while start < order.count && order[start] <= p {
                entries[order[start]] = nil
                start += 1
            }
            prefixEnd = max(prefixEnd, start)
            if start > 1024 {
                order.removeFirst(start)
                prefixEnd -= start
                start = 0
            }
        }
        writingPosition = nil
    }

    /// The write failed: its rows go with the next one, and the position stays.
    mutating func writeFailed() {
        for i in start..<order.count where entries[order[i]]!.state == .writing {
            entries[order[i]]!.state = .deferred
            deferredCount += 1
        }
        writingCount = 0
        writingPosition = nil
    }

    private mutating func advancePrefix() {
        if prefixEnd < start { prefixEnd = start }
        while prefixEnd < order.count {
            switch entries[order[prefixEnd]]!.state {
            case .settled, .deferred, .writing: prefixEnd += 1
            case .queued, .inFlight: return
            }
        }
    }

    /// Makes room when the window is full because its oldest events wait for something slow
    /// (an answer that takes until the timeout, a conversation with a long run of events): the
    /// conversations of the unsettled events in its older half move to the outbox, so the
    /// position can pass them and the other conversations keep going. Events of theirs that are
    /// in flight get outbox rows too; their seqs are returned, and their outcomes are then
    /// recorded as outbox rows' (the caller keeps them out of outbox reads meanwhile).
    mutating func spill() -> [Int64] {
        var inFlight: [Int64] = []
        let end = start + max(1, count / 2)
        var i = start
        while i < end {
            let seq = order[i]
            i += 1
            let entry = entries[seq]!
            guard entry.state == .queued || entry.state == .inFlight else { continue }
            let k = entry.item.conversationID
            for s in lines[k] ?? [seq] {
                if entries[s]!.state == .inFlight { inFlight.append(s) }
                entries[s]!.state = .deferred
                entries[s]!.row = .held
                deferredCount += 1
            }
            lines[k] = nil
            blocked.insert(k)
        }
        return inFlight
    }

    /// The state of one event (tests).
    func state(of seq: Int64) -> State? { entries[seq]?.state }
}
