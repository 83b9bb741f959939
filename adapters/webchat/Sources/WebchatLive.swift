import Foundation
import Logging
import Synchronization
import SwitchboardCore
import SwitchboardRuntime

/// The open WebSockets, by visitor. Frames to one connection go through its own queue, in order;
/// while a connection is replaying its backlog, live frames wait and are sent after it (only those
/// newer than the replay), so a reconnecting client sees every message once and in order.
final class LiveHub: Sendable {
    final class Connection: Sendable {
        let id: Int
        let outgoing: AsyncStream<String>.Continuation
        /// nil once live; while replaying, the frames that arrived meanwhile.
        let pending = Mutex<[(seq: Int64?, frame: String)]?>([])
        init(id: Int, outgoing: AsyncStream<String>.Continuation) { self.id = id; self.outgoing = outgoing }

        func deliver(seq: Int64?, frame: String) {
            pending.withLock { p in
                if p != nil { p!.append((seq, frame)) } else { outgoing.yield(frame) }
            }
        }

        /// Ends the replay: frames queued meanwhile follow, except those the replay already sent.
        func goLive(replayedUpTo: Int64) {
            pending.withLock { p in
                for item in p ?? [] where item.seq == nil || item.seq! > replayedUpTo { outgoing.yield(item.frame) }
                p = nil
            }
        }
    }

    private let state = Mutex<(next: Int, byPeer: [String: [Int: Connection]])>((1, [:]))

    func add(peer: String, outgoing: AsyncStream<String>.Continuation) -> Connection {
        state.withLock { s in
            let c = Connection(id: s.next, outgoing: outgoing)
            s.next += 1
            s.byPeer[peer, default: [:]][c.id] = c
            return c
        }
    }

    func remove(peer: String, _ c: Connection) {
        state.withLock { s in
            s.byPeer[peer]?[c.id] = nil
            if s.byPeer[peer]?.isEmpty == true { s.byPeer[peer] = nil }
        }
    }

    func push(peer: String, seq: Int64?, frame: String, except: Int? = nil) {
        let conns = state.withLock { Array(($0.byPeer[peer] ?? [:]).values) }
        for c in conns where c.id != except { c.deliver(seq: seq, frame: frame) }
    }

    /// Ends every connection (each writer finishes, so each socket closes and its widget
    /// reconnects — to the channel's new adapter after a reload).
    func closeAll() {
        let conns = state.withLock { s -> [Connection] in
            defer { s.byPeer = [:] }
            return s.byPeer.values.flatMap { $0.values }
        }
        for c in conns { c.outgoing.finish() }
    }

    func isOnline(_ peer: String) -> Bool { state.withLock { $0.byPeer[peer] != nil } }
    var connectionCount: Int { state.withLock { $0.byPeer.values.reduce(0) { $0 + $1.count } } }
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
