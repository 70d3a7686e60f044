import ArgumentParser
import Foundation
import RelayServer
import RelayStore

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the relay's SQLite database (storage.url) into a new file, while the relay runs.",
        discussion: """
            The copy is one consistent snapshot: every push acknowledged before it began. To restore, stop the relay, \
            replace its database file with the copy (and delete the database's -wal and -shm files), and start it again. \
            For PostgreSQL use pg_dump.
            """)

    @OptionGroup var options: ConfigOptions

    @Option(help: "The SQLite database to copy, instead of storage.url of --config.")
    var database: String?

    @Option(help: "The file to write; it must not exist.")
    var to: String

    func run() throws {
        let path: String
        if let database {
            path = database
        } else {
            guard case .sqlite(let configured) = try options.load().storage.url else {
                throw CommandFailure("storage.url is a PostgreSQL database: back it up with pg_dump (relay backup copies an SQLite database)")
            }
            path = configured
        }
        do {
            print(try SQLiteBackup.copy(from: path, to: to))
        } catch let failure as SQLiteBackup.Failure {
            switch failure.subject {
            case .source: throw CommandFailure("\(database == nil ? "storage.url" : "--database"): \(failure)")
            case .destination: throw CommandFailure("--to: \(failure)")
            case .copying: throw CommandFailure("\(failure)")
            }
        }
    }
}
