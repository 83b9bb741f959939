import Foundation

/// When to try again after a failed attempt. The default follows the Standard Webhooks example
/// schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h: about three days), because
/// helpdesks go down for maintenance and must not lose what arrived meanwhile.
public struct RetrySchedule: Sendable, Hashable {
    /// Delays in seconds after attempt 1, 2, …; when they run out, the event is parked as failed.
    public var delays: [Double]
    /// ± this fraction of random spread, so a recovering receiver isn't hit by every sender at once.
    public var jitter: Double

    public init(delays: [Double], jitter: Double = 0.2) { self.delays = delays; self.jitter = jitter }

    public static let standard = RetrySchedule(delays: [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400])

    /// Outbound sends to channels: faster, shorter (a customer is waiting), about 2 hours.
    public static let outbound = RetrySchedule(delays: [2, 10, 30, 60, 300, 600, 1800, 3600])

    /// The delay before the next attempt after `attempts` failed ones, or nil to give up.
    /// A receiver's `Retry-After` wins over the schedule (capped at a day). `elapsed`: seconds
    /// since the item was queued. A short `Retry-After` must not use the schedule up in a
    /// moment (a helpdesk in maintenance answering `503 Retry-After: 1` for ten minutes): past
    /// the schedule's last step, an item the receiver asked to retry is retried — no sooner than
    /// the schedule's first step — until as much time has passed as the whole schedule spans.
    public func delay(afterAttempts attempts: Int, retryAfter: Double? = nil, elapsed: Double = 0) -> Double? {
        guard attempts >= 1 else { return nil }
        if attempts > delays.count {
            guard let retryAfter else { return nil }
            let wait = max(min(retryAfter, 86400), delays.first ?? 1)
            return elapsed + wait <= span ? wait : nil
        }
        if let retryAfter { return min(max(retryAfter, 0), 86400) }
        let base = delays[attempts - 1]
        let spread = base * jitter
        return max(0, base + Double.random(in: -spread...spread))
    }

    /// How long the schedule keeps trying, in seconds.
    public var span: Double { delays.reduce(0, +) }
}
