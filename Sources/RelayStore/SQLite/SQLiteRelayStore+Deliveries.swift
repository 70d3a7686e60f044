import Foundation
import RelayCore
import SQLiteNIO

extension SQLiteRelayStore {
    public func claimDeliveries(subscriptionId: String, limit: Int, now: Date, leaseUntil: Date, owner: String) async throws -> [ClaimedDelivery] {
        guard limit > 0 else { return [] }
        return try await write(isolated: false, durable: false) { [parkingChecks] db in
            let rows = try db.query(
                Self.claimSQL(limit: limit),
                [.integer(Self.millis(now)), .text(subscriptionId), .text(owner), .integer(Self.millis(leaseUntil))]
            ).map { (id: $0.values[0].string ?? "", attempts: $0.values[1].integer ?? 0, eventSeq: $0.values[2].integer ?? 0) }
            // A short claim walked every due delivery, those waiting in order included.
            if rows.count < limit, parkingChecks.due(subscriptionId, at: now) {
                let binds: [SQLiteData] = [.integer(Self.millis(now)), .text(subscriptionId)]
                if try db.query(Self.waitingSQL, binds).first?.values.first?.integer ?? 0 >= DeliveryParking.threshold {
                    _ = try db.query(Self.parkSQL, binds)
                }
            }
            guard !rows.isEmpty else { return [] }
            // The events are read in the same work item, from the writer's warm cache, by their
            // rowid (`seq`) rather than through the index on their text id.
            let placeholders = Array(repeating: "?", count: rows.count).joined(separator: ",")
            let events = try db.query("SELECT * FROM events WHERE seq IN (\(placeholders)) ORDER BY seq", rows.map { .integer($0.eventSeq) })
            let bySeq = Dictionary(rows.map { ($0.eventSeq, $0) }, uniquingKeysWith: { first, _ in first })
            return events.compactMap { row in
                row.column("seq")?.integer.flatMap { bySeq[$0] }.map {
                    ClaimedDelivery(id: $0.id, subscriptionId: subscriptionId, attemptsMade: $0.attempts, event: Self.event(from: row))
                }
            }
        }
    }

    /// Takes up to `limit` due deliveries of subscription ?2 at time ?1 under owner ?3's lease
    /// until ?4.
    ///
    /// A claim only writes the lease: the status stays `pending` or `failed` (reads show a leased
    /// one as `in_flight`). Changing the status moved the delivery in two indexes, and that was
    /// most of a claim's cost; now only the attempt's record touches the indexes. The due scan
    /// steps over the leased deliveries at the head of the queue (at most twice
    /// `max_in_flight_per_subscription` per process), and a lease that expires (its process died)
    /// makes its delivery due again by itself. The limit is written into the statement: SQLite
    /// prepares a statement again whenever a bound LIMIT changes, and the room to claim changes
    /// all the time. Rows are picked by rowid, which the due index carries.
    static func claimSQL(limit: Int) -> String {
        """
        UPDATE deliveries SET lease_owner = ?3, lease_expires_at = ?4, updated_at = ?1
        WHERE rowid IN (SELECT rid FROM (
            \(dueBranches(limit: limit).map { "SELECT * FROM (\($0))" }.joined(separator: " UNION ALL "))
        ) ORDER BY due, event_seq LIMIT \(limit))
        RETURNING id, attempts, event_seq
        """
    }

    /// Pending and failed deliveries are due at their next attempt unless leased; each kind comes
    /// in index order.
    static func dueBranches(limit: Int) -> [String] {
        ["pending", "failed"].map {
            dueBranch("d.status = '\($0)' AND d.next_attempt_at <= ?1 AND \(unleased("d", at: "?1"))", limit: limit)
        }
    }

    /// Not under a live lease at `time` (a parameter or column) — the condition is on `table`'s row.
    static func unleased(_ table: String, at time: String) -> String {
        "(\(table).lease_expires_at IS NULL OR \(table).lease_expires_at <= \(time))"
    }

    /// One kind of due delivery, read in `deliveries_due` order and cut at the limit, so a claim
    /// costs the same with a backlog of a million as with ten. (One query with an `OR` across
    /// statuses made SQLite sort the whole backlog on every claim: 24 ms at 20,000 pending.)
    /// An ordered user's delivery waits while an earlier one of the same user is unfinished.
    /// (`CAST`: with a plain `= ?2` before an ORDER BY, SQLite prepares the statement again each
    /// time ?2 is bound.)
    /// `parkedAfter`: a delivery due later than that time counts without the order check (it
    /// may be parked, and its next attempt is when to look again).
    static func dueBranch(_ condition: String, limit: Int, parkedAfter: String? = nil) -> String {
        """
        SELECT d.rowid AS rid, d.next_attempt_at AS due, d.event_seq FROM deliveries d
        WHERE d.subscription_id = CAST(?2 AS TEXT) AND \(condition) AND d.\(SQLiteSchema.unfinished)
          AND (\(parkedAfter.map { "d.next_attempt_at > \($0) OR " } ?? "")d.order_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM deliveries e
                WHERE e.subscription_id = d.subscription_id AND e.order_key = d.order_key
                  AND e.event_seq < d.event_seq AND e.\(SQLiteSchema.unfinished)))
        ORDER BY d.next_attempt_at, d.event_seq LIMIT \(limit)
        """
    }

    /// Parks the due deliveries waiting in order that the claim walked past (`DeliveryParking`).
    static let parkSQL = """
        UPDATE deliveries SET next_attempt_at = p.bound
        FROM (SELECT * FROM (
            \(["pending", "failed"].map { "SELECT * FROM (\(parkBranch(status: $0)))" }.joined(separator: " UNION ALL "))
        )) AS p
        WHERE deliveries.rowid = p.rid AND p.bound > ?1
        """

    /// How many due deliveries wait in order, counted up to `DeliveryParking.threshold`.
    static let waitingSQL = """
        SELECT COUNT(*) FROM (SELECT 1 FROM (
            \(["pending", "failed"].map { "SELECT * FROM (\(parkBranch(status: $0)))" }.joined(separator: " UNION ALL "))
        ) WHERE bound > ?1 LIMIT \(DeliveryParking.threshold))
        """

    /// Due deliveries of subscription ?2 at ?1 with one status, with the time the unfinished head
    /// of their user's order can be over (NULL for a head). A subscription without ordered
    /// deliveries (one probe of `deliveries_order`) is not walked.
    static func parkBranch(status: String) -> String {
        """
        SELECT d.rowid AS rid, (
            SELECT CASE WHEN h.lease_expires_at > ?1 THEN h.lease_expires_at ELSE h.next_attempt_at END FROM deliveries h
            WHERE h.subscription_id = d.subscription_id AND h.order_key = d.order_key AND h.event_seq < d.event_seq
              AND h.\(SQLiteSchema.unfinished)
            ORDER BY h.event_seq LIMIT 1) AS bound
        FROM deliveries d
        WHERE d.subscription_id = CAST(?2 AS TEXT) AND d.status = '\(status)' AND d.next_attempt_at <= ?1
          AND \(unleased("d", at: "?1")) AND d.\(SQLiteSchema.unfinished) AND d.order_key IS NOT NULL
          AND EXISTS (SELECT 1 FROM deliveries o WHERE o.subscription_id = CAST(?2 AS TEXT) AND o.order_key IS NOT NULL
                        AND o.\(SQLiteSchema.unfinished))
        LIMIT \(DeliveryParking.batch)
        """
    }

    /// The next unfinished delivery of each user's order after one that is over is due at `now`
    /// (?1) if it was parked; the ones over come as (subscription, order key, event) triples.
    static func unparkSuccessorsSQL(count: Int) -> String {
        """
        UPDATE deliveries SET next_attempt_at = ?1
        WHERE next_attempt_at > ?1 AND rowid IN (
            SELECT (SELECT s.rowid FROM deliveries s
                    WHERE s.subscription_id = v.column1 AND s.order_key = v.column2 AND s.event_seq > v.column3
                      AND s.\(SQLiteSchema.unfinished)
                    ORDER BY s.event_seq LIMIT 1)
            FROM (VALUES \(Array(repeating: "(?, ?, ?)", count: count).joined(separator: ", "))) AS v)
        """
    }

    public func recordAttempt(deliveryId: String, owner: String, attempt: DeliveryAttempt, verdict: DeliveryVerdict, now: Date) async throws {
        try await commitAttempt(AttemptWrite(deliveryId: deliveryId, owner: owner, attempt: attempt, verdict: verdict, now: now))
    }

    /// The attempts of one group in two statements. An attempt that delivers is written into its
    /// delivery's row (migration 8); the others become rows of `attempts`. Only the lease holder
    /// moves a delivery on: a cancelled or re-claimed one stays as it is, and its attempt, even a
    /// success, is still recorded as a row.
    static func bulkAttempts(_ writes: [AttemptWrite], on db: SQLiteHandle) throws {
        let values = Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?)", count: writes.count).joined(separator: ", ")
        let moved = try db.query(
            """
            UPDATE deliveries SET status = v.column3, attempts = attempts + 1, next_attempt_at = v.column4, lease_owner = NULL,
                lease_expires_at = NULL, updated_at = v.column5, succeeded_at = v.column6, succeeded_status_code = v.column7,
                succeeded_duration_ms = v.column8, succeeded_response = v.column9
            FROM (VALUES \(values)) AS v
            WHERE deliveries.id = v.column1 AND deliveries.lease_owner = v.column2 AND deliveries.status IN ('pending', 'failed')
            RETURNING deliveries.id, deliveries.subscription_id, deliveries.order_key, deliveries.event_seq, deliveries.status,
                deliveries.updated_at
            """,
            writes.flatMap { w -> [SQLiteData] in
                let succeeded = w.status == .succeeded
                return [.text(w.deliveryId), .text(w.owner), .text(w.status.rawValue), w.nextAttemptAt.map { .integer(millis($0)) } ?? .null,
                        .integer(millis(w.now)), succeeded ? .integer(millis(w.attempt.at)) : .null,
                        succeeded ? (w.attempt.statusCode.map { .integer($0) } ?? .null) : .null,
                        succeeded ? .integer(w.attempt.durationMs) : .null, succeeded ? text(w.attempt.responseExcerpt) : .null]
            })
        let over = moved.filter { $0.values[2].string != nil && $0.values[4].string != "pending" && $0.values[4].string != "failed" }
        if let now = over.compactMap({ $0.values[5].integer }).max() {
            _ = try db.query(unparkSuccessorsSQL(count: over.count), [.integer(now)] + over.flatMap { Array($0.values[1...3]) })
        }
        let movedIds = Set(moved.compactMap { $0.values.first?.string })
        let rows = writes.filter { $0.status != .succeeded || !movedIds.contains($0.deliveryId) }
        guard !rows.isEmpty else { return }
        let placeholders = Array(repeating: "(?, ?, ?, ?, ?, ?)", count: rows.count).joined(separator: ", ")
        _ = try db.query("INSERT INTO attempts (delivery_id, at, status_code, error, duration_ms, response) VALUES \(placeholders)",
                         rows.flatMap { w -> [SQLiteData] in
                             [.text(w.deliveryId), .integer(millis(w.attempt.at)), w.attempt.statusCode.map { .integer($0) } ?? .null,
                              text(w.attempt.error), .integer(w.attempt.durationMs), text(w.attempt.responseExcerpt)]
                         })
    }

    /// Before a delivered delivery is sent again (retry, replay), its successful attempt moves
    /// from its row to `attempts`, where the next success cannot overwrite it. `where` selects
    /// the deliveries (with `binds`).
    static func setAsideSuccesses(where condition: String, _ binds: [SQLiteData], on db: SQLiteHandle) throws {
        _ = try db.query(
            """
            INSERT INTO attempts (delivery_id, at, status_code, error, duration_ms, response)
            SELECT id, succeeded_at, succeeded_status_code, NULL, succeeded_duration_ms, succeeded_response FROM deliveries
            WHERE succeeded_at IS NOT NULL AND \(condition)
            """, binds)
        _ = try db.query(
            """
            UPDATE deliveries SET succeeded_at = NULL, succeeded_status_code = NULL, succeeded_duration_ms = NULL,
                succeeded_response = NULL
            WHERE succeeded_at IS NOT NULL AND \(condition)
            """, binds)
    }

    /// One SQLite file serves one relay process, so at start every claim belongs to a dead one.
    /// (Databases written before claims kept the status may hold `in_flight` rows: they become
    /// due again too.)
    public func releaseClaimsOfDeadProcesses(now: Date) async throws -> Int {
        try await write { db in
            try db.query(
                """
                UPDATE deliveries SET
                    status = CASE WHEN status != 'in_flight' THEN status WHEN attempts = 0 THEN 'pending' ELSE 'failed' END,
                    next_attempt_at = CASE WHEN status = 'in_flight' THEN ?1 ELSE next_attempt_at END,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = ?1
                WHERE (lease_owner IS NOT NULL OR status = 'in_flight') AND \(SQLiteSchema.unfinished) RETURNING id
                """, [.integer(Self.millis(now))]).count
        }
    }

    public func releaseClaims(deliveryIds: [String], owner: String, now: Date) async throws {
        guard !deliveryIds.isEmpty else { return }
        let placeholders = Array(repeating: "?", count: deliveryIds.count).joined(separator: ",")
        try await write(isolated: false, durable: false) { db in
            _ = try db.query(
                """
                UPDATE deliveries SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
                WHERE lease_owner = ? AND status IN ('pending', 'failed') AND id IN (\(placeholders))
                """,
                [.integer(Self.millis(now)), .text(owner)] + deliveryIds.map { .text($0) })
        }
    }

    public func nextDueTime(subscriptionId: String, now: Date) async throws -> Date? {
        Self.optionalDate(try await reader.query(Self.nextDueSQL, [.integer(Self.millis(now)), .text(subscriptionId)]).first?.column("due"))
    }

    /// When the next delivery a claim of subscription ?2 would take is due, at time ?1: the
    /// claim's own branches, without "due now" and cut at one. Leased ones are not waited for
    /// (this process's own come back through their attempts, and a dead process's lease is
    /// noticed by the claimer's wake-up at least once a second), nor an ordered user's delivery
    /// due now behind an unfinished one (its attempt's end wakes the claimer); a parked one
    /// counts at the time it was parked until, without walking every parked one for the order.
    static let nextDueSQL = """
        SELECT MIN(due) AS due FROM (
            \(["pending", "failed"].map {
                "SELECT * FROM (\(dueBranch("d.status = '\($0)' AND \(unleased("d", at: "?1"))", limit: 1, parkedAfter: "?1")))"
            }
                .joined(separator: " UNION ALL "))
        )
        """

    public func delivery(id: String) async throws -> DeliveryRecord? {
        try await reader.query("SELECT * FROM deliveries WHERE id = ?", [.text(id)]).first.map(Self.delivery(from:))
    }

    public func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord] {
        let (sql, binds) = Self.listingSQL(query)
        return try await reader.query(sql, binds).map(Self.delivery(from:))
    }

    /// Newest first. A status filter reads its partial index (migration 7), or for pending and
    /// in-flight deliveries the due index, which holds the backlog only (its condition named word
    /// for word so SQLite may use it, and the index named: without statistics SQLite would rather
    /// walk the whole history by id, newest first, to find a page of old pending deliveries).
    static func listingSQL(_ query: DeliveryQuery) -> (String, [SQLiteData]) {
        let unfinished = query.status == .pending || query.status == .inFlight
        var sql = "SELECT * FROM deliveries\(unfinished ? " INDEXED BY deliveries_due" : "") WHERE 1 = 1"
        var binds: [SQLiteData] = []
        if let subscription = query.subscriptionId { sql += " AND subscription_id = ?"; binds.append(.text(subscription)) }
        if let status = query.status {
            sql += " AND " + DeliveryStatusColumns.condition(status)
            if unfinished { sql += " AND \(SQLiteSchema.unfinished)" }
        }
        if let before = query.before { sql += " AND id < ?"; binds.append(.text(before)) }
        sql += " ORDER BY id DESC LIMIT ?"
        binds.append(.integer(max(1, min(query.limit, 500))))
        return (sql, binds)
    }

    public func deliveries(eventId: String) async throws -> [DeliveryRecord] {
        try await reader.query("SELECT * FROM deliveries WHERE event_id = ? ORDER BY subscription_id", [.text(eventId)])
            .map(Self.delivery(from:))
    }

    /// The rows of `attempts`, then the successful attempt kept in the delivery's row (always
    /// the last: nothing is attempted after a success until a retry or replay sets it aside).
    public func attempts(deliveryId: String) async throws -> [DeliveryAttempt] {
        let id: [SQLiteData] = [.text(deliveryId)]
        // One read transaction: a retry setting the success aside in between would show it twice or not at all.
        let (failed, succeeded) = try await reader.run { db in
            try db.query("BEGIN")
            defer { _ = try? db.query("COMMIT") }
            return (try db.query("SELECT * FROM attempts WHERE delivery_id = ? ORDER BY seq", id),
                    try db.query("SELECT * FROM deliveries WHERE id = ? AND succeeded_at IS NOT NULL", id).first)
        }
        return failed.map {
            DeliveryAttempt(at: Self.date($0.column("at")), statusCode: $0.column("status_code")?.integer,
                            error: $0.column("error")?.string, durationMs: $0.column("duration_ms")?.integer ?? 0,
                            responseExcerpt: $0.column("response")?.string)
        } + (succeeded.map {
            [DeliveryAttempt(at: Self.date($0.column("succeeded_at")), statusCode: $0.column("succeeded_status_code")?.integer,
                             error: nil, durationMs: $0.column("succeeded_duration_ms")?.integer ?? 0,
                             responseExcerpt: $0.column("succeeded_response")?.string)]
        } ?? [])
    }

    public func retryDelivery(id: String, now: Date) async throws -> DeliveryRecord? {
        try await write { db in
            let retryable = "id = ? AND status != 'in_flight' AND lease_owner IS NULL"
            try Self.setAsideSuccesses(where: retryable, [.text(id)], on: db)
            _ = try db.query(
                """
                UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'failed' END, next_attempt_at = ?,
                    updated_at = ?
                WHERE \(retryable)
                """, [.integer(Self.millis(now)), .integer(Self.millis(now)), .text(id)])
            return try db.query("SELECT * FROM deliveries WHERE id = ?", [.text(id)]).first.map(Self.delivery(from:))
        }
    }

    public func replay(subscription: Subscription, since: Date, until: Date, status: DeliveryStatus?, now: Date) async throws -> Int {
        var count = 0
        try await forEachPage(of: subscription, since: since, until: until) { page in
            count += try await write { db in
                var count = 0
                for event in page {
                    let existing = try db.query("SELECT * FROM deliveries WHERE event_id = ? AND subscription_id = ?",
                                                [.text(event.id), .text(subscription.id)]).first.map { Self.delivery(from: $0).status }
                    if let existing {
                        guard existing != .inFlight, status == nil || status == existing else { continue }
                        try Self.setAsideSuccesses(where: "event_id = ? AND subscription_id = ?", [.text(event.id), .text(subscription.id)], on: db)
                        _ = try db.query(
                            """
                            UPDATE deliveries SET status = CASE WHEN attempts = 0 THEN 'pending' ELSE 'failed' END,
                                next_attempt_at = ?, updated_at = ? WHERE event_id = ? AND subscription_id = ?
                            """, [.integer(Self.millis(now)), .integer(Self.millis(now)), .text(event.id), .text(subscription.id)])
                    } else {
                        guard status == nil else { continue }
                        try Self.insertDeliveries([PlannedDelivery(event: event, subscription: subscription)], for: event.id, at: now, on: db)
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
            created += try await write { db in
                try page.reduce(0) { count, event in
                    count + (try Self.insertDeliveries([PlannedDelivery(event: event, subscription: subscription)], for: event.id, at: now, on: db))
                }
            }
        }
        return created
    }

    /// The events received in `since..<until` that `subscription` takes, in arrival order, a
    /// page at a time, each page written in a transaction of its own by `body`: a replay of weeks
    /// read every event of them into memory at once and wrote them in one transaction, holding
    /// the writer — and every push behind it — until it was done.
    private func forEachPage(of subscription: Subscription, since: Date, until: Date,
                             _ body: ([RelayEvent]) async throws -> Void) async throws {
        let first = try await reader.query("SELECT MIN(seq) AS seq FROM events WHERE received_at >= ?", [.integer(Self.millis(since))])
        guard var after = first.first?.column("seq")?.integer.map({ $0 - 1 }) else { return }
        while true {
            let rows = try await reader.query(Self.replayPageSQL, [.integer(after), .integer(Self.millis(since)), .integer(Self.millis(until))])
            guard let last = rows.last?.column("seq")?.integer else { return }
            let page = rows.map(Self.event(from:)).filter { subscription.matches(type: $0.type, appid: $0.appid) }
            if !page.isEmpty { try await body(page) }
            guard rows.count == Self.replayPage else { return }
            after = last
        }
    }

    /// Events per transaction of a replay or backfill.
    static let replayPage = 500

    /// The next page after seq ?1 of the events received in ?2..<?3. By rowid, not through
    /// `events_received_at`: SQLite would otherwise read the whole range through that index and
    /// sort it for every page — a replay of a million events read it two thousand times.
    static let replayPageSQL = """
        SELECT * FROM events NOT INDEXED WHERE seq > ?1 AND received_at >= ?2 AND received_at < ?3 ORDER BY seq LIMIT \(replayPage)
        """

    public func queueStats(subscriptionId: String?) async throws -> QueueStats {
        var bySubscription: [String: QueueStats] = [:]
        let rows = if let subscriptionId {
            try await reader.query(Self.subscriptionQueueStatsSQL, [.text(subscriptionId)])
        } else {
            try await reader.query(Self.queueStatsSQL)
        }
        for row in rows {
            bySubscription[row.column("subscription_id")?.string ?? ""] = QueueStats(
                depth: row.column("depth")?.integer ?? 0, oldestPendingCreatedAt: Self.optionalDate(row.column("oldest")))
        }
        return QueueStats(bySubscription: bySubscription)
    }

    /// The due index holds exactly the unfinished deliveries, the dead index the dead ones: one
    /// walk of each, no sort.
    public func unfinishedDeliveryKeys(includingDead: Bool) async throws -> [DeliveryKey] {
        var sql = "SELECT event_id, subscription_id FROM deliveries INDEXED BY deliveries_due WHERE \(SQLiteSchema.unfinished)"
        if includingDead { sql += " UNION ALL SELECT event_id, subscription_id FROM deliveries INDEXED BY deliveries_dead WHERE status = 'dead'" }
        return try await reader.query(sql).map {
            DeliveryKey(eventId: $0.column("event_id")?.string ?? "", subscriptionId: $0.column("subscription_id")?.string ?? "")
        }
    }

    static let queueStatsSQL = """
        SELECT subscription_id, COUNT(*) AS depth, MIN(CASE WHEN status IN ('pending', 'failed') THEN created_at END) AS oldest
        FROM deliveries WHERE \(SQLiteSchema.unfinished) GROUP BY subscription_id
        """

    static let subscriptionQueueStatsSQL = """
        SELECT subscription_id, COUNT(*) AS depth, MIN(CASE WHEN status IN ('pending', 'failed') THEN created_at END) AS oldest
        FROM deliveries WHERE subscription_id = ? AND \(SQLiteSchema.unfinished) GROUP BY subscription_id
        """

    static func delivery(from row: StoreRow) -> DeliveryRecord {
        DeliveryRecord(
            id: row.column("id")?.string ?? "", eventId: row.column("event_id")?.string ?? "",
            subscriptionId: row.column("subscription_id")?.string ?? "",
            status: DeliveryStatusColumns.status(stored: row.column("status")?.string ?? "",
                                                 leased: !(row.column("lease_owner")?.isNull ?? true)),
            attemptCount: row.column("attempts")?.integer ?? 0, nextAttemptAt: optionalDate(row.column("next_attempt_at")),
            createdAt: date(row.column("created_at")), updatedAt: date(row.column("updated_at")))
    }
}
