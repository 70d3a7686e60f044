@testable import RelayStore
import Testing

/// Reading `/proc/locks` for the processes that have an SQLite database open (its `-shm` file's
/// DMS byte, 128, locked).
@Suite struct SQLiteSharersTests {
    static let shm = SQLiteSharers.FileKey(major: 0xfe, minor: 0, inode: 5678)

    @Test func locksCoveringTheDMSByteOfThatFileAreItsHolders() {
        let locks = """
            1: POSIX  ADVISORY  READ 1234 fe:00:5678 128 128
            1: -> POSIX  ADVISORY  WRITE 999 fe:00:5678 128 128
            2: POSIX  ADVISORY  READ 2345 fe:00:5678 120 EOF
            3: POSIX  ADVISORY  WRITE 3456 fe:00:5678 0 127
            4: POSIX  ADVISORY  READ 4567 fe:00:9999 128 128
            5: POSIX  ADVISORY  READ 5678 fe:01:5678 128 128
            6: FLOCK  ADVISORY  WRITE 6789 fe:00:5678 0 EOF
            7: OFDLCK ADVISORY  READ -1 fe:00:5678 128 128
            garbage
            """
        #expect(SQLiteSharers.holders(of: Self.shm, in: locks) == [1234, 2345, 6789, -1])
    }

    /// As glibc's makedev() lays them out; a major past 12 bits must not leak into the minor.
    @Test func deviceNumbersAreSplitAsGlibcDoes() {
        func device(major: UInt64, minor: UInt64) -> UInt64 {
            (major & 0xfff) << 8 | (major & ~0xfff) << 32 | minor & 0xff | (minor & ~0xff) << 12
        }
        #expect(SQLiteSharers.FileKey(device: device(major: 0xfe, minor: 0), inode: 7) == .init(major: 0xfe, minor: 0, inode: 7))
        #expect(SQLiteSharers.FileKey(device: device(major: 0x1234, minor: 0x56789), inode: 7)
            == .init(major: 0x1234, minor: 0x56789, inode: 7))
    }

    @Test func aDatabaseNobodyHasOpenHasNoOtherHolders() {
        #expect(SQLiteSharers.otherProcesses(openingDatabaseAt: "/nonexistent/relay.sqlite").isEmpty)
    }
}
