import Foundation
import Logging
import RelayCore
import ServiceLifecycle

/// Purges events (and with them their deliveries and attempts) older than `storage.retention`,
/// at start and then hourly, so user identifiers do not outlive it.
///
/// In batches of `batchSize` events, each its own transaction: on SQLite a purge holds the one
/// writer, and an hour of a busy platform's events (or weeks of them, after `retention` was
/// shortened) deleted at once kept every push waiting for its commit for seconds or minutes —
/// past WeChat's 5 s, so WeChat gave up on them. Between batches the intake's commits go first.
struct RetentionService: Service {
    let store: any RelayStore
    let retention: Duration
    let clock: any RelayClock
    let logger: Logger
    var batchSize = 500

    func run() async throws {
        // Cancelled too when another service fails (the server cannot bind its port, say): the
        // sleep then returns at once, and without the check this loop spun purging for ever.
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await purge()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
        }
    }

    /// Returns how many events were purged.
    @discardableResult
    func purge() async -> Int {
        let cutoff = clock.now().addingTimeInterval(-Double(retention.components.seconds))
        var purged = 0
        do {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let batch = try await store.purgeEvents(before: cutoff, limit: batchSize)
                purged += batch
                if batch < batchSize { break }
                await Task.yield()
            }
        } catch where Task.isCancelled {
            // Stopping (a store call cancelled mid-batch when the server could not start, say) is
            // not a purge failing: the next start purges what is left.
        } catch {
            logger.warning("retention purge failed", metadata: ["error": "\(error)", "purged": "\(purged)"])
        }
        if purged > 0 { logger.info("purged events past retention", metadata: ["count": "\(purged)"]) }
        return purged
    }
}
