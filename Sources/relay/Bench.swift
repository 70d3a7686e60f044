import ArgumentParser
import Foundation
import NIOCore
import RelayBench
import WeChatXML

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure intake, delivery, end-to-end latency, crypto and memory, each against a baseline from the same run.",
        discussion: "Run it on a release build: swift run -c release relay bench")

    @Option(help: "Requests per intake and delivery run.") var requests = 20_000
    @Option(help: "Concurrent connections of the intake load.") var concurrency = 64
    @Option(help: "Undelivered events for the memory figure.") var backlog = 100_000
    @Option(help: "Offered pushes per second for the end-to-end run.") var rate = 1000
    @Option(help: "Where to write the JSON report.") var output = "bench.json"
    @Option(help: "Intake and delivery rounds, each alternating baseline and relay; medians are reported.") var rounds = 3
    @Option(help: "Run only these scenarios, comma-separated: crypto, intake, delivery, end_to_end, memory.")
    var only: String?
    @Option(help: "Measure the relay on PostgreSQL instead of SQLite: a server URL whose user may create databases (one per scenario, dropped afterwards).")
    var postgres: String?
    @Option(help: ArgumentHelp("Measure nothing: serve the intake ceiling (a bare handler answering `success`) on 127.0.0.1 at this port (0 picks one) until interrupted, to load it with wrk beside `relay serve`.", valueName: "port"))
    var serveCeiling: Int?

    func validate() throws {
        _ = try scenarios()
        if let serveCeiling, !(0...65535).contains(serveCeiling) {
            throw ValidationError("--serve-ceiling: \(serveCeiling) is not a port (0 to 65535; 0 picks a free one)")
        }
    }

    func scenarios() throws -> Set<Benchmark.Scenario> {
        guard let only else { return Set(Benchmark.Scenario.allCases) }
        return Set(try only.split(separator: ",").map { name in
            guard let scenario = Benchmark.Scenario(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--only: unknown scenario '\(name)'; choose from \(Benchmark.Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return scenario
        })
    }

    func run() async throws {
        if let serveCeiling {
            do {
                try await CeilingServer.run(port: serveCeiling) { port in
                    FileHandle.standardError.write(Data("intake ceiling listening on http://127.0.0.1:\(port) (port=\(port)); Ctrl-C stops it\n".utf8))
                }
            } catch let error as IOError where error.isCannotListen {
                throw CommandFailure("--serve-ceiling: cannot listen on 127.0.0.1:\(serveCeiling): \(error.explanation); choose another port, or 0 for a free one")
            }
            return
        }
        let report = try await Benchmark(options: .init(requests: requests, concurrency: concurrency, backlog: backlog, rate: rate,
                                                        scenarios: try scenarios(), rounds: rounds, postgresServer: postgres))
            .run { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        try (report.serialized + "\n").write(toFile: output, atomically: true, encoding: .utf8)
        print(BenchTable.render(report))
        print("wrote \(output)")
    }
}
