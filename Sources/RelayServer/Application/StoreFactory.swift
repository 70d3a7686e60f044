import Logging
import RelayCore
import RelayStore

/// Opens and migrates the store `storage.url` names.
public enum StoreFactory {
    public static func open(_ storage: RelayConfig.Storage, logger: Logger) async throws -> any RelayStore {
        let sealer: SecretSealer
        do {
            sealer = try SecretSealer(base64Key: storage.encryptionKey)
        } catch {
            throw ConfigError("storage.encryption_key", "\(error)")
        }
        switch storage.url {
        case .sqlite(let path):
            let store = try await SQLiteRelayStore.open(path: path, sealer: sealer, logger: logger)
            try await store.migrate()
            return store
        case .postgres:
            throw ConfigError("storage.url", "PostgreSQL storage is not available in this version yet; use sqlite:PATH")
        }
    }
}
