import ArgumentParser
import Foundation
import NIOCore
import RelayServer

/// `relay`: argument parsing only; the work lives in RelayServer.
@main
struct Relay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "WeChat Relay: receives WeChat's encrypted pushes, stores them durably and re-emits them as signed JSON webhooks.",
        subcommands: [Serve.self, Check.self, Push.self, Bench.self, OpenAPI.self, CopyStore.self, Backup.self])
}

/// Options every subcommand that reads `relay.yml` shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "Path of the configuration file.")
    var config: String = "relay.yml"

    /// The configuration, or an error that names the file and the key.
    func load() throws -> RelayConfig {
        do {
            return try RelayConfig.load(path: config)
        } catch {
            throw CommandFailure("\(config): \(error)")
        }
    }
}

/// A command that could not do what it was asked (a broken config file, a store that cannot be
/// opened, a port that is taken): printed as `Error: …` without the usage text ArgumentParser
/// adds after a `ValidationError`, which is about the command line.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension IOError {
    /// Binding the listening socket failed for a reason the user can act on: the port is taken,
    /// privileged, or the address is not this machine's.
    var isCannotListen: Bool { [EADDRINUSE, EACCES, EADDRNOTAVAIL].contains(errnoCode) }

    /// What `strerror` says of it ("Address already in use").
    var explanation: String { String(cString: strerror(errnoCode)) }
}
