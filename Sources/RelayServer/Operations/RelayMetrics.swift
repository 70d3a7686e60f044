import Foundation
import CoreMetrics
import Metrics
import Prometheus
import RelayCore
import Synchronization

/// The relay's metrics, on a registry of its own (no process-global bootstrap), so each
/// application — and each test — exposes exactly its own figures on `/metrics`.
public struct RelayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory
    /// The hot metrics (one push, one delivery) keep their handles: making a swift-metrics
    /// handle allocates it and looks it up in the registry under its lock, every time.
    private let counters = HandleCache<CoreMetrics.Counter>()
    private let timers = HandleCache<CoreMetrics.Timer>()
    /// Per subscription, apart from the pushes' handles (keyed by endpoint, which a subscription's
    /// id may equal: `callback`'s delivery latencies went into its push latencies): a
    /// subscription's are removed when it goes.
    private let deliveryCounters = HandleCache<CoreMetrics.Counter>()
    private let deliveryTimers = HandleCache<CoreMetrics.Timer>()
    /// Subscriptions with series of their own: when one goes, all of them are removed.
    private let subscriptionSeries = SubscriptionSeries()
    /// The process's CPU seconds as last reported, so the counter grows by what was spent since.
    private let reportedCPU = ReportedTotal()

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
            .seconds(5), .seconds(10), .seconds(30),
        ]
        self.factory = factory
    }

    /// `relay_pushes_total{endpoint,outcome}`: every push and URL check, by how it ended.
    public func push(endpoint: String, outcome: String) {
        counters.handle(endpoint + "\u{1F}" + outcome) {
            Counter(label: "relay_pushes_total", dimensions: [("endpoint", endpoint), ("outcome", outcome)], factory: factory)
        }.increment()
    }

    /// `relay_push_seconds{endpoint}`: time from request to acknowledgement.
    public func pushLatency(endpoint: String, _ duration: Duration) {
        timers.handle(endpoint) { Timer(label: "relay_push_seconds", dimensions: [("endpoint", endpoint)], factory: factory) }.recordNanoseconds(duration.nanoseconds)
    }

    /// `relay_deliveries_total{subscription,outcome}` and `relay_delivery_seconds{subscription}`.
    public func delivery(subscription: String, outcome: DeliveryOutcome, duration: Duration) {
        deliveryCounters.handle(subscription + "\u{1F}" + outcome.rawValue) {
            subscriptionSeries.insert(subscription)
            return Counter(label: "relay_deliveries_total", dimensions: [("subscription", subscription), ("outcome", outcome.rawValue)], factory: factory)
        }.increment()
        deliveryTimers.handle(subscription) {
            subscriptionSeries.insert(subscription)
            return Timer(label: "relay_delivery_seconds", dimensions: [("subscription", subscription)], factory: factory)
        }.recordNanoseconds(duration.nanoseconds)
    }

    /// `relay_subscription_circuit_open{subscription}`: 1 while the subscription's deliveries go
    /// one probe at a time because its subscriber keeps failing, else 0.
    public func circuit(subscription: String, open: Bool) {
        subscriptionSeries.insert(subscription)
        Gauge(label: "relay_subscription_circuit_open", dimensions: [("subscription", subscription)], factory: factory).record(open ? 1 : 0)
    }

    /// `relay_delivery_queue_depth` and `relay_delivery_oldest_pending_seconds`.
    public func queue(depth: Int, oldestPendingAge: Double) {
        Gauge(label: "relay_delivery_queue_depth", factory: factory).record(depth)
        Gauge(label: "relay_delivery_oldest_pending_seconds", factory: factory).record(oldestPendingAge)
    }

    /// `relay_store_up`: whether the scrape could read the store (the queue figures are the last
    /// ones read when it could not).
    public func storeUp(_ up: Bool) {
        Gauge(label: "relay_store_up", factory: factory).record(up ? 1 : 0)
    }

    /// `relay_wechat_api_calls_total{api,errcode}` for every call, and
    /// `relay_wechat_api_errors_total{api,errcode}` for those that failed.
    public func wechatCall(api: String, errcode: Int) {
        Counter(label: "relay_wechat_api_calls_total", dimensions: [("api", api), ("errcode", String(errcode))], factory: factory).increment()
        if errcode != 0 {
            Counter(label: "relay_wechat_api_errors_total", dimensions: [("api", api), ("errcode", String(errcode))], factory: factory).increment()
        }
    }

    /// `relay_token_refreshes_total{kind,outcome}`: component and authorizer token refreshes.
    public func tokenRefresh(kind: String, outcome: String) {
        Counter(label: "relay_token_refreshes_total", dimensions: [("kind", kind), ("outcome", outcome)], factory: factory).increment()
    }

    /// `relay_ticket_age_seconds{component}`: alert when WeChat stops pushing tickets.
    public func ticketAge(component: String, seconds: Double) {
        Gauge(label: "relay_ticket_age_seconds", dimensions: [("component", component)], factory: factory).record(seconds)
    }

    /// `relay_replies_total{outcome}` and `relay_reply_seconds` (from the push's arrival).
    public func reply(outcome: String, duration: Duration) {
        Counter(label: "relay_replies_total", dimensions: [("outcome", outcome)], factory: factory).increment()
        Timer(label: "relay_reply_seconds", factory: factory).recordNanoseconds(duration.nanoseconds)
    }

    /// `relay_subscription_queue_depth{subscription}` and
    /// `relay_subscription_oldest_pending_seconds{subscription}`: which subscriber is behind, for
    /// each subscription in `known` (0 when it has nothing waiting) and each with a backlog.
    /// A subscription that went loses every series of its own (these, its deliveries' counters
    /// and latencies, its breaker's gauge), so that subscriptions created and deleted through
    /// the API do not leave the registry growing.
    func subscriptionQueues(_ stats: [String: QueueStats], known: [String], now: Date) {
        let current = Set(known).union(stats.keys)
        for id in subscriptionSeries.replace(with: current) {
            removeSeries(ofSubscription: id)
        }
        for id in current {
            let (depth, age) = backlogGauges(id)
            depth.record(stats[id]?.depth ?? 0)
            age.record(stats[id]?.oldestPendingCreatedAt.map { max(0, now.timeIntervalSince($0)) } ?? 0)
        }
    }

    private func backlogGauges(_ id: String) -> (depth: CoreMetrics.Gauge, age: CoreMetrics.Gauge) {
        (Gauge(label: "relay_subscription_queue_depth", dimensions: [("subscription", id)], factory: factory),
         Gauge(label: "relay_subscription_oldest_pending_seconds", dimensions: [("subscription", id)], factory: factory))
    }

    private func removeSeries(ofSubscription id: String) {
        let (depth, age) = backlogGauges(id)
        depth.destroy()
        age.destroy()
        Gauge(label: "relay_subscription_circuit_open", dimensions: [("subscription", id)], factory: factory).destroy()
        for outcome in DeliveryOutcome.allCases {
            deliveryCounters.remove(id + "\u{1F}" + outcome.rawValue)
            Counter(label: "relay_deliveries_total", dimensions: [("subscription", id), ("outcome", outcome.rawValue)], factory: factory)
                .destroy()
        }
        deliveryTimers.remove(id)
        Timer(label: "relay_delivery_seconds", dimensions: [("subscription", id)], factory: factory).destroy()
    }

    /// `relay_process_*`: this process's CPU seconds, resident memory, open files and their limit,
    /// and start time (Unix seconds), as of the scrape.
    func process(_ figures: ProcessFigures) {
        // A counter, as Prometheus's own process_cpu_seconds_total: rate() is what one reads off it.
        FloatingPointCounter(label: "relay_process_cpu_seconds_total", factory: factory).increment(by: reportedCPU.advance(to: figures.cpuSeconds))
        Gauge(label: "relay_process_resident_memory_bytes", factory: factory).record(figures.residentBytes)
        Gauge(label: "relay_process_open_fds", factory: factory).record(figures.openFiles)
        Gauge(label: "relay_process_max_fds", factory: factory).record(figures.maxOpenFiles)
        Gauge(label: "relay_process_start_time_seconds", factory: factory).record(figures.startTime)
    }

    /// The Prometheus text exposition of every metric.
    public func exposition() -> String {
        registry.emitToString()
    }
}

/// Metric handles by their dimension values. Bounded: past 1,024 (subscriptions come and go)
/// handles are made afresh, as they were before the cache.
private final class HandleCache<Handle: AnyObject & Sendable>: Sendable {
    private let handles = Mutex<[String: Handle]>([:])

    func handle(_ key: String, make: () -> Handle) -> Handle {
        if let handle = handles.withLock({ $0[key] }) { return handle }
        let handle = make()
        handles.withLock { if $0.count < 1024 { $0[key] = handle } }
        return handle
    }

    func remove(_ key: String) {
        _ = handles.withLock { $0.removeValue(forKey: key) }
    }
}

/// How a delivery attempt ended, as `relay_deliveries_total` counts it.
public enum DeliveryOutcome: String, CaseIterable, Sendable {
    case succeeded, failed, dead
    /// 410 Gone: the subscription is disabled.
    case gone
}

/// The subscriptions that have series: those seen at the last scrape, and those given a
/// delivery or breaker series since.
private final class SubscriptionSeries: Sendable {
    private let ids = Mutex<Set<String>>([])

    func insert(_ id: String) {
        _ = ids.withLock { $0.insert(id) }
    }

    /// Makes `current` the set and returns the ids that had series and are not in it.
    func replace(with current: Set<String>) -> Set<String> {
        ids.withLock { ids in
            defer { ids = current }
            return ids.subtracting(current)
        }
    }
}

/// A total read from outside (the process's CPU seconds), reported as a counter's increments.
private final class ReportedTotal: Sendable {
    private let last = Mutex(0.0)

    /// What `total` adds to the last reading (never negative).
    func advance(to total: Double) -> Double {
        last.withLock { last in
            defer { last = max(last, total) }
            return max(0, total - last)
        }
    }
}
