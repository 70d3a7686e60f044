import Foundation
import Logging
import RelayCore
import ServiceLifecycle

/// Owns the store's lifetime inside the service group and purges events past `storage.retention`.
/// Listed first in the group, it stops last: every other service has finished writing by then.
struct StoreService: Service {
    let store: any RelayStore
    let retention: Duration
    let clock: any RelayClock
    let logger: Logger

    func run() async throws {
        // Purge once at start, then hourly, until the group shuts down.
        while !Task.isShuttingDownGracefully {
            await purge()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
        }
        try await store.close()
    }

    private func purge() async {
        let cutoff = clock.now().addingTimeInterval(-Double(retention.components.seconds))
        do {
            let purged = try await store.purgeEvents(before: cutoff)
            if purged > 0 { logger.info("purged events past retention", metadata: ["count": "\(purged)"]) }
        } catch {
            logger.warning("retention purge failed", metadata: ["error": "\(error)"])
        }
    }
}
