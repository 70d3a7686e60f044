import Foundation
import Logging
import HummingbirdTesting
import RelayCore
import RelayServer
import RelayTestSupport
import Testing

@Suite struct DeliveryRecoveryTests {
    static func yaml(port: Int) -> String {
        """
        delivery:
          timeout: 30s
          retry_schedule: [20ms, 50ms, 100ms, 200ms, 400ms, 800ms, 1s, 1s, 1s, 1s]
          allow_private_networks: true
        subscriptions:
          - id: crm
            url: http://127.0.0.1:\(port)/hook
        """
    }

    @Test func eventsStoredWhileTheSubscriberIsDownAreDeliveredAfterARestart() async throws {
        // A port nobody listens on once this receiver is gone.
        let port = try await TestReceiver.run { _, port in port }
        let directory = makeTemporaryDirectory()
        try await TestRelay.with(directory: directory, extraYAML: Self.yaml(port: port)) { relay in
            let reports = Reports()
            try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                for i in 0..<5 { #expect(try await client.send(relay.textPush(msgId: "\(i)")).body == "success") }
                let failures = try await reports.next(5)
                // Refused is final for the attempt. The HTTP client used to retry it until the
                // connect timeout (5 s at most), holding the subscriber's slot and recording only then.
                #expect(failures.map(\.error) == Array(repeating: "Connection refused (errno 111)", count: 5))
                for failure in failures {
                    let attempt = try #require(try await relay.store.attempts(deliveryId: failure.deliveryId).first)
                    #expect(attempt.durationMs < 2_000)
                }
            }
        }
        // The relay process is gone; the subscriber comes back on its port; a new relay starts on the same file.
        try await TestReceiver.run(port: port) { receiver, _ in
            try await TestRelay.with(directory: directory, extraYAML: Self.yaml(port: port)) { relay in
                try await relay.application().test(.router) { _ async throws in
                    let received = try await receiver.next(5)
                    let ids = Set(received.compactMap { $0.headers["webhook-id"] })
                    let stored = Set(try await relay.store.events(EventQuery()).map(\.id))
                    #expect(ids == stored && ids.count == 5)
                }
            }
        }
    }

    @Test func claimsOfADeadNodeAreTakenOverWhenTheirLeaseExpiresAndReleasedAtStart() async throws {
        try await TestRelay.with { relay in
            let now = relay.clock.now()
            _ = try await relay.store.syncConfigSubscriptions(
                [Subscription(id: "crm", url: "http://127.0.0.1:9/hook", source: .config, createdAt: now, secret: "")], now: now)
            let event = RelayEvent(id: EventID.make(at: now), type: "message.text", appid: "wx1", componentAppid: nil,
                                   receivedAt: now, dataJSON: "{}", dedupKey: "k", fromUser: nil)
            _ = try await relay.store.commit(IntakeRecord(event: event, ticket: nil,
                                                          deliveries: [PlannedDelivery(subscriptionId: "crm", orderKey: nil)]))
            // A node claims it and is killed before it reports back.
            let claimed = try await relay.store.claimDeliveries(subscriptionId: "crm", limit: 10, now: now,
                                                                leaseUntil: now.addingTimeInterval(60), owner: "node-killed")
            #expect(claimed.count == 1)
            // While the lease holds nobody else takes it; once it has expired, another node does.
            #expect(try await relay.store.claimDeliveries(subscriptionId: "crm", limit: 10, now: now.addingTimeInterval(59),
                                                          leaseUntil: now.addingTimeInterval(120), owner: "node-b").isEmpty)
            let taken = try await relay.store.claimDeliveries(subscriptionId: "crm", limit: 10, now: now.addingTimeInterval(61),
                                                              leaseUntil: now.addingTimeInterval(120), owner: "node-b")
            #expect(taken.map(\.id) == claimed.map(\.id))
            // The dead node's late report does not move the delivery on: node-b holds it now.
            try await relay.store.recordAttempt(deliveryId: claimed[0].id, owner: "node-killed",
                                                attempt: DeliveryAttempt(at: now, statusCode: 200, error: nil, durationMs: 1, responseExcerpt: nil),
                                                verdict: .succeeded, now: now)
            #expect(try await relay.store.delivery(id: claimed[0].id)?.status == .inFlight)
            // A SQLite file has one relay process: at its start every claim left is a dead process's.
            #expect(try await relay.store.releaseClaimsOfDeadProcesses(now: now) == 1)
            #expect(try await relay.store.delivery(id: claimed[0].id)?.status == .pending)
        }
    }
}

@Suite struct ShutdownAndSealingTests {
    @Test func gracefulShutdownFinishesTheAttemptInFlight() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 204, delay: .milliseconds(500)) }) { receiver, port in
            try await TestRelay.with(extraYAML: DeliveryRecoveryTests.yaml(port: port)) { relay in
                try await relay.application().test(.router) { client async throws in
                    _ = try await client.send(relay.textPush())
                    _ = try await receiver.next()
                    #expect(try await relay.store.deliveries(DeliveryQuery()).first?.status == .inFlight)
                    // Leaving the closure shuts the application down gracefully, as SIGTERM does.
                }
                #expect(try await relay.store.deliveries(DeliveryQuery()).first?.status == .succeeded)
            }
        }
    }

    /// Deliveries claimed to wait for a slot are given back at shutdown, not left in flight
    /// until their lease expires.
    /// (The answer takes 2 s, well inside the 10 s timeout, so that a loaded machine cannot finish
    /// the first attempt, and start the next, before the test has seen both and shut down.)
    @Test func gracefulShutdownReleasesClaimedDeliveriesThatNeverStarted() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 204, delay: .seconds(2)) }) { receiver, port in
            let yaml = DeliveryRecoveryTests.yaml(port: port)
                .replacingOccurrences(of: "  allow_private_networks: true", with: "  allow_private_networks: true\n  max_in_flight_per_subscription: 1")
                .replacingOccurrences(of: "  timeout: 1s", with: "  timeout: 10s")
            try await TestRelay.with(extraYAML: yaml) { relay in
                let logs = CapturedLogs()
                let logger = Logger(label: "relay") { _ in logs.handler(level: .debug) }
                try await relay.application(logger: logger).test(.router) { client async throws in
                    for i in 0..<3 { _ = try await client.send(relay.textPush(content: "m\(i)", msgId: "\(700 + i)")) }
                    _ = try await receiver.next()
                    // One being sent and one claimed beside it, waiting for the slot.
                    try await logs.line(containing: "held=2 subscription=crm")
                    #expect(try await relay.store.deliveries(DeliveryQuery(status: .inFlight)).count == 2)
                }
                let statuses = try await relay.store.deliveries(DeliveryQuery()).map(\.status)
                #expect(statuses.filter { $0 == .succeeded }.count == 1)
                #expect(statuses.filter { $0 == .pending }.count == 2)
                #expect(try await relay.store.deliveries(DeliveryQuery()).allSatisfy { $0.status == .succeeded || $0.attemptCount == 0 })
            }
        }
    }

    @Test func secretsAreSealedAtRestWithAnEncryptionKey() async throws {
        let key = Data((0..<32).map { UInt8($0) }).base64EncodedString()
        let directory = makeTemporaryDirectory()
        let subscriptions = """
            subscriptions:
              - id: crm
                url: http://127.0.0.1:9/hook
                secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
            """
        try await TestRelay.with(directory: directory, extraYAML: subscriptions, encryptionKey: key) { relay in
            try await relay.application().test(.router) { client async throws in
                _ = try await client.send(relay.ticketPush(ticket: "ticket@@@very-secret"))
            }
            #expect(try await relay.store.ticket(componentAppid: TestCredentials.componentAppid)?.ticket == "ticket@@@very-secret")
            #expect(try await relay.store.subscription(id: "crm")?.secret == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        }
        let file = try Data(contentsOf: URL(fileURLWithPath: directory + "/relay.sqlite"))
            + ((try? Data(contentsOf: URL(fileURLWithPath: directory + "/relay.sqlite-wal"))) ?? Data())
        #expect(file.range(of: Data("very-secret".utf8)) == nil)
        #expect(file.range(of: Data("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".utf8)) == nil)
        #expect(file.range(of: Data("sealed:v1:".utf8)) != nil)
    }
}
