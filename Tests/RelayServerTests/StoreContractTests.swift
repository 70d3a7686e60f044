import Foundation
import Logging
import RelayCore
@testable import RelayServer
@testable import RelayStore
import RelayTestSupport
import Testing

/// What every store promises through `RelayStore`, checked on each backend the same way: SQLite
/// always, PostgreSQL when `RELAY_TEST_POSTGRES_URL` is set (`.ci/run` sets it).
@Suite(.timeLimit(.minutes(2))) struct StoreContractTests {
    static let now = Date(timeIntervalSince1970: 1_790_000_000.250)

    static func withStore<T: Sendable>(_ backend: StoreBackend, encryptionKey: String? = nil,
                                       _ body: (any RelayStore) async throws -> T) async throws -> T {
        try await backend.withStorageURL { url in
            let config = try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: url, encryptionKey: encryptionKey), environment: [:])
            return try await StoreFactory.withStore(config.storage, logger: Logger(label: "test"), body)
        }
    }

    static func event(_ key: String, appid: String = "wx1", type: String = "message.text", at date: Date = now,
                      from user: String? = nil) -> RelayEvent {
        RelayEvent(id: EventID.make(at: date), type: type, appid: appid, componentAppid: "wxcomponent", receivedAt: date,
                   dataJSON: #"{"k":"\#(key)"}"#, dedupKey: key, fromUser: user)
    }

    static func subscription(_ id: String, ordered: Bool = false, source: Subscription.Source = .api) -> Subscription {
        Subscription(id: id, url: "https://example.com/\(id)", ordered: ordered, source: source, createdAt: now, secret: "whsec_\(id)")
    }

    /// Commits one event per key with a delivery to each of `subscriptions`; returns the events.
    @discardableResult
    static func commit(_ keys: [String], to subscriptions: [String], in store: any RelayStore, from user: String? = nil,
                       at date: Date = now) async throws -> [RelayEvent] {
        var events: [RelayEvent] = []
        for key in keys {
            let event = event(key, at: date, from: user)
            let outcome = try await store.commit(IntakeRecord(event: event, ticket: nil, deliveries: subscriptions.map {
                PlannedDelivery(subscriptionId: $0, orderKey: user)
            }))
            #expect(outcome == .stored(eventID: event.id))
            events.append(event)
        }
        return events
    }

    static let ok = DeliveryAttempt(at: now, statusCode: 204, error: nil, durationMs: 3, responseExcerpt: nil)
    static let refused = DeliveryAttempt(at: now, statusCode: nil, error: "connection refused", durationMs: 1, responseExcerpt: nil)

    // MARK: Intake

    @Test(arguments: StoreBackend.available)
    func aRetriedPushIsADuplicateOfTheEventStoredFirst(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            let first = Self.event("msg-1")
            let outcome = try await store.commit(IntakeRecord(event: first, ticket: nil,
                                                              deliveries: [PlannedDelivery(subscriptionId: "crm", orderKey: nil)]))
            #expect(outcome == .stored(eventID: first.id))
            let retry = Self.event("msg-1", at: Self.now + 5)
            #expect(try await store.commit(IntakeRecord(event: retry, ticket: nil,
                                                        deliveries: [PlannedDelivery(subscriptionId: "crm", orderKey: nil)])) == .duplicate(eventID: first.id))
            // The same MsgId from another account is a different event.
            let other = Self.event("msg-1", appid: "wx2")
            #expect(try await store.commit(IntakeRecord(event: other, ticket: nil)) == .stored(eventID: other.id))
            #expect(try await store.event(id: first.id) == first)
            #expect(try await store.event(id: retry.id) == nil)
            #expect(try await store.deliveries(eventId: first.id).count == 1)
        }
    }

    @Test(arguments: StoreBackend.available)
    func eventsAreListedNewestFirstWithFiltersAndACursor(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            var stored: [RelayEvent] = []
            for index in 0..<5 {
                let event = Self.event("e\(index)", appid: index % 2 == 0 ? "wxeven" : "wxodd",
                                       type: index == 4 ? "event.subscribe" : "message.text", at: Self.now + Double(index))
                _ = try await store.commit(IntakeRecord(event: event, ticket: nil))
                stored.append(event)
            }
            #expect(try await store.events(EventQuery()).map(\.id) == stored.reversed().map(\.id))
            #expect(try await store.events(EventQuery(appid: "wxeven")).map(\.id) == [stored[4], stored[2], stored[0]].map(\.id))
            #expect(try await store.events(EventQuery(appid: "wxeven", type: "message.text")).map(\.id) == [stored[2], stored[0]].map(\.id))
            let page = try await store.events(EventQuery(limit: 2))
            #expect(page.map(\.id) == [stored[4], stored[3]].map(\.id))
            #expect(try await store.events(EventQuery(before: page.last!.id, limit: 2)).map(\.id) == [stored[2], stored[1]].map(\.id))
        }
    }

    @Test(arguments: StoreBackend.available)
    func anOlderTicketDoesNotReplaceANewerOne(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend, encryptionKey: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=") { store in
            let newer = ComponentTicket(componentAppid: "wxc", ticket: "ticket@new", createTime: 200, receivedAt: Self.now)
            let older = ComponentTicket(componentAppid: "wxc", ticket: "ticket@old", createTime: 100, receivedAt: Self.now + 1)
            #expect(try await store.commit(IntakeRecord(event: nil, ticket: newer)) == .ticketOnly)
            _ = try await store.commit(IntakeRecord(event: nil, ticket: older))
            #expect(try await store.ticket(componentAppid: "wxc") == newer)
            #expect(try await store.ticket(componentAppid: "wxother") == nil)
        }
    }

    /// A ticket push that a subscription takes stores its ticket and its event together (and its
    /// retry keeps the event it stored first).
    @Test(arguments: StoreBackend.available)
    func aTicketPushCanBeStoredWithItsEvent(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { (store: any RelayStore) async throws -> Void in
            let ticket = ComponentTicket(componentAppid: "wxc", ticket: "ticket@1", createTime: 300, receivedAt: Self.now)
            let event = Self.event("ticket-300", type: "component.verify_ticket")
            let record = IntakeRecord(event: event, ticket: ticket, deliveries: [PlannedDelivery(subscriptionId: "ops", orderKey: nil)])
            #expect(try await store.commit(record) == .stored(eventID: event.id))
            #expect(try await store.ticket(componentAppid: "wxc") == ticket)
            #expect(try await store.event(id: event.id) == event)
            #expect(try await store.deliveries(eventId: event.id).map(\.subscriptionId) == ["ops"])
            let retry = IntakeRecord(event: Self.event("ticket-300", type: "component.verify_ticket"), ticket: ticket,
                                     deliveries: record.deliveries)
            #expect(try await store.commit(retry) == .duplicate(eventID: event.id))
            #expect(try await store.queueStats().depth == 1)
        }
    }

    /// Pushes committed at the same moment share group commits on both stores: each keeps its
    /// own columns (NULL apart from empty), retries of one push racing each other store it once,
    /// and every other one answers with that event's id.
    @Test(arguments: StoreBackend.available)
    func concurrentPushesAreEachStoredOnceWithTheirOwnColumns(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            let records = (0..<40).map { i in
                // The first sixteen are four pushes sent four times each; the others are unique.
                let key = i < 16 ? "same-\(i % 4)" : "key-\(i)"
                let event = RelayEvent(id: EventID.make(at: Self.now), type: "message.text", appid: "wx1",
                                       componentAppid: i % 3 == 0 ? nil : "wxc\(i)", receivedAt: Self.now,
                                       dataJSON: #"{"i":\#(i)}"#, dedupKey: key, fromUser: i % 2 == 0 ? nil : (i % 5 == 0 ? "" : "u\(i)"))
                return IntakeRecord(event: event, ticket: nil, deliveries: [PlannedDelivery(subscriptionId: "crm", orderKey: event.fromUser)])
            }
            let outcomes = try await withThrowingTaskGroup(of: (Int, IntakeOutcome).self) { group in
                for (index, record) in records.enumerated() { group.addTask { (index, try await store.commit(record)) } }
                return try await group.reduce(into: [Int: IntakeOutcome]()) { $0[$1.0] = $1.1 }
            }
            var storedByKey: [String: String] = [:]
            for (index, record) in records.enumerated() {
                guard case .stored(let id) = outcomes[index] else { continue }
                #expect(storedByKey[record.event!.dedupKey] == nil, "stored twice: \(record.event!.dedupKey)")
                storedByKey[record.event!.dedupKey] = id
                #expect(try await store.event(id: id) == record.event)
                #expect(try await store.deliveries(eventId: id).count == 1)
            }
            #expect(storedByKey.count == 4 + 24)
            for (index, record) in records.enumerated() {
                if case .duplicate(let id) = outcomes[index] { #expect(id == storedByKey[record.event!.dedupKey]) }
            }
            #expect(try await store.queueStats().depth == storedByKey.count)
        }
    }

    @Test(arguments: StoreBackend.available)
    func purgingRemovesOldEventsWithTheirDeliveriesAndAttempts(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            let old = try await Self.commit(["old"], to: ["crm"], in: store, at: Self.now - 7200)
            try await Self.commit(["new"], to: ["crm"], in: store)
            let claimed = try await store.claimDeliveries(subscriptionId: "crm", limit: 1, now: Self.now, leaseUntil: Self.now + 30, owner: "a")
            try await store.recordAttempt(deliveryId: claimed[0].id, owner: "a", attempt: Self.ok, verdict: .succeeded, now: Self.now)
            #expect(try await store.purgeEvents(before: Self.now - 3600, limit: 10) == 1)
            #expect(try await store.event(id: old[0].id) == nil)
            #expect(try await store.delivery(id: claimed[0].id) == nil)
            #expect(try await store.attempts(deliveryId: claimed[0].id).isEmpty)
            #expect(try await store.queueStats().depth == 1)
        }
    }

    /// A purge takes the oldest events first and at most `limit` per transaction (a big purge
    /// in one transaction held the SQLite writer, and every push behind it, for minutes).
    @Test(arguments: StoreBackend.available)
    func purgingTakesTheOldestFirstInBatches(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            var old: [RelayEvent] = []
            for hour in (2...6).reversed() {  // oldest first, so arrival order is not age order
                old += try await Self.commit(["h\(hour)"], to: ["crm"], in: store, at: Self.now - Double(hour * 3600))
            }
            try await Self.commit(["new"], to: ["crm"], in: store)
            #expect(try await store.purgeEvents(before: Self.now - 3600, limit: 2) == 2)
            let left = try await store.events(EventQuery(limit: 10)).map(\.id)
            #expect(Set(left) == Set(old.suffix(3).map(\.id)).union(try await store.events(EventQuery(limit: 1)).map(\.id)))
            #expect(try await store.purgeEvents(before: Self.now - 3600, limit: 2) == 2)
            #expect(try await store.purgeEvents(before: Self.now - 3600, limit: 2) == 1)
            #expect(try await store.purgeEvents(before: Self.now - 3600, limit: 2) == 0)
            #expect(try await store.events(EventQuery(limit: 10)).count == 1)
            #expect(try await store.queueStats().depth == 1)
        }
    }

    /// The retention service purges everything past retention in one run, batch after batch.
    @Test(arguments: StoreBackend.available)
    func theRetentionServicePurgesInBatchesUntilNothingIsLeft(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            for day in 31...35 { try await Self.commit(["d\(day)"], to: ["crm"], in: store, at: Self.now - Double(day * 86_400)) }
            try await Self.commit(["recent"], to: ["crm"], in: store, at: Self.now - 86_400)
            let service = RetentionService(store: store, retention: .seconds(30 * 86_400), clock: TestClock(Self.now),
                                           logger: Logger(label: "test"), batchSize: 2)
            #expect(await service.purge() == 5)
            #expect(try await store.events(EventQuery(limit: 10)).count == 1)
        }
    }

    // MARK: Delivery queue

    /// SQLite keeps a delivering attempt in the delivery's row (migration 8): the list must read
    /// the same as where every attempt is a row, through failures, a retry and a replay.
    @Test(arguments: StoreBackend.available)
    func attemptsAreListedInOrderAcrossRetriesAndReplays(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            let crm = Self.subscription("crm")
            try await store.insertSubscription(crm)
            try await Self.commit(["a"], to: ["crm"], in: store)
            func attempt(_ owner: String, _ result: DeliveryAttempt, _ verdict: DeliveryVerdict, at time: Date) async throws -> String {
                let claimed = try await store.claimDeliveries(subscriptionId: "crm", limit: 1, now: time, leaseUntil: time + 30, owner: owner)
                try #require(claimed.count == 1)
                try await store.recordAttempt(deliveryId: claimed[0].id, owner: owner, attempt: result, verdict: verdict, now: time)
                return claimed[0].id
            }
            func ok(_ ms: Int, at time: Date) -> DeliveryAttempt {
                DeliveryAttempt(at: time, statusCode: 200, error: nil, durationMs: ms, responseExcerpt: "thanks \(ms)")
            }
            let id = try await attempt("a", Self.refused, .retry(at: Self.now + 5), at: Self.now)
            _ = try await attempt("a", ok(7, at: Self.now + 5), .succeeded, at: Self.now + 5)
            #expect(try await store.attempts(deliveryId: id) == [Self.refused, ok(7, at: Self.now + 5)])
            #expect(try await store.delivery(id: id)?.status == .succeeded)
            #expect(try await store.retryDelivery(id: id, now: Self.now + 10)?.status == .failed)
            #expect(try await store.attempts(deliveryId: id) == [Self.refused, ok(7, at: Self.now + 5)])
            _ = try await attempt("a", ok(8, at: Self.now + 10), .succeeded, at: Self.now + 10)
            #expect(try await store.replay(subscription: crm, since: Self.now - 60, until: Self.now + 60, status: .succeeded,
                                           now: Self.now + 20) == 1)
            _ = try await attempt("b", ok(9, at: Self.now + 20), .succeeded, at: Self.now + 20)
            let all = try await store.attempts(deliveryId: id)
            #expect(all == [Self.refused, ok(7, at: Self.now + 5), ok(8, at: Self.now + 10), ok(9, at: Self.now + 20)])
            let delivered = try await store.delivery(id: id)
            #expect(delivered?.status == .succeeded && delivered?.attemptCount == 4)
        }
    }

    @Test(arguments: StoreBackend.available)
    func retryAndReplayMakeDeliveriesDueAgainAndCreateMissingOnes(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            let crm = Self.subscription("crm")
            try await store.insertSubscription(crm)
            let events = try await Self.commit(["a", "b"], to: ["crm"], in: store)
            let claimed = try await store.claimDeliveries(subscriptionId: "crm", limit: 2, now: Self.now, leaseUntil: Self.now + 30, owner: "a")
            // In flight: neither a retry nor a replay touches it.
            #expect(try await store.retryDelivery(id: claimed[0].id, now: Self.now)?.status == .inFlight)
            try await store.recordAttempt(deliveryId: claimed[0].id, owner: "a", attempt: Self.refused, verdict: .dead, now: Self.now)
            try await store.recordAttempt(deliveryId: claimed[1].id, owner: "a", attempt: Self.ok, verdict: .succeeded, now: Self.now)
            let retried = try await store.retryDelivery(id: claimed[0].id, now: Self.now + 1)
            #expect(retried?.status == .failed && retried?.nextAttemptAt == Self.now + 1)
            #expect(try await store.retryDelivery(id: "dlv_unknown", now: Self.now) == nil)
            // A new subscription replays the last hour: its deliveries are created.
            let audit = Self.subscription("audit")
            try await store.insertSubscription(audit)
            #expect(try await store.replay(subscription: audit, since: Self.now - 3600, until: Self.now + 1, status: nil, now: Self.now) == 2)
            #expect(try await store.deliveries(DeliveryQuery(subscriptionId: "audit", status: .pending)).count == 2)
            // Only succeeded ones of crm, by status.
            #expect(try await store.replay(subscription: crm, since: Self.now - 3600, until: Self.now + 1, status: .succeeded,
                                           now: Self.now + 2) == 1)
            #expect(try await store.deliveries(eventId: events[1].id).first { $0.subscriptionId == "crm" }?.status == .failed)
        }
    }

    @Test(arguments: StoreBackend.available)
    func aBackfillCreatesOnlyTheMissingDeliveriesOfItsRange(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            var crm = Self.subscription("crm")
            crm.events = ["message.*"]
            try await store.insertSubscription(crm)
            let has = try await Self.commit(["has"], to: ["crm"], in: store)
            let claimed = try await store.claimDeliveries(subscriptionId: "crm", limit: 1, now: Self.now, leaseUntil: Self.now + 30, owner: "a")
            try await store.recordAttempt(deliveryId: claimed[0].id, owner: "a", attempt: Self.ok, verdict: .succeeded, now: Self.now)
            let missing = try await Self.commit(["missing"], to: [], in: store)
            let other = Self.event("other", type: "event.subscribe")
            _ = try await store.commit(IntakeRecord(event: other, ticket: nil))
            let late = try await Self.commit(["late"], to: [], in: store, at: Self.now + 20)
            #expect(try await store.backfill(subscription: crm, since: Self.now, until: Self.now + 10, now: Self.now + 16) == 1)
            #expect(try await store.deliveries(eventId: missing[0].id).map(\.status) == [.pending])
            #expect(try await store.delivery(id: claimed[0].id)?.status == .succeeded)  // untouched, not sent again
            #expect(try await store.deliveries(eventId: has[0].id).count == 1)
            #expect(try await store.deliveries(eventId: other.id).isEmpty)  // not a type crm takes
            #expect(try await store.deliveries(eventId: late[0].id).isEmpty)  // outside the range
            #expect(try await store.backfill(subscription: crm, since: Self.now, until: Self.now + 10, now: Self.now + 17) == 0)
        }
    }

    /// A replay or backfill of a long range goes a page of events at a time (500, each its own
    /// transaction): every event of the range is still taken, once, across the pages.
    @Test(arguments: StoreBackend.available)
    func aReplayOfMoreThanOnePageTakesEveryEventOnce(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            let count = 1_203
            try await withThrowingTaskGroup(of: Void.self) { group in  // concurrent: the store commits them in groups
                for i in 0..<count {
                    group.addTask { _ = try await store.commit(IntakeRecord(event: Self.event("e\(i)", at: Self.now - 60), ticket: nil)) }
                }
                try await group.waitForAll()
            }
            let crm = Self.subscription("crm")
            try await store.insertSubscription(crm)
            #expect(try await store.backfill(subscription: crm, since: Self.now - 120, until: Self.now, now: Self.now) == count)
            #expect(try await store.queueStats().depth == count)
            #expect(try await store.backfill(subscription: crm, since: Self.now - 120, until: Self.now, now: Self.now) == 0)
            #expect(try await store.replay(subscription: crm, since: Self.now - 120, until: Self.now, status: nil, now: Self.now) == count)
            #expect(try await store.queueStats().depth == count)
        }
    }

    /// The unfinished deliveries as event and subscription, for copy-store: pending, leased and
    /// failed ones (dead ones when asked), never delivered or cancelled ones.
    @Test(arguments: StoreBackend.available)
    func unfinishedDeliveryKeysAreTheBacklog(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { (store: any RelayStore) async throws -> Void in
            for id in ["crm", "bi", "gone"] { try await store.insertSubscription(Self.subscription(id)) }
            let events = try await Self.commit((0..<6).map { "k\($0)" }, to: ["crm", "bi", "gone"], in: store)
            let claimed = try await store.claimDeliveries(subscriptionId: "crm", limit: 4, now: Self.now, leaseUntil: Self.now + 30, owner: "a")
            #expect(claimed.count == 4)
            let outcomes: [DeliveryVerdict] = [.succeeded, .dead, .retry(at: Self.now + 60)]  // the 4th stays leased
            for (delivery, verdict) in zip(claimed, outcomes) {
                try await store.recordAttempt(deliveryId: delivery.id, owner: "a", attempt: verdict == .succeeded ? Self.ok : Self.refused,
                                              verdict: verdict, now: Self.now)
            }
            #expect(try await store.deleteSubscription(id: "gone", now: Self.now))  // its six are cancelled
            let finished: Set<String> = [claimed[0].event.id, claimed[1].event.id]  // crm's delivered and dead ones
            let expected = Set(events.flatMap { event in
                ["crm", "bi"].compactMap { id in id == "crm" && finished.contains(event.id) ? nil : DeliveryKey(eventId: event.id, subscriptionId: id) }
            })
            let keys = try await store.unfinishedDeliveryKeys(includingDead: false)
            #expect(keys.count == expected.count && Set(keys) == expected)
            let withDead = try await store.unfinishedDeliveryKeys(includingDead: true)
            #expect(Set(withDead) == expected.union([DeliveryKey(eventId: claimed[1].event.id, subscriptionId: "crm")]) && withDead.count == expected.count + 1)
        }
    }

    /// Deleting a subscription cancels its whole backlog (SQLite goes 500 deliveries per
    /// transaction, so a backlog of millions does not hold every push behind one UPDATE) and
    /// leaves another subscription's alone; disabling one does the same.
    @Test(arguments: StoreBackend.available)
    func deletingOrDisablingASubscriptionCancelsItsWholeBacklog(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { (store: any RelayStore) async throws -> Void in
            for id in ["crm", "bi", "ops"] { try await store.insertSubscription(Self.subscription(id)) }
            let count = 1_203
            try await withThrowingTaskGroup(of: Void.self) { group in  // concurrent: the store commits them in groups
                for i in 0..<count {
                    group.addTask {
                        _ = try await store.commit(IntakeRecord(event: Self.event("e\(i)"), ticket: nil, deliveries: ["crm", "bi", "ops"].map {
                            PlannedDelivery(subscriptionId: $0, orderKey: nil)
                        }))
                    }
                }
                try await group.waitForAll()
            }
            // Some leased, some failed: unfinished all the same.
            let leased = try await store.claimDeliveries(subscriptionId: "crm", limit: 10, now: Self.now, leaseUntil: Self.now + 30, owner: "a")
            try await store.recordAttempt(deliveryId: leased[0].id, owner: "a", attempt: Self.refused, verdict: .retry(at: Self.now + 60),
                                          now: Self.now)
            #expect(try await store.deleteSubscription(id: "crm", now: Self.now))
            #expect(try await store.subscription(id: "crm") == nil)
            var bi = try #require(try await store.subscription(id: "bi"))
            bi.status = .disabled
            try await store.updateSubscription(bi, now: Self.now)
            let stats = try await store.queueStats()
            #expect(stats.depth == count, "only ops's deliveries are left")
            let cancelled = try await store.deliveries(DeliveryQuery(status: .cancelled, limit: 500))
            #expect(cancelled.count == 500 && Set(cancelled.map(\.subscriptionId)).isSubset(of: ["crm", "bi"]))
            #expect(try await store.deliveries(DeliveryQuery(subscriptionId: "ops", status: .pending, limit: 500)).count == 500)
            #expect(try await store.cancelUnfinishedDeliveries(subscriptionId: "crm", now: Self.now) == 0)
        }
    }

    // MARK: Subscriptions

    @Test(arguments: StoreBackend.available)
    func configSubscriptionsKeepTheirGeneratedSecretAndNeverTakeAnAPIOne(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend, encryptionKey: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=") { store in
            var configured = Subscription(id: "crm", url: "https://example.com/crm", source: .config, createdAt: Self.now, secret: "")
            let first = try await store.syncConfigSubscriptions([configured], now: Self.now)
            #expect(first.count == 1 && first[0].secret.hasPrefix("whsec_"))
            let again = try await store.syncConfigSubscriptions([configured], now: Self.now + 60)
            #expect(again == first)
            configured.events = ["message.*"]
            #expect(try await store.syncConfigSubscriptions([configured], now: Self.now).first?.events == ["message.*"])
            try await store.insertSubscription(Self.subscription("api"))
            await #expect(throws: StoreError.self) { try await store.insertSubscription(Self.subscription("api")) }
            let stealing = Subscription(id: "api", url: "https://example.com/x", source: .config, createdAt: Self.now, secret: "")
            await #expect(throws: StoreError.self) { try await store.syncConfigSubscriptions([configured, stealing], now: Self.now) }
            // Dropped from the config: deleted, its unfinished deliveries cancelled.
            try await Self.commit(["a"], to: ["crm"], in: store)
            #expect(try await store.syncConfigSubscriptions([], now: Self.now).map(\.id) == ["api"])
            #expect(try await store.deliveries(DeliveryQuery(subscriptionId: "crm")).map(\.status) == [.cancelled])
        }
    }

    @Test(arguments: StoreBackend.available)
    func disablingASubscriptionCancelsItsUnfinishedDeliveries(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            var crm = Self.subscription("crm")
            crm.appids = ["wx1", "wx2"]
            crm.previousSecret = "whsec_old"
            crm.previousSecretExpiresAt = Self.now + 86400
            try await store.insertSubscription(crm)
            #expect(try await store.subscription(id: "crm") == crm)
            try await Self.commit(["a", "b"], to: ["crm"], in: store)
            let claimed = try await store.claimDeliveries(subscriptionId: "crm", limit: 1, now: Self.now, leaseUntil: Self.now + 30, owner: "a")
            try await store.recordAttempt(deliveryId: claimed[0].id, owner: "a", attempt: Self.ok, verdict: .succeeded, now: Self.now)
            crm.status = .disabled
            try await store.updateSubscription(crm, now: Self.now)
            #expect(try await store.subscriptions() == [crm])
            #expect(Set(try await store.deliveries(DeliveryQuery(subscriptionId: "crm")).map(\.status)) == [.succeeded, .cancelled])
            #expect(try await store.queueStats().depth == 0)
            #expect(try await store.deleteSubscription(id: "crm", now: Self.now))
            #expect(try await !store.deleteSubscription(id: "crm", now: Self.now))
        }
    }

    // MARK: Authorization

    @Test(arguments: StoreBackend.available)
    func authorizerTokensAreSavedOnlyOverTheVersionTheyWereRefreshedFrom(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend, encryptionKey: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=") { store in
            let token = StoredToken(token: "access-1", expiresAt: Self.now + 7200)
            try await store.saveAuthorizer(Authorizer(appid: "wxa", componentAppid: "wxc", name: "Shop", type: "official_account",
                                                      userName: "gh_1", permissions: [1, 15], refreshToken: "refresh-1",
                                                      accessToken: token, authorizedAt: Self.now))
            let saved = try #require(try await store.authorizer(appid: "wxa"))
            #expect(saved.version == 1 && saved.permissions == [1, 15] && saved.accessToken == token && saved.refreshToken == "refresh-1")
            let fresh = StoredToken(token: "access-2", expiresAt: Self.now + 9000)
            #expect(try await store.saveAuthorizerTokens(appid: "wxa", expectedVersion: 1, accessToken: fresh, refreshToken: "refresh-2"))
            // A second refresher started from version 1 too: it loses.
            #expect(try await !store.saveAuthorizerTokens(appid: "wxa", expectedVersion: 1, accessToken: token, refreshToken: "refresh-x"))
            let refreshed = try await store.authorizer(appid: "wxa")
            #expect(refreshed?.accessToken == fresh && refreshed?.refreshToken == "refresh-2" && refreshed?.version == 2)
            try await store.revokeAuthorizer(appid: "wxa")
            let revoked = try await store.authorizer(appid: "wxa")
            #expect(revoked?.status == .revoked && revoked?.accessToken == nil && revoked?.refreshToken == nil)
            #expect(try await store.authorizers().map(\.appid) == ["wxa"])
            #expect(try await store.authorizer(appid: "wxnone") == nil)
            try await store.saveComponentToken(appid: "wxc", token)
            try await store.saveComponentToken(appid: "wxc", fresh)
            #expect(try await store.componentToken(appid: "wxc") == fresh)
            #expect(try await store.exchangedCode("code-1") == nil)
            try await store.recordExchange(code: "code-1", authorizerAppid: "wxa", at: Self.now)
            try await store.recordExchange(code: "code-1", authorizerAppid: "wxb", at: Self.now)
            #expect(try await store.exchangedCode("code-1") == "wxa")
        }
    }

    @Test(arguments: StoreBackend.available)
    func aLockIsHeldByOneOwnerUntilReleasedOrExpired(_ backend: StoreBackend) async throws {
        try await Self.withStore(backend) { store in
            #expect(try await store.acquireLock(name: "refresh:wxa", owner: "a", until: Self.now + 30, now: Self.now))
            #expect(try await !store.acquireLock(name: "refresh:wxa", owner: "b", until: Self.now + 30, now: Self.now + 1))
            #expect(try await store.acquireLock(name: "refresh:wxa", owner: "a", until: Self.now + 60, now: Self.now + 1))
            #expect(try await store.acquireLock(name: "refresh:other", owner: "b", until: Self.now + 30, now: Self.now))
            #expect(try await store.acquireLock(name: "refresh:wxa", owner: "b", until: Self.now + 90, now: Self.now + 60))
            try await store.releaseLock(name: "refresh:wxa", owner: "a")  // no longer a's: changes nothing
            #expect(try await !store.acquireLock(name: "refresh:wxa", owner: "a", until: Self.now + 90, now: Self.now + 61))
            try await store.releaseLock(name: "refresh:wxa", owner: "b")
            #expect(try await store.acquireLock(name: "refresh:wxa", owner: "a", until: Self.now + 90, now: Self.now + 61))
        }
    }
}
