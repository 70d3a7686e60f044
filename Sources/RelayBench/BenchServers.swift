import Foundation
import Hummingbird
import Logging
import NIOCore
import RelayCore
import RelayServer
import RelayStore
import ServiceLifecycle
import WeChatCrypto

/// Runs a Hummingbird application in this process for the duration of `body`, which gets its port.
func withServer<App: ApplicationProtocol, T: Sendable>(
    _ make: (@escaping @Sendable (Int) async -> Void) async throws -> App, _ body: (Int) async throws -> T
) async throws -> T {
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    let app = try await make { continuation.yield($0) }
    let group = ServiceGroup(configuration: .init(services: [app], logger: quietLogger))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw BenchError("server did not start") }
        do {
            let result = try await body(port)
            await group.triggerGracefulShutdown()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
    }
}

var quietLogger: Logger {
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    return logger
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The bare ceiling for intake: a handler that reads the body and answers `success`.
func bareIntakeServer(port: Int = 0, onListening: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
    let router = Router()
    router.post("/wechat/{appid}/callback") { request, _ -> Response in
        _ = try await request.body.collect(upTo: 1 << 20)
        return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "success")))
    }
    return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
                       onServerRunning: { await onListening($0.localAddress?.port ?? 0) }, logger: quietLogger)
}

/// The intake ceiling on its own, for a load generator outside this process (wrk): the same
/// comparison as the intake scenario without the in-process client's CPU on the same cores.
public enum CeilingServer {
    /// Serves on 127.0.0.1:`port` (0 picks one) until SIGTERM or SIGINT.
    public static func run(port: Int, onListening: @escaping @Sendable (Int) async -> Void) async throws {
        try await bareIntakeServer(port: port, onListening: onListening).runService()
    }
}

/// A subscriber that answers 204 and counts what it received (and when, by MsgId).
final class BenchSubscriber: Sendable {
    let received = Counter()
    let arrivals = Locked<[String: ContinuousClock.Instant]>([:])
    let recordArrivals: Bool

    init(recordArrivals: Bool = false) { self.recordArrivals = recordArrivals }

    func server(onListening: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let router = Router()
        router.post("/hook") { [self] request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            _ = received.increment()
            if recordArrivals, let range = String(buffer: body).range(of: #""MsgId":"\d+""#, options: .regularExpression) {
                let text = String(buffer: body)
                let msgId = String(text[range].dropFirst(9).dropLast())
                let now = ContinuousClock.now
                arrivals.withLock { $0[msgId] = now }
            }
            return Response(status: .noContent)
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                           onServerRunning: { await onListening($0.localAddress?.port ?? 0) }, logger: quietLogger)
    }
}

/// Credentials and configuration for the benchmark's relay.
enum BenchSetup {
    static let component = "wxbenchbenchbench1"
    static let token = "benchToken"
    static let aesKey = EncodingAESKey.generate()

    /// Runs `body` with the relay's configuration and a new, empty store: SQLite in a directory of
    /// its own, or with `postgresServer` a database of its own on that server (dropped afterwards).
    static func withStore<T: Sendable>(postgresServer: String?, subscriberPort: Int?, logger: Logger,
                                       _ body: (RelayConfig, any RelayStore) async throws -> T) async throws -> T {
        guard let postgresServer else {
            let directory = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let config = try config(storageURL: "sqlite:\(directory)/relay.sqlite", subscriberPort: subscriberPort)
            return try await StoreFactory.withStore(config.storage, logger: logger) { try await body(config, $0) }
        }
        return try await PostgresScratchDatabase.with(serverURL: postgresServer, prefix: "relay_bench", logger: logger) { url in
            let config = try config(storageURL: url, subscriberPort: subscriberPort)
            return try await StoreFactory.withStore(config.storage, logger: logger) { try await body(config, $0) }
        }
    }

    static func config(storageURL: String = "sqlite:/tmp/relay-bench.sqlite", subscriberPort: Int?) throws -> RelayConfig {
        let subscription = subscriberPort.map {
            "subscriptions:\n  - id: sink\n    url: http://127.0.0.1:\($0)/hook\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        } ?? ""
        return try RelayConfig.parse(yaml: """
            server:
              host: 127.0.0.1
              port: 0
            storage:
              url: \(storageURL)
            wechat:
              api_base: http://127.0.0.1:9
              components:
                - appid: \(component)
                  appsecret: bench
                  token: \(token)
                  encoding_aes_key: \(aesKey)
            delivery:
              allow_private_networks: true
            \(subscription)
            """, environment: [:])
    }

    static var crypto: MessageCrypto {
        MessageCrypto(token: token, key: try! EncodingAESKey(aesKey), receiverId: component)
    }

    /// A text push of about `contentBytes` bytes of content with a unique MsgId.
    static func push(msgId: Int, contentBytes: Int = 200) -> ComposedPush {
        let now = Int(Date().timeIntervalSince1970)
        let content = String(repeating: "x", count: contentBytes)
        let xml = SamplePushes.text(to: "gh_bench", from: "oBench\(msgId % 1000)", content: content, createTime: now, msgId: String(msgId))
        return PushComposer.callbackPush(xml: xml, appid: "wxbenchaccount0001", toUserName: "gh_bench", crypto: crypto,
                                         timestamp: now, nonce: PushComposer.nonce())
    }

    static func temporaryDirectory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("relay-bench-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// Resident memory of this process, from /proc (Linux).
func residentMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
    return kb / 1024
}
