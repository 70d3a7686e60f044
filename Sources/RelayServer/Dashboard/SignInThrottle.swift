import Foundation
import Synchronization

/// Failed dashboard sign-ins allowed: a burst of `burst`, then one per `interval`. While none is
/// left every attempt is refused unchecked (429), so guessing runs at a handful a minute. It is
/// one budget for the node rather than one per address: behind a load balancer every browser
/// comes from the same address. Operators are never locked out of the API: the bearer token
/// still works.
final class SignInThrottle: Sendable {
    static let burst = 10.0
    static let interval: TimeInterval = 6

    /// Attempts left, and when that was counted.
    private let state: Mutex<(left: Double, at: Date?)> = Mutex((burst, nil))

    /// Whether an attempt may be checked at `now`.
    func allows(at now: Date) -> Bool {
        state.withLock { state in
            refill(&state, now: now)
            return state.left >= 1
        }
    }

    /// Counts a wrong token.
    func recordFailure(at now: Date) {
        state.withLock { state in
            refill(&state, now: now)
            state.left = max(0, state.left - 1)
        }
    }

    /// Seconds until the next attempt is allowed (for `Retry-After`).
    func secondsUntilAllowed(at now: Date) -> Int {
        state.withLock { state in
            refill(&state, now: now)
            return state.left >= 1 ? 0 : Int(((1 - state.left) * Self.interval).rounded(.up))
        }
    }

    private func refill(_ state: inout (left: Double, at: Date?), now: Date) {
        if let at = state.at {
            state.left = min(Self.burst, state.left + max(0, now.timeIntervalSince(at)) / Self.interval)
        }
        state.at = now
    }
}
