import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Latency samples and throughput of one run.
public struct LoadResult: Sendable {
    public let requests: Int
    public let failures: Int
    public let seconds: Double
    public let latencies: [Double]  // seconds, sorted
    /// CPU time the whole process used meanwhile (load generator and server alike).
    public var cpuSeconds: Double = 0

    public var perSecond: Double { Double(requests) / seconds }
    public var cpuMicrosPerRequest: Double { cpuSeconds * 1e6 / Double(max(requests, 1)) }
    public func percentile(_ p: Double) -> Double {
        guard !latencies.isEmpty else { return 0 }
        return latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]
    }
}

/// A closed-loop load generator: `concurrency` workers each send the next request as soon as the
/// previous one is answered, until `requests` have been sent.
enum LoadGenerator {
    static func run(client: HTTPClient, concurrency: Int, requests: [HTTPClientRequest],
                    expect: @escaping @Sendable (HTTPResponseStatus, ByteBuffer) -> Bool) async -> LoadResult {
        let started = ContinuousClock.now
        let cpuStarted = ProcessCPU.seconds()
        let next = Counter()
        let results = await withTaskGroup(of: ([Double], Int).self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var latencies: [Double] = [], failures = 0
                    while true {
                        let index = next.increment()
                        guard index < requests.count else { break }
                        let sent = ContinuousClock.now
                        do {
                            let response = try await client.execute(requests[index], timeout: .seconds(30))
                            let body = try await response.body.collect(upTo: 1 << 16)
                            if !expect(response.status, body) { failures += 1 }
                        } catch {
                            failures += 1
                        }
                        latencies.append((ContinuousClock.now - sent).seconds)
                    }
                    return (latencies, failures)
                }
            }
            return await group.reduce(into: [([Double], Int)]()) { $0.append($1) }
        }
        let seconds = (ContinuousClock.now - started).seconds
        return LoadResult(requests: requests.count, failures: results.map(\.1).reduce(0, +), seconds: seconds,
                          latencies: results.flatMap(\.0).sorted(), cpuSeconds: ProcessCPU.seconds() - cpuStarted)
    }
}

/// CPU time used by this process so far. Unlike throughput, it hardly moves when other tenants
/// of a shared machine take the cores, so CPU per request is the steadier comparison.
enum ProcessCPU {
    static func seconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// A shared counter for workers.
final class Counter: Sendable {
    private let value = Locked(0)
    /// Returns the value before incrementing.
    func increment() -> Int { value.withLock { v in defer { v += 1 }; return v } }
    var current: Int { value.withLock { $0 } }
}
