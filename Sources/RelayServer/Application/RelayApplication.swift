import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import RelayCore
import ServiceLifecycle
import WeChatXML

/// What the application is built from. Tests pass their own store, clock and metrics; `relay
/// serve` passes the real ones. Nothing else is global.
public struct RelayDependencies: Sendable {
    public var store: any RelayStore
    public var clock: any RelayClock
    public var metrics: RelayMetrics
    public var logger: Logger
    /// Called with the bound port once the server listens (port 0 picks a free one).
    public var onListening: @Sendable (Int) async -> Void
    /// Called after every delivery attempt (tests wait on it instead of sleeping).
    public var onDeliveryAttempt: @Sendable (DeliveryReport) -> Void
    /// How often the dispatcher reloads the subscriptions without being told of a change (tests
    /// that must see an announcement at work make it long).
    public var subscriptionReloadInterval: Duration = .seconds(10)
    /// Lines that come at a sender's rate are logged once per this many seconds per reason (tests
    /// whose clock runs with real time make it long, and move the clock on by hand).
    public var logThrottleInterval: TimeInterval = 1

    public init(store: any RelayStore, clock: any RelayClock = SystemClock(), metrics: RelayMetrics = RelayMetrics(),
                logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in },
                onDeliveryAttempt: @escaping @Sendable (DeliveryReport) -> Void = { _ in }) {
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.onListening = onListening
        self.onDeliveryAttempt = onDeliveryAttempt
    }
}

/// The one builder that wires the relay: routes, services and their order. `relay serve` and the
/// tests both call it.
public enum RelayApplication {
    public static func build(config: RelayConfig, dependencies: RelayDependencies) async throws -> some ApplicationProtocol {
        let parts = try await parts(config: config, dependencies: dependencies)
        let onListening = dependencies.onListening
        let logger = dependencies.logger
        return Application(
            router: parts.router,
            server: .http1(configuration: .init(
                additionalChannelHandlers: [RequestBodyTimeoutHandler(timeout: .nanoseconds(config.server.bodyTimeout.nanoseconds))],
                idleTimeout: .nanoseconds(config.server.idleTimeout.nanoseconds))),
            configuration: .init(address: .hostname(config.server.host, port: config.server.port), serverName: "wechat-relay"),
            services: parts.services,
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("relay listening", metadata: ["host": .string(config.server.host), "port": "\(port)"])
                await onListening(port)
            },
            logger: dependencies.logger)
    }

    /// The routes and the services, not yet assembled. The services own `httpClient` (its
    /// service shuts it down); whoever builds the parts without running them shuts it down.
    struct Parts {
        let router: Router<RelayRequestContext>
        let services: [any Service]
        let httpClient: HTTPClient
    }

    static func parts(config: RelayConfig, dependencies: RelayDependencies) async throws -> Parts {
        let router = Router(context: RelayRequestContext.self, options: .autoGenerateHeadEndpoints)
        let store = dependencies.store
        let registry = SubscriptionRegistry(try await store.syncConfigSubscriptions(
            config.subscriptions.map { $0.subscription(createdAt: dependencies.clock.now()) }, now: dependencies.clock.now()))
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: outboundConfiguration(config.delivery))
        // Lines that come at a sender's rate (refused pushes, a down bot, unsealed callbacks, a
        // store that cannot write…).
        let throttle = LogThrottle(interval: dependencies.logThrottleInterval, clock: dependencies.clock)
        let dispatcher = Dispatcher(
            store: store, registry: registry,
            sender: WebhookSender(client: httpClient, timeout: config.delivery.timeout,
                                  egress: EgressGuard(allowPrivateNetworks: config.delivery.allowPrivateNetworks)),
            policy: RetryPolicy(schedule: config.delivery.retrySchedule), clock: dependencies.clock, metrics: dependencies.metrics,
            logger: dependencies.logger, maxInFlightPerSubscription: config.delivery.maxInFlightPerSubscription,
            circuitBreaker: config.delivery.circuitBreaker,
            reloadInterval: dependencies.subscriptionReloadInterval, throttle: throttle, onFinished: dependencies.onDeliveryAttempt)
        let verifier = PushVerifier(
            registry: config.credentials, maxClockSkew: Double(config.wechat.maxClockSkew.components.seconds),
            limits: .init(maxBytes: config.server.maxBodyBytes), clock: dependencies.clock)
        let api = WeChatAPIClient(client: httpClient, baseURL: config.wechat.apiBase, metrics: dependencies.metrics)
        let tokens = TokenService(store: store, tickets: store, api: api, components: config.wechat.components.map(\.credentials),
                                  clock: dependencies.clock, metrics: dependencies.metrics, logger: dependencies.logger)
        let authorization = AuthorizationService(tokens: tokens, store: store, api: api, registry: registry, clock: dependencies.clock,
                                                 logger: dependencies.logger) { dispatcher.notify(subscriptionIds: $0) }
        let links = AuthLinkBuilder(authorization: authorization, publicURL: config.server.publicURL)
        let followUps = AuthorizationFollowUps(authorization: authorization, logger: dependencies.logger)
        let intake = PushIntake(store: store, registry: registry, deliveriesCreated: { dispatcher.notify(subscriptionIds: $0) },
                                followUps: followUps)
        let releaseTestWorker = ReleaseTestWorker(authorization: authorization, logger: dependencies.logger)
        let replies = ReplyService(
            registry: registry, sender: dispatcher.sender, deadline: config.reply.deadline,
            releaseTest: ReleaseTest(enabled: config.reply.releaseTest, extraAccounts: config.reply.releaseTestAccounts),
            worker: releaseTestWorker, clock: dependencies.clock, metrics: dependencies.metrics, logger: dependencies.logger,
            throttle: throttle)
        IntakeRoutes(verifier: verifier, intake: intake, metrics: dependencies.metrics, maxBodyBytes: config.server.maxBodyBytes,
                     replies: replies, throttle: throttle).register(on: router)
        OperationsRoutes(store: dependencies.store, metrics: dependencies.metrics, clock: dependencies.clock,
                         components: config.wechat.components.map(\.appid), registry: registry,
                         startedAt: dependencies.clock.now()).register(on: router)
        // What people and internal services call takes ids, cursors and codes from the URL; the
        // WeChat-facing routes read nothing from it that reaches the store, and stay unchecked.
        let checked = router.group().add(middleware: ControlCharacterMiddleware()).add(middleware: AdminAuditMiddleware(refusals: throttle))
        let admin = checked.group("v1").add(middleware: AdminAuthMiddleware(token: config.admin.token))
        SubscriptionRoutes(store: store, registry: registry, dispatcher: dispatcher, egress: dispatcher.sender.egress,
                           clock: dependencies.clock).register(on: admin)
        EventRoutes(store: store, dispatcher: dispatcher, clock: dependencies.clock).register(on: admin)
        AuthorizationRoutes(authorization: authorization, links: links, store: store, clock: dependencies.clock).register(on: admin)
        ProxyRoutes(tokens: tokens, api: api).register(on: admin)
        OpenAPIDocument.register(on: admin)
        let (perMinute, perClient) = (config.onboarding.linksPerMinute, config.onboarding.linksPerClientPerMinute)
        let clients = ClientAddress(trustedProxies: config.server.trustedProxies)
        OnboardingRoutes(links: links, authorization: authorization, returnToAllowList: config.onboarding.returnTo, refusals: throttle,
                         clicks: Budget(node: perMinute > 0 ? TokenBucket(burst: perMinute, interval: 60 / Double(perMinute)) : nil,
                                        perClient: perClient > 0 ? ClientBuckets(burst: perClient, interval: 60 / Double(perClient)) : nil),
                         clients: clients)
            .register(on: checked)
        DashboardRoutes(store: store, dispatcher: dispatcher, clock: dependencies.clock, adminToken: config.admin.token,
                        components: config.wechat.components.map(\.appid),
                        secureCookie: config.server.publicURL.lowercased().hasPrefix("https://"),
                        clients: clients, refusals: throttle).register(on: checked)
        AdminFallbacks.register(on: router, adminToken: config.admin.token)  // last: it reads the routes above

        let retention = RetentionService(store: dependencies.store, retention: config.storage.retention,
                                        clock: dependencies.clock, logger: dependencies.logger)
        return Parts(router: router,
                     services: [HTTPClientService(client: httpClient), retention, dispatcher,
                                TokenRefreshService(authorization: authorization, logger: dependencies.logger), releaseTestWorker, followUps],
                     httpClient: httpClient)
    }
}

extension RelayApplication {
    /// The outbound client: no redirects (a subscriber cannot bounce the relay elsewhere), and no
    /// limit of its own on connections per host that could bind before the dispatcher's.
    static func outboundConfiguration(_ delivery: RelayConfig.Delivery) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .milliseconds(Int64(min(delivery.timeout, .seconds(5)).milliseconds)))
        // By default AsyncHTTPClient retries a refused connection with backoff until the request's
        // deadline, so a subscriber that is down held a slot for the whole attempt timeout and its
        // attempt failed only then. Refused is final for this attempt; the retry schedule decides
        // when to try again.
        configuration.connectionPool.retryConnectionEstablishment = false
        // The dispatcher bounds what is in flight, per subscription. A pool limit per host (it was
        // max(8, max_in_flight)) made subscriptions sharing a host — or an address, as URLs are
        // resolved before connecting — wait for each other, a hanging one holding up the rest.
        // 65,536 is never reached: one destination runs out of ephemeral ports first.
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 65_536
        return configuration
    }
}

extension RelayConfig.Subscription {
    /// The stored form of a config subscription (an empty secret is generated once by the store).
    func subscription(createdAt: Date) -> RelayCore.Subscription {
        RelayCore.Subscription(id: id, url: url, appids: appids, events: events, reply: reply, ordered: ordered,
                               status: .enabled, source: .config, createdAt: createdAt, secret: secret ?? "")
    }
}
