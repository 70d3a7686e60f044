import Foundation
import Logging
import RelayCore
import Synchronization

/// Several nodes: settling what other nodes did while they still had an old subscription list.
extension Dispatcher {
    /// After a subscription was created, changed or deleted here at `changedAt`, other nodes go
    /// on for up to 10 s with the list they loaded: they store events without a delivery to a new
    /// or re-enabled subscription, and go on creating deliveries to a disabled or deleted one.
    /// `settleDelay` later this node settles that, from the subscription as the store has it
    /// then: the deliveries missing since the change are created, or the unfinished ones
    /// cancelled. (On one node there is nothing to settle.)
    func settleLater(subscriptionId: String, changedAt: Date) {
        settlements.withLock { list in
            guard list.count < 1000 else { return }
            list.append((subscriptionId, changedAt, changedAt.addingTimeInterval(Self.settleDelay)))
        }
    }

    func settleDueChanges() async {
        let now = clock.now()
        let due = settlements.withLock { list in
            defer { list.removeAll { $0.due <= now } }
            return list.filter { $0.due <= now }
        }
        for item in due {
            do {
                // The store's copy, not this node's list: another node may have changed it since.
                let subscription = try await store.subscription(id: item.subscriptionId)
                if let subscription, subscription.receivesDeliveries {
                    let created = try await store.backfill(subscription: subscription, since: item.since, until: now, now: now)
                    guard created > 0 else { continue }
                    logger.notice("created deliveries for events another node stored before it knew the subscription",
                                  metadata: ["subscription": .string(item.subscriptionId), "count": "\(created)"])
                    notify(subscriptionIds: [item.subscriptionId])
                } else if subscription == nil || subscription?.status == .disabled {
                    let cancelled = try await store.cancelUnfinishedDeliveries(subscriptionId: item.subscriptionId, now: now)
                    guard cancelled > 0 else { continue }
                    logger.notice("cancelled deliveries another node created before it knew the subscription was disabled or deleted",
                                  metadata: ["subscription": .string(item.subscriptionId), "count": "\(cancelled)"])
                }
            } catch {
                // The store cannot say or write now (a full disk, a database restarting): try
                // again later rather than leave the other nodes' events undelivered for good.
                let queued = settlements.withLock { list in
                    guard list.count < 1000 else { return false }
                    list.append((item.subscriptionId, item.since, now.addingTimeInterval(Self.settleRetry)))
                    return true
                }
                if queued {
                    throttle.log("cannot settle a subscription change", .error, "cannot settle a subscription change yet; trying again", [
                        "subscription": .string(item.subscriptionId), "error": "\(error)", "retry_in_s": "\(Int(Self.settleRetry))",
                    ], to: logger)
                } else {
                    logger.error("cannot settle a subscription change; replay or retry it to be sure",
                                 metadata: ["subscription": .string(item.subscriptionId), "error": "\(error)"])
                }
            }
        }
    }
}
