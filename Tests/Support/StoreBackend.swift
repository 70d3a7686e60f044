import Foundation
import Logging
import PostgresNIO
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
            guard let base = Self.postgresURL else { throw PostgresTestError("RELAY_TEST_POSTGRES_URL is not set") }
            return try await PostgresTestDatabase.with(serverURL: base, body)
        }
    }
}

struct PostgresTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A database created for one test on the server `serverURL` names, dropped afterwards.
enum PostgresTestDatabase {
    static func with<T: Sendable>(serverURL: String, _ body: (String) async throws -> T) async throws -> T {
        let server = try PostgresURL(serverURL)
        let name = "relay_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        let admin = try await PostgresConnection.connect(
            configuration: .init(host: server.host, port: server.port, username: server.user, password: server.password,
                                 database: server.database, tls: .disable),
            id: 1, logger: Logger(label: "postgres-test"))
        do {
            try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: Logger(label: "postgres-test"))
            var components = URLComponents(string: serverURL)!
            components.path = "/" + name
            let result: Result<T, any Error>
            do {
                result = .success(try await body(components.string!))
            } catch {
                result = .failure(error)
            }
            try await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: Logger(label: "postgres-test"))
            try await admin.close()
            return try result.get()
        } catch {
            try? await admin.close()
            throw error
        }
    }
}
