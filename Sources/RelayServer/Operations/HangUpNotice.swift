import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// SIGHUP, which operators send out of habit to reload a configuration or reopen logs, killed the
/// relay on the spot (its default action): pushes in flight went unanswered and deliveries in
/// flight stayed claimed until the next start. The relay reads `relay.yml` when it starts and
/// logs to standard error, so there is nothing to reload or reopen: the signal is ignored and
/// the log says what to do instead. SIGTERM and SIGINT stop it gracefully.
struct HangUpNotice: Service {
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                logger.notice("SIGHUP ignored: relay.yml is read when the relay starts; restart it to apply a change (SIGTERM stops it gracefully)")
            }
        }
    }
}

extension RelayApplication {
    /// Runs `app` until SIGTERM or SIGINT (a graceful stop), SIGHUP ignored with a notice.
    public static func run(_ app: some ApplicationProtocol, logger: Logger) async throws {
        try await ServiceGroup(configuration: .init(services: [app, HangUpNotice(logger: logger)],
                                                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
    }
}
