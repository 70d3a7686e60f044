import Foundation

/// How long a subscription's claimer leaves the store alone after a claim failed (a full disk,
/// a database that went away): 100 ms, doubling with each failure in a row up to 5 s, back to
/// nothing after a claim that works.
///
/// Why: a failed claim leaves the backlog due, so the loop found it due again at once and asked
/// again — with a full disk, 630 failed claims and as many error lines a second per
/// subscription, each a write transaction the store could not take, for as long as the disk
/// stayed full. Times are the relay's clock, so tests move through them.
struct ClaimBackoff {
    static let first: TimeInterval = 0.1
    static let longest: TimeInterval = 5

    private(set) var failures = 0
    private var until: Date?

    /// Counts a failed claim at `now`; returns the wait before the next one.
    mutating func failed(at now: Date) -> TimeInterval {
        failures += 1
        let wait = min(Self.longest, Self.first * pow(2, Double(min(failures - 1, 16))))
        until = now.addingTimeInterval(wait)
        return wait
    }

    mutating func succeeded() {
        failures = 0
        until = nil
    }

    /// The time left before a claim may be tried at `now`, or nil when one may.
    func remaining(at now: Date) -> TimeInterval? {
        guard let until, until > now else { return nil }
        return until.timeIntervalSince(now)
    }
}
