import ArgumentParser
import Logging
import RelayServer

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a configuration and print a summary without secrets; exits non-zero naming the bad key.",
        discussion: """
            With --connect it also checks, without changing or sending anything, that this machine can run it: the store \
            opens (its schema not newer than this relay's), wechat.api_base answers, and each subscriber (in the file, and \
            those made through the admin API, from the store) passes the egress rules and answers a HEAD request.
            """)

    @OptionGroup var options: ConfigOptions

    @Flag(help: "Also try the store, WeChat's API and the subscribers from this machine.")
    var connect = false

    func run() async throws {
        let config: RelayConfig
        do {
            config = try RelayConfig.load(path: options.config)
            print(config.summary)
        } catch {
            print("\(options.config): \(error)")
            throw ExitCode(1)
        }
        guard connect else { return }
        print("")
        let findings = await Preflight.run(config, logger: Logger(label: "relay") { _ in SwiftLogNoOpLogHandler() })
        findings.forEach { print($0) }
        let failed = findings.filter { !$0.ok }
        guard failed.isEmpty else {
            print("\(failed.count) of \(findings.count) checks failed: \(failed.map(\.key).joined(separator: ", "))")
            throw ExitCode(1)
        }
        print("every check passed")
    }
}
