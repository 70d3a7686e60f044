import Foundation
import PostgresNIO
import RelayCore

extension PostgresRelayStore {
    /// Nodes starting together with the same `relay.yml` sync one after the other (an advisory
    /// lock for the transaction), so a generated secret is generated once and kept by all.
    public func syncConfigSubscriptions(_ configured: [Subscription], now: Date) async throws -> [Subscription] {
        try await transaction { connection in
            try await connection.run("SELECT pg_advisory_xact_lock(\(Self.subscriptionSyncLock))", logger: self.logger)
            let stored = try await connection.fetch("SELECT * FROM subscriptions", logger: self.logger).map(self.subscription(from:))
            let plan = try SubscriptionSyncPlan(configured: configured, stored: stored)
            for subscription in plan.updates { try await self.update(subscription, now: now, on: connection) }
            for subscription in plan.inserts { _ = try await self.insert(subscription, on: connection) }
            for id in plan.deletes { _ = try await self.delete(id: id, now: now, on: connection) }
            return try await connection.fetch("SELECT * FROM subscriptions ORDER BY created_at, id", logger: self.logger)
                .map(self.subscription(from:))
        }
    }

    public func subscriptions() async throws -> [Subscription] {
        try await fetch("SELECT * FROM subscriptions ORDER BY created_at, id").map(subscription(from:))
    }

    public func subscription(id: String) async throws -> Subscription? {
        try await fetch("SELECT * FROM subscriptions WHERE id = \(id)").first.map(subscription(from:))
    }

    public func insertSubscription(_ subscription: Subscription) async throws {
        let inserted = try await transaction { connection in try await self.insert(subscription, on: connection) }
        guard inserted else { throw StoreError(.conflict, "a subscription with id \(subscription.id) exists") }
    }

    public func updateSubscription(_ subscription: Subscription, now: Date) async throws {
        try await transaction { connection in try await self.update(subscription, now: now, on: connection) }
    }

    public func deleteSubscription(id: String, now: Date) async throws -> Bool {
        try await transaction { connection in try await self.delete(id: id, now: now, on: connection) }
    }

    /// The channel on which every change of a subscription is announced (with its id), when its
    /// transaction commits; each node listens (`watchSubscriptionChanges`) and reloads its list.
    static let subscriptionChannel = "relay_subscriptions"

    /// Listens on `subscriptionChannel` for as long as the task runs, on a connection of its own
    /// rather than one of the pool's (which it would hold for ever: with `max_connections=1`,
    /// every other operation would wait for it). A lost connection is opened again after a few
    /// seconds, and `changed` called, since changes may have been missed meanwhile; the
    /// dispatcher's reload every 10 s covers the gap.
    public func watchSubscriptionChanges(_ changed: @escaping @Sendable () -> Void) async {
        await watchSubscriptionChanges(keepalive: .seconds(30), retryDelay: .seconds(5), changed)
    }

    /// Nothing is sent on a listening connection, so one that a NAT or firewall dropped while
    /// idle (some do after four minutes) would never be noticed: a query every `keepalive` keeps
    /// it in use and finds out, within the store's timeout, when no answer comes.
    func watchSubscriptionChanges(keepalive: Duration, retryDelay: Duration, _ changed: @escaping @Sendable () -> Void) async {
        while !Task.isCancelled {
            do {
                var configuration = try url.connectionConfiguration()
                configuration.options.connectTimeout = TimeAmount(timeout)  // the start-up's answer included
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
                do {
                    try await withThrowingDiscardingTaskGroup { group in
                        group.addTask {
                            try await connection.listen(on: Self.subscriptionChannel) { notifications in
                                changed()
                                for try await _ in notifications { changed() }
                            }
                            // Ends the keepalive too: listen again at once, not at its next failure.
                            throw StoreError(.unavailable, "PostgreSQL ended the listening connection")
                        }
                        group.addTask { [timeout, logger, location = url.location] in
                            while true {
                                try await Task.sleep(for: keepalive)
                                try await Self.racing(timeout, onTimeout: { _ = connection.close() as EventLoopFuture<Void> }, timedOut: {
                                    StoreError(.unavailable, "PostgreSQL at \(location) did not answer the listener's keepalive within \(timeout)")
                                }) { try await connection.run("SELECT 1", logger: logger) }
                            }
                        }
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                guard !Task.isCancelled else { return }
                logger.warning("not listening for subscription changes of other nodes; trying again in \(retryDelay)", metadata: [
                    "error": "\(Self.storeError(error))",
                ])
            }
            try? await Task.sleep(for: retryDelay)
        }
    }

    private func announce(_ id: String, on connection: PostgresConnection) async throws {
        try await connection.run("SELECT pg_notify(\(Self.subscriptionChannel), \(id))", logger: logger)
    }

    /// Announces only a subscription it inserted: one that existed changed nothing, and every
    /// announcement makes every node reload its list.
    private func insert(_ s: Subscription, on connection: PostgresConnection) async throws -> Bool {
        let inserted = !(try await connection.fetch(
            """
            INSERT INTO subscriptions (id, url, appids, events, reply, ordered, status, source, created_at, secret,
                                       previous_secret, previous_secret_expires_at)
            VALUES (\(s.id), \(s.url), \(s.appids), \(s.events), \(s.reply), \(s.ordered), \(s.status.rawValue), \(s.source.rawValue),
                    \(Self.millis(s.createdAt)), \(sealer.seal(s.secret)), \(s.previousSecret.map(sealer.seal)),
                    \(s.previousSecretExpiresAt.map(Self.millis)))
            ON CONFLICT (id) DO NOTHING RETURNING id
            """, logger: logger).isEmpty)
        if inserted { try await announce(s.id, on: connection) }
        return inserted
    }

    private func update(_ s: Subscription, now: Date, on connection: PostgresConnection) async throws {
        try await announce(s.id, on: connection)
        try await connection.run(
            """
            UPDATE subscriptions SET url = \(s.url), appids = \(s.appids), events = \(s.events), reply = \(s.reply),
                ordered = \(s.ordered), status = \(s.status.rawValue), source = \(s.source.rawValue), created_at = \(Self.millis(s.createdAt)),
                secret = \(sealer.seal(s.secret)), previous_secret = \(s.previousSecret.map(sealer.seal)),
                previous_secret_expires_at = \(s.previousSecretExpiresAt.map(Self.millis))
            WHERE id = \(s.id)
            """, logger: logger)
        if s.status == .disabled { try await cancelUnfinished(subscriptionId: s.id, now: now, on: connection) }
        if !s.ordered { try await releaseOrder(subscriptionId: s.id, now: now, on: connection) }
    }

    /// An unordered subscription's backlog keeps no order: when `ordered` is turned off, its
    /// unfinished deliveries lose their order keys, and the never-tried ones parked behind their
    /// user's earlier delivery are due at once. A failed one keeps its next attempt, which
    /// parking never put later than that earlier delivery's. For a subscription that was not
    /// ordered this is one probe of the order index.
    private func releaseOrder(subscriptionId: String, now: Date, on connection: PostgresConnection) async throws {
        let millis = Self.millis(now)
        try await connection.run(
            """
            UPDATE deliveries SET order_key = NULL,
                next_attempt_at = CASE WHEN status = 'pending' AND attempts = 0 AND next_attempt_at > \(millis) THEN \(millis)
                                       ELSE next_attempt_at END
            WHERE subscription_id = \(subscriptionId) AND order_key IS NOT NULL AND \(unescaped: PostgresSchema.unfinished)
            """, logger: logger)
    }

    private func delete(id: String, now: Date, on connection: PostgresConnection) async throws -> Bool {
        try await announce(id, on: connection)
        let deleted = try await connection.fetch("DELETE FROM subscriptions WHERE id = \(id) RETURNING id", logger: logger)
        try await cancelUnfinished(subscriptionId: id, now: now, on: connection)
        return !deleted.isEmpty
    }

    public func cancelUnfinishedDeliveries(subscriptionId: String, now: Date) async throws -> Int {
        try await transaction { connection in try await self.cancelUnfinished(subscriptionId: subscriptionId, now: now, on: connection) }
    }

    /// Cancels what has not finished; leased ones too (their attempt's result is then ignored).
    @discardableResult
    private func cancelUnfinished(subscriptionId: String, now: Date, on connection: PostgresConnection) async throws -> Int {
        try await connection.fetch(
            """
            UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
                updated_at = \(Self.millis(now))
            WHERE subscription_id = \(subscriptionId) AND \(unescaped: PostgresSchema.unfinished) RETURNING id
            """, logger: logger).count
    }

    private func subscription(from row: PostgresRandomAccessRow) throws -> Subscription {
        Subscription(
            id: try row["id"].decode(String.self), url: try row["url"].decode(String.self), appids: try row["appids"].decode([String].self),
            events: try row["events"].decode([String].self), reply: try row["reply"].decode(Bool.self),
            ordered: try row["ordered"].decode(Bool.self),
            status: Subscription.Status(rawValue: try row["status"].decode(String.self)) ?? .disabled,
            source: Subscription.Source(rawValue: try row["source"].decode(String.self)) ?? .api,
            createdAt: Self.date(try row["created_at"].decode(Int.self)), secret: try sealer.open(try row["secret"].decode(String.self)),
            previousSecret: try row["previous_secret"].decode(String?.self).map(sealer.open),
            previousSecretExpiresAt: Self.date(try row["previous_secret_expires_at"].decode(Int?.self)))
    }
}
