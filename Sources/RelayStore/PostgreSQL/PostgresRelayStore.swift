import Foundation
import Logging
import PostgresNIO
import RelayCore
import Synchronization

/// The store for several relay nodes sharing one PostgreSQL database. Nodes claim deliveries
/// with `FOR UPDATE SKIP LOCKED` under leases, so two never take the same one, and a node that
/// dies leaves its claims to expire and be taken over. Every write is its own transaction at the
/// server's `synchronous_commit` (on by default): a push is acknowledged after its COMMIT.
///
/// The connection pool runs inside `run()`, which `StoreFactory.withStore` keeps in a child task
/// for as long as the store is used; queries wait until it runs.
public final class PostgresRelayStore: RelayStore {
    let client: PostgresClient
    let url: PostgresURL
    let sealer: SecretSealer
    let logger: Logger
    let parkingChecks = ParkingChecks()
    /// How long one operation may take. With the database down, the pool waits for a connection
    /// indefinitely; an intake must fail in time for WeChat to retry, and `relay serve` must not
    /// hang at start.
    let timeout: Duration
    /// Pushes arriving together are inserted by one statement (see `commit`), and so are
    /// attempts finishing together (see `recordAttempt`).
    let intakeGroups: GroupCommitter<IntakeRecord, IntakeOutcome>
    let attemptGroups: GroupCommitter<AttemptWrite, Void>
    let access: Access

    public init(url: PostgresURL, sealer: SecretSealer = .disabled, timeout: Duration = .seconds(10), logger: Logger) {
        let client = PostgresClient(configuration: url.configuration, backgroundLogger: logger)
        self.client = client
        self.url = url
        self.sealer = sealer
        self.timeout = timeout
        self.logger = logger
        let access = Access(client: client, location: url.location, timeout: timeout, logger: logger)
        self.access = access
        self.intakeGroups = GroupCommitter { records in await Self.commitGroup(records, access: access) }
        self.attemptGroups = GroupCommitter { writes in await Self.recordGroup(writes, access: access) }
    }

    /// What running a query needs, for the groups' writes, which run without the store (their
    /// committers are made in its `init`).
    struct Access: Sendable {
        let client: PostgresClient
        let location: String
        let timeout: Duration
        let logger: Logger
    }

    /// Runs the connection pool until the calling task is cancelled.
    public func run() async {
        await client.run()
    }

    public func migrate() async throws {
        try await checkConnection()
        // Minutes, not the usual seconds: a migration may rebuild an index of a large table, and
        // a node starting meanwhile waits for the lock.
        try await transaction(timeout: .seconds(600)) { connection in
            // Nodes starting together migrate one after the other.
            try await connection.run("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: self.logger)
            try await connection.run(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
                logger: self.logger)
            let current = try await connection.fetch("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations", logger: self.logger)
                .first?["v"].decode(Int.self) ?? 0
            guard current <= PostgresSchema.migrations.count else {
                throw StoreError(.corrupt, "the database was written by a newer relay (schema \(current)); upgrade the relay")
            }
            for (index, statements) in PostgresSchema.migrations.enumerated() where index + 1 > current {
                for statement in statements { try await connection.run(PostgresQuery(unsafeSQL: statement), logger: self.logger) }
                try await connection.run("INSERT INTO schema_migrations (version, applied_at) VALUES (\(index + 1), \(Self.millis(Date())))",
                                         logger: self.logger)
            }
        }
    }

    /// Advisory-lock keys: arbitrary constants, the same on every node.
    static let migrationLock = 0x7265_6C61_7901
    static let subscriptionSyncLock = 0x7265_6C61_7902

    /// Connects once on its own: the pool retries quietly for ever when it cannot connect, this
    /// connection fails at once and says why (refused, unknown host, password, database).
    private func checkConnection() async throws {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 0, logger: logger)
        } catch {
            throw StoreError(.unavailable, "cannot connect to PostgreSQL at \(url.location): "
                             + "\(Self.storeError(error))".replacingOccurrences(of: "PostgreSQL: ", with: ""))
        }
        try? await connection.close()
    }

    /// Within 2 s at most: a readiness probe wants its answer before its own timeout (Kubernetes
    /// waits 1 s by default), and with the server gone it waited the store's 10 s.
    public func ping() async throws {
        _ = try await fetch("SELECT 1 AS one", timeout: min(.seconds(2), timeout))
    }

    /// Nothing to do: the pool closes when the task running `run()` is cancelled.
    public func close() async throws {}

    // MARK: - Queries

    /// Runs `query` on a pooled connection and collects its rows (results here are a page at most).
    func fetch(_ query: PostgresQuery, timeout: Duration? = nil) async throws -> [PostgresRandomAccessRow] {
        try await bounded(timeout) { [logger] connection in try await Self.collect(query, on: connection, logger: logger) }
    }

    static func collect<Statement: HotStatement>(_ statement: Statement, on connection: PostgresConnection,
                                                 logger: Logger) async throws -> [PostgresRandomAccessRow] {
        do {
            return try await connection.fetch(statement, logger: logger)
        } catch {
            throw storeError(error)
        }
    }

    static func collect(_ query: PostgresQuery, on connection: PostgresConnection, logger: Logger) async throws -> [PostgresRandomAccessRow] {
        do {
            var rows: [PostgresRandomAccessRow] = []
            for try await row in try await connection.query(query, logger: logger) { rows.append(row.makeRandomAccess()) }
            return rows
        } catch {
            throw storeError(error)
        }
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    func transaction<T: Sendable>(timeout: Duration? = nil,
                                  _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await bounded(timeout) { [logger] connection in
            // postgres-nio's withTransaction sends ROLLBACK after any failure, and on a connection
            // the timeout has closed that query is never answered (written to a closed channel, it
            // reaches no handler): the operation, and the race waiting for it, hung. A dead
            // connection needs no ROLLBACK: the server ends its transaction with it.
            do {
                try await connection.query("BEGIN", logger: logger)
            } catch {
                throw Self.storeError(error)
            }
            do {
                let value = try await body(connection)
                try await connection.query("COMMIT", logger: logger)
                return value
            } catch {
                if !Self.isConnectionLost(error), !connection.isClosed {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                }
                throw Self.storeError(error)
            }
        }
    }

    /// Whether `error` says the connection itself is gone (closed by either side, broken).
    static func isConnectionLost(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError else { return false }
        return [.clientClosedConnection, .serverClosedConnection, .connectionError, .uncleanShutdown].contains(error.code)
    }

    /// Runs `operation` on a pooled connection, failing it with a `StoreError` once `timeout` (else
    /// the store's) has passed — and then closing the connection, because postgres-nio does not
    /// abandon a running query when its task is cancelled: on a connection gone silent (a network
    /// partition, a frozen server) the query, and this task group waiting for it, would otherwise
    /// hang until TCP gives up, a quarter of an hour later. Waiting for a connection from the
    /// pool (the database down) does end on cancellation.
    func bounded<T: Sendable>(_ timeout: Duration? = nil,
                              _ operation: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await Self.bounded(access, timeout: timeout, operation)
    }

    static func bounded<T: Sendable>(_ access: Access, timeout: Duration? = nil,
                                     _ operation: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let (client, location, timeout) = (access.client, access.location, timeout ?? access.timeout)
        let leased = LeasedConnection()
        // Made only when it happens: every query of a push passes here.
        let timedOut: @Sendable () -> StoreError = {
            StoreError(.unavailable, "PostgreSQL at \(location) did not answer within \(timeout) (is it running and reachable? "
                                     + "connection errors are logged)")
        }
        return try await racing(timeout, onTimeout: leased.close, timedOut: timedOut) {
            do {
                return try await client.withConnection { connection in
                    guard leased.hold(connection) else { throw timedOut() }
                    defer { leased.release() }
                    do {
                        return try await operation(connection)
                    } catch where leased.wasClosed {
                        // Back to the pool closed, not closing: a closing one could be leased
                        // again at once and fail its next query (seen in a test).
                        try? await connection.closeFuture.get()
                        throw error
                    }
                }
            } catch where leased.wasClosed {
                throw timedOut()  // not the closed connection's error, whichever child ends first
            }
        }
    }

    /// Writes a group of items with `write` (one statement for them all), returning one result
    /// per item. If the server refuses the statement (a deadlock with another node writing the
    /// same rows in another order, a value it cannot hold), each item is written on its own, so
    /// one cannot fail its neighbours; a connection that fails fails them all.
    static func writeGroup<Item: Sendable, Output: Sendable>(
        _ items: [Item], access: Access, what: String,
        _ write: @escaping @Sendable ([Item], PostgresConnection) async throws -> [Output]
    ) async -> [Result<Output, any Error>] {
        do {
            return try await bounded(access) { connection in
                do {
                    return try await write(items, connection).map { .success($0) }
                } catch let error as PSQLError where error.serverInfo != nil && items.count > 1 {
                    access.logger.notice("PostgreSQL refused a group of \(what); writing them one by one",
                                         metadata: ["count": "\(items.count)", "error": "\(storeError(error))"])
                    var results: [Result<Output, any Error>] = []
                    for item in items {
                        do {
                            results.append(.success(try await write([item], connection)[0]))
                        } catch {
                            results.append(.failure(storeError(error)))
                        }
                    }
                    return results
                }
            }
        } catch {
            let error = storeError(error)
            return items.map { _ in .failure(error) }
        }
    }

    /// `operation`, or `timedOut()` thrown once `timeout` has passed, after `onTimeout` — which
    /// closes the connection the operation uses: cancelling the operation alone would not end it.
    static func racing<T: Sendable>(_ timeout: Duration, onTimeout: @escaping @Sendable () -> Void,
                                    timedOut: @escaping @Sendable () -> StoreError,
                                    _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: timeout)
                onTimeout()
                throw timedOut()
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// A store error that says what PostgreSQL said. `PSQLError`'s own description withholds
    /// everything (it could hold bound secrets); the server's message and SQLSTATE hold none.
    static func storeError(_ error: any Error) -> any Error {
        if error is StoreError { return error }
        guard let error = error as? PSQLError else { return StoreError(.unavailable, "PostgreSQL: \(error)") }
        if let message = error.serverInfo?[.message] {
            return StoreError(.unavailable, "PostgreSQL: \(message) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))")
        }
        return StoreError(.unavailable, "PostgreSQL: \(error.code)" + (error.underlying.map { ": \($0)" } ?? ""))
    }

    // MARK: - Rows

    static func millis(_ date: Date) -> Int { Int((date.timeIntervalSince1970 * 1000).rounded()) }

    static func date(_ millis: Int) -> Date { Date(timeIntervalSince1970: Double(millis) / 1000) }

    static func date(_ millis: Int?) -> Date? { millis.map(date) }
}

extension PostgresConnection {
    /// Runs `query` in the connection's transaction and collects its rows.
    func fetch(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRandomAccessRow] {
        var rows: [PostgresRandomAccessRow] = []
        for try await row in try await self.query(query, logger: logger) { rows.append(row.makeRandomAccess()) }
        return rows
    }

    /// Runs a statement whose rows, if any, are not needed.
    func run(_ query: PostgresQuery, logger: Logger) async throws {
        _ = try await fetch(query, logger: logger)
    }
}

/// The connection an operation is using, for its timeout to close.
final class LeasedConnection: Sendable {
    private let state = Mutex<(connection: PostgresConnection?, timedOut: Bool, closed: Bool)>((nil, false, false))

    /// Holds the leased connection; false when the timeout has already passed, and the operation
    /// must not run. The pool can hand a connection over just after it (the wait did not end on
    /// cancellation in time), and a query then sent on a silent network never ends, nor does the
    /// race waiting for it. (Closing it instead is no cure: postgres-nio may leave a query sent
    /// on a closing connection unanswered — a test that did so hung a CI run.)
    func hold(_ connection: PostgresConnection) -> Bool {
        state.withLock { state in
            guard !state.timedOut else { return false }
            state.connection = connection
            return true
        }
    }

    func release() { state.withLock { $0.connection = nil } }
    /// Whether the timeout closed the connection.
    var wasClosed: Bool { state.withLock { $0.closed } }

    /// Closes the connection, if the operation still holds one: its query fails at once, and the
    /// pool replaces the connection. None is held after this (`hold`).
    func close() {
        let connection = state.withLock { state -> PostgresConnection? in
            state.timedOut = true
            state.closed = state.connection != nil
            return state.connection
        }
        // The overload that returns a future: nothing here waits for the close.
        let closing: EventLoopFuture<Void>? = connection?.close()
        _ = closing
    }
}
