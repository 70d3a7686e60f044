#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// The database holds WeChat tokens, tickets, webhook secrets (sealed only with
/// `storage.encryption_key`) and every user's messages: nobody but the relay's user reads it.
/// SQLite creates a database file as the umask allows (0644 under the usual 022), and its `-wal`
/// and `-shm` files with the database's mode; a new database is therefore created 0600 here,
/// before SQLite opens it. An existing one is left as it is — the operator may have chosen its
/// mode — with a warning when others may read it.
enum DatabaseFileMode {
    static func prepare(_ path: String, logger: Logger) {
        guard createOwnerOnly(path) != nil else { return }
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & 0o004 != 0 else { return }
        logger.warning("the database file can be read by other users: it holds tokens, secrets and messages; chmod 600 it (and its -wal and -shm files)",
                       metadata: ["path": .string(path), "mode": .string(String(status.st_mode & 0o777, radix: 8))])
    }

    /// Creates an empty file at `path` that only its owner may read (SQLite fills an empty file
    /// as a new database); nil when done, else the `errno` — `EEXIST` when a file is there.
    static func createOwnerOnly(_ path: String) -> Int32? {
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return errno }
        close(descriptor)
        return nil
    }
}
