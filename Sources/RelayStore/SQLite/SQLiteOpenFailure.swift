import Foundation
import RelayCore
#if canImport(Glibc)
import Glibc
#endif

/// Why a SQLite file could not be opened or migrated, in the operator's terms. SQLite names the
/// symptom: a full disk surfaced as "disk I/O error" (the shared-memory file could not grow) in a
/// `PRAGMA`, and a directory the relay may not write as "unable to open database file".
enum SQLiteOpenFailure {
    /// A SQLite failure while opening or migrating (`doing`) the file at `path`, as a `StoreError`
    /// naming the key, and the cause when the disk is full or the directory not writable.
    static func diagnosed(_ error: any Error, path: String, doing: String) -> any Error {
        guard error is SQLiteFailure else { return error }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let writable = access(directory, W_OK) == 0 && (!FileManager.default.fileExists(atPath: path) || access(path, W_OK) == 0)
        return diagnosed(error, path: path, doing: doing, freeBytes: freeBytes(at: directory), writable: writable)
    }

    /// The same, from what was found about the file's directory.
    static func diagnosed(_ error: any Error, path: String, doing: String, freeBytes: UInt64?, writable: Bool) -> any Error {
        guard let failure = error as? SQLiteFailure else { return error }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let cause: String
        if let free = freeBytes, free < 1 << 20 {
            cause = "the disk holding it is full (\(free) bytes free); free space there and start again"
        } else if !writable {
            cause = """
                this process (uid \(getuid())) may not write \(directory) or the file, and SQLite creates its -wal and -shm \
                files beside it; give the relay's user write access there, or choose another path
                """
        } else {
            return StoreError(.unavailable, "storage.url: cannot \(doing) \(path): \(failure)")
        }
        return StoreError(.unavailable, "storage.url: cannot \(doing) \(path): \(cause) (\(failure))")
    }

    /// Bytes an unprivileged process may still write on the file system holding `directory`.
    static func freeBytes(at directory: String) -> UInt64? {
        var stats = statvfs()
        guard statvfs(directory.isEmpty ? "." : directory, &stats) == 0 else { return nil }
        return UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
    }
}
