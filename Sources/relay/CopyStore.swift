import ArgumentParser
import Foundation
import Logging
import RelayCore
import RelayServer

struct CopyStore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy-store",
        abstract: "Copy the relay's state from its store (storage.url) into another, empty one: to move from SQLite to PostgreSQL.",
        discussion: """
            Stop the relay first. Copies subscriptions with their secrets, authorizers with their tokens, each configured \
            component's ticket and token, and every event with an unfinished delivery (queued again, due at once). Delivered \
            events are copied only with --history-hours. Dead-lettered deliveries are counted and left behind, or queued \
            again with --requeue-dead. The destination uses the same storage.encryption_key.
            """)

    @OptionGroup var options: ConfigOptions

    @Option(help: "The destination's storage URL (postgres://… or sqlite:PATH); it must be empty.")
    var to: String

    @Option(help: "Also copy delivered events received within this many hours (listed and replayable, without their delivery history).")
    var historyHours: Int = 0

    @Flag(help: "Queue dead-lettered deliveries again in the destination (due at once) instead of leaving them behind.")
    var requeueDead = false

    func run() async throws {
        let logger = Logger(label: "relay")
        let config = try options.load()
        var destination = config.storage
        do {
            destination.url = try RelayConfig.StorageURL(parsing: to, key: "--to")
        } catch {
            throw ValidationError("\(error)")
        }
        guard destination.url != config.storage.url else { throw ValidationError("--to names the store being copied") }
        guard historyHours >= 0 else { throw ValidationError("--history-hours must be 0 or more") }
        let summary = try await StoreFactory.withStore(config.storage, logger: logger) { source in
            try await StoreFactory.withStore(destination, logger: logger) { target in
                try await StoreCopier.copy(from: source, to: target, components: config.wechat.components.map(\.appid),
                                           history: TimeInterval(historyHours) * 3600, requeueDead: requeueDead, now: Date())
            }
        }
        print(summary)
    }
}
