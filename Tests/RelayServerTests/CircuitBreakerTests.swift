import Foundation
import HummingbirdTesting
import Logging
import RelayCore
@testable import RelayServer
import RelayTestSupport
import Synchronization
import Testing

/// A subscriber that keeps failing gets one delivery at a time (a probe); the rest wait without
/// spending their attempts, and go out at full rate once a probe is delivered.
@Suite(.timeLimit(.minutes(1))) struct CircuitBreakerTests {
    static let start = Date(timeIntervalSince1970: 1_790_000_000)

    @Test func opensAfterTheFailuresInARowAndOnlyTheProbesFailureMovesTheNextProbe() {
        var policy = CircuitBreakerPolicy()
        (policy.failures, policy.probe, policy.maxProbe) = (3, .seconds(1), .seconds(3))
        let breaker = CircuitBreaker(policy)
        #expect(breaker.failed("d1", now: Self.start) == .none)
        #expect(breaker.succeeded() == .none)  // a success ends the run
        #expect(breaker.failed("d1", now: Self.start) == .none)
        #expect(breaker.failed("d2", now: Self.start) == .none)
        #expect(breaker.untilProbe(now: Self.start) == nil)
        #expect(breaker.failed("d3", now: Self.start) == .opened)
        #expect(breaker.untilProbe(now: Self.start) == 1)
        // An attempt that was out when it opened fails without moving the probe.
        #expect(breaker.failed("d4", now: Self.start.addingTimeInterval(0.5)) == .none)
        #expect(breaker.untilProbe(now: Self.start.addingTimeInterval(1)) == 0)
        breaker.sendingProbe("d5")
        #expect(breaker.untilProbe(now: Self.start.addingTimeInterval(9)) == nil)  // the probe's answer decides
        #expect(breaker.failed("d5", now: Self.start.addingTimeInterval(1)) == .none)
        #expect(breaker.untilProbe(now: Self.start.addingTimeInterval(1)) == 2)  // the wait doubled
        breaker.sendingProbe("d6")
        _ = breaker.failed("d6", now: Self.start.addingTimeInterval(3))
        #expect(breaker.untilProbe(now: Self.start.addingTimeInterval(3)) == 3)  // at most maxProbe
        breaker.sendingProbe("d7")
        #expect(breaker.succeeded() == .closed)
        #expect(!breaker.isOpen && breaker.failuresInARow == 0)
        // Closed, it starts over from the first wait.
        for id in ["e1", "e2"] { _ = breaker.failed(id, now: Self.start) }
        #expect(breaker.failed("e3", now: Self.start) == .opened)
        #expect(breaker.untilProbe(now: Self.start) == 1)
    }

    /// A subscriber that answers 429 or 503 with `Retry-After` gets no probe before then.
    @Test func theProbeWaitsForRetryAfter() {
        var policy = CircuitBreakerPolicy()
        (policy.failures, policy.probe) = (2, .seconds(1))
        let breaker = CircuitBreaker(policy)
        _ = breaker.failed("d1", now: Self.start, notBefore: Self.start.addingTimeInterval(120))  // closed: its own retry says it
        #expect(breaker.failed("d2", now: Self.start, notBefore: Self.start.addingTimeInterval(120)) == .opened)
        #expect(breaker.untilProbe(now: Self.start) == 120)
        breaker.sendingProbe("d3")
        _ = breaker.failed("d3", now: Self.start.addingTimeInterval(120), notBefore: Self.start.addingTimeInterval(125))
        #expect(breaker.untilProbe(now: Self.start.addingTimeInterval(120)) == 5)  // the doubled wait (2 s) is shorter
        breaker.sendingProbe("d4")
        _ = breaker.failed("d4", now: Self.start.addingTimeInterval(125), notBefore: nil)
        #expect(breaker.untilProbe(now: Self.start.addingTimeInterval(125)) == 4)
    }

    @Test func zeroFailuresNeverOpens() {
        var policy = CircuitBreakerPolicy()
        policy.failures = 0
        let breaker = CircuitBreaker(policy)
        for i in 0..<100 { #expect(breaker.failed("d\(i)", now: Self.start) == .none) }
        #expect(!breaker.isOpen)
    }

    /// A subscriber that answers 503 (after `failingFor`) until the test sets `up`, then 204, and a
    /// relay with one subscription to it: `count` pushes from distinct users are sent, then `body`
    /// runs. Returns the number of requests the subscriber received.
    static func failingSubscriber(count: Int, maxInFlight: Int, breaker: String, failingFor delay: Duration = .zero,
                                  _ body: @Sendable (_ relay: TestRelay, Reports, CapturedLogs, _ up: Locked<Bool>) async throws -> Void)
        async throws -> Int {
        let up = Locked(false)
        return try await TestReceiver.run(respond: { _, _ in up.value ? .init(status: 204) : .init(status: 503, delay: delay) }) { receiver, port in
            try await TestRelay.with(extraYAML: """
                delivery:
                  retry_schedule: [1d]
                  max_in_flight_per_subscription: \(maxInFlight)
                  allow_private_networks: true
                  circuit_breaker: \(breaker)
                subscriptions:
                  - id: crm
                    url: http://127.0.0.1:\(port)/
                """) { relay in
                let reports = Reports()
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }, onDeliveryAttempt: reports.hook)
                    .test(.router) { client async throws in
                    for i in 0..<count { _ = try await client.send(relay.textPush(content: "m\(i)", msgId: "\(900 + i)", from: "oUser\(i)")) }
                    try await body(relay, reports, logs, up)
                }
                return receiver.requests.count
            }
        }
    }

    /// Over HTTP, with the test's clock standing still between probes (their waits are long, and
    /// the clock is moved on by hand): five failures open the breaker and the fifteen events not
    /// yet tried wait; one probe fails; the next is delivered, and the rest follow it, each of the
    /// fourteen on its first attempt.
    @Test func aFailingSubscriberGetsOneProbeAtATimeAndTheRestFollowItsRecovery() async throws {
        let requests = try await Self.failingSubscriber(count: 20, maxInFlight: 1, breaker: "{failures: 5, probe: 10m, max_probe: 1h}") {
            relay, reports, logs, up in
            let failures = try await reports.next(5)
            try await logs.line(containing: "subscriber keeps failing")
            #expect(failures.allSatisfy { $0.statusCode == 503 })
            #expect(relay.metrics.exposition().contains(#"relay_subscription_circuit_open{subscription="crm"} 1"#))

            relay.clock.advance(by: 600)  // the first probe
            #expect(try await reports.next(1).first?.statusCode == 503)
            up.withLock { $0 = true }
            relay.clock.advance(by: 1200)  // the second probe: the wait doubled
            let delivered = try await reports.next(14)
            #expect(delivered.allSatisfy { $0.verdict == .succeeded })
            try await logs.line(containing: "subscriber is back")
            #expect(relay.metrics.exposition().contains(#"relay_subscription_circuit_open{subscription="crm"} 0"#))
            // Those that waited spent no attempt while the subscriber was down.
            for report in delivered {
                #expect(try await relay.store.attempts(deliveryId: report.deliveryId).count == 1)
            }
            #expect(Set(delivered.map(\.deliveryId)).isDisjoint(with: failures.map(\.deliveryId)))
        }
        #expect(requests == 20)
    }

    /// With four in flight and eight claimed, the breaker opening gives the claimed-and-waiting
    /// back unsent: only the attempts already out when it opened fail after it. (The subscriber
    /// takes 50 ms to fail, so the pushes are all in and the queue full by then; the probe's
    /// wait, 10 s, is moved on by hand.)
    @Test func openingGivesBackWhatWasClaimedAndNotYetSent() async throws {
        let requests = try await Self.failingSubscriber(count: 40, maxInFlight: 4, breaker: "{failures: 5, probe: 10s}",
                                                        failingFor: .milliseconds(50)) { relay, reports, logs, up in
            try await logs.line(containing: "subscriber keeps failing")
            up.withLock { $0 = true }
            // Within the claims' leases: an attempt out when the breaker opened is not taken
            // again while its failure is being recorded.
            relay.clock.advance(by: 10)
            var (failed, delivered) = ([DeliveryReport](), [DeliveryReport]())
            while failed.count + delivered.count < 40 {
                let report = try #require(try await reports.next(1).first)
                if report.verdict == .succeeded { delivered.append(report) } else { failed.append(report) }
            }
            // Five opened it, and three more were out then; the rest waiting were given back.
            // (The fifth failure is counted before its slot is given back, or the slot would
            // send one more.)
            #expect((5...8).contains(failed.count), "\(failed.count) failed")
            for report in delivered {
                #expect(try await relay.store.attempts(deliveryId: report.deliveryId).count == 1)
            }
        }
        #expect(requests == 40)
    }

    /// A failing subscription whose URL is changed through the admin API goes on at once with the
    /// new URL, instead of at its next probe (ten minutes here).
    @Test func changingTheURLClosesTheBreaker() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 503) }) { _, failingPort in
            try await TestReceiver.run { fixed, fixedPort in
                try await TestRelay.with(extraYAML: """
                    admin:
                      token: \(AdminAPITests.token)
                    delivery:
                      retry_schedule: [1d]
                      max_in_flight_per_subscription: 1
                      allow_private_networks: true
                      circuit_breaker: {failures: 3, probe: 10m}
                    """) { relay in
                    let logs = CapturedLogs()
                    try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }).test(.router) { client async throws in
                        let created = try await AdminAPITests.call(client, .post, "/v1/subscriptions",
                                                                   json: #"{"id": "bot", "url": "http://127.0.0.1:\#(failingPort)/"}"#)
                        #expect(created.status == 201)
                        for i in 0..<10 { _ = try await client.send(relay.textPush(content: "m\(i)", msgId: "\(990 + i)", from: "oUser\(i)")) }
                        try await logs.line(containing: "subscriber keeps failing")
                        let patched = try await AdminAPITests.call(client, .patch, "/v1/subscriptions/bot",
                                                                   json: #"{"url": "http://127.0.0.1:\#(fixedPort)/"}"#)
                        #expect(patched.status == 200)
                        #expect(try await fixed.next(7).count == 7)
                        try await logs.line(containing: "subscription URL changed")
                        #expect(relay.metrics.exposition().contains(#"relay_subscription_circuit_open{subscription="bot"} 0"#))
                    }
                }
            }
        }
    }

    /// An open breaker shows in the admin API and on the dashboard; a subscription deleted while
    /// its breaker is open leaves the gauge at 0, so an alert on it stops.
    @Test func anOpenBreakerIsShownAndItsGaugeClearedWithItsSubscription() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 503) }) { _, port in
            try await TestRelay.with(extraYAML: """
                admin:
                  token: \(AdminAPITests.token)
                delivery:
                  retry_schedule: [1d]
                  allow_private_networks: true
                  circuit_breaker: {failures: 3, probe: 10m}
                """) { relay in
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler(level: .debug) }).test(.router) { client async throws in
                    _ = try await AdminAPITests.call(client, .post, "/v1/subscriptions", json: #"{"id": "bot", "url": "http://127.0.0.1:\#(port)/"}"#)
                    for i in 0..<5 { _ = try await client.send(relay.textPush(content: "m\(i)", msgId: "\(980 + i)", from: "oUser\(i)")) }
                    try await logs.line(containing: "subscriber keeps failing")
                    let open = #"relay_subscription_circuit_open{subscription="bot"} "#
                    #expect(relay.metrics.exposition().contains(open + "1"))
                    let shown = try await AdminAPITests.call(client, .get, "/v1/subscriptions/bot")
                    let circuit = try #require(shown.body["circuit"] as? [String: Any])
                    #expect(circuit["open"] as? Bool == true)
                    #expect(circuit["failed_in_a_row"] as? Int ?? 0 >= 3)
                    #expect((circuit["next_probe_at"] as? String)?.hasSuffix("Z") == true)
                    let page = try await client.execute(uri: "/dashboard", method: .get,
                                                        headers: [.authorization: "Bearer \(AdminAPITests.token)"]) { String(buffer: $0.body) }
                    #expect(page.contains("failing ("), "\(page)")
                    #expect(try await AdminAPITests.call(client, .delete, "/v1/subscriptions/bot").status == 204)
                    try await logs.line(containing: "circuit gauge cleared")
                    #expect(relay.metrics.exposition().contains(open + "0"))
                }
            }
        }
    }

    /// Over HTTP: a subscriber answering 429 with `Retry-After: 3600` opens the breaker with its
    /// first probe an hour away, not a second.
    @Test func aRateLimitingSubscribersRetryAfterSetsTheFirstProbe() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 429, headers: ["Retry-After": "3600"]) }) { _, port in
            try await TestRelay.with(extraYAML: """
                delivery:
                  allow_private_networks: true
                  circuit_breaker: {failures: 2}
                subscriptions:
                  - id: limited
                    url: http://127.0.0.1:\(port)/
                """) { relay in
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }).test(.router) { client async throws in
                    for i in 0..<4 { _ = try await client.send(relay.textPush(content: "m\(i)", msgId: "\(970 + i)", from: "oUser\(i)")) }
                    let opened = try await logs.line(containing: "subscriber keeps failing")
                    #expect(opened.contains("first_probe_in=3600s"), "\(opened)")
                }
            }
        }
    }
}
