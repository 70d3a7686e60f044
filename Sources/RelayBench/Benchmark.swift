import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import RelayCore
import RelayServer
import RelayStore
import WeChatXML

/// `relay bench`: each figure with a baseline measured in the same run, reported as a ratio,
/// because the machine is shared and noisy.
public struct Benchmark: Sendable {
    public struct Options: Sendable {
        public var requests: Int
        public var concurrency: Int
        public var backlog: Int
        public var rate: Int
        public var scenarios: Set<Scenario>
        /// Intake and delivery alternate baseline and relay this many times and report medians,
        /// so a burst of noise from a neighbour moves one round, not the figure.
        public var rounds: Int
        /// A PostgreSQL server (`postgres://…`, a user that may create databases) to measure the
        /// relay on instead of SQLite; each scenario gets a database of its own.
        public var postgresServer: String?
        public init(requests: Int = 20_000, concurrency: Int = 64, backlog: Int = 100_000, rate: Int = 1000,
                    scenarios: Set<Scenario> = Set(Scenario.allCases), rounds: Int = 3, postgresServer: String? = nil) {
            self.postgresServer = postgresServer
            self.rounds = max(1, rounds)
            self.requests = requests
            self.concurrency = concurrency
            self.backlog = backlog
            self.rate = rate
            self.scenarios = scenarios
        }
    }

    /// The parts of the run, selectable with `--only` (to profile one of them, say).
    public enum Scenario: String, CaseIterable, Sendable {
        case crypto, intake, delivery, endToEnd = "end_to_end", memory
    }

    public let options: Options
    public init(options: Options) { self.options = options }

    /// Runs every scenario; returns the report as ordered JSON.
    public func run(log: @Sendable (String) -> Void) async throws -> JSONValue {
        var sections: [(String, JSONValue)] = []
        let run = options.scenarios
        let idle = residentMegabytes()
        if run.contains(.crypto) {
            log("crypto: verify + decrypt + parse of a 1 KB push on one core ...")
            sections.append(("crypto", crypto()))
        }
        if run.contains(.intake) {
            log("intake: \(options.rounds) × \(options.requests) encrypted pushes at concurrency \(options.concurrency), alternating with the baseline ...")
            sections.append(("intake", try await intakeScenario()))
        }
        let afterIntake = residentMegabytes()
        if run.contains(.delivery) {
            log("delivery: \(options.rounds) × \(options.requests) stored events to a local subscriber, alternating with the baseline ...")
            sections.append(("delivery", try await deliveryScenario()))
        }
        if run.contains(.endToEnd) {
            log("end to end: \(options.rate) pushes/s for 5 s ...")
            sections.append(("end_to_end", try await endToEndScenario()))
        }
        if run.contains(.memory) {
            log("memory: a backlog of \(options.backlog) undelivered events ...")
            let backlog = try await backlogMemory()
            sections.append(("memory_mb", .object([
                ("idle", .number(idle.rounded())), ("after_intake", .number(afterIntake.rounded())), ("with_backlog", .number(backlog.rounded())),
            ])))
        }
        return .object([("date", .string(Timestamp.iso8601(Date()))), ("cores", .number(Double(ProcessInfo.processInfo.activeProcessorCount))),
                        ("store", .string(options.postgresServer == nil ? "sqlite" : "postgres"))]
                       + sections)
    }

    // MARK: Crypto

    func crypto() -> JSONValue {
        let push = BenchSetup.push(msgId: 1, contentBytes: 1024)
        let config = try! BenchSetup.config(subscriberPort: nil)
        let verifier = PushVerifier(registry: config.credentials, maxClockSkew: 300, limits: .default, clock: SystemClock())
        let body = Array(push.body.utf8)
        let verified = try! verifier.verifyCallbackPush(appid: "wxbenchaccount0001", query: push.query, body: body)
        return .object([
            ("operations_per_second", .number(Self.perSecond {
                _ = try? verifier.verifyCallbackPush(appid: "wxbenchaccount0001", query: push.query, body: body)
            })),
            // What intake does next: the event (lossless JSON, dedup key, id).
            ("event_builds_per_second", .number(Self.perSecond {
                _ = EventBuilder.record(for: verified, id: EventID.make(at: verified.receivedAt), storeTicketEvent: false)
            })),
        ])
    }

    /// How many times `operation` runs per second on this thread, over two seconds.
    static func perSecond(_ operation: () -> Void) -> Double {
        var operations = 0
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(2) {
            for _ in 0..<100 { operation() }
            operations += 100
        }
        return (Double(operations) / (ContinuousClock.now - started).seconds).rounded()
    }

    // MARK: Intake

    func intakeScenario() async throws -> JSONValue {
        try await Self.withClient(options.concurrency) { client in try await intakeScenario(client) }
    }

    func intakeScenario(_ client: HTTPClient) async throws -> JSONValue {
        let expect: @Sendable (HTTPResponseStatus, ByteBuffer) -> Bool = { status, body in status == .ok && String(buffer: body) == "success" }
        let (ceilings, relays) = try await BenchSetup.withStore(postgresServer: options.postgresServer, subscriberPort: nil,
                                                                logger: quietLogger) { config, store in
            try await withServer({ bareIntakeServer(onListening: $0) }) { barePort in
                try await withServer({ onListening in
                    try await RelayApplication.build(config: config, dependencies: RelayDependencies(store: store, logger: quietLogger, onListening: onListening))
                }) { relayPort in
                    // Warm both up; the relay's warm-up pushes come back later as duplicates, so its store is not empty.
                    let warmUp = (0..<1000).map { BenchSetup.push(msgId: 900_000 + $0) }
                    _ = await LoadGenerator.run(client: client, concurrency: options.concurrency, requests: Self.requests(warmUp, barePort), expect: expect)
                    _ = await LoadGenerator.run(client: client, concurrency: options.concurrency, requests: Self.requests(warmUp, relayPort), expect: expect)
                    var ceilings: [LoadResult] = [], relays: [LoadResult] = []
                    for round in 0..<options.rounds {
                        // Every push of a round is new to the relay (a fresh MsgId), except a few repeats.
                        let pushes = (0..<options.requests).map { BenchSetup.push(msgId: 1_000_000 * (round + 1) + $0) }
                        ceilings.append(await LoadGenerator.run(client: client, concurrency: options.concurrency,
                                                                requests: Self.requests(pushes, barePort), expect: expect))
                        relays.append(await LoadGenerator.run(client: client, concurrency: options.concurrency,
                                                              requests: Self.requests(pushes.dropLast(100) + warmUp.prefix(100), relayPort), expect: expect))
                    }
                    return (ceilings, relays)
                }
            }
        }
        return Self.compare(relays, against: ceilings)
    }

    static func requests(_ pushes: some Sequence<ComposedPush>, _ port: Int) -> [HTTPClientRequest] {
        pushes.map { push in
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(push.uri)")
            request.method = .POST
            request.body = .bytes(ByteBuffer(string: push.body))
            return request
        }
    }

    /// Medians over the rounds: throughput, and the latency percentiles of the median round.
    static func compare(_ measured: [LoadResult], against ceiling: [LoadResult]) -> JSONValue {
        let relay = median(measured), base = median(ceiling)
        return .object([
            ("per_second", .number(relay.perSecond.rounded())), ("p50_ms", .number(ms(relay.percentile(0.5)))),
            ("p99_ms", .number(ms(relay.percentile(0.99)))), ("failures", .number(Double(measured.map(\.failures).reduce(0, +)))),
            ("ceiling_per_second", .number(base.perSecond.rounded())), ("ceiling_p50_ms", .number(ms(base.percentile(0.5)))),
            ("ceiling_p99_ms", .number(ms(base.percentile(0.99)))),
        ] + ratios(measured, ceiling) + cpuFigures(measured.map(\.cpuMicrosPerRequest), ceiling.map(\.cpuMicrosPerRequest)))
    }

    /// Each round's relay run against the baseline run just before it, and the median of those:
    /// a pair runs seconds apart on the same machine state, while the medians of the two series
    /// may come from moments when other tenants took different shares of the cores.
    static func ratios(_ measured: [LoadResult], _ ceiling: [LoadResult]) -> [(String, JSONValue)] {
        let rounds = roundRatios(measured, ceiling)
        return [("ratio", .number(median(rounds))), ("round_ratios", .array(rounds.map { .number($0) }))]
    }

    /// Each round's throughput against the baseline run beside it.
    static func roundRatios(_ measured: [LoadResult], _ ceiling: [LoadResult]) -> [Double] {
        zip(measured, ceiling).map { ratio($0.perSecond, $1.perSecond) }
    }

    /// CPU per request of the whole process, relay against ceiling: near what the throughput
    /// ratio would be if the cores were ours alone (medians over the rounds, the ratio per pair).
    static func cpuFigures(_ measured: [Double], _ ceiling: [Double]) -> [(String, JSONValue)] {
        let relay = median(measured), base = median(ceiling)
        return [
            ("cpu_us_per_request", .number((relay * 10).rounded() / 10)), ("ceiling_cpu_us_per_request", .number((base * 10).rounded() / 10)),
            ("cpu_ratio", .number(median(zip(measured, ceiling).map { ratio($1, $0) }))),
        ]
    }

    static func median(_ results: [LoadResult]) -> LoadResult {
        results.sorted { $0.perSecond < $1.perSecond }[results.count / 2]
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    static func ratio(_ measured: Double, _ ceiling: Double) -> Double {
        (measured / max(ceiling, 1) * 100).rounded() / 100
    }

    static func ms(_ seconds: Double) -> Double { (seconds * 10_000).rounded() / 10 }

    /// A client for the load, shut down afterwards.
    static func withClient<T: Sendable>(_ concurrency: Int, _ body: (HTTPClient) async throws -> T) async throws -> T {
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration(concurrency))
        do {
            let result = try await body(client)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    static func clientConfiguration(_ concurrency: Int) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = concurrency
        return configuration
    }

    // MARK: Delivery

    func deliveryScenario() async throws -> JSONValue {
        let subscriber = BenchSubscriber()
        return try await withServer({ subscriber.server(onListening: $0) }) { subscriberPort in
            var ceilings: [LoadResult] = [], relays: [LoadResult] = [], withStart: [LoadResult] = []
            for _ in 0..<options.rounds {
                let events = Self.deliveryEvents(options.requests)
                ceilings.append(try await deliveryCeiling(events, subscriberPort: subscriberPort))
                let round = try await deliveryRound(events, subscriberPort: subscriberPort)
                relays.append(round.steady)
                withStart.append(round.withStart)
            }
            let relay = Self.median(relays).perSecond, ceiling = Self.median(ceilings).perSecond
            let startMs = zip(withStart, relays).map { Self.ms($0.seconds - $1.seconds) }
            return .object([
                ("per_second", .number(relay.rounded())), ("ceiling_per_second", .number(ceiling.rounded())),
            ] + Self.ratios(relays, ceilings) + Self.cpuFigures(relays.map(\.cpuMicrosPerRequest), ceilings.map(\.cpuMicrosPerRequest)) + [
                ("start_to_first_ack_ms", .number(Self.median(startMs))),
                ("per_second_including_start", .number(Self.median(withStart).perSecond.rounded())),
                ("ratio_including_start", .number(Self.median(Self.roundRatios(withStart, ceilings)))),
            ])
        }
    }

    static func deliveryEvents(_ count: Int) -> [RelayEvent] {
        (0..<count).map { i in
            RelayEvent(id: EventID.make(at: Date()), type: "message.text", appid: "wxbenchaccount0001", componentAppid: BenchSetup.component,
                       receivedAt: Date(), dataJSON: #"{"MsgType":"text","Content":"bench","MsgId":"\#(i)"}"#,
                       dedupKey: "msg:\(i)", fromUser: "oBench\(i % 1000)")
        }
    }

    /// The same signed bodies posted with raw AsyncHTTPClient at the dispatcher's concurrency.
    func deliveryCeiling(_ events: [RelayEvent], subscriberPort: Int) async throws -> LoadResult {
        let requests: [HTTPClientRequest] = events.map { event in
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(subscriberPort)/hook")
            request.method = .POST
            let body = ByteBuffer(string: event.envelopeJSON)
            let timestamp = Int(Date().timeIntervalSince1970)
            request.headers.add(name: "webhook-id", value: event.id)
            request.headers.add(name: "webhook-timestamp", value: String(timestamp))
            request.headers.add(name: "webhook-signature", value: WebhookSigner.header(
                secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], id: event.id, timestamp: timestamp, body: body.readableBytesView))
            request.body = .bytes(body)
            return request
        }
        let concurrency = try BenchSetup.config(subscriberPort: subscriberPort).delivery.maxInFlightPerSubscription
        return try await Self.withClient(concurrency) { client in
            await LoadGenerator.run(client: client, concurrency: concurrency, requests: requests) { status, _ in status == .noContent }
        }
    }

    /// Events stored with their deliveries, then a relay started: events/s from its first
    /// acknowledgement to its last. What comes before the first — building the application,
    /// binding its port, its HTTP client's first connections, the first claim — is start-up, not
    /// delivery (the baseline's client is built outside its timing too); it is reported on its
    /// own, with the throughput that includes it.
    func deliveryRound(_ events: [RelayEvent], subscriberPort: Int) async throws -> (steady: LoadResult, withStart: LoadResult) {
        try await BenchSetup.withStore(postgresServer: options.postgresServer, subscriberPort: subscriberPort,
                                       logger: quietLogger) { config, store in
            let subscriptions = try await store.syncConfigSubscriptions(config.subscriptions.map {
                Subscription(id: $0.id, url: $0.url, source: .config, createdAt: Date(), secret: $0.secret ?? "")
            }, now: Date())
            try await Self.store(events, subscriptions: subscriptions, in: store, concurrency: 64)
            let delivered = Counter()
            let count = events.count
            let firstAck = Locked<(at: ContinuousClock.Instant, cpu: Double)?>(nil)
            let (done, finished) = AsyncStream.makeStream(of: Void.self)
            let started = ContinuousClock.now
            let cpuStarted = ProcessCPU.seconds()
            let (end, cpuEnd) = try await withServer({ onListening in
                try await RelayApplication.build(config: config, dependencies: RelayDependencies(
                    store: store, logger: quietLogger, onListening: onListening,
                    onDeliveryAttempt: { report in
                        guard report.verdict == .succeeded else { return }
                        let index = delivered.increment()
                        if index == 0 { firstAck.withLock { $0 = (ContinuousClock.now, ProcessCPU.seconds()) } }
                        if index + 1 == count { finished.yield() }
                    }))
            }) { _ in
                var iterator = done.makeAsyncIterator()
                await iterator.next()
                // Measured at the last acknowledgement, not after the relay has shut down.
                return (ContinuousClock.now, ProcessCPU.seconds())
            }
            guard let first = firstAck.withLock({ $0 }), count > 1 else { throw BenchError("no delivery was acknowledged") }
            return (LoadResult(requests: count - 1, failures: 0, seconds: (end - first.at).seconds, latencies: [], cpuSeconds: cpuEnd - first.cpu),
                    LoadResult(requests: count, failures: 0, seconds: (end - started).seconds, latencies: [], cpuSeconds: cpuEnd - cpuStarted))
        }
    }

    /// Commits events with their deliveries, as intake would, without HTTP.
    static func store(_ events: [RelayEvent], subscriptions: [Subscription], in store: any RelayStore, concurrency: Int) async throws {
        let next = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while true {
                        let index = next.increment()
                        guard index < events.count else { return }
                        let event = events[index]
                        _ = try await store.commit(IntakeRecord(event: event, ticket: nil,
                                                                deliveries: PlannedDelivery.plan(for: event, subscriptions: subscriptions)))
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    // MARK: End to end

    func endToEndScenario() async throws -> JSONValue {
        let subscriber = BenchSubscriber(recordArrivals: true)
        let total = options.rate * 5
        return try await withServer({ subscriber.server(onListening: $0) }) { subscriberPort in
            let sent = Locked<[String: ContinuousClock.Instant]>([:])
            try await BenchSetup.withStore(postgresServer: options.postgresServer, subscriberPort: subscriberPort,
                                           logger: quietLogger) { config, store in
                try await Self.withClient(256) { client in try await withServer({ onListening in
                    try await RelayApplication.build(config: config, dependencies: RelayDependencies(store: store, logger: quietLogger, onListening: onListening))
                }) { port in
                    let requests = Self.requests((0..<total).map { BenchSetup.push(msgId: 3_000_000 + $0) }, port)
                    let start = ContinuousClock.now
                    await withTaskGroup(of: Void.self) { group in
                        for (i, request) in requests.enumerated() {
                            try? await Task.sleep(until: start + .microseconds(Int64(i) * 1_000_000 / Int64(options.rate)))
                            group.addTask {
                                let msgId = String(3_000_000 + i)
                                let now = ContinuousClock.now
                                sent.withLock { $0[msgId] = now }
                                _ = try? await client.execute(request, timeout: .seconds(10))
                            }
                        }
                    }
                    // Wait (bounded) for the deliveries to drain.
                    let deadline = ContinuousClock.now + .seconds(30)
                    while subscriber.received.current < total, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
                } }
            }
            let arrivals = subscriber.arrivals.withLock { $0 }
            let sends = sent.withLock { $0 }
            let latencies = arrivals.compactMap { id, at in sends[id].map { (at - $0).seconds } }.sorted()
            let result = LoadResult(requests: latencies.count, failures: total - latencies.count, seconds: 5, latencies: latencies)
            return .object([
                ("offered_per_second", .number(Double(options.rate))), ("delivered", .number(Double(latencies.count))),
                ("p50_ms", .number(Self.ms(result.percentile(0.5)))), ("p99_ms", .number(Self.ms(result.percentile(0.99)))),
            ])
        }
    }

    // MARK: Memory

    /// RSS with a large backlog: the subscriber never answers, so everything stays queued.
    func backlogMemory() async throws -> Double {
        // Nothing listens on port 9.
        try await BenchSetup.withStore(postgresServer: options.postgresServer, subscriberPort: 9, logger: quietLogger) { config, store in
            let subscriptions = try await store.syncConfigSubscriptions(config.subscriptions.map {
                Subscription(id: $0.id, url: $0.url, source: .config, createdAt: Date(), secret: $0.secret ?? "")
            }, now: Date())
            let events = (0..<options.backlog).map { i in
                RelayEvent(id: EventID.make(at: Date()), type: "message.text", appid: "wxbenchaccount0001", componentAppid: nil, receivedAt: Date(),
                           dataJSON: #"{"MsgType":"text","MsgId":"\#(i)"}"#, dedupKey: "msg:\(i)", fromUser: nil)
            }
            try await Self.store(events, subscriptions: subscriptions, in: store, concurrency: 64)
            let rss = try await withServer({ onListening in
                try await RelayApplication.build(config: config, dependencies: RelayDependencies(store: store, logger: quietLogger, onListening: onListening))
            }) { _ in
                try? await Task.sleep(for: .seconds(2))
                return residentMegabytes()
            }
            return rss
        }
    }
}
