import Foundation
import Synchronization

/// A budget for something the public can make the relay do: a burst of `burst`, then one more
/// every `interval`. `Budget` pairs the node's with one per client.
///
/// Used for dashboard sign-ins (a wrong token spends one; while none is left every attempt is
/// refused unchecked, so guessing runs at a handful a minute) and for onboarding clicks (each
/// spends one of WeChat's single-use pre-auth codes, from a daily quota).
final class TokenBucket: Sendable {
    let burst: Double
    let interval: TimeInterval

    /// Tokens left, and when that was counted.
    private let state: Mutex<(left: Double, at: Date?)>

    init(burst: Int, interval: TimeInterval) {
        precondition(burst >= 1 && interval > 0)
        self.burst = Double(burst)
        self.interval = interval
        state = Mutex((Double(burst), nil))
    }

    /// Whether a token is left at `now` (spends nothing).
    func allows(at now: Date) -> Bool {
        state.withLock { state in
            refill(&state, now: now)
            return state.left >= 1
        }
    }

    /// Spends a token if one is left; whether it did.
    func take(at now: Date) -> Bool {
        state.withLock { state in
            refill(&state, now: now)
            guard state.left >= 1 else { return false }
            state.left -= 1
            return true
        }
    }

    /// Spends a token, or nothing when none is left (a failure counted after the fact).
    func spend(at now: Date) {
        state.withLock { state in
            refill(&state, now: now)
            state.left = max(0, state.left - 1)
        }
    }

    /// Whether it has refilled to its burst: it then remembers nothing a new bucket would not.
    func isFull(at now: Date) -> Bool {
        state.withLock { state in
            refill(&state, now: now)
            return state.left >= burst
        }
    }

    /// Seconds until a token is left (for `Retry-After`).
    func secondsUntilAllowed(at now: Date) -> Int {
        state.withLock { state in
            refill(&state, now: now)
            return state.left >= 1 ? 0 : Int(((1 - state.left) * interval).rounded(.up))
        }
    }

    private func refill(_ state: inout (left: Double, at: Date?), now: Date) {
        if let at = state.at {
            state.left = min(burst, state.left + max(0, now.timeIntervalSince(at)) / interval)
        }
        state.at = now
    }
}
