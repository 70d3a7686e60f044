import Foundation
import Logging
import RelayCore
import RelayStore
import RelayTestSupport
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
        try await StoreBackend.postgres.withStorageURL { url in
            let direct = try PostgresURL(url)
            let proxy = try SilentProxy(to: direct.port)
            defer { proxy.close() }
            var components = try #require(URLComponents(string: url))
            components.port = proxy.port
            let proxied = try PostgresURL(try #require(components.string))
            let store = PostgresRelayStore(url: proxied, timeout: .seconds(1), logger: Logger(label: "partition-test"))
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
