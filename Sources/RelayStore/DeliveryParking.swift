import Foundation
import Synchronization

/// Parking, on both stores: an ordered subscription's due deliveries that wait behind their
/// user's unfinished one get, when a claim walks past them, their next attempt moved to the
/// earliest time that one can be over (its lease's end while claimed, else its own next attempt).
///
/// Claims then stop walking them. A chat bot that was down left every user's later events
/// waiting, and every claim — one per push to the bot and per attempt — stepped over all of them:
/// 50 ms at 50,000 on SQLite, on the writer, blocking the intake meanwhile; 250 ms on PostgreSQL.
/// When the earlier delivery is delivered or dead, the next one of its user is due at once; a
/// parked one whose wait outlives its bound is walked and parked again then. Order does not rest
/// on this: a claim still checks it, so a bound that comes too early costs a walk, never order.
///
/// Only past `threshold` of them: parking one costs two index updates (parked, then due again),
/// more than walking a few. A chat bot that answers in milliseconds always has some users'
/// next events briefly waiting; parking each of those, with a statement per delivery to make
/// its successor due, cost `relay serve` 7–10 % more CPU. With the threshold, successors made
/// due once per group of attempts and the count of waiting ones at most ten times a second
/// (`ParkingChecks`), that bot costs what it did before parking (within 2 %, the noise).
enum DeliveryParking {
    /// As many due deliveries waiting in order as this, and a short claim parks them.
    static let threshold = 32

    /// At most this many parked per status by one claim, so that its transaction holds SQLite's
    /// writer for tens of milliseconds, not seconds (50,000 waiting were parked over a dozen
    /// claims of 28–93 ms, their own walks included); the rest are parked by the next claims.
    static let batch = 4096
}

/// When a store last counted each subscription's waiting deliveries: a count walks them, as the
/// claim before it just did, and a chat bot's subscription claims on every push, so a store
/// counts at most every `interval` per subscription (ten times a second parks 4,096 each time).
final class ParkingChecks: Sendable {
    static let interval: TimeInterval = 0.1
    private let last = Mutex<[String: Date]>([:])

    /// Whether to count now; if so, the count is taken as done.
    func due(_ subscriptionId: String, at now: Date) -> Bool {
        last.withLock { last in
            if let previous = last[subscriptionId], now >= previous, now.timeIntervalSince(previous) < Self.interval { return false }
            // Subscriptions come and go over a process's life: entries that no longer hold anything back go.
            if last.count >= Self.entries { last = last.filter { now.timeIntervalSince($0.value) < Self.interval } }
            last[subscriptionId] = now
            return true
        }
    }

    /// How many subscriptions it remembers now.
    var remembered: Int { last.withLock { $0.count } }

    /// Past this many subscriptions remembered, the ones counted longer than `interval` ago are forgotten.
    static let entries = 4096
}
