import Foundation
import Logging
import RelayCore
@testable import RelayStore
import RelayTestSupport
import SQLiteNIO
import Synchronization
import Testing

/// Migrations that copy a table, run on what an older relay wrote.
@Suite struct SQLiteMigrationTests {
    /// Migration 9 copies `deliveries` to move the event's foreign key to `event_id` and drops two
    /// of its indexes. Dropping the old table with foreign keys enforced would have emptied
    /// `attempts` through their cascade; claims work by rowid, so rowids must survive the copy.
    @Test func migration9KeepsEveryDeliveryAndAttemptAndCascadesByEventId() async throws {
        let logs = CapturedLogs()
        let store = try await SQLiteRelayStore.open(path: makeTemporaryDirectory() + "/m9.sqlite",
                                                    logger: Logger(label: "test") { _ in logs.handler() })
        defer { Task { try? await store.close() } }
        try await store.migrate(upTo: 8)
        let subscription = try await store.syncConfigSubscriptions(
            [Subscription(id: "sink", url: "http://127.0.0.1:9/hook", source: .config, createdAt: Date(), secret: "whsec_c2VjcmV0")],
            now: Date())[0]
        let old = Date(timeIntervalSince1970: 1_800_000_000), recent = old + 3600
        try await DeliveryQueueTests.commitEvents(3, at: old, to: subscription, in: store)
        try await DeliveryQueueTests.commitEvents(2, from: 3, at: recent, to: subscription, in: store)
        let claimed = try await store.claimDeliveries(subscriptionId: "sink", limit: 3, now: recent, leaseUntil: recent + 30, owner: "me")
        #expect(claimed.count == 3)
        let failure = DeliveryAttempt(at: recent, statusCode: 500, error: nil, durationMs: 3, responseExcerpt: "down")
        let success = DeliveryAttempt(at: recent, statusCode: 204, error: nil, durationMs: 2, responseExcerpt: nil)
        try await store.recordAttempt(deliveryId: claimed[0].id, owner: "me", attempt: failure, verdict: .retry(at: recent + 60), now: recent)
        try await store.recordAttempt(deliveryId: claimed[1].id, owner: "me", attempt: success, verdict: .succeeded, now: recent)
        // claimed[2] stays leased: in flight across the upgrade.

        func snapshot() async throws -> [String] {
            try await store.reader.query("SELECT rowid AS r, * FROM deliveries ORDER BY rowid").map { row in
                ["r", "id", "event_seq", "event_id", "status", "attempts", "next_attempt_at", "lease_owner", "succeeded_at", "created_at"]
                    .map { row.column($0).map { "\($0)" } ?? "NULL" }.joined(separator: "|")
            }
        }
        let deliveriesBefore = try await snapshot()
        let attemptsBefore = try await store.attempts(deliveryId: claimed[0].id)
        #expect(attemptsBefore == [failure] && deliveriesBefore.count == 5)

        #expect(logs.lines.isEmpty)  // creating the schema is not an upgrade
        try await store.migrate()

        // An upgrade may pause the start for a while: the log says why.
        #expect(logs.lines.count == 2 && logs.lines[0].hasPrefix("notice upgrading the SQLite schema from=8")
                && logs.lines[0].contains("to=\(SQLiteSchema.migrations.count)") && logs.lines[1].hasPrefix("notice upgraded the SQLite schema"),
                "\(logs.lines)")
        #expect(try await snapshot() == deliveriesBefore)
        #expect(try await store.attempts(deliveryId: claimed[0].id) == attemptsBefore)
        #expect(try await store.attempts(deliveryId: claimed[1].id) == [success])
        #expect(try await store.delivery(id: claimed[2].id)?.status == .inFlight)
        let indexes = try await store.reader.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries'")
            .compactMap { $0.column("name")?.string }
        #expect(!indexes.contains("deliveries_event_seq") && !indexes.contains("deliveries_unfinished"), "\(indexes)")
        #expect(indexes.contains("deliveries_due") && indexes.contains("deliveries_order") && indexes.contains("deliveries_failed"), "\(indexes)")
        #expect(try await store.writer.query("PRAGMA foreign_keys").first?.column("foreign_keys")?.integer == 1)

        // The queue goes on where it was: all but the delivered one are due by then (the lease
        // of the one in flight has expired).
        let all = try await store.deliveries(DeliveryQuery(subscriptionId: "sink", limit: 10)).map(\.id)
        let next = try await store.claimDeliveries(subscriptionId: "sink", limit: 5, now: recent + 60, leaseUntil: recent + 90, owner: "me")
        #expect(Set(next.map(\.id)) == Set(all).subtracting([claimed[1].id]) && next.count == 4)
        // ...and purging the old events takes their deliveries and attempts with them, now by event id.
        #expect(try await store.purgeEvents(before: old + 1, limit: 10) == 3)
        let left = try await store.reader.query("SELECT (SELECT COUNT(*) FROM deliveries) AS d, (SELECT COUNT(*) FROM attempts) AS a").first
        #expect(left?.column("d")?.integer == 2 && left?.column("a")?.integer == 0)
    }

    @Test func aMigratedDatabaseIsNotMigratedAgain() async throws {
        let path = makeTemporaryDirectory() + "/again.sqlite"
        let store = try await SQLiteRelayStore.open(path: path, logger: Logger(label: "test"))
        try await store.migrate()
        try await store.migrate()
        let versions = try await store.reader.query("SELECT COUNT(*) AS n, MAX(version) AS v FROM schema_migrations").first
        #expect(versions?.column("n")?.integer == SQLiteSchema.migrations.count)
        #expect(versions?.column("v")?.integer == SQLiteSchema.migrations.count)
        try await store.close()
    }
}
