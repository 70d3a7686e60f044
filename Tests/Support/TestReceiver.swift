import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A webhook subscriber on a port the OS picks: records every request and answers as `respond`
/// says. Tests await requests through `next()` instead of sleeping.
public final class TestReceiver: Sendable {
    public struct Received: Sendable {
        public let path: String
        public let headers: [String: String]
        public let body: String
        public let at: ContinuousClock.Instant
    }

    public struct Answer: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var delay: Duration
        public var body: String
        /// Sends the status and `body` at once, then a byte every 20 ms until the client hangs up:
        /// an answer that never ends but is never silent either (no read timeout can end it).
        public var trickles: Bool
        public init(status: Int = 204, headers: [String: String] = [:], delay: Duration = .zero, body: String = "", trickles: Bool = false) {
            self.status = status
            self.headers = headers
            self.delay = delay
            self.body = body
            self.trickles = trickles
        }
    }

    private let received = Mutex<[Received]>([])
    private let stream: AsyncStream<Received>
    private let continuation: AsyncStream<Received>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: Received.self)
    }

    /// Every request so far.
    public var requests: [Received] { received.withLock { $0 } }

    /// Waits for the next request, failing after `timeout`.
    public func next(timeout: Duration = .seconds(10)) async throws -> Received {
        let stream = self.stream
        return try await withThrowingTaskGroup(of: Received?.self) { group in
            group.addTask {
                var iterator = stream.makeAsyncIterator()
                return await iterator.next()
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let request = first else {
                throw TimeoutError(description: "no request reached the receiver within \(timeout)")
            }
            return request
        }
    }

    /// Waits for `count` requests.
    public func next(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [Received] {
        var result: [Received] = []
        for _ in 0..<count { result.append(try await next(timeout: timeout)) }
        return result
    }

    func record(_ request: Received) -> Int {
        let count = received.withLock {
            $0.append(request)
            return $0.count
        }
        continuation.yield(request)
        return count
    }

    /// Runs a receiver for the duration of `body`; `respond` gets each request and its 1-based number.
    public static func run<T: Sendable>(
        port: Int = 0,
        respond: @escaping @Sendable (Received, Int) async -> Answer = { _, _ in Answer() },
        _ body: @Sendable (TestReceiver, Int) async throws -> T
    ) async throws -> T {
        let receiver = TestReceiver()
        let router = Router()
        let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            var headers: [String: String] = [:]
            // Keys lower-cased: HTTP field names are case-insensitive.
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            // HTTP/1's Host arrives as the request's authority, not among the fields.
            if let authority = request.head.authority { headers["host"] = authority }
            let body = try await request.body.collect(upTo: 1 << 20)
            let received = Received(path: request.uri.path, headers: headers, body: String(buffer: body), at: .now)
            let number = receiver.record(received)
            let answer = await respond(received, number)
            if answer.delay > .zero { try? await Task.sleep(for: answer.delay) }
            var response = Response(status: .init(code: answer.status), body: .init(byteBuffer: ByteBuffer(string: answer.body)))
            if answer.trickles {
                response.body = .trickling(answer.body, filler: ".")
            }
            for (name, value) in answer.headers { response.headers[.init(name)!] = value }
            return response
        }
        router.post("/", use: handler)
        router.post("/**", use: handler)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "test-receiver")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
                              onServerRunning: { portContinuation.yield($0.localAddress?.port ?? 0) }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let boundPort = await iterator.next() else { throw TimeoutError(description: "receiver did not start") }
            do {
                let result = try await body(receiver, boundPort)
                await group.triggerGracefulShutdown()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
        }
    }
}

public struct TimeoutError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}
