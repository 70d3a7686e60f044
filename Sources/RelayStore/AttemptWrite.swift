import Foundation
import RelayCore

/// One recorded attempt and what it does to its delivery: both stores write these in groups.
struct AttemptWrite: Sendable {
    let deliveryId: String
    let owner: String
    let attempt: DeliveryAttempt
    let status: DeliveryStatus
    let nextAttemptAt: Date?
    let now: Date

    init(deliveryId: String, owner: String, attempt: DeliveryAttempt, verdict: DeliveryVerdict, now: Date) {
        self.deliveryId = deliveryId
        self.owner = owner
        self.attempt = attempt
        (status, nextAttemptAt) = verdict.next
        self.now = now
    }
}
