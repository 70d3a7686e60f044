import Foundation

/// Durable state of the relay. Two implementations: SQLite (one node) and PostgreSQL (several
/// nodes). Nothing backend-specific crosses this protocol.
public protocol RelayStore: AuthorizationStore {
    /// Creates or upgrades the schema.
    func migrate() async throws
    /// Throws when the store cannot be reached (readiness).
    func ping() async throws
    /// Commits everything one push writes, atomically and durably, and says what happened.
    /// Returning means the data is on disk: only then may WeChat be told `success`.
    func commit(_ record: IntakeRecord) async throws -> IntakeOutcome
    /// One stored event.
    func event(id: String) async throws -> RelayEvent?
    /// Stored events, newest first, filtered and paginated by `query`.
    func events(_ query: EventQuery) async throws -> [RelayEvent]
    /// The newest ticket of a component.
    func ticket(componentAppid: String) async throws -> ComponentTicket?
    /// Deletes up to `limit` of the oldest events received before `cutoff` (with their deliveries
    /// and attempts) in one transaction; returns how many. Callers purge in batches, so a large
    /// purge never holds the writer — and the intake waiting for it — for long.
    func purgeEvents(before cutoff: Date, limit: Int) async throws -> Int
    /// Releases connections.
    func close() async throws

    // MARK: Subscriptions

    /// Makes the stored config subscriptions match `configured` (secrets generated for those
    /// without one are kept stable); config subscriptions no longer configured are deleted.
    /// Returns every subscription afterwards.
    func syncConfigSubscriptions(_ configured: [Subscription], now: Date) async throws -> [Subscription]
    func subscriptions() async throws -> [Subscription]
    func subscription(id: String) async throws -> Subscription?
    /// Throws `StoreError(.conflict)` when the id is taken.
    func insertSubscription(_ subscription: Subscription) async throws
    /// Saves changes; when the subscription is disabled, its unfinished deliveries are cancelled.
    func updateSubscription(_ subscription: Subscription, now: Date) async throws
    /// Deletes it and cancels its unfinished deliveries (kept as cancelled). False if unknown.
    func deleteSubscription(id: String, now: Date) async throws -> Bool
    /// Calls `changed` whenever a subscription may have been changed by another relay process
    /// (and once whenever watching starts again after a lost connection), until the calling task
    /// is cancelled. A store that only one process uses returns at once.
    func watchSubscriptionChanges(_ changed: @escaping @Sendable () -> Void) async

    // MARK: Delivery queue

    /// Claims up to `limit` due deliveries of one subscription under a lease until `leaseUntil`.
    /// Due means pending or failed with `nextAttemptAt <= now`, or in flight with an expired lease.
    /// For ordered deliveries, only the oldest unfinished one per order key is ever due.
    func claimDeliveries(subscriptionId: String, limit: Int, now: Date, leaseUntil: Date, owner: String) async throws -> [ClaimedDelivery]
    /// Records an attempt and moves the delivery on, if `owner` still holds its lease.
    func recordAttempt(deliveryId: String, owner: String, attempt: DeliveryAttempt, verdict: DeliveryVerdict, now: Date) async throws
    /// Called once when a dispatcher starts: a store that only one relay process can use (SQLite)
    /// releases every claim left by a process that died, instead of waiting for the leases; a
    /// shared store leaves them to expire. Returns how many were released.
    func releaseClaimsOfDeadProcesses(now: Date) async throws -> Int
    /// Gives claimed deliveries back (graceful shutdown): due again at once, no attempt counted.
    func releaseClaims(deliveryIds: [String], owner: String, now: Date) async throws
    /// When the subscription's next unclaimed delivery becomes due (nil when none is waiting).
    /// Claimed ones are not counted: their attempts report back, and expired leases are found
    /// by the claimer's regular wake-ups.
    func nextDueTime(subscriptionId: String, now: Date) async throws -> Date?
    func delivery(id: String) async throws -> DeliveryRecord?
    func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord]
    func deliveries(eventId: String) async throws -> [DeliveryRecord]
    func attempts(deliveryId: String) async throws -> [DeliveryAttempt]
    /// Makes a delivery due now (unless it is in flight). Returns it, or nil if unknown.
    func retryDelivery(id: String, now: Date) async throws -> DeliveryRecord?
    /// Re-delivers the matching events received in `since..<until` to a subscription: existing
    /// deliveries (with `status`, if given) become due again, missing ones are created.
    func replay(subscription: Subscription, since: Date, until: Date, status: DeliveryStatus?, now: Date) async throws -> Int
    /// Creates the deliveries to `subscription` missing for the matching events received in
    /// `since..<until`; existing ones stay as they are. (Another node that did not know of the
    /// subscription yet stored such events without one.) Returns how many were created.
    func backfill(subscription: Subscription, since: Date, until: Date, now: Date) async throws -> Int
    /// Cancels the unfinished deliveries to a subscription that is disabled or deleted (those
    /// another node created before it knew). Returns how many.
    func cancelUnfinishedDeliveries(subscriptionId: String, now: Date) async throws -> Int
    /// The unfinished deliveries, in all and per subscription; of one subscription only when
    /// `subscriptionId` is given (a walk of its part of the queue, not of all of it).
    func queueStats(subscriptionId: String?) async throws -> QueueStats
    /// Every unfinished delivery (pending, in flight, failed; dead ones too with `includingDead`)
    /// as its event and subscription, in one read: what `relay copy-store` queues in another
    /// store. (Listing by status sorts the backlog by id for every page: quadratic for millions.)
    func unfinishedDeliveryKeys(includingDead: Bool) async throws -> [DeliveryKey]
}

/// A filter over stored events. `before` is a pagination cursor: an event id.
public struct EventQuery: Sendable, Equatable {
    public var appid: String?
    public var type: String?
    public var before: String?
    public var limit: Int

    public init(appid: String? = nil, type: String? = nil, before: String? = nil, limit: Int = 50) {
        self.appid = appid
        self.type = type
        self.before = before
        self.limit = limit
    }
}

/// A store failure that is not the caller's fault (a 5xx: WeChat should retry).
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case unavailable, overloaded, corrupt, conflict }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

extension RelayStore {
    /// The whole queue's statistics, per subscription too.
    public func queueStats() async throws -> QueueStats {
        try await queueStats(subscriptionId: nil)
    }
}
