import Crypto
import Foundation
import HummingbirdTesting
import RelayCore
import RelayServer
import RelayTestSupport
import Synchronization
import Testing

/// Delivery to real HTTP receivers on ports picked by the OS.
@Suite(.timeLimit(.minutes(1))) struct DeliveryTests {
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    static func yaml(_ subscriptions: String, schedule: String = "[10ms, 10ms, 10ms]", timeout: String = "5s") -> String {
        """
        delivery:
          timeout: \(timeout)
          retry_schedule: \(schedule)
          allow_private_networks: true
        subscriptions:
        \(subscriptions)
        """
    }

    /// Standard Webhooks, computed here from the specification rather than by the relay's signer.
    static func expectedSignature(secret: String, id: String, timestamp: String, body: String) -> String {
        let key = SymmetricKey(data: Data(base64Encoded: String(secret.dropFirst("whsec_".count)))!)
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(id).\(timestamp).\(body)".utf8), using: key)
        return "v1," + Data(mac).base64EncodedString()
    }

    @Test func signedDeliveryVerifiesIndependently() async throws {
        try await TestReceiver.run { receiver, port in
            try await TestRelay.with(extraYAML: Self.yaml("""
                  - id: crm
                    url: http://127.0.0.1:\(port)/hooks/wechat
                    secret: \(Self.secret)
                """)) { relay in
                try await relay.application().test(.router) { client async throws in
                    #expect(try await client.send(relay.textPush(content: "签名")).body == "success")
                    let request = try await receiver.next()
                    let event = try #require(try await relay.store.events(EventQuery()).first)
                    #expect(request.headers["webhook-id"] == event.id)
                    #expect(request.headers["content-type"] == "application/json")
                    let timestamp = try #require(request.headers["webhook-timestamp"])
                    #expect(abs((Int(timestamp) ?? 0) - Int(Date().timeIntervalSince1970)) < 60)
                    #expect(request.headers["webhook-signature"] == Self.expectedSignature(
                        secret: Self.secret, id: event.id, timestamp: timestamp, body: request.body))
                    #expect(request.body == event.envelopeJSON)
                    let json = try #require(try JSONSerialization.jsonObject(with: Data(request.body.utf8)) as? [String: Any])
                    #expect(Set(json.keys) == ["id", "type", "timestamp", "appid", "component_appid", "data"])
                    #expect((json["data"] as? [String: String])?["Content"] == "签名")
                }
            }
        }
    }

    /// The start of a subscriber's answer is kept as text; a NUL in it, which PostgreSQL's text
    /// refuses, made the attempt unrecordable there, and the delivery was sent again whenever its
    /// lease expired, however often it succeeded.
    @Test(arguments: StoreBackend.available)
    func anAnswerWithANulByteIsRecordedAsText(_ backend: StoreBackend) async throws {
        try await backend.withStorageURL { url in
            try await TestReceiver.run(respond: { _, _ in .init(status: 200, body: "ok\u{0}!") }) { receiver, port in
                try await TestRelay.with(extraYAML: Self.yaml("""
                      - id: crm
                        url: http://127.0.0.1:\(port)/
                    """), storageURL: url) { relay in
                    let reports = Reports()
                    try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                        #expect(try await client.send(relay.textPush()).body == "success")
                        #expect(try await reports.next(1).map(\.verdict) == [.succeeded])
                        let delivery = try #require(try await relay.store.deliveries(DeliveryQuery(limit: 10)).first)
                        #expect(delivery.status == .succeeded)
                        #expect(try await relay.store.attempts(deliveryId: delivery.id).map(\.responseExcerpt) == ["ok\u{FFFD}!"])
                    }
                }
            }
        }
    }

    @Test func filtersByAppidAndEventGlob() async throws {
        try await TestReceiver.run { events, eventsPort in
            try await TestReceiver.run { texts, textsPort in
                try await TestRelay.with(extraYAML: Self.yaml("""
                      - id: events-of-a
                        url: http://127.0.0.1:\(eventsPort)/
                        appids: [wxaaaaaaaaaaaaaaaa]
                        events: ["event.*"]
                      - id: texts
                        url: http://127.0.0.1:\(textsPort)/
                        events: ["message.text"]
                    """)) { relay in
                    let reports = Reports()
                    try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                        _ = try await client.send(relay.eventPush(appid: "wxaaaaaaaaaaaaaaaa", event: "subscribe"))
                        _ = try await client.send(relay.eventPush(appid: "wxbbbbbbbbbbbbbbbb", event: "subscribe"))
                        _ = try await client.send(relay.textPush(appid: "wxaaaaaaaaaaaaaaaa", msgId: "1"))
                        _ = try await client.send(relay.textPush(appid: "wxbbbbbbbbbbbbbbbb", msgId: "2"))
                        _ = try await client.send(relay.ticketPush(ticket: "ticket@@@never-delivered"))
                        let done = try await reports.next(3)
                        #expect(done.filter { $0.subscriptionId == "events-of-a" }.count == 1)
                        #expect(done.filter { $0.subscriptionId == "texts" }.count == 2)
                    }
                    #expect(events.requests.count == 1 && events.requests[0].body.contains("\"appid\":\"wxaaaaaaaaaaaaaaaa\""))
                    #expect(texts.requests.count == 2 && texts.requests.allSatisfy { $0.body.contains("\"type\":\"message.text\"") })
                }
            }
        }
    }

    @Test func failTwiceThenSucceedRecordsThreeAttempts() async throws {
        try await TestReceiver.run(respond: { _, n in .init(status: n <= 2 ? 500 : 204) }) { receiver, port in
            try await TestRelay.with(extraYAML: Self.yaml("  - id: flaky\n    url: http://127.0.0.1:\(port)/")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush())
                    let attempts = try await reports.next(3, advancing: relay.clock, by: 1)  // past each retry (10 ms)
                    #expect(attempts.map(\.statusCode) == [500, 500, 204])
                    #expect(attempts.last?.verdict == .succeeded)
                }
                let delivery = try #require(try await relay.store.deliveries(DeliveryQuery()).first)
                #expect(delivery.status == .succeeded)
                #expect(delivery.attemptCount == 3)
                let recorded = try await relay.store.attempts(deliveryId: delivery.id)
                #expect(recorded.map(\.statusCode) == [500, 500, 204])
                #expect(recorded.allSatisfy { $0.durationMs >= 0 })
            }
        }
    }

    @Test func alwaysFailingIsDeadAfterTheSchedule() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 500) }) { receiver, port in
            try await TestRelay.with(extraYAML: Self.yaml("  - id: broken\n    url: http://127.0.0.1:\(port)/", schedule: "[5ms, 5ms]")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush())
                    let attempts = try await reports.next(3, advancing: relay.clock, by: 1)
                    #expect(attempts.map(\.verdict).last == .dead)
                }
                let delivery = try #require(try await relay.store.deliveries(DeliveryQuery()).first)
                #expect(delivery.status == .dead)
                #expect(try await relay.store.attempts(deliveryId: delivery.id).count == 3)
                #expect(relay.metrics.exposition().contains(#"relay_deliveries_total{subscription="broken",outcome="dead"} 1"#))
            }
        }
    }

    @Test func goneDisablesTheSubscriptionAndCancelsItsDeliveries() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 410) }) { receiver, port in
            try await TestRelay.with(extraYAML: Self.yaml("  - id: gone\n    url: http://127.0.0.1:\(port)/")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush(msgId: "1"))
                    #expect(try await reports.next(1).first?.verdict == .cancelled)
                    // Later events are not even queued for it.
                    _ = try await client.send(relay.textPush(msgId: "2"))
                }
                #expect(try await relay.store.subscription(id: "gone")?.status == .disabled)
                #expect(try await relay.store.deliveries(DeliveryQuery()).map(\.status) == [.cancelled])
                #expect(receiver.requests.count == 1)
            }
        }
    }

    @Test func retryAfterOn429IsHonoured() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 429, headers: ["Retry-After": "120"]) }) { _, port in
            try await TestRelay.with(extraYAML: Self.yaml("  - id: busy\n    url: http://127.0.0.1:\(port)/")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush())
                    let report = try #require(try await reports.next(1).first)
                    guard case .retry(let at) = report.verdict else {
                        Issue.record("expected a retry, got \(report.verdict)")
                        return
                    }
                    // The schedule says 10ms; the subscriber asked for two minutes.
                    #expect(at.timeIntervalSince(relay.clock.now()) >= 119)
                }
                #expect(try await relay.store.deliveries(DeliveryQuery()).first?.status == .failed)
            }
        }
    }

    @Test func timeoutIsAFailedAttempt() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 204, delay: .seconds(1)) }) { _, port in
            try await TestRelay.with(extraYAML: Self.yaml("  - id: slow\n    url: http://127.0.0.1:\(port)/", schedule: "[1h]", timeout: "200ms")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush())
                    let report = try #require(try await reports.next(1).first)
                    #expect(report.statusCode == nil)
                    #expect(report.error?.contains("timed out") == true)
                }
                let delivery = try #require(try await relay.store.deliveries(DeliveryQuery()).first)
                #expect(delivery.status == .failed)
                #expect(try await relay.store.attempts(deliveryId: delivery.id).first?.error?.contains("timed out") == true)
            }
        }
    }

    /// A subscriber that answers at once but never finishes its body (a byte every 20 ms, so no
    /// read timeout fires) is cut off by the attempt timeout too: the attempt fails and its slot
    /// is freed, rather than the delivery being held as long as the subscriber likes.
    @Test func anAnswerThatNeverEndsIsCutAtTheTimeout() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 200, body: "ok", trickles: true) }) { _, port in
            try await TestRelay.with(extraYAML: Self.yaml("  - id: trickle\n    url: http://127.0.0.1:\(port)/", schedule: "[1h]", timeout: "300ms")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush())
                    let report = try #require(try await reports.next(1).first)
                    #expect(report.verdict != .succeeded)
                    #expect(report.error?.contains("timed out") == true, "\(report)")
                }
            }
        }
    }

    @Test func aHangingSubscriberDoesNotDelayAnother() async throws {
        // The hanging subscriber holds every request for 5 s; the attempt timeout (3 s) ends them first.
        try await TestReceiver.run(respond: { _, _ in .init(delay: .seconds(5)) }) { _, hangingPort in
            try await TestReceiver.run { fast, fastPort in
                try await TestRelay.with(extraYAML: Self.yaml("""
                      - id: hanging
                        url: http://127.0.0.1:\(hangingPort)/
                      - id: fast
                        url: http://127.0.0.1:\(fastPort)/
                    """, timeout: "3s")) { relay in
                    let reports = Reports()
                    try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                        for i in 0..<5 { _ = try await client.send(relay.textPush(msgId: "\(i)")) }
                        // All five reach the fast subscriber while the hanging one still holds its requests.
                        let first = try await reports.next(5)
                        #expect(first.allSatisfy { $0.subscriptionId == "fast" && $0.verdict == .succeeded })
                        #expect(fast.requests.count == 5)
                    }
                }
            }
        }
    }

    /// Subscriptions on one host (or one address: URLs are resolved before connecting, so every
    /// name behind one ingress counts alike) do not wait for each other either. The outbound
    /// client's connection pool had a limit per host of max(8, max_in_flight): four hanging
    /// subscriptions with two requests each held all eight connections, and the fast one's
    /// requests queued behind them until the hanging ones timed out.
    @Test func aHangingSubscriberDoesNotDelayAnotherOnTheSameHost() async throws {
        try await TestReceiver.run(respond: { request, _ in request.path.hasPrefix("/hanging") ? .init(delay: .seconds(5)) : .init() }) { receiver, port in
            let hanging = (1...4).map { "  - id: hanging\($0)\n    url: http://127.0.0.1:\(port)/hanging\($0)\n    events: [message.text]" }
            let fast = "  - id: fast\n    url: http://127.0.0.1:\(port)/fast\n    events: [event.*]"
            try await TestRelay.with(extraYAML: Self.yaml((hanging + [fast]).joined(separator: "\n"), timeout: "3s")
                                     .replacingOccurrences(of: "delivery:\n", with: "delivery:\n  max_in_flight_per_subscription: 2\n")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    for i in 0..<2 { _ = try await client.send(relay.textPush(msgId: "\(i)")) }
                    _ = try await receiver.next(8)  // the hanging subscribers hold eight requests
                    _ = try await client.send(relay.eventPush())
                    // It reaches the fast subscriber while the hanging ones still hold theirs (3 s).
                    let first = try #require(try await reports.next(1).first)
                    #expect(first.subscriptionId == "fast" && first.verdict == .succeeded, "\(first)")
                }
            }
        }
    }

    /// An ordered subscription whose subscriber answers 500 the first time it gets the text
    /// `failing` and 204 otherwise; `body` pushes through `push(i)` (text "m<i>" from one user).
    /// Returns the texts the subscriber got, in the order it got them.
    static func orderedBot(failingOnce failing: String, schedule: String,
                           _ body: @Sendable (TestRelay, Reports, _ push: (Int) async throws -> Void) async throws -> Void) async throws -> [String] {
        let failed = FirstTime()
        return try await TestReceiver.run(respond: { request, _ in
            request.body.contains("\"Content\":\"\(failing)\"") && failed.first() ? .init(status: 500) : .init(status: 204)
        }) { receiver, port in
            try await TestRelay.with(extraYAML: Self.yaml("  - id: bot\n    url: http://127.0.0.1:\(port)/\n    ordered: true",
                                                          schedule: schedule)) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    try await body(relay, reports) { i in
                        _ = try await client.send(relay.textPush(content: "m\(i)", msgId: "\(i)", from: "oSameUser"))
                    }
                }
                return receiver.requests.compactMap { request -> String? in
                    guard let range = request.body.range(of: #""Content":"m\d+""#, options: .regularExpression) else { return nil }
                    return String(request.body[range].dropFirst(11).dropLast())
                }
            }
        }
    }

    @Test func orderedSubscriptionKeepsSendOrderWhenTheThirdFailsOnce() async throws {
        let contents = try await Self.orderedBot(failingOnce: "m3", schedule: "[20ms, 20ms, 20ms]") { relay, reports, push in
            for i in 1...10 { try await push(i) }
            _ = try await reports.next(11, advancing: relay.clock, by: 1)
        }
        #expect(contents == ["m1", "m2", "m3", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10"])
    }

    /// A user's backlog behind a failing first event is parked (its next attempt moved to the
    /// retry), and once that event is delivered each next one is due at once: the test's clock
    /// stands still after the retry, so a backlog left to wait for its bounds would never move.
    @Test func anOrderedBacklogParkedBehindAFailingEventFollowsItInOrder() async throws {
        let contents = try await Self.orderedBot(failingOnce: "m1", schedule: "[1h]") { relay, reports, push in
            try await push(1)
            #expect(try await reports.next(1).first?.statusCode == 500)
            for i in 2...40 { try await push(i) }
            relay.clock.advance(by: 60)
            try await push(41)
            // Past its retry (an hour, ±20 %): the claim that takes m1 parks the 40 waiting until its lease ends.
            relay.clock.advance(by: 4400)
            let delivered = try await reports.next(41)
            #expect(delivered.allSatisfy { $0.verdict == .succeeded })
        }
        #expect(contents == ["m1"] + (1...41).map { "m\($0)" })
    }

    @Test func localhostIsNeverReachedWhenPrivateNetworksAreRefused() async throws {
        try await TestReceiver.run { receiver, port in
            try await TestRelay.with(extraYAML: """
                delivery:
                  retry_schedule: [5ms]
                subscriptions:
                  - id: inside
                    url: http://localhost:\(port)/
                """) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush())
                    let attempts = try await reports.next(2, advancing: relay.clock, by: 1)
                    #expect(attempts.allSatisfy { $0.error?.contains("not a public address") == true })
                    #expect(attempts.last?.verdict == .dead)
                }
                #expect(receiver.requests.isEmpty)
            }
        }
    }
}

/// True the first time only.
final class FirstTime: Sendable {
    private let used = Mutex(false)
    func first() -> Bool {
        used.withLock { used in
            defer { used = true }
            return !used
        }
    }
}
