import Foundation
import Logging
import NIOCore
import NIOPosix
import RelayCore
import SQLiteNIO

/// The single-node store: one SQLite file in WAL mode with `synchronous=FULL`, so a committed
/// transaction survives `kill -9` and power loss. Intake writes go through a `GroupCommitter`
/// (one fsync per group); reads use their own connection, which WAL lets run beside the writer.
public final class SQLiteRelayStore: RelayStore {
    private let writer: SQLiteConnection
    private let reader: SQLiteConnection
    /// Writes outside intake (maintenance), kept off `writer` so they never join its open transaction.
    private let maintenance: SQLiteConnection
    private let committer: GroupCommitter<IntakeRecord, IntakeOutcome>
    private let sealer: SecretSealer
    public let path: String

    private init(path: String, writer: SQLiteConnection, reader: SQLiteConnection, maintenance: SQLiteConnection, sealer: SecretSealer) {
        self.path = path
        self.writer = writer
        self.reader = reader
        self.maintenance = maintenance
        self.sealer = sealer
        self.committer = GroupCommitter { [writer, sealer] records in
            try await Self.commitBatch(records, on: writer, sealer: sealer)
        }
    }

    /// Opens (creating if needed) the database file at `path`.
    public static func open(path: String, sealer: SecretSealer = .disabled, logger: Logger) async throws -> SQLiteRelayStore {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            throw StoreError(.unavailable, "storage.url: the directory \(directory) does not exist")
        }
        func connect() async throws -> SQLiteConnection {
            let connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
            _ = try await connection.query("PRAGMA busy_timeout = 5000")
            return connection
        }
        let writer = try await connect()
        _ = try await writer.query("PRAGMA journal_mode = WAL")
        _ = try await writer.query("PRAGMA synchronous = FULL")
        let reader = try await connect()
        let maintenance = try await connect()
        _ = try await maintenance.query("PRAGMA synchronous = FULL")
        return SQLiteRelayStore(path: path, writer: writer, reader: reader, maintenance: maintenance, sealer: sealer)
    }

    public func migrate() async throws {
        _ = try await maintenance.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        let rows = try await maintenance.query("SELECT MAX(version) AS v FROM schema_migrations")
        let current = rows.first?.column("v")?.integer ?? 0
        guard current <= SQLiteSchema.migrations.count else {
            throw StoreError(.corrupt, "the database was written by a newer relay (schema \(current)); upgrade the relay")
        }
        for (index, statements) in SQLiteSchema.migrations.enumerated() where index + 1 > current {
            _ = try await maintenance.query("BEGIN IMMEDIATE")
            do {
                for statement in statements { _ = try await maintenance.query(statement) }
                _ = try await maintenance.query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                                                [.integer(index + 1), .integer(Int(Date().timeIntervalSince1970))])
                _ = try await maintenance.query("COMMIT")
            } catch {
                _ = try? await maintenance.query("ROLLBACK")
                throw error
            }
        }
    }

    public func ping() async throws {
        _ = try await reader.query("SELECT 1")
    }

    public func commit(_ record: IntakeRecord) async throws -> IntakeOutcome {
        try await committer.submit(record)
    }

    public func event(id: String) async throws -> RelayEvent? {
        try await reader.query("SELECT * FROM events WHERE id = ?", [.text(id)]).first.map(Self.event(from:))
    }

    public func events(_ query: EventQuery) async throws -> [RelayEvent] {
        var sql = "SELECT * FROM events WHERE 1 = 1"
        var binds: [SQLiteData] = []
        if let appid = query.appid { sql += " AND appid = ?"; binds.append(.text(appid)) }
        if let type = query.type { sql += " AND type = ?"; binds.append(.text(type)) }
        if let before = query.before {
            sql += " AND seq < (SELECT seq FROM events WHERE id = ?)"
            binds.append(.text(before))
        }
        sql += " ORDER BY seq DESC LIMIT ?"
        binds.append(.integer(max(1, min(query.limit, 500))))
        return try await reader.query(sql, binds).map(Self.event(from:))
    }

    public func ticket(componentAppid: String) async throws -> ComponentTicket? {
        guard let row = try await reader.query("SELECT * FROM component_tickets WHERE component_appid = ?",
                                               [.text(componentAppid)]).first else { return nil }
        return ComponentTicket(
            componentAppid: componentAppid, ticket: try sealer.open(row.column("ticket")?.string ?? ""),
            createTime: Int64(row.column("create_time")?.integer ?? 0),
            receivedAt: Self.date(row.column("received_at")))
    }

    public func purgeEvents(before cutoff: Date) async throws -> Int {
        let rows = try await maintenance.query("DELETE FROM events WHERE received_at < ? RETURNING seq", [.integer(Self.millis(cutoff))])
        return rows.count
    }

    public func close() async throws {
        for connection in [writer, reader, maintenance] { try await connection.close() }
    }

    // MARK: - Intake transaction

    private static func commitBatch(_ records: [IntakeRecord], on db: SQLiteConnection, sealer: SecretSealer) async throws -> [IntakeOutcome] {
        _ = try await db.query("BEGIN IMMEDIATE")
        do {
            var outcomes: [IntakeOutcome] = []
            outcomes.reserveCapacity(records.count)
            for record in records {
                if let ticket = record.ticket { try await upsert(ticket, on: db, sealer: sealer) }
                guard let event = record.event else {
                    outcomes.append(.ticketOnly)
                    continue
                }
                outcomes.append(try await insert(event, on: db))
            }
            _ = try await db.query("COMMIT")
            return outcomes
        } catch {
            _ = try? await db.query("ROLLBACK")
            throw StoreError(.unavailable, "SQLite write failed: \(error)")
        }
    }

    private static func insert(_ event: RelayEvent, on db: SQLiteConnection) async throws -> IntakeOutcome {
        let inserted = try await db.query(
            """
            INSERT INTO events (id, type, appid, component_appid, received_at, dedup_key, from_user, data)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (appid, dedup_key) DO NOTHING RETURNING id
            """,
            [.text(event.id), .text(event.type), .text(event.appid), event.componentAppid.map(SQLiteData.text) ?? .null,
             .integer(millis(event.receivedAt)), .text(event.dedupKey), event.fromUser.map(SQLiteData.text) ?? .null,
             .text(event.dataJSON)])
        if !inserted.isEmpty { return .stored(eventID: event.id) }
        let existing = try await db.query("SELECT id FROM events WHERE appid = ? AND dedup_key = ?",
                                          [.text(event.appid), .text(event.dedupKey)])
        return .duplicate(eventID: existing.first?.column("id")?.string ?? event.id)
    }

    private static func upsert(_ ticket: ComponentTicket, on db: SQLiteConnection, sealer: SecretSealer) async throws {
        _ = try await db.query(
            """
            INSERT INTO component_tickets (component_appid, ticket, create_time, received_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (component_appid) DO UPDATE SET ticket = excluded.ticket, create_time = excluded.create_time,
                received_at = excluded.received_at
            WHERE excluded.create_time >= component_tickets.create_time
            """,
            [.text(ticket.componentAppid), .text(sealer.seal(ticket.ticket)), .integer(Int(ticket.createTime)),
             .integer(millis(ticket.receivedAt))])
    }

    // MARK: - Rows

    static func millis(_ date: Date) -> Int { Int((date.timeIntervalSince1970 * 1000).rounded()) }

    static func date(_ data: SQLiteData?) -> Date {
        Date(timeIntervalSince1970: Double(data?.integer ?? 0) / 1000)
    }

    private static func event(from row: SQLiteRow) -> RelayEvent {
        RelayEvent(
            id: row.column("id")?.string ?? "", type: row.column("type")?.string ?? "",
            appid: row.column("appid")?.string ?? "", componentAppid: row.column("component_appid")?.string,
            receivedAt: date(row.column("received_at")), dataJSON: row.column("data")?.string ?? "{}",
            dedupKey: row.column("dedup_key")?.string ?? "", fromUser: row.column("from_user")?.string)
    }
}
