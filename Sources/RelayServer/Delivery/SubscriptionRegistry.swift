import RelayCore
import Synchronization

/// The subscriptions in force, read by intake on every push (to plan deliveries) without a store
/// round trip. The store is the source of truth; the admin API writes through to both, and the
/// dispatcher reloads from the store periodically so changes made by other nodes arrive too.
final class SubscriptionRegistry: Sendable {
    private let state: Mutex<[Subscription]>

    init(_ subscriptions: [Subscription]) {
        state = Mutex(subscriptions)
    }

    var all: [Subscription] { state.withLock { $0 } }

    func subscription(id: String) -> Subscription? {
        state.withLock { $0.first { $0.id == id } }
    }

    func replaceAll(_ subscriptions: [Subscription]) {
        state.withLock { $0 = subscriptions }
    }

    func upsert(_ subscription: Subscription) {
        state.withLock { list in
            if let index = list.firstIndex(where: { $0.id == subscription.id }) { list[index] = subscription } else { list.append(subscription) }
        }
    }

    func remove(id: String) {
        state.withLock { $0.removeAll { $0.id == id } }
    }

    /// Whether ticket pushes must be stored as events (someone asked for them by name).
    var wantsTicketEvents: Bool {
        all.contains { $0.receivesDeliveries && $0.events.contains(EventType.verifyTicket) }
    }
}
