import Foundation
import Logging
import NIOCore
import NIOPosix
import RelayCore
@testable import RelayStore
import RelayTestSupport
import SQLiteNIO
import Synchronization
import Testing

/// The store's own SQLite layer: values round-trip, cached statements are reused safely, errors
/// say what failed.
@Suite struct SQLiteHandleTests {
    static func withQueue<T>(_ body: (SQLiteQueue) async throws -> T) async throws -> T {
        let queue = try await SQLiteQueue.open(path: makeTemporaryDirectory() + "/handle.sqlite", pool: .singleton)
        do {
            let result = try await body(queue)
            try await queue.close()
            return result
        } catch {
            try? await queue.close()
            throw error
        }
    }

    @Test func everyKindOfValueRoundTrips() async throws {
        try await Self.withQueue { db in
            try await db.query("CREATE TABLE t (i INTEGER, f REAL, s TEXT, b BLOB, n TEXT)")
            let values: [SQLiteData] = [.integer(-(1 << 53)), .float(2.5), .text("héllo\u{0}wörld 🎉"), .blob(ByteBuffer(bytes: [0, 1, 255])), .null]
            try await db.query("INSERT INTO t VALUES (?, ?, ?, ?, ?)", values)
            let row = try #require(try await db.query("SELECT * FROM t").first)
            #expect(row.values == values)
            #expect(row.column("s") == .text("héllo\u{0}wörld 🎉"))
            #expect(row.column("missing") == nil)
        }
    }

    /// An empty Swift string or buffer may have no address; bound as a null pointer SQLite would store NULL.
    @Test func anEmptyStringOrBlobIsStoredAsEmptyNotNull() async throws {
        try await Self.withQueue { db in
            try await db.query("CREATE TABLE t (s TEXT, b BLOB)")
            try await db.query("INSERT INTO t VALUES (?, ?)", [.text(""), .blob(ByteBuffer())])
            let rows = try await db.query("SELECT s, s IS NULL AS absent, b IS NULL AS noblob, length(b) AS size FROM t")
            #expect(rows.first?.column("s") == .text(""))
            #expect(rows.first?.column("absent") == .integer(0))
            #expect(rows.first?.column("noblob") == .integer(0))
            #expect(rows.first?.column("size") == .integer(0))
        }
    }

    /// Cached statements are reset and their bindings cleared, so a reused one starts afresh, even
    /// after a failure half-way, and a cache past its limit keeps working.
    @Test func cachedStatementsStartAfreshAndTheCacheIsBounded() async throws {
        try await Self.withQueue { db in
            try await db.query("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            try await db.query("INSERT INTO t VALUES (?, ?)", [.integer(1), .text("a")])
            await #expect(throws: SQLiteFailure.self) { try await db.query("INSERT INTO t VALUES (?, ?)", [.integer(1), .text("b")]) }
            try await db.query("INSERT INTO t VALUES (?, ?)", [.integer(2), .text("c")])
            #expect(try await db.query("SELECT v FROM t ORDER BY k").map { $0.column("v") } == [.text("a"), .text("c")])
            for n in 0...(SQLiteHandle.cacheLimit + 10) {
                let rows = try await db.query("SELECT \(n) AS n, v FROM t WHERE k = ?", [.integer(2)])
                #expect(rows.first?.column("n") == .integer(n))
            }
            #expect(try await db.query("SELECT v FROM t WHERE k = ?", [.integer(1)]).first?.column("v") == .text("a"))
        }
    }

    @Test func aFailureNamesTheStatementAndSQLitesReason() async throws {
        try await Self.withQueue { db in
            let failure = await #expect(throws: SQLiteFailure.self) { try await db.query("SELECT * FROM nowhere") }
            #expect(failure?.description.contains("no such table: nowhere") == true)
            #expect(failure?.description.contains("SELECT * FROM nowhere") == true)
        }
    }

    /// The store has threads of its own: with every thread of NIO's shared pool blocked (as by
    /// slow DNS lookups of the egress check), a push is still stored.
    @Test(.timeLimit(.minutes(1))) func storeWritesDoNotWaitForTheSharedBlockingPool() async throws {
        try await DeliveryQueueTests.withStore { store, subscription in
            let threads = NIOSingletons.blockingPoolThreadCountSuggestion
            let (busy, announce) = AsyncStream.makeStream(of: Void.self)
            let release = DispatchSemaphore(value: 0)
            for _ in 0..<threads {
                NIOThreadPool.singleton.submit { _ in
                    announce.yield()
                    release.wait()
                }
            }
            var blocked = 0
            for await _ in busy {
                blocked += 1
                if blocked == threads { break }
            }
            let stored = await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    (try? await DeliveryQueueTests.commitEvents(1, at: Date(), to: subscription, in: store)) != nil
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(10))  // a bound on failure, not a wait for work
                    return false
                }
                let first = await group.next() ?? false
                // Freed before the group ends: a commit stuck behind them must be able to finish.
                for _ in 0..<threads { release.signal() }
                group.cancelAll()
                return first
            }
            #expect(stored, "the commit waited for the shared pool")
        }
    }
}

