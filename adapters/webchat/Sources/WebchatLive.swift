import Foundation
import Logging
import Synchronization
import SwitchboardCore
import SwitchboardRuntime

/// The channel's open WebSockets, by visitor. A connection's frames are written in the order
/// they are sent; while it replays its backlog, frames pushed to its visitor wait and follow the
/// replay (only those newer than it), so a reconnecting client sees every message once and in
/// order. Sending never waits (`LiveSocket.send` queues on the socket's event loop), so pushing a
/// reply to a slow visitor doesn't hold up the send worker.
final class LiveHub: Sendable {
    final class Connection: Sendable {
        let id: Int
        let socket: LiveSocket
        /// When the socket was accepted (the hello deadline counts from here).
        let openedAt = ContinuousClock.now
        /// nil once live; while replaying, the frames pushed meanwhile.
        private let pending = Mutex<[(seq: Int64?, frame: String)]?>([])
        init(id: Int, socket: LiveSocket) { self.id = id; self.socket = socket }

        /// A frame of this connection's own (the answer to what the visitor sent): written now.
        func send(_ frame: String) { socket.send(frame) }

        /// A frame for all of the visitor's connections: waits while the backlog replays.
        func deliver(seq: Int64?, frame: String) {
            pending.withLock { p in
                if p != nil { p!.append((seq, frame)) } else { socket.send(frame) }
            }
        }

        /// Ends the replay: frames pushed meanwhile follow, except those the replay already sent.
        func goLive(replayedUpTo: Int64) {
            pending.withLock { p in
                for item in p ?? [] where item.seq == nil || item.seq! > replayedUpTo { socket.send(item.frame) }
                p = nil
            }
        }
    }

    private struct State {
        var next = 1
        /// Every open socket, from the moment it is accepted (`closeAll` must reach those that
        /// haven't said hello yet too).
        var all: [Int: Connection] = [:]
        /// The sockets of each visitor, after hello.
        var byPeer: [String: [Int: Connection]] = [:]
        /// Sockets that have said hello (the others are closed after the hello deadline).
        var greeted: Set<Int> = []
        /// Set by `closeAll`: the channel is going away, so a socket accepted after it closes at once.
        var closed = false
    }
    private let state = Mutex(State())

    /// Registers a socket the moment it is accepted.
    func open(_ socket: LiveSocket) -> Connection {
        let (c, closed) = state.withLock { s -> (Connection, Bool) in
            let c = Connection(id: s.next, socket: socket)
            s.next += 1
            if !s.closed { s.all[c.id] = c }
            return (c, s.closed)
        }
        if closed { socket.close() }
        return c
    }

    /// Makes the connection one of `peer`'s: pushes to the visitor reach it from now on (held
    /// back until `goLive`).
    func attach(_ c: Connection, peer: String) {
        state.withLock { s in
            guard s.all[c.id] != nil else { return }
            s.byPeer[peer, default: [:]][c.id] = c
            s.greeted.insert(c.id)
        }
    }

    func remove(_ c: Connection, peer: String?) {
        state.withLock { s in
            s.all[c.id] = nil
            s.greeted.remove(c.id)
            guard let peer else { return }
            s.byPeer[peer]?[c.id] = nil
            if s.byPeer[peer]?.isEmpty == true { s.byPeer[peer] = nil }
        }
    }

    func push(peer: String, seq: Int64?, frame: String, except: Int? = nil) {
        let conns = state.withLock { Array(($0.byPeer[peer] ?? [:]).values) }
        for c in conns where c.id != except { c.deliver(seq: seq, frame: frame) }
    }

    /// Closes every socket (each widget reconnects — to the channel's new adapter after a
    /// reload); sockets accepted from now on are closed at once.
    func closeAll() {
        let conns = state.withLock { s -> [Connection] in
            defer { s.all = [:]; s.byPeer = [:]; s.closed = true }
            return Array(s.all.values)
        }
        for c in conns { c.socket.close() }
    }

    /// The sockets open longer than `deadline` without a hello: a page that never speaks is
    /// not a visitor, and each open socket costs memory. Swept by the channel's run loop (one
    /// timer for all sockets, not one per socket).
    func silentSockets(olderThan deadline: Duration) -> [Connection] {
        let now = ContinuousClock.now
        return state.withLock { s in s.all.values.filter { !s.greeted.contains($0.id) && now - $0.openedAt > deadline } }
    }

    func isOnline(_ peer: String) -> Bool { state.withLock { $0.byPeer[peer] != nil } }
    var connectionCount: Int { state.withLock { $0.all.count } }
}

/// Token buckets: per visitor and per IP address for messages, per IP for new visitors.
final class RateLimits: Sendable {
    struct Bucket { var tokens: Double; var at: Double }
    let visitorPerMinute: Int, ipPerMinute: Int, newVisitorsPerHour: Int
    private let buckets = Mutex<[String: Bucket]>([:])

    init(visitorPerMinute: Int, ipPerMinute: Int, newVisitorsPerHour: Int) {
        self.visitorPerMinute = visitorPerMinute; self.ipPerMinute = ipPerMinute; self.newVisitorsPerHour = newVisitorsPerHour
    }

    /// Takes one token; nil when allowed, else the seconds until one is available.
    private func take(_ key: String, capacity: Int, per seconds: Double, now: Double) -> Double? {
        let rate = Double(capacity) / seconds
        return buckets.withLock { b in
            if b.count > 50_000 { b = b.filter { now - $0.value.at < seconds } }
            var bucket = b[key] ?? Bucket(tokens: Double(capacity), at: now)
            bucket.tokens = min(Double(capacity), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens >= 1 {
                bucket.tokens -= 1; b[key] = bucket; return nil
            }
            b[key] = bucket
            return (1 - bucket.tokens) / rate
        }
    }

    func message(peer: String, ip: String?, now: Double = Date().timeIntervalSince1970) -> Double? {
        if let wait = take("v:\(peer)", capacity: visitorPerMinute, per: 60, now: now) { return wait }
        if let ip, let wait = take("ip:\(ip)", capacity: ipPerMinute, per: 60, now: now) { return wait }
        return nil
    }

    func newVisitor(ip: String?, now: Double = Date().timeIntervalSince1970) -> Double? {
        guard let ip else { return nil }
        return take("nv:\(ip)", capacity: newVisitorsPerHour, per: 3600, now: now)
    }
}

/// Opening hours in a time zone: per weekday a list of `HH:MM-HH:MM` ranges.
public struct BusinessHours: Sendable, Hashable {
    public var timeZone: TimeZone
    /// Index 0 = Sunday … 6 = Saturday; minutes since midnight.
    public var days: [[ClosedRange<Int>]]
    public static let dayKeys = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public init(timeZone: TimeZone, days: [[ClosedRange<Int>]]) { self.timeZone = timeZone; self.days = days }

    static func read(_ node: ConfigNode) -> BusinessHours? {
        node.rejectUnknownKeys(["time_zone"] + dayKeys)
        let tzName = node.string("time_zone", required: true) ?? "UTC"
        guard let tz = TimeZone(identifier: tzName) else {
            node["time_zone"].problem("unknown time zone \"\(tzName)\" (use an IANA name like Asia/Seoul)")
            return nil
        }
        var days: [[ClosedRange<Int>]] = Array(repeating: [], count: 7)
        for (i, key) in dayKeys.enumerated() {
            guard let spec = node.string(key), spec.lowercased() != "closed" else { continue }
            for range in spec.split(separator: ",") {
                guard let r = parseRange(range.trimmingCharacters(in: .whitespaces)) else {
                    node[key].problem("expected ranges like \"09:00-18:00\" or \"09:00-12:00, 13:00-18:00\" or closed")
                    continue
                }
                days[i].append(r)
            }
        }
        return BusinessHours(timeZone: tz, days: days)
    }

    static func parseRange(_ s: String) -> ClosedRange<Int>? {
        let ends = s.split(separator: "-").map { $0.trimmingCharacters(in: .whitespaces) }
        guard ends.count == 2, let a = minutes(ends[0]), let b = minutes(ends[1]), a < b else { return nil }
        return a...(b - 1)
    }

    static func minutes(_ s: String) -> Int? {
        let hm = s.split(separator: ":")
        guard hm.count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0...24).contains(h), (0...59).contains(m), h * 60 + m <= 1440 else { return nil }
        return h * 60 + m
    }

    /// Whether the team is in at `date`, and when it next is when not.
    public func status(at date: Date) -> (open: Bool, nextOpen: Date?) {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = timeZone
        let comps = cal.dateComponents([.weekday, .hour, .minute], from: date)
        let weekday = (comps.weekday ?? 1) - 1
        let minute = (comps.hour ?? 0) * 60 + (comps.minute ?? 0)
        if days[weekday].contains(where: { $0.contains(minute) }) { return (true, nil) }
        let startOfDay = cal.startOfDay(for: date)
        for offset in 0...7 {
            let day = (weekday + offset) % 7
            for start in days[day].map(\.lowerBound).sorted() where offset > 0 || start > minute {
                guard let dayStart = cal.date(byAdding: .day, value: offset, to: startOfDay),
                      let at = cal.date(byAdding: .minute, value: start, to: dayStart) else { continue }
                return (false, at)
            }
        }
        return (false, nil)
    }
}

extension Date {
    var rfc3339: String { Timestamp(self).description }
}
