import Foundation
import RelayCore
import SQLiteNIO

extension SQLiteRelayStore {
    /// One process per file: nobody else changes the subscriptions.
    public func watchSubscriptionChanges(_ changed: @escaping @Sendable () -> Void) async {}

    public func syncConfigSubscriptions(_ configured: [Subscription], now: Date) async throws -> [Subscription] {
        // One process per SQLite file: nobody else syncs in between.
        let plan = try SubscriptionSyncPlan(configured: configured, stored: try await subscriptions())
        for subscription in plan.updates { try await updateSubscription(subscription, now: now) }
        for subscription in plan.inserts { try await insertSubscription(subscription) }
        for id in plan.deletes { _ = try await deleteSubscription(id: id, now: now) }
        return try await subscriptions()
    }

    public func subscriptions() async throws -> [Subscription] {
        try await reader.query("SELECT * FROM subscriptions ORDER BY created_at, id").map(subscription(from:))
    }

    public func subscription(id: String) async throws -> Subscription? {
        try await reader.query("SELECT * FROM subscriptions WHERE id = ?", [.text(id)]).first.map(subscription(from:))
    }

    public func insertSubscription(_ subscription: Subscription) async throws {
        let binds = try binds(for: subscription)
        try await write { db in
            let taken = try db.query("SELECT 1 FROM subscriptions WHERE id = ?", [.text(subscription.id)])
            guard taken.isEmpty else { throw StoreError(.conflict, "a subscription with id \(subscription.id) exists") }
            _ = try db.query(
                """
                INSERT INTO subscriptions (id, url, appids, events, reply, ordered, status, source, created_at, secret,
                                           previous_secret, previous_secret_expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, binds)
        }
    }

    public func updateSubscription(_ subscription: Subscription, now: Date) async throws {
        let binds = try binds(for: subscription)
        try await write { db in
            _ = try db.query(
                """
                UPDATE subscriptions SET url = ?2, appids = ?3, events = ?4, reply = ?5, ordered = ?6, status = ?7, source = ?8,
                    created_at = ?9, secret = ?10, previous_secret = ?11, previous_secret_expires_at = ?12
                WHERE id = ?1
                """, binds)
        }
        if subscription.status == .disabled { _ = try await cancelUnfinishedDeliveries(subscriptionId: subscription.id, now: now) }
        if !subscription.ordered { try await releaseOrder(subscriptionId: subscription.id, now: now) }
    }

    /// An unordered subscription's backlog keeps no order: when `ordered` is turned off, its
    /// unfinished deliveries lose their order keys, `orderReleaseBatch` per transaction (as
    /// cancelling does), and the never-tried ones parked behind their user's earlier delivery
    /// are due at once. A failed one keeps its next attempt, which parking never put later than
    /// that earlier delivery's. For a subscription that was not ordered this is one probe of the
    /// order index.
    func releaseOrder(subscriptionId: String, now: Date) async throws {
        while true {
            let batch = try await write { db in
                try db.query(Self.orderReleaseSQL, [.integer(Self.millis(now)), .text(subscriptionId)]).count
            }
            if batch < Self.orderReleaseBatch { return }
            await Task.yield()
        }
    }

    static let orderReleaseBatch = 500

    static let orderReleaseSQL = """
        UPDATE deliveries SET order_key = NULL,
            next_attempt_at = CASE WHEN status = 'pending' AND attempts = 0 AND next_attempt_at > ?1 THEN ?1 ELSE next_attempt_at END
        WHERE rowid IN (SELECT rowid FROM deliveries INDEXED BY deliveries_order
                        WHERE subscription_id = ?2 AND order_key IS NOT NULL AND \(SQLiteSchema.unfinished) LIMIT \(orderReleaseBatch))
        RETURNING id
        """

    /// Disabled first, then its deliveries cancelled, then deleted: if the relay stops midway,
    /// the subscription is left disabled (it gets nothing) and deleting it again finishes.
    public func deleteSubscription(id: String, now: Date) async throws -> Bool {
        _ = try await write { db in try db.query("UPDATE subscriptions SET status = 'disabled' WHERE id = ?", [.text(id)]) }
        _ = try await cancelUnfinishedDeliveries(subscriptionId: id, now: now)
        return try await write { db in !(try db.query("DELETE FROM subscriptions WHERE id = ? RETURNING id", [.text(id)])).isEmpty }
    }

    /// Cancels what has not finished, in-flight deliveries too (their result will be ignored),
    /// `cancelBatch` per transaction: a subscriber down for a day can have millions queued, and
    /// one `UPDATE` of them all held the writer — and every push waiting behind it, past WeChat's
    /// five seconds — for as long as it took. Deliveries created meanwhile are cancelled too
    /// (the loop ends on a short batch).
    public func cancelUnfinishedDeliveries(subscriptionId: String, now: Date) async throws -> Int {
        var cancelled = 0
        while true {
            let batch = try await write { db in
                try db.query(Self.cancelBatchSQL, [.integer(Self.millis(now)), .text(subscriptionId)]).count
            }
            cancelled += batch
            if batch < Self.cancelBatch { return cancelled }
            await Task.yield()
        }
    }

    static let cancelBatch = 500

    /// The next `cancelBatch` unfinished deliveries of subscription ?2, cancelled at time ?1,
    /// found through the due index, which holds the unfinished ones only.
    static let cancelBatchSQL = """
        UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?1
        WHERE rowid IN (SELECT rowid FROM deliveries INDEXED BY deliveries_due
                        WHERE subscription_id = ?2 AND \(SQLiteSchema.unfinished) LIMIT \(cancelBatch))
        RETURNING id
        """

    private func binds(for s: Subscription) throws -> [SQLiteData] {
        func json(_ list: [String]) throws -> SQLiteData {
            .text(String(decoding: try JSONEncoder().encode(list), as: UTF8.self))
        }
        return [
            .text(s.id), .text(s.url), try json(s.appids), try json(s.events), .integer(s.reply ? 1 : 0), .integer(s.ordered ? 1 : 0),
            .text(s.status.rawValue), .text(s.source.rawValue), .integer(Self.millis(s.createdAt)), .text(sealer.seal(s.secret)),
            Self.text(s.previousSecret.map(sealer.seal)), s.previousSecretExpiresAt.map { .integer(Self.millis($0)) } ?? .null,
        ]
    }

    private func subscription(from row: StoreRow) throws -> Subscription {
        func list(_ name: String) -> [String] {
            (try? JSONDecoder().decode([String].self, from: Data((row.column(name)?.string ?? "[]").utf8))) ?? []
        }
        return Subscription(
            id: row.column("id")?.string ?? "", url: row.column("url")?.string ?? "", appids: list("appids"), events: list("events"),
            reply: row.column("reply")?.integer == 1, ordered: row.column("ordered")?.integer == 1,
            status: Subscription.Status(rawValue: row.column("status")?.string ?? "") ?? .disabled,
            source: Subscription.Source(rawValue: row.column("source")?.string ?? "") ?? .api,
            createdAt: Self.date(row.column("created_at")), secret: try sealer.open(row.column("secret")?.string ?? ""),
            previousSecret: try row.column("previous_secret")?.string.map(sealer.open),
            previousSecretExpiresAt: Self.optionalDate(row.column("previous_secret_expires_at")))
    }
}
