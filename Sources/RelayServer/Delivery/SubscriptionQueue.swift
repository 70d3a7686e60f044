import RelayCore
import Synchronization

/// One subscription's claimed deliveries: those waiting for a slot, in claim order, and the
/// number being sent.
final class SubscriptionQueue: Sendable {
    private struct State {
        var waiting: [ClaimedDelivery] = []
        var sending = 0
        var closed = false
    }

    private let state = Mutex(State())

    /// Claimed and not yet answered.
    var held: Int { state.withLock { $0.waiting.count + $0.sending } }
    var isClosed: Bool { state.withLock { $0.closed } }

    /// Queues claimed deliveries; false (and nothing queued) once the queue is closed.
    func add(_ deliveries: [ClaimedDelivery]) -> Bool {
        state.withLock { state in
            guard !state.closed else { return false }
            state.waiting += deliveries
            return true
        }
    }
    func putBack(_ delivery: ClaimedDelivery) { state.withLock { $0.waiting.insert(delivery, at: 0) } }
    func close() { state.withLock { $0.closed = true } }

    /// Takes the oldest waiting delivery and a slot for it, if a slot is free.
    func startNext(maxSending: Int) -> ClaimedDelivery? {
        state.withLock { state in
            guard state.sending < maxSending, !state.waiting.isEmpty else { return nil }
            state.sending += 1
            return state.waiting.removeFirst()
        }
    }

    /// Gives a slot back; returns how many are still held (waiting or being sent).
    @discardableResult
    func finishedSending() -> Int {
        state.withLock { state in
            state.sending -= 1
            return state.waiting.count + state.sending
        }
    }

    /// Takes what is waiting for a slot, leaving the queue open.
    func takeWaiting() -> [ClaimedDelivery] {
        state.withLock { state in
            defer { state.waiting = [] }
            return state.waiting
        }
    }

    /// Empties the queue (at the end) and returns what was waiting.
    func drain() -> [ClaimedDelivery] {
        state.withLock { state in
            state.closed = true
            defer { state.waiting = [] }
            return state.waiting
        }
    }
}
