import ArgumentParser
import RelayServer

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a configuration and print a summary without secrets; exits non-zero naming the bad key.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        do {
            let config = try RelayConfig.load(path: options.config)
            print(config.summary)
        } catch {
            print("\(options.config): \(error)")
            throw ExitCode(1)
        }
    }
}
