import Foundation

/// When a failed delivery is tried again: the configured schedule (waits after the first
/// attempt), each wait jittered by ±20% so a recovering subscriber is not hit by a thundering
/// herd, and never earlier than a `Retry-After` the subscriber asked for.
public struct RetryPolicy: Sendable {
    public let schedule: [Duration]
    /// Longest `Retry-After` honoured; past it the subscriber is probably confused.
    public let maxRetryAfter: Duration

    public init(schedule: [Duration], maxRetryAfter: Duration = .seconds(86_400)) {
        self.schedule = schedule
        self.maxRetryAfter = maxRetryAfter
    }

    /// The wait before the next attempt after `attemptsMade` attempts, or nil when the schedule
    /// is exhausted (the delivery is dead).
    public func delay(afterAttempts attemptsMade: Int, retryAfter: Duration? = nil,
                      using rng: inout some RandomNumberGenerator) -> Duration? {
        guard attemptsMade >= 1, attemptsMade <= schedule.count else { return nil }
        let base = schedule[attemptsMade - 1]
        let jittered = base * Double.random(in: 0.8...1.2, using: &rng)
        guard let retryAfter else { return jittered }
        return max(jittered, min(retryAfter, maxRetryAfter))
    }

    public func delay(afterAttempts attemptsMade: Int, retryAfter: Duration? = nil) -> Duration? {
        var rng = SystemRandomNumberGenerator()
        return delay(afterAttempts: attemptsMade, retryAfter: retryAfter, using: &rng)
    }

    /// Parses `Retry-After`: delta-seconds or an HTTP date.
    public static func parseRetryAfter(_ value: String, now: Date) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int(trimmed), seconds >= 0 { return .seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: trimmed) else { return nil }
        return .milliseconds(Int64(max(0, date.timeIntervalSince(now)) * 1000))
    }
}
