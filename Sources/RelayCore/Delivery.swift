import Foundation

/// Where a delivery (one event to one subscription) stands.
public enum DeliveryStatus: String, Sendable, CaseIterable {
    /// Waiting for its first attempt.
    case pending
    /// Claimed by a dispatcher under a lease.
    case inFlight = "in_flight"
    case succeeded
    /// The last attempt failed; another is scheduled at `nextAttemptAt`.
    case failed
    /// The retry schedule is exhausted: kept, listed, replayable.
    case dead
    /// Its subscription was disabled or deleted before it succeeded.
    case cancelled
}

/// A delivery row.
public struct DeliveryRecord: Sendable, Equatable {
    public var id: String
    public var eventId: String
    public var subscriptionId: String
    public var status: DeliveryStatus
    public var attemptCount: Int
    public var nextAttemptAt: Date?
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: String, eventId: String, subscriptionId: String, status: DeliveryStatus, attemptCount: Int,
                nextAttemptAt: Date?, createdAt: Date, updatedAt: Date) {
        self.id = id
        self.eventId = eventId
        self.subscriptionId = subscriptionId
        self.status = status
        self.attemptCount = attemptCount
        self.nextAttemptAt = nextAttemptAt
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// One attempt to deliver: when, what came back, how long it took.
public struct DeliveryAttempt: Sendable, Equatable {
    public var at: Date
    public var statusCode: Int?
    public var error: String?
    public var durationMs: Int
    /// The start of the response body (at most 1 KiB), for debugging a failing subscriber.
    public var responseExcerpt: String?

    public init(at: Date, statusCode: Int?, error: String?, durationMs: Int, responseExcerpt: String?) {
        self.at = at
        self.statusCode = statusCode
        self.error = error
        self.durationMs = durationMs
        self.responseExcerpt = responseExcerpt
    }
}

/// A delivery a dispatcher claimed, with the event it carries.
public struct ClaimedDelivery: Sendable {
    public let id: String
    public let subscriptionId: String
    /// Attempts made before this one.
    public let attemptsMade: Int
    public let event: RelayEvent

    public init(id: String, subscriptionId: String, attemptsMade: Int, event: RelayEvent) {
        self.id = id
        self.subscriptionId = subscriptionId
        self.attemptsMade = attemptsMade
        self.event = event
    }
}

/// What happens to a delivery after an attempt.
public enum DeliveryVerdict: Sendable, Equatable {
    case succeeded
    case retry(at: Date)
    case dead
    case cancelled

    /// The status the delivery moves to, and when it is attempted next.
    public var next: (status: DeliveryStatus, attemptAt: Date?) {
        switch self {
        case .succeeded: (.succeeded, nil)
        case .retry(let at): (.failed, at)
        case .dead: (.dead, nil)
        case .cancelled: (.cancelled, nil)
        }
    }
}

/// A delivery intake creates together with its event.
public struct PlannedDelivery: Sendable, Equatable {
    public let subscriptionId: String
    /// Set for ordered subscriptions: deliveries with the same key go one at a time, in order.
    public let orderKey: String?

    public init(subscriptionId: String, orderKey: String?) {
        self.subscriptionId = subscriptionId
        self.orderKey = orderKey
    }

    /// The delivery of `event` to `subscription`; ordered subscriptions key it by AppID and user.
    public init(event: RelayEvent, subscription: Subscription) {
        self.subscriptionId = subscription.id
        self.orderKey = subscription.ordered ? event.fromUser.map { "\(event.appid)/\($0)" } : nil
    }

    /// The deliveries of `event` for `subscriptions` (those that match and receive deliveries).
    public static func plan(for event: RelayEvent, subscriptions: [Subscription]) -> [PlannedDelivery] {
        subscriptions.filter { $0.receivesDeliveries && $0.matches(type: event.type, appid: event.appid) }
            .map { PlannedDelivery(event: event, subscription: $0) }
    }
}

/// A filter over deliveries. `before` is a pagination cursor: a delivery id.
public struct DeliveryQuery: Sendable, Equatable {
    public var subscriptionId: String?
    public var status: DeliveryStatus?
    public var before: String?
    public var limit: Int

    public init(subscriptionId: String? = nil, status: DeliveryStatus? = nil, before: String? = nil, limit: Int = 50) {
        self.subscriptionId = subscriptionId
        self.status = status
        self.before = before
        self.limit = limit
    }
}

/// A delivery named by what it delivers: its event, to which subscription.
public struct DeliveryKey: Sendable, Hashable {
    public var eventId: String
    public var subscriptionId: String

    public init(eventId: String, subscriptionId: String) {
        self.eventId = eventId
        self.subscriptionId = subscriptionId
    }
}

/// The backlog at a glance, for metrics: in all, and per subscription.
public struct QueueStats: Sendable, Equatable {
    /// Deliveries not yet finished (pending, in flight, failed).
    public var depth: Int
    /// The oldest creation time among pending and failed deliveries.
    public var oldestPendingCreatedAt: Date?
    /// The same figures for each subscription with unfinished deliveries.
    public var bySubscription: [String: QueueStats]

    public init(depth: Int, oldestPendingCreatedAt: Date?, bySubscription: [String: QueueStats] = [:]) {
        self.depth = depth
        self.oldestPendingCreatedAt = oldestPendingCreatedAt
        self.bySubscription = bySubscription
    }

    /// The totals of per-subscription figures.
    public init(bySubscription: [String: QueueStats]) {
        self.init(depth: bySubscription.values.reduce(0) { $0 + $1.depth },
                  oldestPendingCreatedAt: bySubscription.values.compactMap(\.oldestPendingCreatedAt).min(), bySubscription: bySubscription)
    }
}

/// Delivery ids: `dlv_` + a ULID.
public enum DeliveryID {
    public static func make(at date: Date) -> String {
        "dlv_" + EventID.make(at: date).dropFirst(4)
    }
}
