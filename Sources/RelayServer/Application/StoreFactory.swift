import Logging
import RelayCore
import RelayStore

/// Opens and migrates the store `storage.url` names.
public enum StoreFactory {
    /// Runs `body` with the store open and migrated, and closes it afterwards however `body` ends.
    /// PostgreSQL's connection pool runs in a child task meanwhile, cancelled when `body` returns.
    public static func withStore<T: Sendable>(_ storage: RelayConfig.Storage, logger: Logger,
                                              _ body: (any RelayStore) async throws -> T) async throws -> T {
        let sealer: SecretSealer
        do {
            sealer = try SecretSealer(base64Key: storage.encryptionKey)
        } catch {
            throw ConfigError("storage.encryption_key", "\(error)")
        }
        switch storage.url {
        case .sqlite(let path):
            let store = try await SQLiteRelayStore.open(path: path, sealer: sealer, logger: logger)
            return try await use(store, body)
        case .postgres(let url):
            let parsed: PostgresURL
            do {
                parsed = try PostgresURL(url)
            } catch {
                throw ConfigError("storage.url", error.description)
            }
            let store = PostgresRelayStore(url: parsed, sealer: sealer, logger: logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                // The first query waits until the pool's task has started (else PostgresNIO logs a
                // warning that `run()` was not called): the signal comes right before it.
                let (started, signal) = AsyncStream<Void>.makeStream()
                group.addTask {
                    signal.finish()
                    await store.run()
                }
                defer { group.cancelAll() }
                for await _ in started {}
                return try await use(store, body)
            }
        }
    }

    private static func use<T: Sendable>(_ store: any RelayStore, _ body: (any RelayStore) async throws -> T) async throws -> T {
        do {
            try await store.migrate()
            let result = try await body(store)
            try await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }
}
