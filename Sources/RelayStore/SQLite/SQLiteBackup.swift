#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SQLiteNIO

/// A copy of the relay's SQLite database, taken while the relay may be running (`relay backup`).
///
/// `VACUUM INTO` reads one consistent snapshot (a WAL read transaction: the relay goes on writing,
/// and the copy holds every push acknowledged before it began) and writes it compacted into a new
/// file. Copying the file with `cp` instead can tear a page that is being written, and misses what
/// the WAL still holds.
public enum SQLiteBackup {
    public struct Summary: Sendable, CustomStringConvertible {
        public let source: String
        public let destination: String
        public let events: Int
        public let bytes: Int
        public let seconds: Double

        public var description: String {
            "backed up \(source) to \(destination): \(events) events, \(bytes / 1024) KiB, in "
                + String(format: "%.1f s", seconds) + "; it holds what the database holds (tokens and secrets sealed only with storage.encryption_key): keep it as safe"
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        /// Which file the failure is about, for a caller to name it as its user gave it.
        public enum Subject: Sendable { case source, destination, copying }
        public let subject: Subject
        public let description: String
    }

    /// Copies the database at `source` into `destination`, a file that must not exist yet; made
    /// readable by its owner only, and checked (`PRAGMA quick_check`) before this returns.
    public static func copy(from source: String, to destination: String, now: () -> Date = Date.init) throws -> Summary {
        let started = now()
        guard FileManager.default.fileExists(atPath: source) else {
            throw Failure(subject: .source, description: "\(source) does not exist: name the relay's database")
        }
        // Created empty first, so that the copy is never readable by others and never replaces a file.
        if let error = DatabaseFileMode.createOwnerOnly(destination) {
            let reason = error == EEXIST ? "it exists (a backup never replaces a file)" : String(cString: strerror(error))
            throw Failure(subject: .destination, description: "cannot create \(destination): \(reason); name a new file")
        }
        do {
            let database = try SQLiteHandle(path: source)
            defer { database.close() }
            // A relay checkpointing or recovering the WAL holds its lock briefly.
            try database.query("PRAGMA busy_timeout = 10000")
            try database.query("VACUUM INTO ?", [.text(destination)])
            let copy = try SQLiteHandle(path: destination)
            defer { copy.close() }
            let check = try copy.query("PRAGMA quick_check").first?.values.first
            guard case .text("ok") = check else {
                throw Failure(subject: .copying, description: "the copy in \(destination) failed its integrity check: \(check.map { "\($0)" } ?? "no answer")")
            }
            let events = try copy.query("SELECT count(*) FROM events").first?.values.first?.integer ?? 0
            let bytes = (try? FileManager.default.attributesOfItem(atPath: destination)[.size] as? Int) ?? 0
            return Summary(source: source, destination: destination, events: events, bytes: bytes, seconds: now().timeIntervalSince(started))
        } catch {
            try? FileManager.default.removeItem(atPath: destination)
            if let failure = error as? Failure { throw failure }
            throw Failure(subject: .copying, description: "cannot back up \(source) to \(destination): \(error)")
        }
    }
}
