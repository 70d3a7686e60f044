import Foundation
@testable import RelayStore
import Testing

/// A SQLite file that cannot be opened names `storage.url` and, where it can tell, the cause: a
/// full disk read as "disk I/O error in: PRAGMA cache_size", a read-only directory as "unable
/// to open database file".
@Suite struct SQLiteOpenFailureTests {
    let ioError = SQLiteFailure(code: 4874, message: "disk I/O error", statement: "PRAGMA cache_size = -8192")

    func message(_ error: any Error, free: UInt64?, writable: Bool) -> String {
        "\(SQLiteOpenFailure.diagnosed(error, path: "/var/lib/relay/relay.sqlite", doing: "open", freeBytes: free, writable: writable))"
    }

    @Test func aFullDiskIsNamed() {
        #expect(message(ioError, free: 4096, writable: true) == """
            storage.url: cannot open /var/lib/relay/relay.sqlite: the disk holding it is full (4096 bytes free); free space there \
            and start again (SQLite error 4874 (disk I/O error) in: PRAGMA cache_size = -8192)
            """)
    }

    @Test func aDirectoryTheRelayMayNotWriteIsNamed() {
        let failure = SQLiteFailure(code: 14, message: "unable to open database file", statement: "open /var/lib/relay/relay.sqlite")
        #expect(message(failure, free: 1 << 30, writable: false).hasPrefix(
            "storage.url: cannot open /var/lib/relay/relay.sqlite: this process (uid \(getuid())) may not write /var/lib/relay or the file"))
    }

    @Test func otherwiseSQLitesOwnWordsAfterTheKey() {
        #expect(message(ioError, free: 1 << 30, writable: true)
            == "storage.url: cannot open /var/lib/relay/relay.sqlite: SQLite error 4874 (disk I/O error) in: PRAGMA cache_size = -8192")
        struct Other: Error {}
        #expect(message(Other(), free: 0, writable: false) == "Other()")
    }

    /// The real check behind it: a directory that exists has a figure.
    @Test func freeBytesAreRead() throws {
        #expect(try #require(SQLiteOpenFailure.freeBytes(at: NSTemporaryDirectory())) > 0)
        #expect(SQLiteOpenFailure.freeBytes(at: "/nonexistent/directory") == nil)
    }
}
