import Foundation
import Logging
import RelayCore

extension Dispatcher {
    /// Counts an answered attempt on the subscription's breaker.
    func count(_ verdict: DeliveryVerdict, of deliveryId: String, retryAfter: Duration?, on breaker: CircuitBreaker) -> CircuitBreaker.Change {
        switch verdict {
        case .succeeded: breaker.succeeded()
        case .retry, .dead:
            breaker.failed(deliveryId, now: clock.now(), notBefore: retryAfter.map { clock.now().addingTimeInterval(Double($0.milliseconds) / 1000) })
        case .cancelled: .none  // 410 Gone: the subscription is being disabled
        }
    }

    /// The metric and the log line of a change. When the breaker opens, the deliveries claimed
    /// and waiting for a slot are given back unsent: from now on they go one probe at a time, and
    /// a claim must not outlive its lease in the queue.
    func breakerChanged(_ change: CircuitBreaker.Change, subscriptionId id: String, breaker: CircuitBreaker,
                        queue: SubscriptionQueue) async {
        switch change {
        case .none:
            break
        case .opened:
            metrics.circuit(subscription: id, open: true)
            logger.warning("subscriber keeps failing: its deliveries go one at a time until one is delivered", metadata: [
                "subscription": .string(id), "failed_in_a_row": "\(breaker.failuresInARow)",
                "first_probe_in": "\(Int((breaker.untilProbe(now: clock.now()) ?? 0).rounded(.up)))s",
                "longest_wait": "\(breaker.policy.maxProbe)",
            ])
            await release(queue.takeWaiting(), subscriptionId: id)
        case .closed:
            metrics.circuit(subscription: id, open: false)
            logger.notice("subscriber is back: its deliveries go at full rate again", metadata: ["subscription": .string(id)])
        }
    }

    /// A subscription whose URL was changed (a fixed typo, a moved bot) gets its backlog at once
    /// rather than at the next probe, up to `max_probe` later.
    func urlChanged(subscriptionId id: String, breaker: CircuitBreaker) {
        guard breaker.reset() == .closed else { return }
        metrics.circuit(subscription: id, open: false)
        logger.notice("subscription URL changed: its deliveries go at full rate again", metadata: ["subscription": .string(id)])
    }
}
