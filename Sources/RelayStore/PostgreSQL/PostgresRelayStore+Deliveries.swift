import Foundation
import PostgresNIO
import RelayCore

extension PostgresRelayStore {
    /// Takes up to `limit` due deliveries under `owner`'s lease, with their events, in one
    /// statement. `SKIP LOCKED` passes over rows another node is claiming at this moment, and a row
    /// another node claimed since this statement's snapshot is checked again once locked (its
    /// live lease then excludes it): no delivery is ever claimed twice. An ordered user's
    /// delivery waits while an earlier one of that user is unfinished (being attempted included).
    public func claimDeliveries(subscriptionId: String, limit: Int, now: Date, leaseUntil: Date, owner: String) async throws -> [ClaimedDelivery] {
        guard limit > 0 else { return [] }
        let statement = ClaimStatement(query: Self.claimQuery(subscriptionId: subscriptionId, limit: limit, now: Self.millis(now),
                                                              leaseUntil: Self.millis(leaseUntil), owner: owner))
        let rows = try await bounded { [logger, parkingChecks] connection in
            let rows = try await Self.collect(statement, on: connection, logger: logger)
            // A short claim walked every due delivery, those waiting in order included.
            if rows.count < limit, parkingChecks.due(subscriptionId, at: now) {
                let waiting = WaitingStatement(query: Self.waitingQuery(subscriptionId: subscriptionId, now: Self.millis(now)))
                if try await Self.collect(waiting, on: connection, logger: logger).first?["waiting"].decode(Int.self) ?? 0
                    >= DeliveryParking.threshold {
                    let park = ParkStatement(query: Self.parkQuery(subscriptionId: subscriptionId, now: Self.millis(now)))
                    let parked = try await Self.collect(park, on: connection, logger: logger).map { try $0["id"].decode(String.self) }
                    if !parked.isEmpty {
                        let wake = WakeStatement(query: Self.wakeQuery(parked: parked, now: Self.millis(now)))
                        _ = try await Self.collect(wake, on: connection, logger: logger)
                    }
                }
            }
            return rows
        }
        return try rows.map { row in
            ClaimedDelivery(id: try row["delivery_id"].decode(String.self), subscriptionId: subscriptionId,
                            attemptsMade: try row["attempts_made"].decode(Int.self), event: try Self.event(from: row))
        }
    }

    static func claimQuery(subscriptionId: String, limit: Int, now: Int, leaseUntil: Int, owner: String) -> PostgresQuery {
        """
        WITH claimed AS (
            UPDATE deliveries d SET lease_owner = \(owner), lease_expires_at = \(leaseUntil), updated_at = \(now)
            FROM (
                SELECT c.id FROM deliveries c
                WHERE c.subscription_id = \(subscriptionId) AND c.\(unescaped: PostgresSchema.unfinished)
                  AND c.next_attempt_at <= \(now) AND (c.lease_expires_at IS NULL OR c.lease_expires_at <= \(now))
                  AND \(unescaped: notWaitingInOrder("c"))
                ORDER BY c.next_attempt_at, c.event_seq
                LIMIT \(limit)
                FOR UPDATE OF c SKIP LOCKED
            ) picked
            WHERE d.id = picked.id
            RETURNING d.id AS delivery_id, d.attempts AS attempts_made, d.event_seq
        )
        SELECT claimed.delivery_id, claimed.attempts_made, \(unescaped: eventColumns("e"))
        FROM claimed JOIN events e ON e.seq = claimed.event_seq
        ORDER BY e.seq
        """
    }

    /// Parks due deliveries waiting in order (`DeliveryParking`). Rows another node is claiming
    /// or parking are skipped, as a claim skips them.
    static func parkQuery(subscriptionId: String, now: Int) -> PostgresQuery {
        PostgresQuery(unsafeSQL: """
            UPDATE deliveries d SET next_attempt_at = p.bound
            FROM (\(waitingSQL) LIMIT \(DeliveryParking.batch) FOR UPDATE OF c SKIP LOCKED) p
            WHERE d.id = p.id AND p.bound > $2
            RETURNING d.id
            """, binds: waitingBinds(subscriptionId, now))
    }

    /// Parked deliveries whose user has nothing unfinished before them any more are due at $2.
    ///
    /// Parking reads the head it waits for in its statement's snapshot, and recording that
    /// head's success on another connection makes its successor due only if the successor is
    /// parked by then. A success committed between the two found nothing to wake, and the
    /// successor waited for the finished head's lease. Run after the park, in a snapshot of its
    /// own, this wakes them; what can still slip between the two is bounded by `inFlightBoundMillis`.
    static func wakeQuery(parked: [String], now: Int) -> PostgresQuery {
        var binds = PostgresBindings()
        binds.append(parked)
        binds.append(now)
        return PostgresQuery(unsafeSQL: """
            UPDATE deliveries s SET next_attempt_at = $2
            WHERE s.id = ANY($1) AND s.next_attempt_at > $2 AND s.\(PostgresSchema.unfinished)
              AND NOT EXISTS (SELECT 1 FROM deliveries h
                              WHERE h.subscription_id = s.subscription_id AND h.order_key = s.order_key
                                AND h.event_seq < s.event_seq AND h.\(PostgresSchema.unfinished))
            """, binds: binds)
    }

    /// How many due deliveries wait in order, counted up to `DeliveryParking.threshold`.
    static func waitingQuery(subscriptionId: String, now: Int) -> PostgresQuery {
        PostgresQuery(unsafeSQL: """
            SELECT count(*) AS waiting FROM (
                SELECT 1 FROM (\(waitingSQL)) w WHERE w.bound > $2 LIMIT \(DeliveryParking.threshold)) x
            """, binds: waitingBinds(subscriptionId, now))
    }

    /// Due deliveries of subscription $1 at $2 with the time the unfinished head of their user's
    /// order can be over (NULL for a head). A subscription without ordered deliveries (one probe
    /// of `deliveries_order`) is not walked.
    ///
    /// Behind a head being attempted the bound is at most `inFlightBoundMillis` away, not its
    /// lease's end (35 s): the head's recorded success makes its successor due at once, but only
    /// if the successor is parked by then, and here parking and recording run on different
    /// connections (SQLite's one writer orders the two). `wakeQuery` repairs what a success
    /// committed during the park left asleep; the bound covers one committed during the repair.
    static let waitingSQL = """
        SELECT c.id, (
            SELECT CASE WHEN h.lease_expires_at > $2 THEN LEAST(h.lease_expires_at, $2 + \(inFlightBoundMillis)) ELSE h.next_attempt_at END
            FROM deliveries h
            WHERE h.subscription_id = c.subscription_id AND h.order_key = c.order_key AND h.event_seq < c.event_seq
              AND h.\(PostgresSchema.unfinished)
            ORDER BY h.event_seq LIMIT 1) AS bound
        FROM deliveries c
        WHERE c.subscription_id = $1 AND c.\(PostgresSchema.unfinished) AND c.next_attempt_at <= $2
          AND (c.lease_expires_at IS NULL OR c.lease_expires_at <= $2) AND c.order_key IS NOT NULL
          AND EXISTS (SELECT 1 FROM deliveries o WHERE o.subscription_id = $1 AND o.order_key IS NOT NULL
                        AND o.\(PostgresSchema.unfinished))
        """

    /// How long a delivery waiting behind an attempt in flight stays parked at most: past it, a
    /// walk (and a park again if the attempt is still out). Attempts seldom take as long.
    static let inFlightBoundMillis = 5000

    static func waitingBinds(_ subscriptionId: String, _ now: Int) -> PostgresBindings {
        var binds = PostgresBindings()
        binds.append(subscriptionId)
        binds.append(now)
        return binds
    }

    /// The attempt is recorded whatever happened meanwhile; only the lease holder moves the
    /// delivery on (a cancelled one, or one taken over after its lease expired, stays as it is).
    /// Attempts finishing together are written by one statement (`attemptGroups`).
    public func recordAttempt(deliveryId: String, owner: String, attempt: DeliveryAttempt, verdict: DeliveryVerdict, now: Date) async throws {
        try await attemptGroups.submit(AttemptWrite(deliveryId: deliveryId, owner: owner, attempt: attempt, verdict: verdict, now: now))
    }

    /// The attempts finishing together (`attemptGroups`), one statement for them all.
    static func recordGroup(_ writes: [AttemptWrite], access: Access) async -> [Result<Void, any Error>] {
        await writeGroup(writes, access: access, what: "delivery attempts") { writes, connection in
            _ = try await connection.fetch(AttemptsStatement(writes: writes), logger: access.logger)
            return writes.map { _ in () }
        }
    }

    /// The group's attempts as rows of `attempts`, and their deliveries moved on, in one
    /// statement: one round trip and one commit instead of one of each per delivery. Columns go
    /// as arrays (nullable ones with a mask: postgres-nio sends no NULL inside an array).
    static func attemptsQuery(_ writes: [AttemptWrite]) -> PostgresQuery {
        """
        WITH a AS (
            SELECT * FROM unnest(\(writes.map(\.deliveryId))::text[], \(writes.map(\.owner))::text[],
                                 \(writes.map(\.status.rawValue))::text[], \(writes.map { $0.nextAttemptAt.map(millis) ?? 0 })::bigint[],
                                 \(writes.map { $0.nextAttemptAt != nil })::bool[], \(writes.map { millis($0.now) })::bigint[],
                                 \(writes.map { millis($0.attempt.at) })::bigint[], \(writes.map { $0.attempt.statusCode ?? 0 })::bigint[],
                                 \(writes.map { $0.attempt.statusCode != nil })::bool[], \(writes.map { $0.attempt.error ?? "" })::text[],
                                 \(writes.map { $0.attempt.error != nil })::bool[], \(writes.map(\.attempt.durationMs))::bigint[],
                                 \(writes.map { $0.attempt.responseExcerpt ?? "" })::text[], \(writes.map { $0.attempt.responseExcerpt != nil })::bool[])
                WITH ORDINALITY AS a (id, owner, status, next_attempt_at, has_next, now, at, status_code, has_status_code, error,
                                      has_error, duration_ms, response, has_response, n)
        ), recorded AS (
            INSERT INTO attempts (delivery_id, at, status_code, error, duration_ms, response)
            SELECT id, at, CASE WHEN has_status_code THEN status_code END, CASE WHEN has_error THEN error END, duration_ms,
                   CASE WHEN has_response THEN response END
            FROM a ORDER BY n
        ), moved AS (
            UPDATE deliveries d SET status = a.status, attempts = d.attempts + 1,
                next_attempt_at = CASE WHEN a.has_next THEN a.next_attempt_at END, lease_owner = NULL, lease_expires_at = NULL,
                updated_at = a.now
            FROM a
            WHERE d.id = a.id AND d.lease_owner = a.owner AND d.\(unescaped: PostgresSchema.unfinished)
            RETURNING d.subscription_id, d.order_key, d.event_seq, d.status, a.now
        )
        UPDATE deliveries s SET next_attempt_at = m.now
        FROM moved m
        WHERE m.order_key IS NOT NULL AND m.status NOT IN ('pending', 'failed') AND s.next_attempt_at > m.now
          AND s.id = (SELECT n.id FROM deliveries n
                      WHERE n.subscription_id = m.subscription_id AND n.order_key = m.order_key AND n.event_seq > m.event_seq
                        AND n.\(unescaped: PostgresSchema.unfinished)
                      ORDER BY n.event_seq LIMIT 1)
          AND s.id NOT IN (SELECT id FROM a)
        """
    }

    /// Other nodes may be alive and holding claims: leases expire instead.
    public func releaseClaimsOfDeadProcesses(now: Date) async throws -> Int { 0 }

    public func releaseClaims(deliveryIds: [String], owner: String, now: Date) async throws {
        guard !deliveryIds.isEmpty else { return }
        _ = try await fetch(
            """
            UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, updated_at = \(Self.millis(now))
            WHERE id = ANY(\(deliveryIds)) AND lease_owner = \(owner) AND \(unescaped: PostgresSchema.unfinished)
            """)
    }

    /// When the next delivery a claim would take is due. Leased ones are not waited for (their
    /// attempts report back, and a dead node's lease is noticed by the claimer's regular
    /// wake-ups), nor an ordered user's delivery due now behind an unfinished one (its attempt's
    /// end wakes the claimer; counted, it made the claimer spin while the earlier one was in
    /// flight). A parked one counts at the time it was parked until, unchecked.
    public func nextDueTime(subscriptionId: String, now: Date) async throws -> Date? {
        let now = Self.millis(now)
        return Self.date(try await fetch(
            """
            SELECT c.next_attempt_at AS due FROM deliveries c
            WHERE c.subscription_id = \(subscriptionId) AND c.\(unescaped: PostgresSchema.unfinished)
              AND (c.lease_expires_at IS NULL OR c.lease_expires_at <= \(now))
              AND (c.next_attempt_at > \(now) OR \(unescaped: Self.notWaitingInOrder("c")))
            ORDER BY c.next_attempt_at LIMIT 1
            """).first?["due"].decode(Int?.self))
    }

    /// The delivery `c` is not an ordered user's waiting behind an earlier unfinished one (being
    /// attempted included).
    static func notWaitingInOrder(_ c: String) -> String {
        """
        (\(c).order_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM deliveries e
            WHERE e.subscription_id = \(c).subscription_id AND e.order_key = \(c).order_key
              AND e.event_seq < \(c).event_seq AND e.\(PostgresSchema.unfinished)))
        """
    }

    public func delivery(id: String) async throws -> DeliveryRecord? {
        try await fetch("SELECT * FROM deliveries WHERE id = \(id)").first.map(Self.delivery(from:))
    }

    public func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord] {
        let status = query.status.map(DeliveryStatusColumns.condition) ?? "true"
        return try await fetch(
            """
            SELECT * FROM deliveries
            WHERE (\(query.subscriptionId)::text IS NULL OR subscription_id = \(query.subscriptionId)) AND \(unescaped: status)
              AND (\(query.before)::text IS NULL OR id < \(query.before))
            ORDER BY id DESC LIMIT \(max(1, min(query.limit, 500)))
            """).map(Self.delivery(from:))
    }

    public func deliveries(eventId: String) async throws -> [DeliveryRecord] {
        try await fetch("SELECT * FROM deliveries WHERE event_id = \(eventId) ORDER BY subscription_id").map(Self.delivery(from:))
    }

    public func attempts(deliveryId: String) async throws -> [DeliveryAttempt] {
        try await fetch("SELECT * FROM attempts WHERE delivery_id = \(deliveryId) ORDER BY seq").map { row in
            DeliveryAttempt(at: Self.date(try row["at"].decode(Int.self)), statusCode: try row["status_code"].decode(Int?.self),
                            error: try row["error"].decode(String?.self), durationMs: try row["duration_ms"].decode(Int.self),
                            responseExcerpt: try row["response"].decode(String?.self))
        }
    }

    public func retryDelivery(id: String, now: Date) async throws -> DeliveryRecord? {
        let now = Self.millis(now)
        return try await transaction { connection in
            try await connection.run(
                """
                UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'failed' END, next_attempt_at = \(now),
                    updated_at = \(now)
                WHERE id = \(id) AND lease_owner IS NULL
                """, logger: self.logger)
            return try await connection.fetch("SELECT * FROM deliveries WHERE id = \(id)", logger: self.logger).first.map(Self.delivery(from:))
        }
    }

    public func replay(subscription: Subscription, since: Date, until: Date, status: DeliveryStatus?, now: Date) async throws -> Int {
        let millis = Self.millis(now)
        var count = 0
        try await forEachPage(of: subscription, since: since, until: until) { page in
            count += try await transaction { connection in
                var count = 0
                for (seq, event) in page {
                    let existing = try await connection.fetch(
                        "SELECT * FROM deliveries WHERE event_id = \(event.id) AND subscription_id = \(subscription.id) FOR UPDATE",
                        logger: self.logger).first.map(Self.delivery(from:))
                    if let existing {
                        guard existing.status != .inFlight, status == nil || status == existing.status else { continue }
                        try await connection.run(
                            """
                            UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'failed' END,
                                next_attempt_at = \(millis), updated_at = \(millis)
                            WHERE id = \(existing.id)
                            """, logger: self.logger)
                    } else {
                        guard status == nil else { continue }
                        try await Self.insertDelivery(PlannedDelivery(event: event, subscription: subscription), eventSeq: seq,
                                                      eventId: event.id, at: now, on: connection, logger: self.logger)
                    }
                    count += 1
                }
                return count
            }
        }
        return count
    }

    public func backfill(subscription: Subscription, since: Date, until: Date, now: Date) async throws -> Int {
        var created = 0
        try await forEachPage(of: subscription, since: since, until: until) { page in
            created += try await transaction { connection in
                var created = 0
                for (seq, event) in page {
                    if try await Self.insertDelivery(PlannedDelivery(event: event, subscription: subscription), eventSeq: seq, eventId: event.id,
                                                     at: now, on: connection, logger: self.logger) {
                        created += 1
                    }
                }
                return created
            }
        }
        return created
    }

    /// The events received in `since..<until` that `subscription` takes, in arrival order with
    /// their `seq` (a delivery row references it), a page at a time, each page written in a
    /// transaction of its own by `body`: a replay of weeks read them all into memory at once and
    /// held one transaction (and its row locks) for all of them.
    private func forEachPage(of subscription: Subscription, since: Date, until: Date,
                             _ body: ([(seq: Int, event: RelayEvent)]) async throws -> Void) async throws {
        var after = -1
        while true {
            let rows = try await fetch(
                """
                SELECT * FROM events WHERE seq > \(after) AND received_at >= \(Self.millis(since)) AND received_at < \(Self.millis(until))
                ORDER BY seq LIMIT \(Self.replayPage)
                """)
            guard let last = try rows.last?["seq"].decode(Int.self) else { return }
            let page = try rows.compactMap { row -> (seq: Int, event: RelayEvent)? in
                let event = try Self.event(from: row)
                guard subscription.matches(type: event.type, appid: event.appid) else { return nil }
                return (try row["seq"].decode(Int.self), event)
            }
            if !page.isEmpty { try await body(page) }
            guard rows.count == Self.replayPage else { return }
            after = last
        }
    }

    /// Events per transaction of a replay or backfill.
    static let replayPage = 500

    public func queueStats(subscriptionId: String?) async throws -> QueueStats {
        var bySubscription: [String: QueueStats] = [:]
        let rows = if let subscriptionId {
            try await fetch(
                """
                SELECT subscription_id, COUNT(*) AS depth, MIN(created_at) AS oldest FROM deliveries
                WHERE subscription_id = \(subscriptionId) AND \(unescaped: PostgresSchema.unfinished) GROUP BY subscription_id
                """)
        } else {
            try await fetch(
                """
                SELECT subscription_id, COUNT(*) AS depth, MIN(created_at) AS oldest FROM deliveries
                WHERE \(unescaped: PostgresSchema.unfinished) GROUP BY subscription_id
                """)
        }
        for row in rows {
            bySubscription[try row["subscription_id"].decode(String.self)] = QueueStats(
                depth: try row["depth"].decode(Int.self), oldestPendingCreatedAt: Self.date(try row["oldest"].decode(Int?.self)))
        }
        return QueueStats(bySubscription: bySubscription)
    }

    public func unfinishedDeliveryKeys(includingDead: Bool) async throws -> [DeliveryKey] {
        let dead = includingDead ? " OR status = 'dead'" : ""
        return try await fetch("SELECT event_id, subscription_id FROM deliveries WHERE \(unescaped: PostgresSchema.unfinished)\(unescaped: dead)").map {
            DeliveryKey(eventId: try $0["event_id"].decode(String.self), subscriptionId: try $0["subscription_id"].decode(String.self))
        }
    }

    static func delivery(from row: PostgresRandomAccessRow) throws -> DeliveryRecord {
        DeliveryRecord(
            id: try row["id"].decode(String.self), eventId: try row["event_id"].decode(String.self),
            subscriptionId: try row["subscription_id"].decode(String.self),
            status: DeliveryStatusColumns.status(stored: try row["status"].decode(String.self),
                                                 leased: try row["lease_owner"].decode(String?.self) != nil),
            attemptCount: try row["attempts"].decode(Int.self), nextAttemptAt: date(try row["next_attempt_at"].decode(Int?.self)),
            createdAt: date(try row["created_at"].decode(Int.self)), updatedAt: date(try row["updated_at"].decode(Int.self)))
    }
}
