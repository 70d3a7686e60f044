import Foundation
import Hummingbird
import Logging
import RelayCore

/// `/healthz` (process up), `/readyz` (store reachable) and `/metrics` (Prometheus text).
/// None needs a token; production binds them to an internal interface.
struct OperationsRoutes: Sendable {
    let store: any RelayStore
    let metrics: RelayMetrics
    let clock: any RelayClock
    /// Configured components, whose ticket age is exported.
    let components: [String]
    /// The subscriptions, whose backlogs are exported (0 for those with none).
    let registry: SubscriptionRegistry
    /// When this relay started: the ticket age of a component that has none.
    let startedAt: Date

    func register(on router: Router<RelayRequestContext>) {
        router.get("/healthz") { _, _ in PlainText.response(.ok, "ok") }
        router.get("/readyz") { _, context in
            do {
                try await store.ping()
                return PlainText.response(.ok, "ready")
            } catch {
                context.logger.warning("store not reachable", metadata: ["error": "\(error)"])
                return PlainText.response(.serviceUnavailable, "store not reachable")
            }
        }
        router.get("/metrics") { _, context in
            // Queue figures are read at scrape time, so they are exact whenever someone looks.
            do {
                let stats = try await store.queueStats()
                let age = stats.oldestPendingCreatedAt.map { max(0, clock.now().timeIntervalSince($0)) } ?? 0
                metrics.queue(depth: stats.depth, oldestPendingAge: age)
                metrics.subscriptionQueues(stats.bySubscription, known: registry.all.map(\.id), now: clock.now())
                for component in components {
                    // A component that never got a ticket (WeChat pushes them to a URL or with a
                    // key that is wrong, say) has gone without one for as long as the relay has
                    // run: without a series, an alert on the age never fired for it.
                    let since = try await store.ticket(componentAppid: component)?.receivedAt ?? startedAt
                    metrics.ticketAge(component: component, seconds: max(0, clock.now().timeIntervalSince(since)))
                }
                metrics.storeUp(true)
            } catch {
                // The gauges above keep their last values: this one says they are stale (an
                // alert on it needs no threshold).
                metrics.storeUp(false)
                context.logger.warning("cannot read queue statistics", metadata: ["error": "\(error)"])
            }
            if let figures = ProcessFigures.current() { metrics.process(figures) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.exposition())))
        }
    }
}

/// Plain-text answers, as WeChat expects (`success`, echoes, short reasons).
enum PlainText {
    static func response(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
