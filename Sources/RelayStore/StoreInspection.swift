import Foundation
import Logging
import PostgresNIO
import SQLiteNIO
#if canImport(Glibc)
import Glibc
#endif

/// What `relay check --connect` says about a store, read without changing anything: whether
/// `relay serve` could open it, and what it would do to its schema.
public enum StoreInspection {
    /// A store `relay serve` would refuse, with the reason.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// What was found: a line on the store, and the enabled subscriptions made through the
    /// admin API, which live in the store rather than in `relay.yml`.
    public struct Report: Sendable {
        public let description: String
        public let apiSubscriptions: [(id: String, url: String)]
    }

    static let apiSubscriptionsSQL = "SELECT id, url FROM subscriptions WHERE source = 'api' AND status = 'enabled' ORDER BY created_at, id"

    /// The SQLite database at `path`: a file that does not exist yet must be creatable; an
    /// existing one must be writable, and its schema not newer than this relay's.
    public static func sqlite(path: String) throws(Failure) -> Report {
        guard FileManager.default.fileExists(atPath: path) else {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
            guard FileManager.default.fileExists(atPath: directory) else {
                throw Failure(description: "the directory \(directory) does not exist")
            }
            guard access(directory, W_OK) == 0 else {
                throw Failure(description: "\(path) does not exist, and this user may not create files in \(directory)")
            }
            return Report(description: "\(path) does not exist yet: relay serve creates it", apiSubscriptions: [])
        }
        guard access(path, R_OK | W_OK) == 0 else {
            throw Failure(description: "\(path) is not readable and writable by this user")
        }
        let version: Int
        var subscriptions: [(id: String, url: String)] = []
        do {
            let database = try SQLiteHandle(path: path, readOnly: true)
            defer { database.close() }
            try database.query("PRAGMA busy_timeout = 5000")
            let hasSchema = try !database.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").isEmpty
            version = hasSchema ? try database.query("SELECT MAX(version) AS v FROM schema_migrations").first?.column("v")?.integer ?? 0 : 0
            if version > 0 && version <= SQLiteSchema.migrations.count {
                subscriptions = try database.query(apiSubscriptionsSQL).map { ($0.column("id")?.string ?? "", $0.column("url")?.string ?? "") }
            }
        } catch {
            throw Failure(description: "cannot read \(path): \(error)")
        }
        var line = try schemaLine(version: version, latest: SQLiteSchema.migrations.count)
        let others = SQLiteSharers.otherProcesses(openingDatabaseAt: path)
        if !others.isEmpty {
            line += "; open in process \(others.map(String.init).joined(separator: ", ")) (a running relay: another relay serve on it would be refused)"
        }
        return Report(description: line, apiSubscriptions: subscriptions)
    }

    /// The PostgreSQL database `url` names: reachable with its credentials within `timeout`, and
    /// its schema not newer than this relay's.
    public static func postgres(_ url: PostgresURL, timeout: Duration = .seconds(10), logger: Logger) async throws(Failure) -> Report {
        let connection: PostgresConnection
        do {
            var configuration = try url.connectionConfiguration()
            configuration.options.connectTimeout = TimeAmount(timeout)
            connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        } catch {
            throw Failure(description: "cannot connect to \(url.location): \(PostgresRelayStore.storeError(error))")
        }
        let version: Int
        let serverVersion: String
        var subscriptions: [(id: String, url: String)] = []
        do {
            serverVersion = try await connection.fetch("SELECT current_setting('server_version') AS v", logger: logger)
                .first?["v"].decode(String.self) ?? "?"
            let hasSchema = try await connection.fetch("SELECT to_regclass('schema_migrations') IS NOT NULL AS has", logger: logger)
                .first?["has"].decode(Bool.self) ?? false
            version = hasSchema
                ? try await connection.fetch("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations", logger: logger)
                    .first?["v"].decode(Int.self) ?? 0
                : 0
            if version > 0 && version <= PostgresSchema.migrations.count {
                subscriptions = try await connection.fetch(PostgresQuery(unsafeSQL: apiSubscriptionsSQL), logger: logger).map {
                    (try $0["id"].decode(String.self), try $0["url"].decode(String.self))
                }
            }
            try await connection.close()
        } catch {
            try? await connection.close()
            throw Failure(description: "cannot read \(url.location): \(PostgresRelayStore.storeError(error))")
        }
        return Report(description: "PostgreSQL \(serverVersion) at \(url.location); " + (try schemaLine(version: version, latest: PostgresSchema.migrations.count)),
                      apiSubscriptions: subscriptions)
    }

    private static func schemaLine(version: Int, latest: Int) throws(Failure) -> String {
        if version > latest {
            throw Failure(description: "its schema (\(version)) was written by a newer relay than this one (\(latest)): upgrade the relay")
        }
        if version == 0 { return "no schema yet: relay serve creates it (version \(latest))" }
        if version < latest { return "schema \(version): relay serve upgrades it to \(latest)" }
        return "schema \(version), as this relay's"
    }
}
