import Foundation

/// A wait after failures in a row: `first` after the first, doubling with each one after it up
/// to `longest`, and none after a success. Times are the relay's clock, so tests move through
/// them. The dispatcher's claims and the background token refreshes use it (the circuit breaker
/// has a wait of its own, which only a probe's failure moves).
struct Backoff {
    let first: TimeInterval
    let longest: TimeInterval
    private(set) var failures = 0
    private var until: Date?

    init(first: TimeInterval, longest: TimeInterval) {
        self.first = first
        self.longest = longest
    }

    /// Counts a failure at `now`; returns the wait before the next try.
    mutating func failed(at now: Date) -> TimeInterval {
        failures += 1
        let wait = min(longest, first * pow(2, Double(min(failures - 1, 16))))
        until = now.addingTimeInterval(wait)
        return wait
    }

    mutating func succeeded() {
        failures = 0
        until = nil
    }

    /// The time left before a try at `now`, or nil when one may be made.
    func remaining(at now: Date) -> TimeInterval? {
        guard let until, until > now else { return nil }
        return until.timeIntervalSince(now)
    }
}
