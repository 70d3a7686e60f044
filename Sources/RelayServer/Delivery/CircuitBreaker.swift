import Foundation
import Synchronization

/// One subscription's run of failed attempts. After `failures` in a row its subscriber is taken to
/// be down, and its deliveries go one at a time: a probe, each after a wait that doubles from
/// `probe` up to `maxProbe`. The rest wait without spending attempts. The first delivered attempt
/// ends it.
///
/// Why: a subscriber that is down fails fast — a refused connection, a proxy answering 502 — and
/// every due delivery then failed as fast as the relay could send it, each failure a write for
/// the store's one SQLite writer and a log line. Measured with `wrk` against `relay serve`, a
/// subscription to a closed port took a quarter to a third of the intake's throughput, as much as
/// a second healthy subscription does.
final class CircuitBreaker: Sendable {
    typealias Policy = CircuitBreakerPolicy

    enum Change: Equatable {
        case none, opened, closed
    }

    private struct State {
        var failuresInARow = 0
        var open = false
        var nextProbe = Date.distantPast
        var probeWait: Duration
        /// The delivery sent as the probe, while it is out.
        var probeId: String?
    }

    let policy: Policy
    private let state: Mutex<State>

    init(_ policy: Policy) {
        self.policy = policy
        state = Mutex(State(probeWait: policy.probe))
    }

    /// What the admin API and the dashboard show of a breaker.
    struct Snapshot: Sendable, Equatable {
        var open: Bool
        var failedInARow: Int
        /// While open and no probe is out.
        var nextProbe: Date?
    }

    var snapshot: Snapshot {
        state.withLock { Snapshot(open: $0.open, failedInARow: $0.failuresInARow, nextProbe: $0.open && $0.probeId == nil ? $0.nextProbe : nil) }
    }

    var isOpen: Bool { state.withLock { $0.open } }
    var failuresInARow: Int { state.withLock { $0.failuresInARow } }

    /// While open: how long until a probe may be claimed (zero or less: now). Nil when closed, or
    /// while a probe is out (its answer decides).
    func untilProbe(now: Date) -> TimeInterval? {
        state.withLock { state in
            guard state.open, state.probeId == nil else { return nil }
            return state.nextProbe.timeIntervalSince(now)
        }
    }

    /// Whether a claimed delivery may be sent: any while closed, only the probe while open.
    func mayStart(_ deliveryId: String) -> Bool {
        state.withLock { !$0.open || $0.probeId == deliveryId }
    }

    /// The claimed delivery that goes out as the probe.
    func sendingProbe(_ deliveryId: String) {
        state.withLock { $0.probeId = deliveryId }
    }

    func succeeded() -> Change { reset() }

    /// Starts over, closed: after a success, or when the subscription's URL changed (what failed
    /// was another address).
    func reset() -> Change {
        state.withLock { state in
            defer { state = State(probeWait: policy.probe) }
            return state.open ? .closed : .none
        }
    }

    /// A failed attempt. Only the probe's failure moves the next probe (and doubles the wait);
    /// attempts that were out when the breaker opened fail without delaying it further. A
    /// subscriber's `Retry-After` (`notBefore`) is honoured by the probe too.
    func failed(_ deliveryId: String, now: Date, notBefore: Date? = nil) -> Change {
        state.withLock { state in
            state.failuresInARow += 1
            defer {
                if state.open, let notBefore, notBefore > state.nextProbe { state.nextProbe = notBefore }
            }
            if state.open {
                if state.probeId == deliveryId { Self.scheduleProbe(&state, now: now, maxProbe: policy.maxProbe) }
                return .none
            }
            guard policy.failures > 0, state.failuresInARow >= policy.failures else { return .none }
            state.open = true
            Self.scheduleProbe(&state, now: now, maxProbe: policy.maxProbe)
            return .opened
        }
    }

    private static func scheduleProbe(_ state: inout State, now: Date, maxProbe: Duration) {
        state.probeId = nil
        state.nextProbe = now.addingTimeInterval(Double(state.probeWait.milliseconds) / 1000)
        state.probeWait = min(state.probeWait * 2, maxProbe)
    }
}

/// `delivery.circuit_breaker` in relay.yml.
public struct CircuitBreakerPolicy: Sendable, Equatable {
    /// Failed attempts in a row that trip the breaker; 0 never does.
    public var failures = 10
    /// The wait before the first probe; it doubles after each failed probe, up to `maxProbe`.
    public var probe: Duration = .seconds(1)
    public var maxProbe: Duration = .seconds(60)

    public init() {}
}
