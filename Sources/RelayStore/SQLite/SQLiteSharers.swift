#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Which other processes have an SQLite database open.
///
/// One SQLite file serves one relay: at start a relay releases every claim in the file as left by
/// a dead process, so a second relay on the same file would send deliveries the first one is
/// sending, and `relay copy-store` from a running relay would miss what it acknowledges after the
/// copy. In WAL mode every open connection holds a shared lock on byte 128 (the "DMS" lock) of the
/// database's `-shm` file for as long as it is open (SQLite's WAL file format). The kernel lists
/// those locks in `/proc/locks`; probing with `fcntl` instead would mean opening the file, and
/// closing it drops every POSIX lock this process holds on it, its own connections' included.
enum SQLiteSharers {
    /// Ids of the other processes with the database at `path` open (empty where `/proc/locks`
    /// cannot be read).
    static func otherProcesses(openingDatabaseAt path: String) -> [Int32] {
        var status = stat()
        guard stat(path + "-shm", &status) == 0,
              let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return [] }
        let file = FileKey(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
        return holders(of: file, in: locks).filter { $0 != getpid() }
    }

    /// A file as `/proc/locks` names it: `MAJOR:MINOR:INODE`, the device numbers in hexadecimal.
    struct FileKey: Equatable {
        let major: UInt64
        let minor: UInt64
        let inode: UInt64

        init(major: UInt64, minor: UInt64, inode: UInt64) {
            (self.major, self.minor, self.inode) = (major, minor, inode)
        }

        /// Splits `st_dev` as glibc's `major()` and `minor()` do (macros Swift does not import):
        /// major in bits 8–19 and 44–63, minor in bits 0–7 and 20–43.
        init(device: UInt64, inode: UInt64) {
            self.init(major: (device >> 8) & 0xfff | (device >> 32) & 0xffff_f000,
                      minor: device & 0xff | (device >> 12) & 0xffff_ff00, inode: inode)
        }
    }

    static let dmsByte: UInt64 = 128

    /// The processes holding a lock on `file` that covers the DMS byte, from the text of
    /// `/proc/locks` (`1: POSIX  ADVISORY  READ 1234 fe:00:5678 128 128`; lines with `->` are
    /// requests waiting for a lock, not locks held).
    static func holders(of file: FileKey, in locks: String) -> [Int32] {
        locks.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, fields[1] != "->", let pid = Int32(fields[4]) else { return nil }
            let key = fields[5].split(separator: ":")
            guard key.count == 3, UInt64(key[0], radix: 16) == file.major, UInt64(key[1], radix: 16) == file.minor,
                  UInt64(key[2]) == file.inode, let start = UInt64(fields[6]) else { return nil }
            let end = fields[7] == "EOF" ? UInt64.max : UInt64(fields[7]) ?? 0
            return start <= dmsByte && dmsByte <= end ? pid : nil
        }
    }
}
