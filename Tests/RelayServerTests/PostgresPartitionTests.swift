import Foundation
import Logging
import RelayCore
import RelayStore
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
        try await withStoreBehindSilentProxy { store, proxy in
            try await withThrowingDiscardingTaskGroup { pool in
                pool.addTask { await store.run() }
                try await store.migrate()
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
                pool.cancelAll()
            }
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
                while proxy.openConnections == 0 { await Task.yield() }
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

}

/// A store (timeout 1 s) on a fresh database, reached through a proxy that can go silent.
private func withStoreBehindSilentProxy(_ body: (PostgresRelayStore, SilentProxy) async throws -> Void) async throws {
    try await StoreBackend.postgres.withStorageURL { url in
        let proxy = try SilentProxy(to: try PostgresURL(url).port)
        defer { proxy.close() }
        var components = try #require(URLComponents(string: url))
        components.port = proxy.port
        let store = PostgresRelayStore(url: try PostgresURL(try #require(components.string)), timeout: .seconds(1),
                                       logger: Logger(label: "partition-test"))
        try await body(store, proxy)
    }
}

private final class ChangeCounter: Sendable {
    private let state = Mutex<(value: Int, waiters: [(Int, CheckedContinuation<Void, Never>)])>((0, []))

    var value: Int { state.withLock { $0.value } }

    func count() {
        let ready = state.withLock { state in
            state.value += 1
            let value = state.value
            let ready = state.waiters.filter { $0.0 <= value }.map(\.1)
            state.waiters.removeAll { $0.0 <= value }
            return ready
        }
        for waiter in ready { waiter.resume() }
    }

    func waitFor(_ target: Int) async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state in
                if state.value >= target { return true }
                state.waiters.append((target, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }
}
