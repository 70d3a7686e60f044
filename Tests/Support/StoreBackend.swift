import Foundation
import Logging
import RelayServer
import RelayStore

/// The stores tests run against: SQLite always; PostgreSQL when `RELAY_TEST_POSTGRES_URL` names a
/// server where the user may create databases (`.ci/run` starts one and sets it).
public enum StoreBackend: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite, postgres

    public static let postgresURL = ProcessInfo.processInfo.environment["RELAY_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }

    public static var available: [StoreBackend] { postgresURL == nil ? [.sqlite] : [.sqlite, .postgres] }

    public var description: String { rawValue }

    /// Runs `body` with the `storage.url` of a new, empty store, removed afterwards: a SQLite file
    /// in a temporary directory, or a database of its own on the test server.
    public func withStorageURL<T: Sendable>(_ body: (String) async throws -> T) async throws -> T {
        switch self {
        case .sqlite:
            return try await body("sqlite:" + makeTemporaryDirectory() + "/store.sqlite")
        case .postgres:
            guard let base = Self.postgresURL else { throw PostgresURL.Invalid(description: "RELAY_TEST_POSTGRES_URL is not set") }
            return try await PostgresTestSlots.with {
                try await PostgresScratchDatabase.with(serverURL: base, prefix: "relay_test", logger: Logger(label: "postgres-test")) { url in
                    // Smaller pools than the default 20: a test needs few, and they add up.
                    try await body(url.contains("max_connections=") ? url : url + (url.contains("?") ? "&" : "?") + "max_connections=4")
                }
            }
        }
    }
}
