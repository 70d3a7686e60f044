import Foundation
import Logging
import PostgresNIO
import RelayCore
@testable import RelayServer
@testable import RelayStore
import RelayTestSupport
import Testing

/// The PostgreSQL store writes pushes, and delivery attempts, that arrive together with one
/// statement per group. Whether concurrent calls do form a group depends on timing, so these
/// tests hand a group to the statement directly.
@Suite(.enabled(if: StoreBackend.postgresURL != nil, "RELAY_TEST_POSTGRES_URL names no PostgreSQL server"), .timeLimit(.minutes(1)))
struct PostgresGroupTests {
    static let now = StoreContractTests.now

    static func withStore<T: Sendable>(_ body: (PostgresRelayStore) async throws -> T) async throws -> T {
        try await StoreContractTests.withStore(.postgres) { store in try await body(try #require(store as? PostgresRelayStore)) }
    }

    static func record(_ key: String, componentAppid: String? = "wxc", from user: String? = nil, data: String? = nil,
                       to subscriptions: [String] = ["crm"], orderKey: String? = nil) -> IntakeRecord {
        let event = RelayEvent(id: EventID.make(at: now), type: "message.text", appid: "wx1", componentAppid: componentAppid,
                               receivedAt: now, dataJSON: data ?? #"{"k":"\#(key)"}"#, dedupKey: key, fromUser: user)
        return IntakeRecord(event: event, ticket: nil, deliveries: subscriptions.map { PlannedDelivery(subscriptionId: $0, orderKey: orderKey) })
    }

    /// A connection the pool hands over after the operation's timeout has fired is not used: a
    /// query sent on it through a silent network would never end, nor would the race waiting for
    /// it. One held before the timeout is closed by it (its query fails); one released before is
    /// left alone. (No query is sent on a closed connection here: postgres-nio may leave it
    /// unanswered, which hung a CI run of an earlier version of this test.)
    @Test func aConnectionLeasedAfterTheTimeoutIsNotUsed() async throws {
        try await StoreBackend.postgres.withStorageURL { url in
            func connect() async throws -> PostgresConnection {
                try await PostgresConnection.connect(configuration: try PostgresURL(url).connectionConfiguration(), id: 1, logger: Logger(label: "test"))
            }
            let late = try await connect(), held = try await connect(), done = try await connect()
            let afterTimeout = LeasedConnection()
            afterTimeout.close()
            #expect(!afterTimeout.hold(late))
            #expect(!afterTimeout.wasClosed)
            _ = try await late.query("SELECT 1", logger: Logger(label: "test"))  // left as it was, for the pool
            try await late.close()

            let beforeTimeout = LeasedConnection()
            #expect(beforeTimeout.hold(held))
            beforeTimeout.close()
            #expect(beforeTimeout.wasClosed)
            try await held.closeFuture.get()

            let released = LeasedConnection()
            #expect(released.hold(done))
            released.release()
            released.close()
            #expect(!released.wasClosed)
            _ = try await done.query("SELECT 1", logger: Logger(label: "test"))
            try await done.close()
        }
    }

    @Test func aGroupKeepsArrivalOrderNullsAndItsDuplicates() async throws {
        try await Self.withStore { (store: PostgresRelayStore) async throws -> Void in
            let first = Self.record("a", componentAppid: nil, from: "u1", orderKey: "u1")
            let second = Self.record("b", from: nil, to: ["crm", "bi"])
            let retry = Self.record("a", from: "u1", orderKey: "u1")  // the same push again, in the same group
            let empty = Self.record("c", from: "", orderKey: "")
            let outcomes = await PostgresRelayStore.commitGroup([first, second, retry, empty], access: store.access)
            #expect(try outcomes.map { try $0.get() } == [.stored(eventID: first.event!.id), .stored(eventID: second.event!.id),
                                                          .duplicate(eventID: first.event!.id), .stored(eventID: empty.event!.id)])
            for record in [first, second, empty] { #expect(try await store.event(id: record.event!.id) == record.event) }
            #expect(try await store.event(id: retry.event!.id) == nil)
            // Newest first: the group's order is the order of arrival.
            #expect(try await store.events(EventQuery(limit: 10)).map(\.id) == [empty, second, first].map { $0.event!.id })
            #expect(try await store.deliveries(eventId: second.event!.id).map(\.subscriptionId) == ["bi", "crm"])
            let keys = try await store.fetch("SELECT event_id, order_key FROM deliveries ORDER BY event_seq, subscription_id")
                .map { (try $0["event_id"].decode(String.self), try $0["order_key"].decode(String?.self)) }
            #expect(keys.map(\.0) == [first, second, second, empty].map { $0.event!.id })
            #expect(keys.map(\.1) == ["u1", nil, nil, ""])
        }
    }

    /// One push the server refuses (PostgreSQL text holds no NUL) fails alone, not its group.
    @Test func aGroupTheServerRefusesIsStoredPushByPush() async throws {
        try await Self.withStore { (store: PostgresRelayStore) async throws -> Void in
            let good = Self.record("good"), bad = Self.record("bad", data: "{\"k\":\"\u{0}\"}"), later = Self.record("later")
            let outcomes = await PostgresRelayStore.commitGroup([good, bad, later], access: store.access)
            #expect(try outcomes[0].get() == .stored(eventID: good.event!.id))
            guard case .failure(let refusal) = outcomes[1] else { Issue.record("the push PostgreSQL cannot hold was stored"); return }
            #expect("\(refusal)".contains("SQLSTATE"))
            #expect(try outcomes[2].get() == .stored(eventID: later.event!.id))
            #expect(try await store.events(EventQuery(limit: 10)).map(\.id) == [later, good].map { $0.event!.id })
            #expect(try await store.queueStats().depth == 2)
        }
    }

    @Test func aGroupOfAttemptsMovesOnlyTheDeliveriesItsOwnerLeased() async throws {
        try await Self.withStore { (store: PostgresRelayStore) async throws -> Void in
            for key in ["a", "b", "c"] { _ = try await store.commit(Self.record(key)) }
            let claimed = try await store.claimDeliveries(subscriptionId: "crm", limit: 3, now: Self.now, leaseUntil: Self.now + 30, owner: "n1")
            #expect(claimed.count == 3)
            let (a, b, c) = (claimed[0].id, claimed[1].id, claimed[2].id)
            let ok = DeliveryAttempt(at: Self.now, statusCode: 204, error: nil, durationMs: 3, responseExcerpt: "fine")
            let refused = DeliveryAttempt(at: Self.now, statusCode: nil, error: "connection refused", durationMs: 1, responseExcerpt: nil)
            let recorded = await PostgresRelayStore.recordGroup([
                AttemptWrite(deliveryId: a, owner: "n1", attempt: ok, verdict: .succeeded, now: Self.now),
                AttemptWrite(deliveryId: b, owner: "n1", attempt: refused, verdict: .retry(at: Self.now + 60), now: Self.now),
                AttemptWrite(deliveryId: c, owner: "n2", attempt: ok, verdict: .succeeded, now: Self.now),  // not its lease
            ], access: store.access)
            #expect(recorded.allSatisfy { if case .success = $0 { true } else { false } })
            let delivered = try #require(try await store.delivery(id: a))
            #expect(delivered.status == .succeeded && delivered.attemptCount == 1 && delivered.nextAttemptAt == nil)
            let retried = try #require(try await store.delivery(id: b))
            #expect(retried.status == .failed && retried.attemptCount == 1 && retried.nextAttemptAt == Self.now + 60)
            let untouched = try #require(try await store.delivery(id: c))
            #expect(untouched.status == .inFlight && untouched.attemptCount == 0)
            #expect(try await store.attempts(deliveryId: a) == [ok])
            #expect(try await store.attempts(deliveryId: b) == [refused])
            #expect(try await store.attempts(deliveryId: c) == [ok])  // recorded all the same
        }
    }

    /// A prepared statement's SQL is fixed when it is first prepared on a connection; each
    /// execution sends only the values. So the SQL must not depend on them.
    @Test func theHotStatementsSQLDoesNotDependOnTheValues() {
        let records = [Self.record("a", componentAppid: nil, to: ["crm", "bi"], orderKey: "u"), Self.record("b", to: [])]
        #expect(PostgresRelayStore.intakeQuery(records).sql == PostgresRelayStore.IntakeStatement.sql)
        let attempt = DeliveryAttempt(at: Self.now, statusCode: nil, error: "x", durationMs: 1, responseExcerpt: nil)
        let writes = [AttemptWrite(deliveryId: "d", owner: "o", attempt: attempt, verdict: .retry(at: Self.now), now: Self.now)]
        #expect(PostgresRelayStore.attemptsQuery(writes).sql == PostgresRelayStore.AttemptsStatement.sql)
        #expect(PostgresRelayStore.claimQuery(subscriptionId: "crm", limit: 17, now: 5, leaseUntil: 9, owner: "n1").sql
            == PostgresRelayStore.ClaimStatement.sql)
        #expect(!PostgresRelayStore.ClaimStatement.sql.contains("*"))
        #expect(PostgresRelayStore.wakeQuery(parked: ["a", "b"], now: 5).sql == PostgresRelayStore.WakeStatement.sql)
    }

    /// A success recorded while a claim parked its successors can leave them parked behind a
    /// finished head: the park read the head in flight in its snapshot, the success found
    /// nothing parked yet to wake. The park's wake statement, in a snapshot of its own, makes
    /// the new head due; the rest wait for it as before. (Here the head is finished behind the
    /// store's back, as the racing success would have it.)
    @Test func parkedDeliveriesWithNothingBeforeThemAreWoken() async throws {
        try await Self.withStore { store in
            try await store.insertSubscription(StoreContractTests.subscription("bot", ordered: true))
            let alice = try await StoreContractTests.commit((0..<DeliveryParking.threshold + 3).map { "a\($0)" }, to: ["bot"], in: store,
                                                            from: "alice")
            let head = try await store.claimDeliveries(subscriptionId: "bot", limit: 5, now: Self.now, leaseUntil: Self.now + 30, owner: "a")
            #expect(head.map(\.event.id) == [alice[0].id])
            func next(_ event: RelayEvent) async throws -> Date? { try await store.deliveries(eventId: event.id).first?.nextAttemptAt }
            #expect(try await next(alice[1]) == Self.now + 5)  // parked behind the head in flight
            _ = try await store.fetch("UPDATE deliveries SET status = 'succeeded', lease_owner = NULL WHERE id = \(head[0].id)")
            var parked: [String] = []
            for event in alice.dropFirst() { parked.append(try #require(try await store.deliveries(eventId: event.id).first).id) }
            _ = try await store.fetch(PostgresRelayStore.wakeQuery(parked: parked, now: PostgresRelayStore.millis(Self.now + 1)))
            #expect(try await next(alice[1]) == Self.now + 1)
            #expect(try await next(alice[2]) == Self.now + 5)  // alice[1] is before it
        }
    }
}

