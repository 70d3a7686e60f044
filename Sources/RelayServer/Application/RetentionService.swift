import Foundation
import Logging
import RelayCore
import ServiceLifecycle

/// Purges events (and with them their deliveries and attempts) older than `storage.retention`,
/// at start and then hourly, so user identifiers do not outlive it.
struct RetentionService: Service {
    let store: any RelayStore
    let retention: Duration
    let clock: any RelayClock
    let logger: Logger

    func run() async throws {
        // Cancelled too when another service fails (the server cannot bind its port, say): the
        // sleep then returns at once, and without the check this loop spun purging for ever.
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await purge()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
        }
    }

    func purge() async {
        let cutoff = clock.now().addingTimeInterval(-Double(retention.components.seconds))
        do {
            let purged = try await store.purgeEvents(before: cutoff)
            if purged > 0 { logger.info("purged events past retention", metadata: ["count": "\(purged)"]) }
        } catch {
            logger.warning("retention purge failed", metadata: ["error": "\(error)"])
        }
    }
}
