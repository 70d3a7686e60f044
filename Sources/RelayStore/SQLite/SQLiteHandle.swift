import NIOCore
import NIOPosix
import SQLiteNIO
import Synchronization
import VaporCSQLite  // the SQLite that sqlite-nio builds and links; it exposes no handle of its own

/// One row of a result.
struct StoreRow: Sendable {
    /// Shared by every row of the result.
    let names: [String]
    let values: [SQLiteData]

    func column(_ name: String) -> SQLiteData? {
        names.firstIndex(of: name).map { values[$0] }
    }
}

/// What SQLite refused, with the start of the statement.
struct SQLiteFailure: Error, CustomStringConvertible {
    let code: Int32
    let message: String
    let statement: String

    var description: String { "SQLite error \(code) (\(message)) in: \(statement.prefix(80))" }
}

/// One `sqlite3` connection used synchronously, its prepared statements kept for reuse.
///
/// Why not `SQLiteConnection`: it prepares every statement anew and runs each on its own
/// thread-pool work item, so a group commit of five statements was five hops to the pool and
/// back, and preparing was a fifth of the store's time. Here a whole group runs in one work item
/// (`SQLiteQueue`) with cached statements. Not thread-safe by itself: only `SQLiteQueue` uses it.
final class SQLiteHandle {
    private var db: OpaquePointer?
    private var statements: [String: Prepared] = [:]
    /// Multi-row statements differ by their row count, so the cache is bounded.
    static let cacheLimit = 256

    /// `readOnly` opens an existing file without the right to change it (inspection).
    init(path: String, readOnly: Bool = false) throws {
        let access = readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE
        let flags = access | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        let code = sqlite_nio_sqlite3_open_v2(path, &db, flags, nil)
        guard code == SQLITE_OK else {
            let message = db.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite_nio_sqlite3_close_v2(db)
            throw SQLiteFailure(code: code, message: message, statement: "open \(path)")
        }
    }

    deinit { close() }

    func close() {
        for prepared in statements.values { sqlite_nio_sqlite3_finalize(prepared.statement) }
        statements = [:]
        if let db { sqlite_nio_sqlite3_close_v2(db) }
        db = nil
    }

    /// Runs one statement and returns its rows.
    @discardableResult
    func query(_ sql: String, _ binds: [SQLiteData] = []) throws -> [StoreRow] {
        let (statement, cachedNames) = try prepared(sql)
        defer {
            sqlite_nio_sqlite3_reset(statement)
            sqlite_nio_sqlite3_clear_bindings(statement)
        }
        for (index, value) in binds.enumerated() {
            try check(bind(value, at: Int32(index + 1), in: statement), sql)
        }
        var rows: [StoreRow] = []
        var names = cachedNames
        while true {
            let code = sqlite_nio_sqlite3_step(statement)
            if code == SQLITE_DONE { return rows }
            guard code == SQLITE_ROW else { throw failure(code, sql) }
            let count = sqlite_nio_sqlite3_column_count(statement)
            if names?.count != Int(count) {
                names = (0..<count).map { String(cString: sqlite_nio_sqlite3_column_name(statement, $0)) }
                statements[sql]?.names = names
            }
            rows.append(StoreRow(names: names!, values: (0..<count).map { column($0, of: statement) }))
        }
    }

    /// How often SQLite had to prepare the cached `sql` again (0 when it is not cached).
    func reprepares(of sql: String) -> Int32 {
        statements[sql].map { sqlite_nio_sqlite3_stmt_status($0.statement, SQLITE_STMTSTATUS_REPREPARE, 0) } ?? 0
    }

    private func prepared(_ sql: String) throws -> (OpaquePointer, [String]?) {
        if let prepared = statements[sql] { return (prepared.statement, prepared.names) }
        var statement: OpaquePointer?
        let code = sqlite_nio_sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard code == SQLITE_OK, let statement else { throw failure(code, sql) }
        if statements.count >= Self.cacheLimit {
            for old in statements.values { sqlite_nio_sqlite3_finalize(old.statement) }
            statements = [:]
        }
        statements[sql] = Prepared(statement: statement)
        return (statement, nil)
    }

    /// A cached statement and its column names, read once (read again if a schema change gave
    /// the statement a different number of columns).
    private struct Prepared {
        let statement: OpaquePointer
        var names: [String]?
    }

    private func bind(_ value: SQLiteData, at index: Int32, in statement: OpaquePointer) -> Int32 {
        switch value {
        case .integer(let value):
            sqlite_nio_sqlite3_bind_int64(statement, index, Int64(value))
        case .float(let value):
            sqlite_nio_sqlite3_bind_double(statement, index, value)
        case .text(var value):
            value.withUTF8 { bytes in
                // An empty buffer may have no address, which SQLite would read as NULL (blobs too).
                bytes.withMemoryRebound(to: CChar.self) {
                    sqlite_nio_sqlite3_bind_text64(statement, index, $0.baseAddress ?? emptyText, UInt64($0.count), transient, UInt8(SQLITE_UTF8))
                }
            }
        case .blob(let value):
            value.withUnsafeReadableBytes {
                sqlite_nio_sqlite3_bind_blob64(statement, index, $0.baseAddress ?? UnsafeRawPointer(emptyText), UInt64($0.count), transient)
            }
        case .null:
            sqlite_nio_sqlite3_bind_null(statement, index)
        }
    }

    private func column(_ index: Int32, of statement: OpaquePointer) -> SQLiteData {
        switch sqlite_nio_sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER:
            return .integer(SQLiteInt64(sqlite_nio_sqlite3_column_int64(statement, index)))
        case SQLITE_FLOAT:
            return .float(sqlite_nio_sqlite3_column_double(statement, index))
        case SQLITE_TEXT:
            guard let text = sqlite_nio_sqlite3_column_text(statement, index) else { return .text("") }
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, index))
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, index))
            guard let bytes = sqlite_nio_sqlite3_column_blob(statement, index), count > 0 else { return .blob(ByteBuffer()) }
            return .blob(ByteBuffer(bytes: UnsafeRawBufferPointer(start: bytes, count: count)))
        default:
            return .null
        }
    }

    private func check(_ code: Int32, _ sql: String) throws {
        guard code == SQLITE_OK else { throw failure(code, sql) }
    }

    private func failure(_ code: Int32, _ sql: String) -> SQLiteFailure {
        SQLiteFailure(code: code, message: db.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "closed", statement: sql)
    }
}

/// SQLite copies bound values before the call returns.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
/// What an empty string or blob is bound from (a NULL pointer would bind NULL). `nonisolated(unsafe)`
/// because pointers are not `Sendable`: this one is written once, before its first use, and
/// only ever read afterwards, by SQLite, on any thread.
private nonisolated(unsafe) let emptyText: UnsafePointer<CChar> = {
    let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: 1)
    pointer.initialize(to: 0)
    return UnsafePointer(pointer)
}()

/// A `SQLiteHandle` whose work runs on a thread pool (SQLite blocks on disk), one caller at a time.
final class SQLiteQueue: Sendable {
    private let handle: Mutex<SQLiteHandle>
    private let pool: NIOThreadPool

    private init(handle: consuming sending SQLiteHandle, pool: NIOThreadPool) {
        self.handle = Mutex(handle)
        self.pool = pool
    }

    static func open(path: String, pool: NIOThreadPool) async throws -> SQLiteQueue {
        // Opening happens once, at start, so it may block here.
        let queue = SQLiteQueue(handle: try SQLiteHandle(path: path), pool: pool)
        try await queue.query("PRAGMA busy_timeout = 5000")
        return queue
    }

    /// Runs `body` on the pool with the connection to itself.
    func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteHandle) throws -> T) async throws -> T {
        try await pool.runIfActive { try self.handle.withLock { try body($0) } }
    }

    /// Runs one statement.
    @discardableResult
    func query(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [StoreRow] {
        try await run { try $0.query(sql, binds) }
    }

    func close() async throws {
        try await run { $0.close() }
    }
}
