import Foundation
import Logging
import RelayCore
import RelayServer
import RelayTestSupport
import Testing

/// The database holds tokens, secrets and users' messages: a relay creates it, and SQLite its
/// WAL files, readable by the relay's user only, whatever the umask.
@Suite struct DatabaseFileModeTests {
    static func mode(_ path: String) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func aNewDatabaseAndItsWALFilesAreTheRelaysUsersOnly() async throws {
        let directory = makeTemporaryDirectory()
        let path = directory + "/relay.sqlite"
        let config = try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: "sqlite:" + path), environment: [:])
        let logs = CapturedLogs()
        try await StoreFactory.withStore(config.storage, logger: Logger(label: "test") { _ in logs.handler() }) { store in
            _ = try await StoreContractTests.commit(["a"], to: [], in: store)
            for file in [path, path + "-wal", path + "-shm"] {
                #expect(try Self.mode(file) == 0o600, "\(file)")
            }
        }
        #expect(!logs.lines.contains { $0.contains("can be read by other users") })
    }

    /// An existing file keeps the mode its operator gave it; one anybody may read is pointed out.
    @Test func anExistingDatabaseOthersMayReadIsLeftAsItIsWithAWarning() async throws {
        let directory = makeTemporaryDirectory()
        let path = directory + "/relay.sqlite"
        #expect(FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644]))
        let config = try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: "sqlite:" + path), environment: [:])
        let logs = CapturedLogs()
        try await StoreFactory.withStore(config.storage, logger: Logger(label: "test") { _ in logs.handler() }) { _ in }
        #expect(try Self.mode(path) == 0o644)
        #expect(logs.lines.contains { $0.contains("can be read by other users") && $0.contains("mode=644") }, "\(logs.lines)")
    }
}
