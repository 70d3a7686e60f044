import Foundation
import Logging
import PostgresNIO
import RelayCore
@testable import RelayStore
import RelayTestSupport
import Synchronization
import Testing

/// PostgreSQL behind a connection that goes silent — no reset, no close, no answer — as in a
/// network partition or with a frozen server. Runs when `RELAY_TEST_POSTGRES_URL` is set.
@Suite(.enabled(if: StoreBackend.postgresURL != nil, "RELAY_TEST_POSTGRES_URL names no PostgreSQL server"))
struct PostgresPartitionTests {
    /// postgres-nio does not abandon a query when its task is cancelled, so the store's timeout
    /// used to wait for the query it had given up on: a push hung until TCP gave up (a quarter of
    /// an hour) instead of failing after the timeout. The time limit is what fails without the fix.
    @Test(.timeLimit(.minutes(1)))
    func anOperationOnASilentConnectionFailsAfterTheTimeoutAndTheStoreRecovers() async throws {
        try await withRunningStoreBehindSilentProxy { store, proxy in
            try await store.ping()

            proxy.setSilent(true)
            let error = await #expect(throws: StoreError.self) { try await store.ping() }
            #expect(error?.description.contains("did not answer within 1.0 seconds") == true, "\(String(describing: error))")
            let record = IntakeRecord(event: RelayEvent(id: EventID.make(at: Date()), type: "message.text", appid: "wxa", componentAppid: nil,
                                                        receivedAt: Date(), dataJSON: "{}", dedupKey: "msg:1", fromUser: nil),
                                      ticket: nil)
            await #expect(throws: StoreError.self) { try await store.commit(record) }

            proxy.setSilent(false)
            try await store.ping()  // on a new connection: the silent ones were closed
            #expect(try await store.commit(record) == .stored(eventID: record.event!.id))
        }
    }

    /// A transaction whose connection the timeout closes mid-way ends with the timeout's error.
    /// postgres-nio's withTransaction then sent ROLLBACK on the closed connection, a query that is
    /// never answered (written to a closed channel, it reaches no handler), so the transaction —
    /// and every push waiting behind it — hung. Without the fix this test hangs the run (tried: no
    /// time limit can end a task waiting for a query nobody answers); with it, it takes 1 s.
    @Test(.timeLimit(.minutes(1)))
    func aTransactionCutByTheTimeoutEndsWithoutARollbackThatNeverReturns() async throws {
        try await withRunningStoreBehindSilentProxy { store, proxy in
            let started = ContinuousClock.now
            let error = await #expect(throws: StoreError.self) {
                try await store.transaction { connection in
                    proxy.setSilent(true)  // after BEGIN: the next query gets no answer
                    try await connection.query("SELECT 1", logger: Logger(label: "test"))
                }
            }
            #expect(error?.description.contains("did not answer within 1.0 seconds") == true, "\(String(describing: error))")
            #expect(ContinuousClock.now - started < .seconds(10))
            proxy.setSilent(false)
            try await store.ping()
        }
    }
}

/// The listener for other nodes' subscription changes (a connection of its own, outside the pool
/// and its timeouts) on a connection gone silent: a stopping relay must not wait for it.
@Suite(.enabled(if: StoreBackend.postgresURL != nil, "RELAY_TEST_POSTGRES_URL names no PostgreSQL server"))
struct PostgresListenerPartitionTests {
    @Test(.timeLimit(.minutes(1)))
    func theListenerStopsWhenCancelledWhileConnectingToASilentServer() async throws {
        try await withStoreBehindSilentProxy { store, proxy in
            proxy.setSilent(true)
            let connecting = ChangeCounter()
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await store.watchSubscriptionChanges { connecting.count() } }
                // Nothing to wait on: the connection cannot get past its start-up.
                await proxy.connected()
                group.cancelAll()
            }
            #expect(connecting.value == 0)
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func theListenerStopsWhenCancelledWhileListeningOnASilentConnection() async throws {
        try await withStoreBehindSilentProxy { store, proxy in
            let changes = ChangeCounter()
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await store.watchSubscriptionChanges { changes.count() } }
                // The listener calls `changed` once when it starts listening.
                await changes.waitFor(1)
                proxy.setSilent(true)
                group.cancelAll()
            }
        }
    }

    /// A server that never answers the start-up: connecting gives up after the store's timeout
    /// (postgres-nio's connect timeout, which covers the start-up, set to it; its default is 10 s)
    /// and tries again, and listens once a connection works.
    @Test(.timeLimit(.minutes(1)))
    func theListenerGivesUpAConnectionThatGetsNoAnswerAndConnectsAgain() async throws {
        try await withStoreBehindSilentProxy { store, proxy in
            proxy.setSilent(true)
            try await listening(to: store, keepalive: .seconds(30)) { changes in
                await proxy.connected()
                proxy.dropOpenConnections()  // the first connection's start-up never arrives...
                proxy.setSilent(false)       // ...while the next ones work
                await changes.waitFor(1)
            }
        }
    }

    /// The server ends the listening connection (a restart, `pg_terminate_backend`): the
    /// listener connects again after its retry delay, not at the next keepalive 30 s later.
    @Test(.timeLimit(.minutes(1)))
    func theListenerListensAgainWhenTheServerEndsItsConnection() async throws {
        try await withStoreBehindSilentProxy { store, _, direct in
            try await listening(to: store, keepalive: .seconds(30)) { changes in
                await changes.waitFor(1)
                try await run("""
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
                    """, on: direct)
                await changes.waitFor(2)
            }
        }
    }

    /// A NAT or firewall that drops idle connections leaves the listener waiting on a connection
    /// that will never deliver again; its keepalive query finds out and it listens again on a
    /// new one. (Without the keepalive the second wait below never ends: the time limit fails.)
    @Test(.timeLimit(.minutes(1)))
    func theListenerNoticesAConnectionDroppedWhileIdleAndListensAgain() async throws {
        try await withStoreBehindSilentProxy { store, proxy, direct in
            try await listening(to: store, keepalive: .milliseconds(100)) { changes in
                await changes.waitFor(1)  // listening
                proxy.dropOpenConnections()
                await changes.waitFor(2)  // listening again, on a new connection (changes may have been missed)
                // Another node's announcement reaches it there.
                try await run("SELECT pg_notify('relay_subscriptions', 'crm')", on: direct)
                await changes.waitFor(3)
            }
        }
    }
}

/// Runs the store's listener (retrying after 50 ms) beside `body`, and stops it after.
private func listening(to store: PostgresRelayStore, keepalive: Duration,
                       _ body: @escaping @Sendable (ChangeCounter) async throws -> Void) async throws {
    let changes = ChangeCounter()
    try await withThrowingDiscardingTaskGroup { group in
        group.addTask { await store.watchSubscriptionChanges(keepalive: keepalive, retryDelay: .milliseconds(50)) { changes.count() } }
        try await body(changes)
        group.cancelAll()
    }
}

/// Runs `sql` on a connection of its own to the database itself (as another node or an operator would).
private func run(_ sql: PostgresQuery, on url: PostgresURL) async throws {
    let connection = try await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 2, logger: Logger(label: "other"))
    do {
        try await connection.query(sql, logger: Logger(label: "other"))
    } catch {
        try? await connection.close()
        throw error
    }
    try await connection.close()
}

/// A store (timeout 1 s) on a fresh database, reached through a proxy that can go silent.
private func withStoreBehindSilentProxy(_ body: (PostgresRelayStore, SilentProxy) async throws -> Void) async throws {
    try await withStoreBehindSilentProxy { store, proxy, _ in try await body(store, proxy) }
}

/// The same, the store running (its pool) and migrated for the duration of `body`.
private func withRunningStoreBehindSilentProxy(_ body: @escaping (PostgresRelayStore, SilentProxy) async throws -> Void) async throws {
    try await withStoreBehindSilentProxy { store, proxy in
        try await withThrowingDiscardingTaskGroup { pool in
            pool.addTask { await store.run() }
            try await store.migrate()
            try await body(store, proxy)
            pool.cancelAll()
        }
    }
}

/// The same, with the database's own URL (not through the proxy).
private func withStoreBehindSilentProxy(_ body: (PostgresRelayStore, SilentProxy, PostgresURL) async throws -> Void) async throws {
    try await StoreBackend.postgres.withStorageURL { url in
        let proxy = try SilentProxy(to: try PostgresURL(url).port)
        defer { proxy.close() }
        var components = try #require(URLComponents(string: url))
        components.port = proxy.port
        let store = PostgresRelayStore(url: try PostgresURL(try #require(components.string)), timeout: .seconds(1),
                                       logger: Logger(label: "partition-test"))
        try await body(store, proxy, try PostgresURL(url))
    }
}

/// Counts calls of `changed`; a test waits for a count, or for its time limit (the wait ends on
/// cancellation, so a count that never comes fails the test instead of hanging the run).
private final class ChangeCounter: Sendable {
    private struct State {
        var value = 0
        var nextWaiter = 0
        var waiters: [Int: (target: Int, continuation: CheckedContinuation<Void, Never>)] = [:]
    }
    private let state = Mutex(State())

    var value: Int { state.withLock { $0.value } }

    func count() {
        let ready = state.withLock { state in
            state.value += 1
            let ready = state.waiters.filter { $0.value.target <= state.value }
            for id in ready.keys { state.waiters[id] = nil }
            return ready.values.map(\.continuation)
        }
        for waiter in ready { waiter.resume() }
    }

    func waitFor(_ target: Int) async {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let now = state.withLock { state in
                    if state.value >= target || Task.isCancelled { return true }
                    state.waiters[id] = (target, continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
        }
    }
}
