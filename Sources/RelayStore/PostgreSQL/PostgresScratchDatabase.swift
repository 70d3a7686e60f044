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
            try await drop(name, on: admin, logger: logger)
            try await admin.close()
            return try result.get()
        } catch {
            try? await admin.close()
            throw error
        }
    }

    /// `DROP … WITH (FORCE)` refuses while an autovacuum worker (another role's process) is in
    /// the database — "must be a member of the role whose process is being terminated", which
    /// failed a test that had written enough to wake autovacuum. The worker soon goes: try again
    /// for up to 5 s.
    private static func drop(_ name: String, on admin: PostgresConnection, logger: Logger) async throws {
        var attempt = 0
        while true {
            do {
                try await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: logger)
                return
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42501" && attempt < 25 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}
