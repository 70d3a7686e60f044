import Foundation
import Logging
import RelayCore
import ServiceLifecycle
import Synchronization

/// Delivers stored events to subscribers: one loop per subscription, each with at most
/// `max_in_flight_per_subscription` requests in flight, so a slow or dead subscriber only ever
/// holds up itself. Loops claim due deliveries from the store under a lease, wake at once when
/// intake rings their doorbell, and otherwise sleep until the next retry is due (at most a
/// second, so work from other nodes and expired leases are picked up).
final class Dispatcher: Service {
    let store: any RelayStore
    let registry: SubscriptionRegistry
    let sender: WebhookSender
    let policy: RetryPolicy
    let clock: any RelayClock
    let metrics: RelayMetrics
    let logger: Logger
    let maxInFlightPerSubscription: Int
    let onFinished: @Sendable (DeliveryReport) -> Void
    /// Identifies this process's leases.
    let owner = "relay-" + UUID().uuidString.prefix(8).lowercased()
    /// How long a claim stays ours: the attempt's timeout plus a margin.
    let leaseDuration: Duration
    /// The fewest free slots worth a claim while attempts are in flight.
    var claimBatch: Int { max(1, maxInFlightPerSubscription / 4) }

    private let doorbells = Mutex<[String: Doorbell]>([:])
    private let running = Mutex<Set<String>>([])
    private let supervisorBell = Doorbell()

    init(store: any RelayStore, registry: SubscriptionRegistry, sender: WebhookSender, policy: RetryPolicy, clock: any RelayClock,
         metrics: RelayMetrics, logger: Logger, maxInFlightPerSubscription: Int, onFinished: @escaping @Sendable (DeliveryReport) -> Void) {
        self.store = store
        self.registry = registry
        self.sender = sender
        self.policy = policy
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.maxInFlightPerSubscription = maxInFlightPerSubscription
        self.onFinished = onFinished
        self.leaseDuration = sender.timeout + .seconds(15)
    }

    /// Tells the loops of these subscriptions that new work is due.
    func notify(subscriptionIds: some Sequence<String>) {
        for id in subscriptionIds { doorbell(for: id).ring() }
    }

    /// Tells the supervisor the set of subscriptions changed.
    func subscriptionsChanged() {
        supervisorBell.ring()
        notify(subscriptionIds: registry.all.map(\.id))
    }

    func run() async throws {
        do {
            let released = try await store.releaseClaimsOfDeadProcesses(now: clock.now())
            if released > 0 { logger.notice("took over deliveries claimed by a relay process that died", metadata: ["count": "\(released)"]) }
        } catch {
            logger.error("cannot release claims of dead processes; they are taken when their leases expire", metadata: ["error": "\(error)"])
        }
        await withDiscardingTaskGroup { group in
            var lastReload = ContinuousClock.now
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                for subscription in registry.all where subscription.receivesDeliveries {
                    let started = running.withLock { $0.insert(subscription.id).inserted }
                    if started { group.addTask { await self.runLoop(subscriptionId: subscription.id) } }
                }
                await cancelWhenGracefulShutdownOrReturn { await self.supervisorBell.wait(upTo: .seconds(1)) }
                if ContinuousClock.now - lastReload > .seconds(10) {
                    lastReload = ContinuousClock.now
                    if let fresh = try? await store.subscriptions() { registry.replaceAll(fresh) }
                }
            }
            // Graceful shutdown: wake every loop so it stops claiming; in-flight attempts finish
            // (each bounded by the per-attempt timeout) before the group returns.
            for bell in doorbells.withLock({ Array($0.values) }) { bell.ring() }
        }
        logger.info("dispatcher stopped")
    }

    private func doorbell(for id: String) -> Doorbell {
        doorbells.withLock { bells in
            if let bell = bells[id] { return bell }
            let bell = Doorbell()
            bells[id] = bell
            return bell
        }
    }

    /// The loop of one subscription; ends when it is disabled, deleted or the relay shuts down.
    private func runLoop(subscriptionId id: String) async {
        defer { _ = running.withLock { $0.remove(id) } }
        let bell = doorbell(for: id)
        let inFlight = Counter()
        await withDiscardingTaskGroup { group in
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                guard let subscription = registry.subscription(id: id), subscription.receivesDeliveries else { break }
                let free = maxInFlightPerSubscription - inFlight.value
                var claimed: [ClaimedDelivery] = []
                // Claim in batches: once saturated, wait until a quarter of the slots are free
                // rather than paying a claim transaction for every single completion.
                if free > 0 && (free >= claimBatch || inFlight.value == 0) {
                    let now = clock.now()
                    do {
                        claimed = try await store.claimDeliveries(
                            subscriptionId: id, limit: free, now: now,
                            leaseUntil: now.addingTimeInterval(Double(leaseDuration.milliseconds) / 1000), owner: owner)
                    } catch {
                        logger.error("cannot claim deliveries", metadata: ["subscription": .string(id), "error": "\(error)"])
                    }
                }
                for delivery in claimed {
                    inFlight.add(1)
                    group.addTask {
                        // The slot bounds requests to the subscriber: it is given back as soon as the
                        // answer is in, while the attempt's record waits for its group commit.
                        await self.attempt(delivery, subscription: subscription) {
                            inFlight.add(-1)
                            bell.ring()
                        }
                        bell.ring()  // recorded: an ordered user's next event may be due now
                    }
                }
                if free > 0 && !claimed.isEmpty && claimed.count == free { continue }  // there may be more due right now
                await cancelWhenGracefulShutdownOrReturn { await bell.wait(upTo: await self.waitBeforeNextClaim(subscriptionId: id)) }
            }
        }
    }

    /// Until the next delivery of the subscription is due, at most one second.
    private func waitBeforeNextClaim(subscriptionId: String) async -> Duration {
        guard let due = try? await store.nextDueTime(subscriptionId: subscriptionId) else { return .seconds(1) }
        let millis = Int(due.timeIntervalSince(clock.now()) * 1000)
        return .milliseconds(min(max(millis, 1), 1000))
    }

    /// One attempt of one delivery, and what it leads to.
    private func attempt(_ delivery: ClaimedDelivery, subscription: Subscription, answered: () -> Void) async {
        let now = clock.now()
        let result = await sender.send(url: subscription.url, eventId: delivery.event.id, body: delivery.event.envelopeJSON,
                                       secrets: subscription.signingSecrets(at: now), at: now)
        answered()
        let attemptsMade = delivery.attemptsMade + 1
        let verdict: DeliveryVerdict
        let outcome: String
        switch result.statusCode {
        case .some(200..<300):
            (verdict, outcome) = (.succeeded, "succeeded")
        case .some(410):
            (verdict, outcome) = (.cancelled, "gone")
        default:
            let retryAfter = [429, 503].contains(result.statusCode ?? 0)
                ? result.retryAfter.flatMap { RetryPolicy.parseRetryAfter($0, now: now) } : nil
            if let delay = policy.delay(afterAttempts: attemptsMade, retryAfter: retryAfter) {
                (verdict, outcome) = (.retry(at: clock.now().addingTimeInterval(Double(delay.milliseconds) / 1000)), "failed")
            } else {
                (verdict, outcome) = (.dead, "dead")
            }
        }
        let record = DeliveryAttempt(at: now, statusCode: result.statusCode, error: result.error,
                                     durationMs: result.duration.milliseconds, responseExcerpt: result.responseExcerpt)
        do {
            try await store.recordAttempt(deliveryId: delivery.id, owner: owner, attempt: record, verdict: verdict, now: clock.now())
        } catch {
            // The lease will expire and the delivery will be attempted again: at least once.
            logger.error("cannot record a delivery attempt", metadata: ["delivery_id": .string(delivery.id), "error": "\(error)"])
        }
        metrics.delivery(subscription: subscription.id, outcome: outcome, duration: result.duration)
        if result.statusCode == 410 { await disable(subscription) }
        logger.log(level: outcome == "succeeded" ? .debug : .notice, "delivery attempt", metadata: [
            "delivery_id": .string(delivery.id), "subscription": .string(subscription.id), "event_id": .string(delivery.event.id),
            "outcome": .string(outcome), "status": .string(result.statusCode.map(String.init) ?? "-"),
            "error": .string(result.error ?? "-"), "attempt": "\(attemptsMade)",
        ])
        onFinished(DeliveryReport(deliveryId: delivery.id, subscriptionId: subscription.id, eventId: delivery.event.id,
                                  verdict: verdict, statusCode: result.statusCode, error: result.error))
    }

    /// A subscriber answered 410 Gone: it does not want events any more.
    private func disable(_ subscription: Subscription) async {
        var disabled = subscription
        disabled.status = .disabled
        do {
            try await store.updateSubscription(disabled, now: clock.now())
            registry.upsert(disabled)
            logger.warning("subscription disabled: the subscriber answered 410 Gone", metadata: ["subscription": .string(subscription.id)])
        } catch {
            logger.error("cannot disable subscription", metadata: ["subscription": .string(subscription.id), "error": "\(error)"])
        }
    }
}

/// What became of one delivery attempt (for tests and hooks).
public struct DeliveryReport: Sendable, Equatable {
    public let deliveryId: String
    public let subscriptionId: String
    public let eventId: String
    public let verdict: DeliveryVerdict
    public let statusCode: Int?
    public let error: String?
}

/// Runs `operation`, returning early (without error) when a graceful shutdown starts.
func cancelWhenGracefulShutdownOrReturn(_ operation: @escaping @Sendable () async -> Void) async {
    await cancelWhenGracefulShutdown { await operation() }
}

/// A count shared between a loop and the attempts it started.
private final class Counter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func add(_ delta: Int) { count.withLock { $0 += delta } }
}
