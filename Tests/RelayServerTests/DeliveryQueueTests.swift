import Foundation
import Logging
import RelayCore
@testable import RelayStore
import RelayTestSupport
import SQLiteNIO
import Testing

/// The delivery queue at the store level: what a claim reads, and when the next one is due.
@Suite struct DeliveryQueueTests {
    static func withStore<T>(_ body: (SQLiteRelayStore, Subscription) async throws -> T) async throws -> T {
        let store = try await SQLiteRelayStore.open(path: makeTemporaryDirectory() + "/queue.sqlite", logger: Logger(label: "test"))
        do {
            try await store.migrate()
            let subscriptions = try await store.syncConfigSubscriptions(
                [Subscription(id: "sink", url: "http://127.0.0.1:9/hook", source: .config, createdAt: Date(), secret: "whsec_c2VjcmV0")],
                now: Date())
            let result = try await body(store, subscriptions[0])
            try await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }

    static func commitEvents(_ count: Int, from first: Int = 0, at date: Date, to subscription: Subscription, in store: SQLiteRelayStore)
        async throws {
        for i in first..<(first + count) {
            let event = RelayEvent(id: EventID.make(at: date), type: "message.text", appid: "wxqueue", componentAppid: nil, receivedAt: date,
                                   dataJSON: #"{"MsgId":"\#(i)"}"#, dedupKey: "msg:\(i)", fromUser: "oUser\(i)")
            _ = try await store.commit(IntakeRecord(event: event, ticket: nil,
                                                    deliveries: PlannedDelivery.plan(for: event, subscriptions: [subscription])))
        }
    }

    /// A claim must read due deliveries in index order and stop at its limit: the earlier single
    /// query with an `OR` across statuses sorted the whole backlog on every claim.
    @Test func claimReadsTheDueIndexInsteadOfSortingTheBacklog() async throws {
        try await Self.withStore { store, _ in
            func plan(_ sql: String, _ binds: [SQLiteData] = [.integer(0), .text("sink")]) async throws -> [String] {
                try await store.reader.query("EXPLAIN QUERY PLAN " + sql, binds).compactMap { $0.column("detail")?.string }
            }
            let claim = try await plan(SQLiteRelayStore.claimSQL(limit: 8), [.integer(0), .text("sink"), .text("o"), .integer(0)])
            #expect(claim.filter { $0.contains("USING INDEX deliveries_due (subscription_id=? AND status=? AND next_attempt_at<?)") }.count == 2,
                    "\(claim)")
            // An ordered user's earlier unfinished delivery is looked up in the (partial) order index.
            #expect(claim.filter { $0.contains("INDEX deliveries_order (subscription_id=? AND order_key=? AND event_seq<?)") }.count == 2,
                    "\(claim)")
            for branch in SQLiteRelayStore.dueBranches(limit: 8) {  // pending, failed
                let steps = try await plan(branch)
                #expect(steps.contains { $0.contains("USING INDEX deliveries_due (subscription_id=? AND status=? AND next_attempt_at<?)") },
                        "\(steps)")
                #expect(!steps.contains { $0.contains("TEMP B-TREE") }, "\(steps)")
            }
        }
    }

    /// The queue's indexes hold unfinished deliveries only (migration 5); SQLite uses a partial
    /// index only when the query names its condition, so every queue query must.
    /// A listing by status reads an index holding only that kind of delivery: with months of
    /// succeeded ones, walking them by id to find five dead ones took a full scan per page.
    @Test func listingsByStatusReadIndexesInsteadOfTheHistory() async throws {
        try await Self.withStore { store, _ in
            let expected: [DeliveryStatus: String] = [
                .failed: "USING INDEX deliveries_failed", .dead: "USING INDEX deliveries_dead",
                .cancelled: "USING INDEX deliveries_cancelled", .pending: "USING INDEX deliveries_due", .inFlight: "USING INDEX deliveries_due",
            ]
            for (status, index) in expected {
                for query in [DeliveryQuery(status: status), DeliveryQuery(subscriptionId: "sink", status: status, before: "dlv_x")] {
                    let (sql, binds) = SQLiteRelayStore.listingSQL(query)
                    let steps = try await store.reader.query("EXPLAIN QUERY PLAN " + sql, binds).compactMap { $0.column("detail")?.string }
                    #expect(steps.contains { $0.contains(index) } && !steps.contains { $0.contains("sqlite_autoindex_deliveries_1") },
                            "\(status): \(steps)")
                }
            }
        }
    }

    @Test func queueQueriesUseThePartialIndexes() async throws {
        try await Self.withStore { store, _ in
            func plan(_ sql: String, _ binds: [SQLiteData]) async throws -> String {
                try await store.reader.query("EXPLAIN QUERY PLAN " + sql, binds).compactMap { $0.column("detail")?.string }
                    .joined(separator: "; ")
            }
            let nextDue = try await plan(SQLiteRelayStore.nextDueSQL, [.text("sink"), .integer(0)])
            #expect(nextDue.components(separatedBy: "INDEX deliveries_due (subscription_id=? AND status=?)").count - 1 == 2, "\(nextDue)")
            let stats = try await plan(SQLiteRelayStore.queueStatsSQL, [])
            // The backlog's index alone, no row read (migration 9 folded the unfinished index into it).
            #expect(stats == "SCAN deliveries USING COVERING INDEX deliveries_due", "\(stats)")
            // One subscription's part of it, as GET /v1/subscriptions/{id} reads.
            let one = try await plan(SQLiteRelayStore.subscriptionQueueStatsSQL, [.text("sink")])
            #expect(one == "SEARCH deliveries USING COVERING INDEX deliveries_due (subscription_id=? AND status=?)", "\(one)")
        }
    }

    /// A replay reads its range a page at a time in `seq` order, walking the table from the
    /// last page's end: through `events_received_at` every page read and sorted the whole range.
    @Test func replayPagesWalkTheTableInsteadOfSortingTheRange() async throws {
        try await Self.withStore { store, _ in
            let plan = try await store.reader.query("EXPLAIN QUERY PLAN " + SQLiteRelayStore.replayPageSQL, [.integer(0), .integer(0), .integer(1)])
                .compactMap { $0.column("detail")?.string }
            #expect(plan == ["SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"], "\(plan)")
        }
    }

    /// Cancelling a subscription's backlog reads it through the due index, a batch at a time.
    @Test func cancelBatchesReadTheDueIndex() async throws {
        try await Self.withStore { store, _ in
            let plan = try await store.reader.query("EXPLAIN QUERY PLAN " + SQLiteRelayStore.cancelBatchSQL, [.integer(0), .text("crm")])
                .compactMap { $0.column("detail")?.string }
            #expect(plan.contains { $0.contains("USING COVERING INDEX deliveries_due (subscription_id=? AND status=?)") }, "\(plan)")
            #expect(SQLiteRelayStore.cancelBatchSQL.contains("LIMIT \(SQLiteRelayStore.cancelBatch))"))
        }
    }

    /// Finished deliveries leave the queue's indexes (migrations 5 and 6), so they stay the size
    /// of the backlog and an ordered user's claim does not walk that user's history.
    @Test func finishedDeliveriesLeaveTheQueueIndexes() async throws {
        try await Self.withStore { store, subscription in
            var ordered = subscription
            ordered.ordered = true
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            for i in 0..<3 {  // one user, so all three share an order key
                let event = RelayEvent(id: EventID.make(at: now), type: "message.text", appid: "wxqueue", componentAppid: nil, receivedAt: now,
                                       dataJSON: #"{"MsgId":"\#(i)"}"#, dedupKey: "msg:\(i)", fromUser: "oSameUser")
                _ = try await store.commit(IntakeRecord(event: event, ticket: nil,
                                                        deliveries: PlannedDelivery.plan(for: event, subscriptions: [ordered])))
            }
            func entries(_ index: String) async throws -> Int? {
                try await store.reader.query("SELECT SUM(ncell) AS n FROM dbstat WHERE name = ? AND pagetype = 'leaf'", [.text(index)])
                    .first?.column("n")?.integer
            }
            let indexes = ["deliveries_due", "deliveries_order"]
            for index in indexes { #expect(try await entries(index) == 3, "\(index)") }
            let attempt = DeliveryAttempt(at: now, statusCode: 204, error: nil, durationMs: 1, responseExcerpt: nil)
            for _ in 0..<2 {  // ordered: one at a time
                let claimed = try await store.claimDeliveries(subscriptionId: "sink", limit: 3, now: now, leaseUntil: now + 30, owner: "me")
                #expect(claimed.count == 1)
                try await store.recordAttempt(deliveryId: claimed[0].id, owner: "me", attempt: attempt, verdict: .succeeded, now: now)
            }
            for index in indexes { #expect(try await entries(index) == 1, "\(index)") }
        }
    }

    /// A bound LIMIT makes SQLite prepare the statement again whenever its value changes, and
    /// every claim's room differs: the limit is part of the statement instead.
    @Test func claimsWithVaryingRoomReuseTheirPreparedStatements() async throws {
        try await Self.withStore { store, subscription in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            try await Self.commitEvents(10, at: now, to: subscription, in: store)
            for limit in [2, 3, 2, 3, 2] {
                _ = try await store.claimDeliveries(subscriptionId: "sink", limit: limit, now: now, leaseUntil: now + 30, owner: "me")
            }
            let reprepares = try await store.writer.run { db in
                [2, 3].map { db.reprepares(of: SQLiteRelayStore.claimSQL(limit: $0)) }
            }
            #expect(reprepares == [0, 0])
        }
    }

    @Test func nextDueTimeConsidersEveryUnfinishedStatus() async throws {
        try await Self.withStore { store, subscription in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            #expect(try await store.nextDueTime(subscriptionId: "sink", now: now) == nil)
            try await Self.commitEvents(3, at: now, to: subscription, in: store)
            #expect(try await store.nextDueTime(subscriptionId: "sink", now: now) == now)

            let lease = now.addingTimeInterval(30)
            let claimed = try await store.claimDeliveries(subscriptionId: "sink", limit: 3, now: now, leaseUntil: lease, owner: "me")
            #expect(claimed.count == 3)
            // Only claimed deliveries: nothing to wait for (their attempts report back)...
            #expect(try await store.nextDueTime(subscriptionId: "sink", now: now) == nil)
            // ...unless their lease has expired (the process that took them died).
            #expect(try await store.nextDueTime(subscriptionId: "sink", now: lease) == now)

            let retryAt = now.addingTimeInterval(60)
            let attempt = DeliveryAttempt(at: now, statusCode: 500, error: nil, durationMs: 3, responseExcerpt: nil)
            try await store.recordAttempt(deliveryId: claimed[0].id, owner: "me", attempt: attempt, verdict: .retry(at: retryAt), now: now)
            for delivery in claimed.dropFirst() {
                try await store.recordAttempt(deliveryId: delivery.id, owner: "me", attempt: attempt, verdict: .succeeded, now: now)
            }
            // Only a failed one left, with no pending or in-flight beside it.
            #expect(try await store.nextDueTime(subscriptionId: "sink", now: now) == retryAt)
            #expect(try await store.claimDeliveries(subscriptionId: "sink", limit: 3, now: now, leaseUntil: lease, owner: "me").isEmpty)
            let again = try await store.claimDeliveries(subscriptionId: "sink", limit: 3, now: retryAt, leaseUntil: retryAt + 30, owner: "me")
            #expect(again.map(\.id) == [claimed[0].id])
            #expect(again.first?.attemptsMade == 1)
        }
    }

    /// A claim writes only the lease (moving the delivery in the queue's indexes was most of its
    /// cost); reads still show a claimed delivery as in flight, and listings filter by what they show.
    @Test func claimedDeliveriesReadAsInFlight() async throws {
        try await Self.withStore { store, subscription in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            try await Self.commitEvents(2, at: now, to: subscription, in: store)
            let claimed = try await store.claimDeliveries(subscriptionId: "sink", limit: 1, now: now, leaseUntil: now + 30, owner: "me")
            #expect(try await store.delivery(id: claimed[0].id)?.status == .inFlight)
            let inFlight = try await store.deliveries(DeliveryQuery(subscriptionId: "sink", status: .inFlight, limit: 10))
            let pending = try await store.deliveries(DeliveryQuery(subscriptionId: "sink", status: .pending, limit: 10))
            #expect(inFlight.map(\.id) == [claimed[0].id])
            #expect(pending.count == 1 && pending[0].id != claimed[0].id)
            // Not made due again behind the attempt's back.
            #expect(try await store.retryDelivery(id: claimed[0].id, now: now)?.status == .inFlight)
            // Released (graceful shutdown): pending again, no attempt counted.
            try await store.releaseClaims(deliveryIds: [claimed[0].id], owner: "me", now: now)
            let released = try await store.delivery(id: claimed[0].id)
            #expect(released?.status == .pending && released?.attemptCount == 0)
        }
    }

    /// A database from before claims kept their status may hold `in_flight` rows; at start they
    /// are due again like any claim of a dead process.
    @Test func inFlightRowsOfAnOlderRelayAreReleasedAtStart() async throws {
        try await Self.withStore { store, subscription in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            try await Self.commitEvents(2, at: now, to: subscription, in: store)
            _ = try await store.claimDeliveries(subscriptionId: "sink", limit: 1, now: now, leaseUntil: now + 30, owner: "new")
            try await store.writer.query(
                "UPDATE deliveries SET status = 'in_flight', lease_owner = 'old', lease_expires_at = ? WHERE lease_owner IS NULL",
                [.integer(SQLiteRelayStore.millis(now + 30))])
            #expect(try await store.releaseClaimsOfDeadProcesses(now: now) == 2)
            let all = try await store.deliveries(DeliveryQuery(subscriptionId: "sink", limit: 10))
            #expect(all.map(\.status) == [.pending, .pending])
            #expect(try await store.claimDeliveries(subscriptionId: "sink", limit: 5, now: now, leaseUntil: now + 30, owner: "me").count == 2)
        }
    }

    /// Before migration 8 a success was a row of `attempts` like any attempt, and the delivery's
    /// own success columns are empty: such a history still lists once, in order, and a replay
    /// adds the new success after it.
    @Test func successesRecordedBeforeMigration8StillListOnceAndInOrder() async throws {
        try await Self.withStore { store, subscription in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            try await Self.commitEvents(1, at: now, to: subscription, in: store)
            let claimed = try await store.claimDeliveries(subscriptionId: "sink", limit: 1, now: now, leaseUntil: now + 30, owner: "me")
            // What an older relay wrote for a delivery that succeeded at once.
            try await store.writer.query(
                "INSERT INTO attempts (delivery_id, at, status_code, error, duration_ms, response) VALUES (?, ?, 204, NULL, 4, NULL)",
                [.text(claimed[0].id), .integer(SQLiteRelayStore.millis(now))])
            try await store.writer.query(
                "UPDATE deliveries SET status = 'succeeded', attempts = 1, next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL")
            let legacy = DeliveryAttempt(at: now, statusCode: 204, error: nil, durationMs: 4, responseExcerpt: nil)
            #expect(try await store.attempts(deliveryId: claimed[0].id) == [legacy])
            #expect(try await store.replay(subscription: subscription, since: now - 60, until: now + 60, status: .succeeded, now: now + 10) == 1)
            let again = try await store.claimDeliveries(subscriptionId: "sink", limit: 1, now: now + 10, leaseUntil: now + 40, owner: "me")
            let success = DeliveryAttempt(at: now + 10, statusCode: 200, error: nil, durationMs: 6, responseExcerpt: "ok")
            try await store.recordAttempt(deliveryId: again[0].id, owner: "me", attempt: success, verdict: .succeeded, now: now + 10)
            #expect(try await store.attempts(deliveryId: claimed[0].id) == [legacy, success])
            // The new success lives in the row, not in `attempts`.
            let rows = try await store.reader.query("SELECT COUNT(*) AS n FROM attempts")
            #expect(rows.first?.column("n")?.integer == 1)
        }
    }

    @Test func claimsTakeTheOldestFirstAcrossStatuses() async throws {
        try await Self.withStore { store, subscription in
            let start = Date(timeIntervalSince1970: 1_800_000_000)
            try await Self.commitEvents(2, at: start, to: subscription, in: store)
            let first = try await store.claimDeliveries(subscriptionId: "sink", limit: 1, now: start, leaseUntil: start + 5, owner: "dead")
            try await Self.commitEvents(1, from: 2, at: start + 10, to: subscription, in: store)
            // At start + 20, by due time: the other pending one (start), then the expired lease
            // (start + 5); the pending one of start + 10 waits for the next claim.
            let claimed = try await store.claimDeliveries(subscriptionId: "sink", limit: 2, now: start + 20, leaseUntil: start + 50, owner: "me")
            let all = try await store.deliveries(DeliveryQuery(subscriptionId: "sink", limit: 10))
            let newest = try #require(all.max { $0.createdAt < $1.createdAt })
            #expect(claimed.count == 2)
            #expect(claimed.contains { $0.id == first[0].id })
            #expect(!claimed.contains { $0.id == newest.id })
            let last = try await store.claimDeliveries(subscriptionId: "sink", limit: 2, now: start + 20, leaseUntil: start + 50, owner: "me")
            #expect(last.map(\.id) == [newest.id])
        }
    }

    /// Intake waits for the disk (FULL); delivery bookkeeping alone does not (NORMAL), and the
    /// next intake group turns FULL back on.
    @Test func onlyDeliveryBookkeepingSkipsTheFsync() async throws {
        try await Self.withStore { store, subscription in
            func synchronous() async throws -> Int? {
                try await store.writer.query("PRAGMA synchronous").first?.column("synchronous")?.integer
            }
            let now = Date()
            try await Self.commitEvents(1, at: now, to: subscription, in: store)
            #expect(try await synchronous() == 2)
            let claimed = try await store.claimDeliveries(subscriptionId: "sink", limit: 1, now: now, leaseUntil: now + 30, owner: "me")
            #expect(try await synchronous() == 1)
            try await store.recordAttempt(deliveryId: claimed[0].id, owner: "me",
                                          attempt: DeliveryAttempt(at: now, statusCode: 204, error: nil, durationMs: 1, responseExcerpt: nil),
                                          verdict: .succeeded, now: now)
            #expect(try await synchronous() == 1)
            try await Self.commitEvents(1, from: 1, at: now, to: subscription, in: store)
            #expect(try await synchronous() == 2)
        }
    }

    /// A full database (SQLite's `max_page_count` standing in for a full disk): a push that does
    /// not fit fails, leaves nothing behind, and once there is room the store goes on.
    @Test func aFullDatabaseRefusesWholePushesAndGoesOnOnceThereIsRoom() async throws {
        try await Self.withStore { store, subscription in
            let date = Date()
            try await Self.commitEvents(5, at: date, to: subscription, in: store)
            let pages = try await store.writer.query("PRAGMA page_count")[0].values[0].integer ?? 0
            try await store.writer.query("PRAGMA max_page_count = \(pages)")
            var refused = 0
            for i in 5..<200 {
                do {
                    try await Self.commitEvents(1, from: i, at: date, to: subscription, in: store)
                } catch {
                    #expect("\(error)".contains("database or disk is full"), "\(error)")
                    refused += 1
                }
            }
            #expect(refused > 0)
            let counts = { try await store.writer.query("SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries)")[0]
                .values.map { $0.integer ?? -1 } }
            let kept = try await counts()
            #expect(kept[0] == kept[1] && kept[0] + refused == 200)  // no event without its delivery, nor the reverse
            try await store.writer.query("PRAGMA max_page_count = 1073741823")
            try await Self.commitEvents(10, from: 1000, at: date, to: subscription, in: store)
            #expect(try await counts() == [kept[0] + 10, kept[1] + 10])
        }
    }
}
