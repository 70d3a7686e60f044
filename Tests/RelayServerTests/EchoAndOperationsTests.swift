import Foundation
import HummingbirdTesting
import NIOCore
import NIOPosix
import RelayCore
@testable import RelayServer
import RelayTestSupport
import Testing
import WeChatCrypto

@Suite(.timeLimit(.minutes(1))) struct EchoAndOperationsTests {
    /// How long until the other side closes `channel`; a watchdog closes it after 10 s, so a
    /// relay that never does fails the caller's check instead of hanging the test.
    static func timeUntilClosed(_ channel: any Channel) async throws -> Duration {
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await Task.sleep(for: .seconds(10)); try? await channel.close() }
            try await channel.closeFuture.get()
            group.cancelAll()
        }
        return ContinuousClock.now - started
    }

    /// A client that connects and says nothing is closed after `server.idle_timeout`: it used to
    /// hold its socket, and a file descriptor, for ever.
    @Test func aSilentConnectionIsClosedAfterTheIdleTimeout() async throws {
        try await TestRelay.with(idleTimeout: "200ms") { relay in
            try await relay.application().test(.live) { client async throws in
                let port = try #require(client.port)
                let silent = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
                #expect(try await Self.timeUntilClosed(silent) < .seconds(5), "the relay kept a silent connection open")
            }
        }
    }


    /// A request whose body stops (or trickles) after its head is dropped after `server.body_timeout`:
    /// the idle timeout counts only between requests, so such a client held a handler for ever.
    @Test func aRequestWhoseBodyNeverArrivesIsDroppedAfterTheBodyTimeout() async throws {
        try await TestRelay.with(bodyTimeout: "200ms") { relay in
            try await relay.application().test(.live) { client async throws in
                let port = try #require(client.port)
                let stalled = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
                try await stalled.writeAndFlush(ByteBuffer(string: "POST /wechat/component HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n<xml>"))
                #expect(try await Self.timeUntilClosed(stalled) < .seconds(5), "the relay kept a request without its body open")
            }
        }
    }

    /// The body timeout is per request: a keep-alive connection whose requests come whole stays
    /// open however long it lives, and a later request that stalls is still dropped, counted from
    /// its own head. (Kept from a try at one timer per connection instead of one per request,
    /// which measured within the noise — CPU per push under wrk 76–108 µs against 75–99 µs in
    /// eight alternating runs — and was not kept.)
    @Test func theBodyTimeoutCountsFromEachRequestsOwnHead() async throws {
        try await TestRelay.with(bodyTimeout: "200ms") { relay in
            try await relay.application().test(.live) { client async throws in
                let port = try #require(client.port)
                let connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
                let whole = "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"
                // Whole requests for three times the timeout: never cut.
                for _ in 0..<12 {
                    try await connection.writeAndFlush(ByteBuffer(string: whole))
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(connection.isActive, "a connection whose requests all came whole was closed")
                // Then one whose body never comes, half a timeout after the last whole one.
                try await Task.sleep(for: .milliseconds(100))
                try await connection.writeAndFlush(ByteBuffer(string: "POST /wechat/component HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n<xml>"))
                #expect(try await Self.timeUntilClosed(connection) < .seconds(5), "the relay kept a request without its body open")
            }
        }
    }

    @Test func plainEchostrVariant() async throws {
        try await TestRelay.with { relay in
            let ts = String(relay.timestamp)
            let signature = WeChatSignature.compute([TestCredentials.plainToken, ts, "55"])
            let query = PushQuery(timestamp: ts, nonce: "55", signature: signature, echostr: "4375120948345356249").rawQuery
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.get("/wechat/\(TestCredentials.plainAppid)/callback?\(query)") == (200, "4375120948345356249"))
                let wrong = PushQuery(timestamp: ts, nonce: "56", signature: signature, echostr: "1").rawQuery
                #expect(try await client.get("/wechat/\(TestCredentials.plainAppid)/callback?\(wrong)").status == 401)
            }
        }
    }

    @Test func encryptedEchostrVariantKeepsPlusSigns() async throws {
        try await TestRelay.with { relay in
            let ts = String(relay.timestamp)
            // Keep sealing until the base64 contains '+', the character naive query decoding breaks.
            var sealed = TestCredentials.directCrypto.seal("1616140317555161061", timestamp: ts, nonce: "77")
            while !sealed.encrypt.contains("+") { sealed = TestCredentials.directCrypto.seal("1616140317555161061", timestamp: ts, nonce: "77") }
            let query = PushQuery(timestamp: ts, nonce: "77", msgSignature: sealed.msgSignature, echostr: sealed.encrypt).rawQuery
            let echo = sealed
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.get("/wechat/\(TestCredentials.directAppid)/callback?\(query)") == (200, "1616140317555161061"))
                // WeChat's own form: '+' left raw in the query string.
                let raw = "timestamp=\(ts)&nonce=77&msg_signature=\(echo.msgSignature)&echostr=\(echo.encrypt.replacingOccurrences(of: "=", with: "%3D"))"
                #expect(try await client.get("/wechat/\(TestCredentials.directAppid)/callback?\(raw)") == (200, "1616140317555161061"))
                #expect(try await client.get("/wechat/\(TestCredentials.directAppid)/callback?timestamp=\(ts)&nonce=1").status == 400)
            }
        }
    }

    @Test func healthReadinessAndMetrics() async throws {
        try await TestRelay.with { relay in
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.get("/healthz") == (200, "ok"))
                #expect(try await client.get("/readyz") == (200, "ready"))
                // Some load balancers' health checks send HEAD (it was a 404).
                #expect(try await client.execute(uri: "/healthz", method: .head) { $0.status } == .ok)
                #expect(try await client.execute(uri: "/readyz", method: .head) { $0.status } == .ok)
                _ = try await client.send(relay.textPush())
                let metrics = try await client.get("/metrics").body
                #expect(metrics.contains(#"relay_pushes_total{endpoint="callback",outcome="stored"} 1"#))
                #expect(metrics.contains("relay_push_seconds_bucket"))
                #expect(metrics.contains("\nrelay_store_up 1"))
                // This process's own figures, as of the scrape.
                func value(_ name: String) -> Double? {
                    metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
                }
                var limit = rlimit()
                getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
                #expect(value("relay_process_max_fds") == Double(limit.rlim_cur))
                #expect((1...Double(limit.rlim_cur)).contains(value("relay_process_open_fds") ?? 0), "\(metrics)")
                #expect((value("relay_process_resident_memory_bytes") ?? 0) > 1_000_000)
                // A counter, named as Prometheus's own process_cpu_seconds_total (it was a gauge).
                let cpu = value("relay_process_cpu_seconds_total") ?? 0
                #expect(cpu > 0 && metrics.contains("# TYPE relay_process_cpu_seconds_total counter"), "\(metrics)")
                let later = try await client.get("/metrics").body.split(separator: "\n")
                    .first { $0.hasPrefix("relay_process_cpu_seconds_total ") }.flatMap { Double($0.split(separator: " ")[1]) } ?? 0
                #expect(later >= cpu)
                let started = value("relay_process_start_time_seconds") ?? 0
                #expect(started <= Date().timeIntervalSince1970 + 1 && started > Date().timeIntervalSince1970 - 3600)
            }
        }
    }

    /// A component without a ticket has gone without one since the relay started: it had no
    /// series, so an alert on the ticket's age never fired for a platform whose tickets never came.
    @Test func aComponentWithoutATicketReportsTheTimeSinceTheStart() async throws {
        // A whole second: the store keeps milliseconds, and an age of 29.9996 s is not 30.0.
        try await TestRelay.with(now: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))) { relay in
            try await relay.application().test(.router) { client async throws in
                let series = "relay_ticket_age_seconds{component=\"\(TestCredentials.componentAppid)\"}"
                relay.clock.advance(by: 120)
                #expect(try await client.get("/metrics").body.contains(series + " 120.0"))
                #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@first")).body == "success")
                relay.clock.advance(by: 30)
                #expect(try await client.get("/metrics").body.contains(series + " 30.0"))
            }
        }
    }

    /// Which subscriber is behind: each subscription's backlog and the age of its oldest waiting
    /// delivery, 0 for one with none; one that went loses its series.
    @Test func eachSubscriptionsBacklogIsExported() async throws {
        let yaml = """
            subscriptions:
              - id: crm
                url: http://127.0.0.1:9/hook
              - id: bi
                url: http://127.0.0.1:9/bi
                appids: [wx9999999999999999]
            """
        try await TestRelay.with(extraYAML: yaml) { relay in
            // The router alone: no dispatcher runs, so what is pushed stays waiting.
            try await relay.application().test(.router) { client async throws in
                _ = try await client.send(relay.textPush(msgId: "1"))
                _ = try await client.send(relay.textPush(msgId: "2"))
                relay.clock.advance(by: 30)
                let metrics = try await client.get("/metrics").body
                #expect(metrics.contains(#"relay_subscription_queue_depth{subscription="crm"} 2"#), "\(metrics)")
                #expect(metrics.contains(#"relay_subscription_queue_depth{subscription="bi"} 0"#))
                let age = metrics.split(separator: "\n").first { $0.hasPrefix(#"relay_subscription_oldest_pending_seconds{subscription="crm"}"#) }
                #expect((29.99...30.01).contains(Double(age?.split(separator: " ").last ?? "") ?? 0), "\(age ?? "none")")
            }
        }
        let metrics = RelayMetrics()
        metrics.subscriptionQueues(["a": QueueStats(depth: 2, oldestPendingCreatedAt: nil)], known: ["a", "b"], now: Date())
        metrics.subscriptionQueues([:], known: ["b"], now: Date())
        let exposition = metrics.exposition()
        #expect(exposition.contains(#"relay_subscription_queue_depth{subscription="b"} 0"#), "\(exposition)")
        #expect(!exposition.contains(#"subscription="a""#), "\(exposition)")
    }

    /// A subscription named like a push endpoint keeps its delivery latencies apart from that
    /// endpoint's push latencies (they shared one cache of handles, keyed by name).
    @Test func aSubscriptionNamedLikeAnEndpointKeepsItsOwnLatencies() {
        let metrics = RelayMetrics()
        metrics.pushLatency(endpoint: "callback", .milliseconds(2))
        metrics.delivery(subscription: "callback", outcome: .succeeded, duration: .milliseconds(3))
        let exposition = metrics.exposition()
        #expect(exposition.contains(#"relay_push_seconds_count{endpoint="callback"} 1"#), "\(exposition)")
        #expect(exposition.contains(#"relay_delivery_seconds_count{subscription="callback"} 1"#), "\(exposition)")
    }

    /// A deleted subscription's delivery counters, latencies and breaker gauge go with it, also
    /// for one created, used and deleted between two scrapes; a counter made again starts afresh.
    @Test func aGoneSubscriptionLosesEverySeriesOfItsOwn() {
        let metrics = RelayMetrics()
        metrics.subscriptionQueues([:], known: ["a", "b"], now: Date())
        for id in ["a", "b", "between-scrapes"] {
            metrics.delivery(subscription: id, outcome: .succeeded, duration: .milliseconds(3))
            metrics.delivery(subscription: id, outcome: .failed, duration: .milliseconds(3))
            metrics.circuit(subscription: id, open: true)
        }
        metrics.subscriptionQueues([:], known: ["b"], now: Date())
        let exposition = metrics.exposition()
        #expect(!exposition.contains(#"subscription="a""#), "\(exposition)")
        #expect(!exposition.contains(#"subscription="between-scrapes""#), "\(exposition)")
        #expect(exposition.contains(#"relay_deliveries_total{subscription="b",outcome="failed"} 1"#), "\(exposition)")
        #expect(exposition.contains(#"relay_subscription_circuit_open{subscription="b"} 1"#))

        metrics.delivery(subscription: "a", outcome: .succeeded, duration: .milliseconds(3))
        #expect(metrics.exposition().contains(#"relay_deliveries_total{subscription="a",outcome="succeeded"} 1"#))
        metrics.subscriptionQueues([:], known: ["b"], now: Date())
        #expect(!metrics.exposition().contains(#"subscription="a""#))
    }

    /// Fields of proc(5)'s stat line after the command name, which may hold spaces and parentheses.
    @Test func processFiguresAreReadFromProc() {
        let stat = "4242 (relay (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100000 300000000 5000 18446744073709551615"
        let figures = ProcessFigures.parse(stat: stat, system: "cpu  1 2 3\nbtime 1790000000\nprocesses 9\n", ticksPerSecond: 100,
                                           pageSize: 4096, openFiles: 12, maxOpenFiles: 1024)
        #expect(figures == ProcessFigures(cpuSeconds: 3, residentBytes: 5000 * 4096, openFiles: 12, maxOpenFiles: 1024,
                                          startTime: 1_790_000_000 + 1000))
        #expect(ProcessFigures.parse(stat: "garbage", system: "", ticksPerSecond: 100, pageSize: 4096, openFiles: 0, maxOpenFiles: 0) == nil)
    }

    @Test func storeFailureAnswers503AndIsNotReady() async throws {
        try await TestRelay.with { relay in
            try await relay.application(store: FailingStore()).test(.router) { client async throws in
                let answer = try await client.send(relay.textPush())
                #expect(answer.status == 503)
                #expect(answer.body != "success")
                #expect(try await client.get("/readyz").status == 503)
                // The queue's gauges cannot be read: the scrape says the store is down.
                #expect(try await client.get("/metrics").body.contains("\nrelay_store_up 0"))
            }
            #expect(relay.metrics.exposition().contains(#"outcome="store_error"} 1"#))
        }
    }
}

/// A store whose disk is gone: every call fails.
struct FailingStore: RelayStore {
    struct Down: Error {}
    func migrate() async throws { throw Down() }
    func ping() async throws { throw Down() }
    func commit(_ record: IntakeRecord) async throws -> IntakeOutcome { throw StoreError(.unavailable, "disk I/O error") }
    func event(id: String) async throws -> RelayEvent? { throw Down() }
    func events(_ query: EventQuery) async throws -> [RelayEvent] { throw Down() }
    func ticket(componentAppid: String) async throws -> ComponentTicket? { throw Down() }
    func purgeEvents(before cutoff: Date, limit: Int) async throws -> Int { throw Down() }
    func close() async throws {}
    func syncConfigSubscriptions(_ configured: [Subscription], now: Date) async throws -> [Subscription] { [] }
    func subscriptions() async throws -> [Subscription] { throw Down() }
    func subscription(id: String) async throws -> Subscription? { throw Down() }
    func insertSubscription(_ subscription: Subscription) async throws { throw Down() }
    func updateSubscription(_ subscription: Subscription, now: Date) async throws { throw Down() }
    func deleteSubscription(id: String, now: Date) async throws -> Bool { throw Down() }
    func watchSubscriptionChanges(_ changed: @escaping @Sendable () -> Void) async {}
    func claimDeliveries(subscriptionId: String, limit: Int, now: Date, leaseUntil: Date, owner: String) async throws -> [ClaimedDelivery] { throw Down() }
    func recordAttempt(deliveryId: String, owner: String, attempt: DeliveryAttempt, verdict: DeliveryVerdict, now: Date) async throws { throw Down() }
    func releaseClaims(deliveryIds: [String], owner: String, now: Date) async throws { throw Down() }
    func releaseClaimsOfDeadProcesses(now: Date) async throws -> Int { throw Down() }
    func nextDueTime(subscriptionId: String, now: Date) async throws -> Date? { throw Down() }
    func delivery(id: String) async throws -> DeliveryRecord? { throw Down() }
    func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord] { throw Down() }
    func deliveries(eventId: String) async throws -> [DeliveryRecord] { throw Down() }
    func attempts(deliveryId: String) async throws -> [DeliveryAttempt] { throw Down() }
    func retryDelivery(id: String, now: Date) async throws -> DeliveryRecord? { throw Down() }
    func replay(subscription: Subscription, since: Date, until: Date, status: DeliveryStatus?, now: Date) async throws -> Int { throw Down() }
    func backfill(subscription: Subscription, since: Date, until: Date, now: Date) async throws -> Int { throw Down() }
    func cancelUnfinishedDeliveries(subscriptionId: String, now: Date) async throws -> Int { throw Down() }
    func queueStats(subscriptionId: String?) async throws -> QueueStats { throw Down() }
    func unfinishedDeliveryKeys(includingDead: Bool) async throws -> [DeliveryKey] { throw Down() }
    func componentToken(appid: String) async throws -> StoredToken? { throw Down() }
    func saveComponentToken(appid: String, _ token: StoredToken) async throws { throw Down() }
    func acquireLock(name: String, owner: String, until: Date, now: Date) async throws -> Bool { throw Down() }
    func releaseLock(name: String, owner: String) async throws { throw Down() }
    func authorizer(appid: String) async throws -> Authorizer? { throw Down() }
    func authorizers() async throws -> [Authorizer] { throw Down() }
    func saveAuthorizer(_ authorizer: Authorizer) async throws { throw Down() }
    func saveAuthorizerTokens(appid: String, expectedVersion: Int, accessToken: StoredToken, refreshToken: String) async throws -> Bool { throw Down() }
    func revokeAuthorizer(appid: String) async throws { throw Down() }
    func exchangedCode(_ code: String) async throws -> String? { throw Down() }
    func recordExchange(code: String, authorizerAppid: String, at: Date) async throws { throw Down() }
}
