import Foundation
import Logging
import PostgresNIO

/// A database made for one run (a test, a bench scenario) on the server `serverURL` names, whose
/// user may create databases; dropped afterwards, connections and all.
public enum PostgresScratchDatabase {
    /// Runs `body` with the URL of a new, empty database.
    public static func with<T: Sendable>(serverURL: String, prefix: String, logger: Logger,
                                         _ body: (String) async throws -> T) async throws -> T {
        let server = try PostgresURL(serverURL)
        let name = prefix + "_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        let admin = try await PostgresConnection.connect(configuration: try server.connectionConfiguration(), id: 1, logger: logger)
        do {
            try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
            guard var components = URLComponents(string: serverURL) else { throw PostgresURL.Invalid(description: "not a URL") }
            components.path = "/" + name
            let result: Result<T, any Error>
            do {
                result = .success(try await body(components.string ?? serverURL))
            } catch {
                result = .failure(error)
            }
            try await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: logger)
            try await admin.close()
            return try result.get()
        } catch {
            try? await admin.close()
            throw error
        }
    }
}
