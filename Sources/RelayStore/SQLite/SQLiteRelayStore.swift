import Foundation
import Logging
import NIOCore
import NIOPosix
import RelayCore
import SQLiteNIO
import Synchronization

/// The single-node store: one SQLite file in WAL mode. A group holding anything but delivery
/// bookkeeping commits with `synchronous=FULL`, so an acknowledged push survives `kill -9` and
/// power loss; claims and attempt records alone commit with `NORMAL` (they survive `kill -9`; a
/// power cut may only send a delivery again).
///
/// Every write goes through one `GroupCommitter` on one connection: concurrent writes share a
/// transaction (one fsync per group) and never interleave. Reads use their own connection, which
/// WAL lets run beside the writer.
public final class SQLiteRelayStore: RelayStore {
    /// One write: runs inside the group's transaction. `isolated` ones run in a savepoint so their
    /// failure (a constraint, say) rolls back only themselves.
    struct WriteOperation: Sendable {
        let isolated: Bool
        let run: @Sendable (SQLiteHandle) throws -> any Sendable
        /// Intake records are written together, a few statements for the whole group.
        var intake: IntakeRecord? = nil
        /// So are delivery attempts.
        var attempt: AttemptWrite? = nil
        /// Whether the commit must reach the disk before returning. Delivery bookkeeping (claims,
        /// attempts) need not: WAL keeps it through a process crash, and what a power cut takes
        /// back is a delivery sent again — at least once either way.
        var durable = true
    }

    let writer: SQLiteQueue
    let reader: SQLiteQueue
    /// The store's own threads: on the shared pool its writes queued behind whatever else
    /// blocks there (the egress check's DNS lookups, file I/O).
    private let pool: NIOThreadPool
    let sealer: SecretSealer
    private let committer: GroupCommitter<WriteOperation, any Sendable>
    /// Whether the writer connection is at `synchronous = FULL` (else NORMAL).
    private let synchronousFull = SynchronousMode()
    public let path: String
    let logger: Logger
    let parkingChecks = ParkingChecks()

    private init(path: String, pool: NIOThreadPool, writer: SQLiteQueue, reader: SQLiteQueue, sealer: SecretSealer, logger: Logger) {
        self.path = path
        self.logger = logger
        self.pool = pool
        self.writer = writer
        self.reader = reader
        self.sealer = sealer
        // Attempt records linger up to 2 ms: the dispatcher frees the subscriber slot when the
        // answer is in, so only the record waits, and its groups get several times larger.
        self.committer = GroupCommitter(linger: .milliseconds(2), mayWait: { $0.attempt != nil }) { [writer, sealer, synchronousFull] operations in
            // The whole group is one work item on the pool.
            try await writer.run { db in try Self.flush(operations, on: db, sealer: sealer, mode: synchronousFull) }
        }
    }

    /// Opens (creating if needed) the database file at `path`.
    public static func open(path: String, sealer: SecretSealer = .disabled, logger: Logger) async throws -> SQLiteRelayStore {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            throw StoreError(.unavailable, "storage.url: the directory \(directory) does not exist")
        }
        DatabaseFileMode.prepare(path, logger: logger)
        func connect(_ pool: NIOThreadPool) async throws -> SQLiteQueue {
            let connection = try await SQLiteQueue.open(path: path, pool: pool)
            try await connection.query("PRAGMA foreign_keys = ON")
            // 8 MiB of page cache (the default is 2): the queue's pages stay in memory. Not more:
            // whenever a B-tree split reorders its new pages, SQLite parks one at the lock-byte
            // page number, and the commit then walks the whole cache's hash table to drop it —
            // at 32 MiB that walk was 1.5 % of a delivery's CPU.
            try await connection.query("PRAGMA cache_size = -8192")
            // Statement journals (a multi-row insert's undo) stay in memory instead of spilling to a file.
            try await connection.query("PRAGMA temp_store = MEMORY")
            return connection
        }
        // A writer and a reader, one thread each.
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        do {
            let writer = try await connect(pool)
            _ = try await writer.query("PRAGMA journal_mode = WAL")
            _ = try await writer.query("PRAGMA synchronous = FULL")
            let reader = try await connect(pool)
            let others = SQLiteSharers.otherProcesses(openingDatabaseAt: path)
            guard others.isEmpty else {
                try? await writer.close()
                try? await reader.close()
                let pids = others.map(String.init).joined(separator: ", ")
                throw StoreError(.unavailable, """
                    storage.url: \(path) is open in another process (pid \(pids)), most likely a relay: one SQLite file serves \
                    one relay process. Stop that process first; for several relay nodes use PostgreSQL (storage.url: postgres://…)
                    """)
            }
            return SQLiteRelayStore(path: path, pool: pool, writer: writer, reader: reader, sealer: sealer, logger: logger)
        } catch {
            try? await pool.shutdownGracefully()
            throw SQLiteOpenFailure.diagnosed(error, path: path, doing: "open")
        }
    }

    public func migrate() async throws {
        do {
            try await migrate(upTo: SQLiteSchema.migrations.count)
        } catch {
            throw SQLiteOpenFailure.diagnosed(error, path: path, doing: "migrate")
        }
    }

    /// Applies the migrations after the database's version, up to `last` (tests stop earlier to
    /// write what an older relay wrote). Foreign keys are not enforced meanwhile — a migration
    /// that copies a table drops the old one, which would cascade — and checked before each commit.
    func migrate(upTo last: Int) async throws {
        try await writer.run { [logger, path] db in
            try db.query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            let current = try db.query("SELECT MAX(version) AS v FROM schema_migrations").first?.column("v")?.integer ?? 0
            guard current <= SQLiteSchema.migrations.count else {
                throw StoreError(.corrupt, "the database was written by a newer relay (schema \(current)); upgrade the relay")
            }
            guard current < last else { return }
            // An upgrade may copy a table (migration 9: about 4 s per million deliveries): say why the start pauses.
            let started = Date()
            if current > 0 {
                logger.notice("upgrading the SQLite schema", metadata: ["path": .string(path), "from": "\(current)", "to": "\(last)"])
            }
            try db.query("PRAGMA foreign_keys = OFF")  // a no-op inside a transaction: set between them
            defer { _ = try? db.query("PRAGMA foreign_keys = ON") }
            for (index, statements) in SQLiteSchema.migrations.enumerated() where index + 1 > current && index < last {
                try db.query("BEGIN IMMEDIATE")
                do {
                    for statement in statements { try db.query(statement) }
                    if let violation = try db.query("PRAGMA foreign_key_check").first {
                        throw StoreError(.corrupt, """
                            migration \(index + 1) left a row of \(violation.column("table")?.string ?? "?") without its \
                            \(violation.column("parent")?.string ?? "?") row, so it was not applied
                            """)
                    }
                    try db.query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                                 [.integer(index + 1), .integer(Int(Date().timeIntervalSince1970))])
                    try db.query("COMMIT")
                } catch {
                    _ = try? db.query("ROLLBACK")
                    throw error
                }
            }
            if current > 0 {
                logger.notice("upgraded the SQLite schema", metadata: ["path": .string(path), "version": "\(last)",
                                                                      "seconds": "\(String(format: "%.1f", Date().timeIntervalSince(started)))"])
            }
        }
    }

    public func ping() async throws {
        _ = try await reader.query("SELECT 1")
    }

    public func close() async throws {
        defer { pool.shutdownGracefully { _ in } }
        try await writer.close()
        try await reader.close()
    }

    // MARK: - Writing

    /// Runs `body` inside the next group transaction and returns its result once committed.
    func write<T: Sendable>(isolated: Bool = true, durable: Bool = true,
                            _ body: @escaping @Sendable (SQLiteHandle) throws -> T) async throws -> T {
        let result = try await committer.submit(WriteOperation(isolated: isolated, run: { try body($0) }, durable: durable))
        return result as! T  // the operation above returns a T
    }

    /// Records an attempt as part of the group's bulk write.
    func commitAttempt(_ write: AttemptWrite) async throws {
        _ = try await committer.submit(WriteOperation(isolated: false, run: { _ in IntakeOutcome.ticketOnly }, attempt: write, durable: false))
    }

    /// Runs the group's intake records as one bulk write.
    func commitIntake(_ record: IntakeRecord) async throws -> IntakeOutcome {
        let result = try await committer.submit(WriteOperation(isolated: false, run: { _ in IntakeOutcome.ticketOnly }, intake: record))
        return result as! IntakeOutcome  // flush answers intake operations with their outcome
    }

    private static func flush(_ operations: [WriteOperation], on db: SQLiteHandle, sealer: SecretSealer,
                              mode: SynchronousMode) throws -> [Result<any Sendable, any Error>] {
        let durable = operations.contains(where: \.durable)
        if mode.full != durable {
            try db.query(durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")
            mode.full = durable
        }
        try db.query("BEGIN IMMEDIATE")
        var results: [Result<any Sendable, any Error>] = Array(repeating: .success(IntakeOutcome.ticketOnly), count: operations.count)
        do {
            let intake = operations.indices.filter { operations[$0].intake != nil }
            if !intake.isEmpty {
                let outcomes = try bulkIntake(intake.map { operations[$0].intake! }, on: db, sealer: sealer)
                for (index, outcome) in zip(intake, outcomes) { results[index] = .success(outcome) }
            }
            let attempts = operations.compactMap(\.attempt)
            if !attempts.isEmpty { try bulkAttempts(attempts, on: db) }
            for (index, operation) in operations.enumerated() where operation.intake == nil && operation.attempt == nil {
                guard operation.isolated else {
                    results[index] = .success(try operation.run(db))
                    continue
                }
                try db.query("SAVEPOINT op")
                do {
                    results[index] = .success(try operation.run(db))
                    try db.query("RELEASE op")
                } catch {
                    try db.query("ROLLBACK TO op")
                    try db.query("RELEASE op")
                    results[index] = .failure(error)
                }
            }
            try db.query("COMMIT")
            return results
        } catch {
            _ = try? db.query("ROLLBACK")
            throw StoreError(.unavailable, "SQLite write failed: \(error)")
        }
    }

    // MARK: - Rows

    static func millis(_ date: Date) -> Int { Int((date.timeIntervalSince1970 * 1000).rounded()) }

    static func date(_ data: SQLiteData?) -> Date {
        Date(timeIntervalSince1970: Double(data?.integer ?? 0) / 1000)
    }

    static func optionalDate(_ data: SQLiteData?) -> Date? {
        guard let data, !data.isNull else { return nil }
        return date(data)
    }

    static func text(_ value: String?) -> SQLiteData { value.map(SQLiteData.text) ?? .null }
}

/// The writer's `synchronous` setting, changed only between groups (which the committer runs one
/// at a time).
final class SynchronousMode: Sendable {
    private let value = Mutex(true)
    var full: Bool {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}
