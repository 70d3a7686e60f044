import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import RelayCore
import RelayServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the relay until SIGTERM or SIGINT.")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(help: "Log lines as text (key=value metadata) or as one JSON object per line.")
    var logFormat: LogFormat = .text

    func run() async throws {
        let (level, format) = (logLevel, logFormat)
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = format == .json ? JSONLogHandler.standardError(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "relay")
        let config = try options.load()
        logger.info("relay starting", metadata: config.startMetadata.mapValues { .string($0) })
        if let files = OpenFileLimit.raiseToHardLimit() {
            let metadata: Logger.Metadata = ["before": "\(files.before)", "now": "\(files.after)"]
            if files.after < OpenFileLimit.recommendedMinimum {
                logger.warning("""
                    open file limit is low: each push, reply call and delivery in flight holds a connection; \
                    raise the hard limit (LimitNOFILE= in a systemd unit, ulimit -Hn, --ulimit nofile= for Docker)
                    """, metadata: metadata)
            } else if files.after != files.before {
                logger.info("open file limit raised to the hard limit", metadata: metadata)
            }
        }
        var opened = false
        do {
            try await StoreFactory.withStore(config.storage, logger: logger) { store in
                opened = true
                let app = try await RelayApplication.build(config: config, dependencies: RelayDependencies(store: store, logger: logger))
                // Returns once every service has stopped (the server first), so nothing writes any more.
                try await RelayApplication.run(app, logger: logger)
            }
        } catch where !opened {
            throw CommandFailure("cannot open the store: \(error)")
        } catch let error as IOError where error.isCannotListen {
            // The only socket the relay binds; name the keys that choose it.
            logger.error("relay stopped: cannot listen", metadata: ["error": "\(error)"])
            throw CommandFailure("""
                server.host/server.port: cannot listen on \(config.server.host):\(config.server.port): \(error.explanation) \
                (another process has the port, or the address is not this machine's); change server.port or stop that process
                """)
        } catch let error as SocketAddressError.UnknownHost {
            logger.error("relay stopped: cannot listen", metadata: ["error": "\(error)"])
            throw CommandFailure("""
                server.host: cannot listen on \(config.server.host): \(error); use an address of this machine, \
                such as 0.0.0.0 (every interface) or 127.0.0.1
                """)
        } catch {
            logger.error("relay stopped with an error", metadata: ["error": "\(error)"])
            throw error
        }
        logger.info("relay stopped")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
