import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import RelayStore

/// `relay check --connect`: whether this machine can run the configuration, not only whether it
/// parses — the store opens (without changing it), WeChat's API answers, and each subscriber (in
/// `relay.yml`, and those made through the admin API, from the store) passes the egress rules and
/// answers. Nothing is stored or delivered.
public enum Preflight {
    /// One thing looked at: the key of `relay.yml` it comes from, and what was found.
    public struct Finding: Sendable, CustomStringConvertible {
        public let key: String
        public let ok: Bool
        public let detail: String

        public var description: String { "\(ok ? "ok    " : "FAILED") \(key): \(detail)" }
    }

    /// Each check waits this long at most.
    public static let timeout: Duration = .seconds(5)

    public static func run(_ config: RelayConfig, logger: Logger) async -> [Finding] {
        let (storeFinding, stored) = await store(config.storage, logger: logger)
        var findings = [storeFinding]
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .init(timeout), read: .init(timeout)))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        findings.append(await reach("wechat.api_base", config.wechat.apiBase, method: .GET, client: client))
        let egress = EgressGuard(allowPrivateNetworks: config.delivery.allowPrivateNetworks)
        let subscribers = config.subscriptions.enumerated().map { ("subscriptions[\($0)] (\($1.id))", $1.url) }
            + stored.map { ("subscription \($0.id) (admin API)", $0.url) }
        for (key, url) in subscribers {
            do {
                let destination = try await egress.destination(url, by: .now + timeout)
                // HEAD: a subscriber gets no event, only a request it may refuse (405 is an answer too).
                findings.append(await reach(key, destination.url, hostHeader: destination.hostHeader, method: .HEAD, client: client))
            } catch {
                findings.append(Finding(key: key, ok: false, detail: "\(url): \(error)"))
            }
        }
        try? await client.shutdown()
        return findings
    }

    /// The store's finding, and the enabled subscriptions made through the admin API in it.
    static func store(_ storage: RelayConfig.Storage, logger: Logger) async -> (Finding, [(id: String, url: String)]) {
        do {
            let report = switch storage.url {
            case .sqlite(let path): try StoreInspection.sqlite(path: path)
            case .postgres(let url): try await StoreInspection.postgres(try PostgresURL(url), timeout: timeout, logger: logger)
            }
            return (Finding(key: "storage.url", ok: true, detail: report.description), report.apiSubscriptions)
        } catch {
            return (Finding(key: "storage.url", ok: false, detail: "\(error)"), [])
        }
    }

    /// Any HTTP answer means the other end is reachable; only a failure to get one fails.
    static func reach(_ key: String, _ url: String, hostHeader: String? = nil, method: HTTPMethod, client: HTTPClient) async -> Finding {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let hostHeader { request.headers.replaceOrAdd(name: "Host", value: hostHeader) }
        let started = ContinuousClock.now
        do {
            let response = try await client.execute(request, timeout: .init(timeout))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            return Finding(key: key, ok: true, detail: "\(url) answers (HTTP \(response.status.code) in \((ContinuousClock.now - started).milliseconds) ms)")
        } catch {
            return Finding(key: key, ok: false, detail: "\(url): \(OutboundError.describe(error))")
        }
    }
}
