import Foundation
import Logging
import RelayCore
import RelayServer
import RelayTestSupport
import Testing

/// `relay copy-store`: a SQLite relay's state copied into a new store (SQLite, and PostgreSQL
/// when `RELAY_TEST_POSTGRES_URL` is set).
@Suite struct StoreCopierTests {
    static let now = StoreContractTests.now
    static let ok = StoreContractTests.ok

    @Test(arguments: StoreBackend.available)
    func theStateAndTheQueueMoveToAnEmptyStore(_ backend: StoreBackend) async throws {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
        try await StoreContractTests.withStore(.sqlite, encryptionKey: key) { source in
            var crm = StoreContractTests.subscription("crm", ordered: true)
            crm.previousSecret = "whsec_previous"
            crm.previousSecretExpiresAt = Self.now + 3600
            try await source.insertSubscription(crm)
            try await source.insertSubscription(StoreContractTests.subscription("audit", source: .config))
            let authorizer = Authorizer(appid: "wxa", componentAppid: "wxc", name: "Shop", permissions: [1, 15], refreshToken: "refresh-1",
                                        accessToken: StoredToken(token: "access-1", expiresAt: Self.now + 7200), authorizedAt: Self.now)
            try await source.saveAuthorizer(authorizer)
            let ticket = ComponentTicket(componentAppid: "wxc", ticket: "ticket@@@1", createTime: 100, receivedAt: Self.now)
            _ = try await source.commit(IntakeRecord(event: nil, ticket: ticket))
            try await source.saveComponentToken(appid: "wxc", StoredToken(token: "component-1", expiresAt: Self.now + 7200))

            let ancient = try await StoreContractTests.commit(["ancient"], to: ["crm"], in: source, at: Self.now - 7200)
            let delivered = try await StoreContractTests.commit(["delivered"], to: ["crm"], in: source, at: Self.now - 60)
            let waiting = try await StoreContractTests.commit(["a1"], to: ["crm", "audit"], in: source, from: "alice")
                + StoreContractTests.commit(["a2"], to: ["crm", "audit"], in: source, from: "alice", at: Self.now + 0.001)
            let claimed = try await source.claimDeliveries(subscriptionId: "crm", limit: 3, now: Self.now, leaseUntil: Self.now + 30, owner: "x")
            #expect(claimed.map(\.event.id) == [ancient[0].id, delivered[0].id, waiting[0].id])
            for finished in claimed.prefix(2) {
                try await source.recordAttempt(deliveryId: finished.id, owner: "x", attempt: Self.ok, verdict: .succeeded, now: Self.now)
            }
            try await source.recordAttempt(deliveryId: claimed[2].id, owner: "x", attempt: StoreContractTests.refused,
                                           verdict: .retry(at: Self.now + 600), now: Self.now)

            try await backend.withStorageURL { url in
                let config = try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: url, encryptionKey: key), environment: [:])
                try await StoreFactory.withStore(config.storage, logger: Logger(label: "test")) { destination in
                    let summary = try await StoreCopier.copy(from: source, to: destination, components: ["wxc", "wxnone"], history: 3600,
                                                             now: Self.now)
                    #expect(summary.description == "copied 2 subscriptions, 1 authorizers, 1 tickets, 1 component tokens, "
                                + "2 events with 4 unfinished deliveries, 1 delivered events of the history")
                    #expect(try await destination.subscriptions() == source.subscriptions())
                    var copied = try #require(try await destination.authorizer(appid: "wxa"))
                    copied.version = 0
                    #expect(copied == authorizer)
                    #expect(try await destination.ticket(componentAppid: "wxc") == ticket)
                    #expect(try await destination.componentToken(appid: "wxc")?.token == "component-1")
                    // The queue: both of alice's messages, due now, in order, the failed one's retry not waited for.
                    #expect(try await destination.events(EventQuery()).map(\.id) == [waiting[1].id, waiting[0].id, delivered[0].id])
                    let due = try await destination.claimDeliveries(subscriptionId: "crm", limit: 10, now: Self.now, leaseUntil: Self.now + 30,
                                                                    owner: "y")
                    #expect(due.map(\.event.id) == [waiting[0].id])  // alice's second waits behind her first (ordered)
                    #expect(try await destination.deliveries(DeliveryQuery(subscriptionId: "audit")).count == 2)
                    // History: listed, with no delivery; the event older than an hour stayed behind.
                    #expect(try await destination.deliveries(eventId: delivered[0].id).isEmpty)
                    #expect(try await destination.event(id: ancient[0].id) == nil)
                    // A second copy into the same store is refused.
                    await #expect(throws: StoreCopier.NotEmpty.self) {
                        try await StoreCopier.copy(from: source, to: destination, components: [], history: 0, now: Self.now)
                    }
                }
            }
        }
    }

    /// Dead letters are never dropped silently: counted and left behind by default (the summary
    /// says how to bring them), queued again with `requeueDead`.
    @Test(arguments: StoreBackend.available)
    func deadLettersAreCountedOrQueuedAgain(_ backend: StoreBackend) async throws {
        try await StoreContractTests.withStore(.sqlite) { source in
            try await source.insertSubscription(StoreContractTests.subscription("crm"))
            let events = try await StoreContractTests.commit(["dead", "waiting"], to: ["crm"], in: source)
            let claimed = try await source.claimDeliveries(subscriptionId: "crm", limit: 1, now: Self.now, leaseUntil: Self.now + 30, owner: "x")
            #expect(claimed.map(\.event.id) == [events[0].id])
            try await source.recordAttempt(deliveryId: claimed[0].id, owner: "x", attempt: StoreContractTests.refused, verdict: .dead, now: Self.now)

            let left = try await backend.withStorageURL { url in
                try await Self.withDestination(url) { destination in
                    let summary = try await StoreCopier.copy(from: source, to: destination, components: [], history: 0, now: Self.now)
                    #expect(try await destination.deliveries(eventId: events[0].id).isEmpty)
                    return summary
                }
            }
            #expect(left.deadLetteredLeft == 1 && left.queuedDeliveries == 1)
            #expect(left.description.hasSuffix("; 1 dead-lettered deliveries were not copied (still listed in the old store; "
                                                + "copy again into an empty store with --requeue-dead to queue them in the new one)"))

            let requeued = try await backend.withStorageURL { url in
                try await Self.withDestination(url) { destination in
                    let summary = try await StoreCopier.copy(from: source, to: destination, components: [], history: 0, requeueDead: true,
                                                             now: Self.now)
                    let due = try await destination.claimDeliveries(subscriptionId: "crm", limit: 10, now: Self.now, leaseUntil: Self.now + 30,
                                                                    owner: "y")
                    #expect(Set(due.map(\.event.id)) == Set(events.map(\.id)))
                    return summary
                }
            }
            #expect(requeued.deadLetteredLeft == 0 && requeued.queuedDeliveries == 2)
            #expect(requeued.description.hasSuffix("2 events with 2 unfinished deliveries, 0 delivered events of the history"))
        }
    }

    static func withDestination<T: Sendable>(_ url: String, _ body: (any RelayStore) async throws -> T) async throws -> T {
        let config = try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: url), environment: [:])
        return try await StoreFactory.withStore(config.storage, logger: Logger(label: "test"), body)
    }
}
