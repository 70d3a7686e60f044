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

    public init(store: any RelayStore, clock: any RelayClock = SystemClock(), metrics: RelayMetrics = RelayMetrics(),
                logger: Logger, onListening: @escaping @Sendable (Int) async -> Void = { _ in }) {
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.onListening = onListening
    }
}

/// The one builder that wires the relay: routes, services and their order. `relay serve` and the
/// tests both call it.
public enum RelayApplication {
    public static func build(config: RelayConfig, dependencies: RelayDependencies) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        let verifier = PushVerifier(
            registry: config.credentials, maxClockSkew: Double(config.wechat.maxClockSkew.components.seconds),
            limits: .init(maxBytes: config.server.maxBodyBytes), clock: dependencies.clock)
        let intake = PushIntake(
            store: dependencies.store,
            storeTicketEvents: config.subscriptions.contains { $0.events.contains(EventType.verifyTicket) })
        IntakeRoutes(verifier: verifier, intake: intake, metrics: dependencies.metrics, maxBodyBytes: config.server.maxBodyBytes)
            .register(on: router)
        OperationsRoutes(store: dependencies.store, metrics: dependencies.metrics).register(on: router)

        let retention = RetentionService(store: dependencies.store, retention: config.storage.retention,
                                        clock: dependencies.clock, logger: dependencies.logger)
        let onListening = dependencies.onListening
        let logger = dependencies.logger
        return Application(
            router: router,
            configuration: .init(address: .hostname(config.server.host, port: config.server.port), serverName: "wechat-relay"),
            services: [retention],
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("relay listening", metadata: ["host": .string(config.server.host), "port": "\(port)"])
                await onListening(port)
            },
            logger: dependencies.logger)
    }
}
