import Foundation
import HummingbirdTesting
import Logging
import RelayCore
@testable import RelayServer
@testable import RelayStore
import RelayTestSupport
import Testing

/// The store refusing writes while the relay runs (a full disk): the dispatcher waits for it
/// instead of asking in a loop, and delivers the backlog once it writes again.
@Suite(.timeLimit(.minutes(1))) struct StoreOutageTests {
    /// Claims fail in SQLite itself, as a full disk's commits do; intake's inserts still work.
    static let claimsFail = """
        CREATE TEMP TRIGGER claims_fail BEFORE UPDATE OF lease_owner ON deliveries WHEN NEW.lease_owner IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END
        """

    /// Runs `sql` on the store's writer connection (temporary triggers live on that connection).
    static func execute(_ sql: String, on store: SQLiteRelayStore) async throws {
        _ = try await store.writer.run { db in try db.query(sql) }
    }

    /// With a full disk the claimer asked again at once, every time: 630 failed claims and as many
    /// error lines a second per subscription, for as long as the disk stayed full.
    @Test func failedClaimsBackOffAndTheBacklogGoesOutWhenTheStoreWritesAgain() async throws {
        try await TestReceiver.run { receiver, port in
            try await TestRelay.with(extraYAML: """
                delivery:
                  allow_private_networks: true
                subscriptions:
                  - id: crm
                    url: http://127.0.0.1:\(port)/hook
                """) { relay in
                let store = try #require(relay.store as? SQLiteRelayStore)
                try await Self.execute(Self.claimsFail, on: store)
                let logs = CapturedLogs(), reports = Reports()
                let logger = Logger(label: "relay") { _ in logs.handler() }
                try await relay.application(logger: logger, onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    #expect(try await client.send(relay.textPush()).body == "success")
                    let first = try await logs.line(containing: "cannot claim deliveries")
                    #expect(first.hasPrefix("error") && first.contains("failures_in_a_row=1") && first.contains("next_claim_in_ms=100"))
                    // Time for a loop that asks again at once to show itself; the test clock
                    // stands still, so the backoff does not run out meanwhile.
                    try await Task.sleep(for: .milliseconds(200))
                    // Past the backoff and the log throttle's second: the next failure is logged,
                    // and says it is the second, with none left out before it.
                    relay.clock.advance(by: 1.1)
                    let second = try await logs.line(containing: "failures_in_a_row=2")
                    #expect(second.contains("next_claim_in_ms=200") && !second.contains("suppressed"))
                    #expect(receiver.requests.isEmpty)

                    try await Self.execute("DROP TRIGGER claims_fail", on: store)
                    relay.clock.advance(by: 0.2)
                    let delivered = try await reports.next(1)
                    #expect(delivered.map(\.verdict) == [.succeeded])
                    #expect(try await receiver.next(1).count == 1)
                }
            }
        }
    }

    /// A settlement the store failed was dropped with an error line: the events another node
    /// stored before it knew a new subscription were never delivered to it, unless someone
    /// replayed them by hand.
    @Test func aSettlementTheStoreFailedIsTriedAgain() async throws {
        try await TestReceiver.run { receiver, port in
            try await TestRelay.with(extraYAML: AdminAPITests.yaml()) { relay in
                let store = try #require(relay.store as? SQLiteRelayStore)
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }).test(.router) { client async throws in
                    let created = try await AdminAPITests.call(client, .post, "/v1/subscriptions",
                                                               json: #"{"id": "late", "url": "http://127.0.0.1:\#(port)/hook"}"#)
                    #expect(created.status == 201)
                    // What a node still on the old list writes: the event, no delivery to "late".
                    let now = relay.clock.now()
                    let event = RelayEvent(id: EventID.make(at: now), type: "message.text", appid: "wx1", componentAppid: nil,
                                           receivedAt: now, dataJSON: "{}", dedupKey: "missed", fromUser: nil)
                    _ = try await relay.store.commit(IntakeRecord(event: event, ticket: nil))
                    try await Self.execute("CREATE TEMP TRIGGER inserts_fail BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
                                           on: store)
                    relay.clock.advance(by: 16)
                    let failed = try await logs.line(containing: "cannot settle a subscription change")
                    #expect(failed.contains("trying again") && failed.contains("retry_in_s=5"), "\(failed)")

                    try await Self.execute("DROP TRIGGER inserts_fail", on: store)
                    relay.clock.advance(by: 5)
                    #expect(try await receiver.next().headers["webhook-id"] == event.id)
                }
            }
        }
    }

    @Test func theBackoffDoublesUpToFiveSecondsAndEndsWithAClaimThatWorks() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var backoff = Backoff(first: 0.1, longest: 5)
        #expect(backoff.remaining(at: start) == nil)
        let waits = (0..<10).map { _ in backoff.failed(at: start) }
        #expect(waits == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5, 5, 5])
        #expect(backoff.remaining(at: start) == 5)
        #expect(backoff.remaining(at: start.addingTimeInterval(4)) == 1)
        #expect(backoff.remaining(at: start.addingTimeInterval(5)) == nil)
        backoff.succeeded()
        #expect(backoff.remaining(at: start) == nil)
        #expect(backoff.failed(at: start) == 0.1)
    }
}
