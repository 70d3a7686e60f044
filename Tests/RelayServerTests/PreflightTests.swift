import Foundation
import Logging
import RelayCore
@testable import RelayServer
@testable import RelayStore
import RelayTestSupport
import PostgresNIO
import Testing

/// `relay check --connect`: the store as `relay serve` would find it, read without changing it.
@Suite(.timeLimit(.minutes(1))) struct PreflightTests {
    @Test(arguments: StoreBackend.available)
    func theStoreIsDescribedAsServeWouldFindItAndANewerSchemaFails(_ backend: StoreBackend) async throws {
        try await backend.withStorageURL { url in
            let config = try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: url), environment: [:])
            let (before, _) = await Preflight.store(config.storage, logger: Logger(label: "test"))
            #expect(before.ok)
            #expect(before.detail.contains(backend == .sqlite ? "does not exist yet" : "no schema yet"), "\(before.detail)")
            if case .sqlite(let path) = config.storage.url {
                #expect(!FileManager.default.fileExists(atPath: path), "looking created nothing")
            }

            try await StoreFactory.withStore(config.storage, logger: Logger(label: "test")) { store in
                try await store.insertSubscription(Subscription(id: "crm", url: "https://crm.example.com/hook", source: .api, createdAt: Date(),
                                                                secret: "whsec_crm"))
                try await store.insertSubscription(Subscription(id: "off", url: "https://off.example.com/hook", status: .disabled, source: .api,
                                                                createdAt: Date(), secret: "whsec_off"))
            }
            let (current, stored) = await Preflight.store(config.storage, logger: Logger(label: "test"))
            #expect(current.ok && current.detail.contains("as this relay's"), "\(current.detail)")
            // Subscriptions made through the admin API live in the store: enabled ones are tried too.
            #expect(stored.map(\.id) == ["crm"] && stored.map(\.url) == ["https://crm.example.com/hook"])

            try await StoreFactory.withStore(config.storage, logger: Logger(label: "test")) { store in
                switch store {
                case let sqlite as SQLiteRelayStore:
                    _ = try await sqlite.writer.query("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)")
                case let postgres as PostgresRelayStore:
                    _ = try await postgres.transaction { connection in
                        try await connection.query("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)", logger: Logger(label: "test"))
                    }
                default:
                    Issue.record("a store of another kind")
                }
            }
            let (newer, _) = await Preflight.store(config.storage, logger: Logger(label: "test"))
            #expect(!newer.ok && newer.detail.contains("newer relay"), "\(newer.detail)")
        }
    }

    @Test func aStoreThatCannotBeOpenedFailsWithTheReason() async throws {
        let (missing, _) = await Preflight.store(try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: "sqlite:/nonexistent-dir/relay.sqlite"),
                                                                  environment: [:]).storage, logger: Logger(label: "test"))
        #expect(!missing.ok && missing.detail.contains("/nonexistent-dir does not exist"), "\(missing.detail)")
        let (refused, _) = await Preflight.store(try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: "postgres://relay:pw@127.0.0.1:1/relay"),
                                                                  environment: [:]).storage, logger: Logger(label: "test"))
        #expect(!refused.ok && refused.detail.contains("cannot connect to 127.0.0.1:1/relay"), "\(refused.detail)")
        #expect(!refused.detail.contains("pw"))
    }
}
