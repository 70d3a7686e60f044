import Foundation
import Logging
import RelayCore
import RelayServer
import RelayStore
import RelayTestSupport
import Testing

/// `relay backup`: a copy of the SQLite database taken while its store is open and writing.
@Suite struct SQLiteBackupTests {
    @Test func aCopyTakenWhileTheStoreIsOpenOpensAsAStoreWithItsEvents() async throws {
        let directory = makeTemporaryDirectory()
        let source = directory + "/relay.sqlite", copy = directory + "/backup.sqlite"
        let config = try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: "sqlite:" + source), environment: [:])
        let stored = try await StoreFactory.withStore(config.storage, logger: Logger(label: "test")) { store in
            try await store.insertSubscription(StoreContractTests.subscription("crm"))
            let events = try await StoreContractTests.commit(["a", "b", "c"], to: ["crm"], in: store)
            // The store stays open, its last writes in the WAL: what a running relay's file looks like.
            #expect(FileManager.default.fileExists(atPath: source + "-wal"))
            let summary = try SQLiteBackup.copy(from: source, to: copy)
            #expect(summary.events == 3 && summary.bytes > 0, "\(summary)")
            _ = try await StoreContractTests.commit(["after"], to: ["crm"], in: store)  // not in the copy
            return events
        }
        let mode = try FileManager.default.attributesOfItem(atPath: copy)[.posixPermissions] as? Int
        #expect(mode == 0o600, "only its owner may read it: it holds tokens")
        var restored = config
        restored.storage.url = .sqlite(path: copy)
        try await StoreFactory.withStore(restored.storage, logger: Logger(label: "test")) { store in
            let events = try await store.events(EventQuery()), subscriptions = try await store.subscriptions()
            #expect(events.map(\.id).sorted() == stored.map(\.id).sorted())
            #expect(subscriptions.map(\.id) == ["crm"])
        }
    }

    @Test func neverReplacesAFileAndNamesAMissingDatabase() throws {
        let directory = makeTemporaryDirectory()
        let existing = directory + "/keep.sqlite"
        try Data("an earlier backup".utf8).write(to: URL(fileURLWithPath: existing))
        #expect(throws: SQLiteBackup.Failure.self) { try SQLiteBackup.copy(from: directory + "/none.sqlite", to: directory + "/b.sqlite") }
        do {
            _ = try SQLiteBackup.copy(from: directory + "/none.sqlite", to: directory + "/b.sqlite")
        } catch {
            #expect("\(error)".hasPrefix("\(directory)/none.sqlite does not exist: name the relay's database"), "\(error)")
            #expect((error as? SQLiteBackup.Failure)?.subject == .source)
        }
        try FileManager.default.copyItem(atPath: existing, toPath: directory + "/relay.sqlite")  // any file will do as the source here
        do {
            _ = try SQLiteBackup.copy(from: directory + "/relay.sqlite", to: existing)
            Issue.record("an existing file was replaced")
        } catch {
            #expect("\(error)".hasPrefix("cannot create \(existing): it exists"), "\(error)")
            #expect((error as? SQLiteBackup.Failure)?.subject == .destination)
        }
        #expect(try String(contentsOfFile: existing, encoding: .utf8) == "an earlier backup")
        #expect(!FileManager.default.fileExists(atPath: directory + "/b.sqlite"))
    }
}
