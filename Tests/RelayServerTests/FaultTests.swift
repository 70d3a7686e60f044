import AsyncHTTPClient
import Foundation
import NIOCore
import RelayServer
import RelayTestSupport
import Synchronization
import Testing

/// `relay serve` killed with SIGKILL while pushes arrive: every push answered `success` must still
/// reach the subscriber after a restart — which itself is down (503) for its first requests.
@Suite(.serialized) struct FaultTests {
    @Test(.timeLimit(.minutes(2)))
    func everyAcknowledgedPushIsDeliveredAfterKill9AndRestart() async throws {
        try await TestReceiver.run(respond: Self.down(for: 40)) { receiver, port in
            let directory = makeTemporaryDirectory()
            let yaml = TestCredentials.yaml(storageURL: "sqlite:relay.sqlite", extra: """
                delivery:
                  timeout: 2s
                  retry_schedule: [50ms, 100ms, 200ms, 400ms, 800ms, 1s, 1s, 1s, 1s, 1s, 1s, 1s]
                  circuit_breaker: {probe: 50ms, max_probe: 400ms}  # the subscriber's outage is counted in requests
                  allow_private_networks: true
                subscriptions:
                  - id: sink
                    url: http://127.0.0.1:\(port)/sink
                """)
            try yaml.write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)

            var serve = try RelayProcess.start(in: directory)
            let acked = Locked<Set<String>>([])
            let killAfter = Int.random(in: 30...200)
            let total = 300
            let first = serve
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<12 {
                    group.addTask {
                        for i in stride(from: worker, to: total, by: 12) {
                            if acked.value.count >= killAfter { return }  // the relay is dead: stop pushing
                            let msgId = String(500_000 + i)
                            guard let ok = try? await Self.push(port: first.port, msgId: msgId), ok else { continue }
                            let count = acked.withLock { $0.insert(msgId); return $0.count }
                            if count == killAfter { first.kill9() }
                        }
                    }
                }
            }
            first.waitUntilExit()
            let acknowledged = acked.withLock { $0 }
            #expect(acknowledged.count >= killAfter)

            serve = try RelayProcess.start(in: directory)
            defer { serve.terminate() }
            try await Self.expectDelivery(of: acknowledged, to: receiver)
        }
    }

    /// Two `relay serve` nodes on one PostgreSQL database; one is killed with SIGKILL while pushes
    /// arrive at both and is not restarted: the survivor delivers every push either acknowledged —
    /// the dead node's unclaimed ones at once, its claimed ones when their leases (17 s here) expire.
    @Test(.timeLimit(.minutes(2)), .enabled(if: StoreBackend.postgresURL != nil, "RELAY_TEST_POSTGRES_URL names no PostgreSQL server"))
    func everyPushAcknowledgedByAKilledNodeIsDeliveredByTheSurvivor() async throws {
        try await StoreBackend.postgres.withStorageURL { url in
            // Slow answers: the victim dies holding claims on deliveries it is sending.
            try await TestReceiver.run(respond: Self.down(for: 20, thenAnswerAfter: .milliseconds(100))) { receiver, port in
                let directory = makeTemporaryDirectory()
                let yaml = TestCredentials.yaml(storageURL: url, extra: """
                    delivery:
                      timeout: 1s
                      retry_schedule: [50ms, 100ms, 200ms, 400ms, 800ms, 1s, 1s, 1s, 1s, 1s, 1s, 1s]
                      circuit_breaker: {probe: 50ms, max_probe: 400ms}  # the subscriber's outage is counted in requests
                      allow_private_networks: true
                    subscriptions:
                      - id: sink
                        url: http://127.0.0.1:\(port)/sink
                    """)
                try yaml.write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
                let victim = try RelayProcess.start(in: directory)
                let survivor = try RelayProcess.start(in: directory)
                defer { survivor.terminate() }
                let acked = Locked<Set<String>>([])
                let killAfter = Int.random(in: 30...150)
                let total = 200
                await withTaskGroup(of: Void.self) { group in
                    for worker in 0..<8 {
                        group.addTask {
                            for i in stride(from: worker, to: total, by: 8) {
                                let msgId = String(600_000 + i)
                                // Half the pushes go to the victim, until it is dead.
                                let node = i % 2 == 0 && acked.value.count < killAfter ? victim : survivor
                                guard let ok = try? await Self.push(port: node.port, msgId: msgId), ok else { continue }
                                let count = acked.withLock { $0.insert(msgId); return $0.count }
                                if count == killAfter { victim.kill9() }
                            }
                        }
                    }
                }
                victim.waitUntilExit()
                let acknowledged = acked.withLock { $0 }
                #expect(acknowledged.count >= killAfter)
                try await Self.expectDelivery(of: acknowledged, to: receiver)
            }
        }
    }

    /// A subscriber that answers 503 to its first `requests`, then 204 (after `delay`).
    static func down(for requests: Int, thenAnswerAfter delay: Duration = .zero)
        -> @Sendable (TestReceiver.Received, Int) async -> TestReceiver.Answer {
        let left = Locked(requests)
        return { _, _ in
            left.withLock { left in
                defer { left -= 1 }
                return left > 0 ? .init(status: 503) : .init(status: 204, delay: delay)
            }
        }
    }

    /// Waits until every acknowledged MsgId has reached `receiver` (a minute at most between two).
    static func expectDelivery(of acknowledged: Set<String>, to receiver: TestReceiver) async throws {
        var delivered: Set<String> = []
        while !acknowledged.isSubset(of: delivered) {
            let request = try await receiver.next(timeout: .seconds(60))
            guard request.headers["webhook-id"] != nil, let range = request.body.range(of: #""MsgId":"\d+""#, options: .regularExpression)
            else { continue }
            delivered.insert(String(request.body[range].dropFirst(9).dropLast()))
        }
        #expect(acknowledged.isSubset(of: delivered), "lost: \(acknowledged.subtracting(delivered).sorted())")
    }

    static func push(port: Int, msgId: String) async throws -> Bool {
        let now = Int(Date().timeIntervalSince1970)
        let xml = SamplePushes.text(to: "gh_fault", from: "oFault", content: "fault \(msgId)", createTime: now, msgId: msgId)
        let push = PushComposer.callbackPush(xml: xml, appid: "wxfaultfaultfault1", toUserName: "gh_fault",
                                             crypto: TestCredentials.component.crypto, timestamp: now, nonce: PushComposer.nonce())
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(push.uri)")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: push.body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        let body = String(buffer: try await response.body.collect(upTo: 1024))
        return response.status == .ok && body == "success"
    }
}

/// `relay serve` as a child process in `directory`, on the port it reports.
struct RelayProcess: Sendable {
    let process: Process
    let port: Int
    /// What the process logged, line by line, to await a line as it comes.
    let logs: CapturedLogs

    /// Starts `relay` with `arguments` (`serve` unless told) and waits for it to log `port=N`;
    /// with `openFileLimit`, under that soft limit (the shell sets it, then becomes the relay).
    static func start(in directory: String, arguments: [String] = ["serve"], openFileLimit: Int? = nil) throws -> RelayProcess {
        let process = Process()
        let binary = try CLITests().relayBinary
        if let openFileLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -Sn \(openFileLimit) && exec \"$0\" \"$@\"", binary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
        }
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let log = Pipe()
        process.standardError = log
        process.standardOutput = log
        try process.run()
        var seen = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let chunk = log.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen += String(decoding: chunk, as: UTF8.self)
            if let range = seen.range(of: #"port=(\d+)"#, options: .regularExpression) {
                // Keep draining the log so the relay never blocks on a full pipe, keeping its lines.
                let logs = CapturedLogs()
                let partial = Locked("")
                let feed: @Sendable (String) -> Void = { text in
                    let lines = partial.withLock { partial -> [String] in
                        partial += text
                        var lines = partial.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                        partial = lines.removeLast()
                        return lines
                    }
                    lines.forEach(logs.append)
                }
                feed(seen)
                log.fileHandleForReading.readabilityHandler = { handle in
                    let data = handle.availableData
                    // At the end (the relay exited) the handler would be called again and again.
                    guard !data.isEmpty else { handle.readabilityHandler = nil; return }
                    feed(String(decoding: data, as: UTF8.self))
                }
                return RelayProcess(process: process, port: Int(seen[range].dropFirst(5))!, logs: logs)
            }
        }
        process.terminate()
        throw TimeoutError(description: "relay \(arguments.joined(separator: " ")) did not start: \(seen)")
    }

    func kill9() { kill(process.processIdentifier, SIGKILL) }
    func terminate() { if process.isRunning { process.terminate(); process.waitUntilExit() } }
    func waitUntilExit() { process.waitUntilExit() }
}
