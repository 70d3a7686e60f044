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
    let circuitBreaker: CircuitBreaker.Policy
    let onFinished: @Sendable (DeliveryReport) -> Void
    /// Store failures come at the loops' rate, every subscription's at once when the store is down.
    let throttle: LogThrottle
    /// Identifies this process's leases.
    let owner = "relay-" + UUID().uuidString.prefix(8).lowercased()
    /// How long a claim stays ours: it may wait for a slot for up to one attempt, then take one
    /// attempt, plus a margin.
    let leaseDuration: Duration
    /// The fewest free places in a subscription's queue worth a claim transaction. Small batches
    /// keep the queue fuller: in the bench, a quarter of `max_in_flight` beat a half (5 of 6
    /// paired runs) and a whole one clearly lost.
    var claimBatch: Int { max(1, maxInFlightPerSubscription / 4) }

    /// Subscriptions created, changed or deleted through this node, to settle once every node
    /// has seen the change (see `settleLater`). Bounded: changes are rare, and beyond 1,000
    /// pending ones the replay endpoint is the remedy.
    let settlements = Mutex<[(subscriptionId: String, since: Date, due: Date)]>([])
    /// Other nodes reload the subscriptions every 10 s; a margin on top.
    static let settleDelay: TimeInterval = 15
    /// After the store failed a settlement.
    static let settleRetry: TimeInterval = 5

    /// The subscriptions with a loop on this node, and the doorbell each loop's claimer waits on.
    /// An entry lives as long as its loop: a ring for a subscription without one is dropped (a
    /// loop claims when it starts), so deleted subscriptions leave nothing behind.
    private let running = Mutex<[String: Doorbell]>([:])
    /// The breakers of the subscriptions this node delivers to, for the admin API and dashboard.
    private let breakers = Mutex<[String: CircuitBreaker]>([:])
    private let supervisorBell = Doorbell()
    /// Another node announced a subscription change: reload the list.
    private let reloadRequested = Atomic(false)
    /// How often the list is reloaded without an announcement (the backstop for a missed one).
    let reloadInterval: Duration

    init(store: any RelayStore, registry: SubscriptionRegistry, sender: WebhookSender, policy: RetryPolicy, clock: any RelayClock,
         metrics: RelayMetrics, logger: Logger, maxInFlightPerSubscription: Int, circuitBreaker: CircuitBreaker.Policy = .init(),
         reloadInterval: Duration = .seconds(10), throttle: LogThrottle? = nil, onFinished: @escaping @Sendable (DeliveryReport) -> Void) {
        self.throttle = throttle ?? LogThrottle(clock: clock)
        self.circuitBreaker = circuitBreaker
        self.reloadInterval = reloadInterval
        self.store = store
        self.registry = registry
        self.sender = sender
        self.policy = policy
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.maxInFlightPerSubscription = maxInFlightPerSubscription
        self.onFinished = onFinished
        self.leaseDuration = sender.timeout * 2 + .seconds(15)
    }

    /// Tells the loops of these subscriptions that new work is due.
    func notify(subscriptionIds: some Sequence<String>) {
        for id in subscriptionIds { running.withLock { $0[id] }?.ring() }
    }

    /// This node's circuit breaker of a subscription it delivers to (nil when it does not: the
    /// subscription is disabled, or its loop has not started yet).
    func circuit(subscriptionId id: String) -> CircuitBreaker.Snapshot? {
        breakers.withLock { $0[id] }?.snapshot
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
        } catch where Task.isCancelled {
            // The relay is stopping before it started (its port taken, say): nothing is lost, the
            // next start releases them.
        } catch {
            logger.error("cannot release claims of dead processes; they are taken when their leases expire", metadata: ["error": "\(error)"])
        }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { watching in
                // Other nodes announce their subscription changes (PostgreSQL); the list is
                // reloaded at once instead of at the next 10-second reload.
                watching.addTask {
                    await self.store.watchSubscriptionChanges { [self] in
                        reloadRequested.store(true, ordering: .releasing)
                        supervisorBell.ring()
                    }
                }
                await supervise()
                watching.cancelAll()
            }
        } onGracefulShutdown: {
            self.supervisorBell.ring()
        }
        logger.info("dispatcher stopped")
    }

    /// Starts a loop per subscription that receives deliveries, settles this node's changes, and
    /// reloads the list when another node announced a change, else every 10 s.
    private func supervise() async {
        await withDiscardingTaskGroup { group in
            var lastReload = ContinuousClock.now
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                for subscription in registry.all where subscription.receivesDeliveries {
                    let claimBell = running.withLock { running -> Doorbell? in
                        guard running[subscription.id] == nil else { return nil }
                        let bell = Doorbell()
                        running[subscription.id] = bell
                        return bell
                    }
                    if let claimBell { group.addTask { await self.runLoop(subscriptionId: subscription.id, claimBell: claimBell) } }
                }
                await supervisorBell.wait(upTo: .seconds(1))
                await settleDueChanges()
                if reloadRequested.exchange(false, ordering: .acquiring) || ContinuousClock.now - lastReload > reloadInterval {
                    lastReload = ContinuousClock.now
                    if let fresh = try? await store.subscriptions() {
                        registry.replaceAll(fresh)
                        logger.debug("subscription list reloaded", metadata: ["count": "\(fresh.count)"])
                    }
                }
            }
            // In-flight attempts finish (each bounded by the per-attempt timeout) before the
            // group returns.
        }
    }

    /// How many subscriptions this node keeps state for: those with a loop.
    var subscriptionsTracked: Int { running.withLock { $0.count } }

    /// The loops of one subscription; they end when it is disabled, deleted or the relay shuts down.
    ///
    /// A claimer keeps up to `max_in_flight_per_subscription` claimed deliveries waiting beside
    /// those being sent, and this loop starts one as soon as a slot frees: a slot never waits for
    /// a claim transaction (which queues behind other writes), and claims come in batches.
    private func runLoop(subscriptionId id: String, claimBell: Doorbell) async {
        defer { _ = running.withLock { $0.removeValue(forKey: id) } }
        let startBell = Doorbell()
        let queue = SubscriptionQueue()
        let breaker = CircuitBreaker(circuitBreaker)
        breakers.withLock { $0[id] = breaker }
        defer { _ = breakers.withLock { $0.removeValue(forKey: id) } }
        // One shutdown handler for the loops' lifetime: waiting is on the hot path (about once
        // per delivery), and `cancelWhenGracefulShutdown` around each wait cost two child tasks.
        await withGracefulShutdownHandler {
            await runLoop(subscriptionId: id, queue: queue, breaker: breaker, claimBell: claimBell, startBell: startBell)
        } onGracefulShutdown: {
            claimBell.ring()
            startBell.ring()
        }
        // A disabled or deleted subscription is not failing any more: an alert on the gauge
        // must not go on firing for it.
        if breaker.isOpen {
            metrics.circuit(subscription: id, open: false)
            logger.debug("circuit gauge cleared: the subscription's loop ended", metadata: ["subscription": .string(id)])
        }
    }

    private func runLoop(subscriptionId id: String, queue: SubscriptionQueue, breaker: CircuitBreaker, claimBell: Doorbell,
                         startBell: Doorbell) async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                await self.claimLoop(subscriptionId: id, queue: queue, breaker: breaker, claimBell: claimBell, startBell: startBell)
                queue.close()
                startBell.ring()
            }
            while !Task.isShuttingDownGracefully && !Task.isCancelled && !queue.isClosed {
                while let delivery = queue.startNext(maxSending: maxInFlightPerSubscription) {
                    guard let subscription = registry.subscription(id: id), subscription.receivesDeliveries else {
                        queue.finishedSending()
                        queue.putBack(delivery)
                        break
                    }
                    guard breaker.mayStart(delivery.id) else {
                        // Claimed before the breaker opened: given back, only the probe goes out.
                        queue.finishedSending()
                        group.addTask { await self.release([delivery], subscriptionId: id) }
                        continue
                    }
                    group.addTask {
                        // The slot bounds requests to the subscriber: it is given back as soon as the
                        // answer is in, while the attempt's record waits for its group commit. The
                        // breaker counts the answer first, so a slot freed by the failure that opens
                        // it starts nothing more.
                        var change = CircuitBreaker.Change.none
                        let verdict = await self.attempt(delivery, subscription: subscription) { verdict, retryAfter in
                            change = self.count(verdict, of: delivery.id, retryAfter: retryAfter, on: breaker)
                            let held = queue.finishedSending()
                            startBell.ring()
                            // Waking the claimer for less than a batch of room would only put it back to sleep.
                            if self.worthClaiming(held: held) { claimBell.ring() }
                        }
                        await self.breakerChanged(change, subscriptionId: id, breaker: breaker, queue: queue)
                        // Recorded: an ordered user's next event may be due now, a retry was
                        // scheduled, or the subscriber is back and claims go at full rate again.
                        if subscription.ordered || verdict != .succeeded || change == .closed { claimBell.ring() }
                    }
                }
                // The claimer, a finished attempt, the subscription's end and shutdown all ring.
                await startBell.wait()
            }
            // Claimed but never started: give them back so they are due at once (here after a
            // restart, or on another node), without an attempt counted.
            claimBell.ring()
            await release(queue.drain(), subscriptionId: id)
        }
    }

    /// Gives claimed deliveries back unsent, due at once and without an attempt counted.
    func release(_ deliveries: [ClaimedDelivery], subscriptionId id: String) async {
        guard !deliveries.isEmpty else { return }
        do {
            try await store.releaseClaims(deliveryIds: deliveries.map(\.id), owner: owner, now: clock.now())
        } catch {
            logger.error("cannot release claimed deliveries; they are taken again when their leases expire",
                         metadata: ["subscription": .string(id), "error": "\(error)"])
        }
    }

    /// Claims due deliveries into `queue` while it has room, then sleeps until rung or the next
    /// retry is due. Woken by the clock with nothing due, it does not claim: an idle
    /// subscription costs a read a second, not a write transaction (500 idle subscriptions took
    /// 4 % of a core and as many writer transactions a second as they were).
    private func claimLoop(subscriptionId id: String, queue: SubscriptionQueue, breaker: CircuitBreaker, claimBell: Doorbell,
                           startBell: Doorbell) async {
        var dueNow = true
        // After a failed claim (a full disk, a database gone) the backlog stays due: without a
        // wait the loop asked again at once — 630 failed write transactions and as many error
        // lines a second per subscription, for as long as the disk stayed full.
        var backoff = Backoff(first: 0.1, longest: 5)
        var url = registry.subscription(id: id)?.url
        while !Task.isShuttingDownGracefully && !Task.isCancelled && !queue.isClosed {
            guard let subscription = registry.subscription(id: id), subscription.receivesDeliveries else { return }
            if subscription.url != url {
                url = subscription.url
                urlChanged(subscriptionId: id, breaker: breaker)
            }
            let held = queue.held
            var room = 2 * maxInFlightPerSubscription - held
            let probe = breaker.isOpen
            if probe {
                // The subscriber keeps failing: one delivery at a time, once the probe's time has
                // come and nothing is out. A probe's answer rings; so does a closing breaker.
                let untilProbe = breaker.untilProbe(now: clock.now())
                guard held == 0, let wait = untilProbe, wait <= 0 else {
                    _ = await claimBell.wait(upTo: .milliseconds(min(max(Int((untilProbe ?? 1) * 1000), 1), 1000)))
                    dueNow = true
                    continue
                }
                room = 1
            }
            let worthClaiming = worthClaiming(held: held, room: room)
            var claimed: [ClaimedDelivery] = []
            if worthClaiming && dueNow {
                let now = clock.now()
                if let wait = backoff.remaining(at: now) {
                    // The store failed the last claim: a ring (a new push) does not shorten the wait.
                    _ = await claimBell.wait(upTo: .milliseconds(min(max(Int(wait * 1000), 1), 1000)))
                    continue
                }
                do {
                    claimed = try await store.claimDeliveries(
                        subscriptionId: subscription.id, limit: room, now: now,
                        leaseUntil: now.addingTimeInterval(Double(leaseDuration.milliseconds) / 1000), owner: owner)
                    backoff.succeeded()
                } catch {
                    let wait = backoff.failed(at: now)
                    throttle.log("cannot claim deliveries", .error, "cannot claim deliveries; the backlog waits for the store", [
                        "subscription": .string(id), "error": "\(error)", "failures_in_a_row": "\(backoff.failures)",
                        "next_claim_in_ms": "\(Int(wait * 1000))",
                    ], to: logger)
                }
            }
            if probe, let first = claimed.first { breaker.sendingProbe(first.id) }
            if !claimed.isEmpty, !queue.add(claimed) {
                // The loop ended while this claim ran: nobody will send these.
                try? await store.releaseClaims(deliveryIds: claimed.map(\.id), owner: owner, now: clock.now())
                return
            }
            if !claimed.isEmpty {
                startBell.ring()
                logger.debug("claimed deliveries", metadata: ["subscription": .string(id), "count": "\(claimed.count)", "held": "\(held + claimed.count)"])
            }
            if worthClaiming && dueNow && claimed.count == room { continue }  // there may be more due right now
            if worthClaiming {
                let (wait, due) = await waitBeforeNextClaim(subscriptionId: id)
                dueNow = await claimBell.wait(upTo: wait) || due
            } else {
                await claimBell.wait()  // the queue is full: an attempt that finishes rings
                dueNow = true
            }
        }
    }

    /// Whether a claim is worth its transaction with `held` deliveries claimed and unanswered.
    private func worthClaiming(held: Int) -> Bool {
        worthClaiming(held: held, room: 2 * maxInFlightPerSubscription - held)
    }

    private func worthClaiming(held: Int, room: Int) -> Bool {
        room > 0 && (room >= claimBatch || held == 0)
    }

    /// Until the next delivery of the subscription is due, at most one second, and whether one
    /// is due by then. A store that cannot say counts as due: the claim reports its error.
    private func waitBeforeNextClaim(subscriptionId: String) async -> (Duration, due: Bool) {
        let due: Date?
        do {
            due = try await store.nextDueTime(subscriptionId: subscriptionId, now: clock.now())
        } catch {
            return (.seconds(1), true)
        }
        guard let due else { return (.seconds(1), false) }
        let millis = Int(due.timeIntervalSince(clock.now()) * 1000)
        return (.milliseconds(min(max(millis, 1), 1000)), millis <= 1000)
    }

    /// One attempt of one delivery, and what it leads to.
    @discardableResult
    private func attempt(_ delivery: ClaimedDelivery, subscription: Subscription,
                         answered: (DeliveryVerdict, _ retryAfter: Duration?) -> Void) async -> DeliveryVerdict {
        let now = clock.now()
        let result = await sender.send(url: subscription.url, eventId: delivery.event.id, body: delivery.event.envelopeJSON,
                                       secrets: subscription.signingSecrets(at: now), at: now)
        let attemptsMade = delivery.attemptsMade + 1
        let verdict: DeliveryVerdict
        let outcome: DeliveryOutcome
        var retryAfter: Duration?
        switch result.statusCode {
        case .some(200..<300):
            (verdict, outcome) = (.succeeded, .succeeded)
        case .some(410):
            (verdict, outcome) = (.cancelled, .gone)
        default:
            retryAfter = [429, 503].contains(result.statusCode ?? 0)
                ? result.retryAfter.flatMap { RetryPolicy.parseRetryAfter($0, now: now) } : nil
            if let delay = policy.delay(afterAttempts: attemptsMade, retryAfter: retryAfter) {
                (verdict, outcome) = (.retry(at: clock.now().addingTimeInterval(Double(delay.milliseconds) / 1000)), .failed)
            } else {
                (verdict, outcome) = (.dead, .dead)
            }
        }
        answered(verdict, retryAfter)
        let record = DeliveryAttempt(at: now, statusCode: result.statusCode, error: result.error,
                                     durationMs: result.duration.milliseconds, responseExcerpt: result.responseExcerpt)
        do {
            try await store.recordAttempt(deliveryId: delivery.id, owner: owner, attempt: record, verdict: verdict, now: clock.now())
        } catch {
            // The lease will expire and the delivery will be attempted again: at least once.
            throttle.log("cannot record a delivery attempt", .error, "cannot record a delivery attempt; it is sent again when its lease expires",
                         ["delivery_id": .string(delivery.id), "subscription": .string(subscription.id), "error": "\(error)"], to: logger)
        }
        metrics.delivery(subscription: subscription.id, outcome: outcome, duration: result.duration)
        if result.statusCode == 410 { await disable(subscription) }
        logger.log(level: outcome == .succeeded ? .debug : .notice, "delivery attempt", metadata: [
            "delivery_id": .string(delivery.id), "subscription": .string(subscription.id), "event_id": .string(delivery.event.id),
            "outcome": .string(outcome.rawValue), "status": .string(result.statusCode.map(String.init) ?? "-"),
            "error": .string(result.error ?? "-"), "attempt": "\(attemptsMade)",
        ])
        onFinished(DeliveryReport(deliveryId: delivery.id, subscriptionId: subscription.id, eventId: delivery.event.id,
                                  verdict: verdict, statusCode: result.statusCode, error: result.error))
        return verdict
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
