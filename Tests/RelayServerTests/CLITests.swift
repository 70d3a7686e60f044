import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import RelayCore
import RelayServer
import RelayTestSupport
import Synchronization
import Testing

/// The `relay` executable itself: `check` on a broken config, and `push` against `serve`.
@Suite(.serialized) struct CLITests {
    /// The `relay` binary SwiftPM built beside this test bundle.
    var relayBinary: String {
        get throws {
            let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            let candidates = [directory, directory.deletingLastPathComponent(), directory.deletingLastPathComponent().deletingLastPathComponent()]
                .map { $0.appendingPathComponent("relay").path }
            guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                throw CLIError("the relay executable was not built next to the tests (looked in \(candidates)); run `swift build` first")
            }
            return found
        }
    }

    struct CLIError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    func run(_ arguments: [String], directory: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try relayBinary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func checkNamesTheBrokenKey() throws {
        let directory = makeTemporaryDirectory()
        let broken = TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").replacingOccurrences(of: "max_clock_skew: 5m", with: "max_clock_skew: five")
        try broken.write(toFile: directory + "/broken.yml", atomically: true, encoding: .utf8)
        let result = try run(["check", "--config", "broken.yml"], directory: directory)
        #expect(result.status != 0)
        #expect(result.output.contains("wechat.max_clock_skew"), "\(result.output)")

        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").write(toFile: directory + "/good.yml", atomically: true, encoding: .utf8)
        let good = try run(["check", "--config", "good.yml"], directory: directory)
        #expect(good.status == 0)
        #expect(good.output.contains("configuration is valid"))
        #expect(!good.output.contains(TestCredentials.aesKey) && !good.output.contains(TestCredentials.secret))

        // A file that is not there says where it was looked for, once (it repeated the name and
        // ended with Foundation's "The operation could not be completed").
        let missing = try run(["serve", "--config", "nope.yml"], directory: directory)
        let resolved = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        #expect(missing.status != 0 && missing.output.contains("nope.yml: no such file in ") && missing.output.contains("(--config names another)")
                    && (missing.output.contains(directory) || missing.output.contains(resolved)), "\(missing.output)")
        let folder = try run(["check", "--config", "."], directory: directory)
        #expect(folder.status != 0 && folder.output.contains(".: a directory, not a file"), "\(folder.output)")
    }

    /// `check --connect` tries what the file names from this machine without changing or sending
    /// anything: the store, WeChat's API and each configured subscriber; a failure names its key.
    @Test func checkConnectTriesTheStoreWeChatAndEachSubscriber() async throws {
        try await TestReceiver.run { receiver, port in
            let directory = makeTemporaryDirectory()
            func write(_ subscriptions: String) throws {
                try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite", apiBase: "http://127.0.0.1:\(port)", extra: """
                    delivery:
                      allow_private_networks: true
                    subscriptions:
                    \(subscriptions)
                    """).write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
            }
            try write("  - id: up\n    url: http://127.0.0.1:\(port)/hook\n  - id: down\n    url: http://127.0.0.1:1/hook")
            let failing = try run(["check", "--connect"], directory: directory)
            #expect(failing.status == 1, "\(failing.output)")
            for line in ["ok     storage.url: relay.sqlite does not exist yet: relay serve creates it",
                         "ok     wechat.api_base: http://127.0.0.1:\(port) answers (HTTP ",
                         "ok     subscriptions[0] (up): http://127.0.0.1:\(port)/hook answers (HTTP ",
                         "FAILED subscriptions[1] (down): http://127.0.0.1:1/hook: Connection refused (errno 111)",
                         "1 of 4 checks failed: subscriptions[1] (down)"] {
                #expect(failing.output.contains(line), "\(line) in \(failing.output)")
            }
            #expect(!FileManager.default.fileExists(atPath: directory + "/relay.sqlite"), "nothing created")
            #expect(receiver.requests.allSatisfy { $0.body.isEmpty }, "no event sent")

            try write("  - id: up\n    url: http://127.0.0.1:\(port)/hook")
            let passing = try run(["check", "--connect"], directory: directory)
            #expect(passing.status == 0 && passing.output.contains("every check passed"), "\(passing.output)")
            let plain = try run(["check"], directory: directory)
            #expect(plain.status == 0 && !plain.output.contains("every check"), "without --connect nothing is tried")

            // A subscriber made through the admin API lives in the store, and is tried too.
            let config = try RelayConfig.load(path: directory + "/relay.yml", environment: [:])
            var storage = config.storage
            storage.url = .sqlite(path: directory + "/relay.sqlite")
            try await StoreFactory.withStore(storage, logger: Logger(label: "test")) { store in
                try await store.insertSubscription(Subscription(id: "bot", url: "http://127.0.0.1:1/bot", createdAt: Date(), secret: "whsec_bot"))
            }
            let stored = try run(["check", "--connect"], directory: directory)
            #expect(stored.status == 1 && stored.output.contains("FAILED subscription bot (admin API): http://127.0.0.1:1/bot: Connection refused"),
                    "\(stored.output)")
            #expect(stored.output.contains("ok     storage.url: schema "), "\(stored.output)")
        }
    }

    @Test func serveStopsWithTheReasonWhenPostgreSQLCannotBeReached() throws {
        let directory = makeTemporaryDirectory()
        let url = "postgres://relay:pa55word@127.0.0.1:1/relay"  // nothing listens on port 1
        try TestCredentials.yaml(storageURL: url).write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let check = try run(["check", "--config", "relay.yml"], directory: directory)
        #expect(check.status == 0 && check.output.contains("storage: PostgreSQL at 127.0.0.1:1/relay, sslmode prefer"), "\(check.output)")
        let backup = try run(["backup", "--to", "copy.sqlite"], directory: directory)
        #expect(backup.status != 0 && backup.output.contains("back it up with pg_dump"), "\(backup.output)")
        let serve = try run(["serve", "--config", "relay.yml"], directory: directory)
        #expect(serve.status != 0)
        #expect(serve.output.contains("cannot open the store: cannot connect to PostgreSQL at 127.0.0.1:1/relay: connectionError"),
                "\(serve.output)")
        #expect(!check.output.contains("pa55word") && !serve.output.contains("pa55word"))
    }

    @Test(.enabled(if: StoreBackend.postgresURL != nil, "RELAY_TEST_POSTGRES_URL names no PostgreSQL server"))
    func benchMeasuresTheRelayOnPostgreSQL() throws {
        let directory = makeTemporaryDirectory()
        let result = try run(["bench", "--only", "delivery", "--requests", "300", "--rounds", "1", "--postgres", StoreBackend.postgresURL!,
                              "--output", "report.json"], directory: directory)
        #expect(result.status == 0, "\(result.output)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/report.json"))) as? [String: Any]
        #expect(report?["store"] as? String == "postgres")
        #expect(((report?["delivery"] as? [String: Any])?["per_second"] as? Double ?? 0) > 0)
    }

    @Test func copyStoreCopiesIntoAnEmptyStoreOnlyAndNamesABadDestination() throws {
        let directory = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite", extra: "subscriptions:\n  - id: crm\n    url: https://example.com/hook")
            .write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let bad = try run(["copy-store", "--to", "mysql://db/relay"], directory: directory)
        #expect(bad.status != 0 && bad.output.contains("--to: expected sqlite:PATH or postgres://"), "\(bad.output)")
        let same = try run(["copy-store", "--to", "sqlite:relay.sqlite"], directory: directory)
        #expect(same.status != 0 && same.output.contains("--to names the store being copied"), "\(same.output)")
        // The first copy creates the source, empty (copy-store syncs no config subscription).
        let first = try run(["copy-store", "--to", "sqlite:moved.sqlite"], directory: directory)
        #expect(first.status == 0 && first.output.contains("copied 0 subscriptions"), "\(first.output)")
        let again = try run(["copy-store", "--to", "sqlite:other.sqlite"], directory: directory)
        #expect(again.status == 0, "\(again.output)")
    }

    @Test func benchRunsAChosenScenarioAndNamesAnUnknownOne() throws {
        let directory = makeTemporaryDirectory()
        let wrong = try run(["bench", "--only", "crypto,nope"], directory: directory)
        #expect(wrong.status != 0)
        #expect(wrong.output.contains("--only: unknown scenario 'nope'"), "\(wrong.output)")

        let result = try run(["bench", "--only", "crypto", "--output", "report.json"], directory: directory)
        #expect(result.status == 0, "\(result.output)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/report.json"))) as? [String: Any]
        let crypto = report?["crypto"] as? [String: Double]
        #expect((crypto?["operations_per_second"] ?? 0) > 0)
        #expect((crypto?["event_builds_per_second"] ?? 0) > 0)
        #expect(report?["intake"] == nil)
    }

    /// The intake ceiling for an outside load generator: the bench's baseline handler on a port
    /// of its own, answering any push `success` without looking at it, until SIGTERM.
    @Test func benchServesTheCeilingForAnOutsideLoadGenerator() async throws {
        let directory = makeTemporaryDirectory()
        let ceiling = try RelayProcess.start(in: directory, arguments: ["bench", "--serve-ceiling", "0"])
        defer { ceiling.terminate() }
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(ceiling.port)/wechat/wx1111111111111111/callback?signature=x")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: "<xml>not even checked</xml>"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        #expect(response.status == .ok)
        #expect(String(buffer: try await response.body.collect(upTo: 1024)) == "success")
        #expect(!FileManager.default.fileExists(atPath: directory + "/bench.json"), "it measured instead of serving")

        let taken = try await runStopping(["bench", "--serve-ceiling", "\(ceiling.port)"], directory: directory)
        #expect(!taken.stopped && taken.status != 0 && taken.output.contains("--serve-ceiling: cannot listen on 127.0.0.1:\(ceiling.port): Address already in use"),
                "\(taken.output)")

        ceiling.process.terminate()  // SIGTERM
        ceiling.waitUntilExit()
        #expect(ceiling.process.terminationReason == .exit && ceiling.process.terminationStatus == 0)

        let wrong = try run(["bench", "--serve-ceiling", "70000"], directory: directory)
        #expect(wrong.status != 0 && wrong.output.contains("--serve-ceiling: 70000 is not a port"), "\(wrong.output)")
    }

    @Test func wrkScriptWritesTheScriptAndPrintsTheCommand() throws {
        let directory = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let result = try run(["push", "wrk-script", "--count", "4", "--output", "load.lua", "--url", "http://10.0.0.7:8080/"], directory: directory)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("wrote load.lua: 4 distinct text pushes for wx1111111111111111, accepted for 5 min from now"),
                "\(result.output)")
        #expect(result.output.contains("wrk -t2 -c64 -d10s -s load.lua http://10.0.0.7:8080 -- 2"), "\(result.output)")
        let pushes = WrkScript.pushes(in: try String(contentsOfFile: directory + "/load.lua", encoding: .utf8))
        #expect(pushes.count == 4 && Set(pushes.map(\.body)).count == 4)
        #expect(pushes.allSatisfy { $0.uri.hasPrefix("/wechat/wx1111111111111111/callback?signature=") })
        let none = try run(["push", "wrk-script", "--count", "0"], directory: directory)
        #expect(none.status != 0 && none.output.contains("--count must be between 1 and 1000000"), "\(none.output)")
    }

    /// `serve` raises its soft limit on open files to the hard one: under systemd's default soft
    /// limit of 1,024 the relay stopped accepting connections, WeChat's pushes included, once
    /// that many were open (seen with a limit of 100: `/healthz` unanswered while 150 idle
    /// connections were open).
    @Test func serveRaisesItsOpenFileLimitToTheHardLimit() throws {
        let directory = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let relay = try RelayProcess.start(in: directory, openFileLimit: 256)
        defer { relay.terminate() }
        let limits = try String(contentsOfFile: "/proc/\(relay.process.processIdentifier)/limits", encoding: .utf8)
        let files = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let values = files.split(separator: " ").dropFirst(3).prefix(2).map(String.init)
        #expect(values.count == 2 && values[0] == values[1] && values[0] != "256", "\(files)")
    }

    /// SIGHUP, sent out of habit to reload, killed the relay on the spot; it is ignored, with a
    /// notice, and SIGTERM still stops it gracefully.
    @Test func serveIgnoresSIGHUPAndSaysSo() async throws {
        let directory = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let relay = try RelayProcess.start(in: directory)
        defer { relay.terminate() }
        kill(relay.process.processIdentifier, SIGHUP)
        let notice = try await relay.logs.line(containing: "SIGHUP ignored")
        #expect(notice.contains("restart it to apply a change"), "\(notice)")
        #expect(relay.process.isRunning)
        let health = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(relay.port)/healthz"), timeout: .seconds(10))
        #expect(health.status == .ok)
        relay.process.terminate()  // SIGTERM
        relay.waitUntilExit()
        #expect(relay.process.terminationReason == .exit && relay.process.terminationStatus == 0)
    }

    @Test func pushAgainstARunningServeGetsSuccessAndSIGTERMStopsCleanly() async throws {
        let directory = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let relay = try RelayProcess.start(in: directory)
        let (serve, port) = (relay.process, relay.port)
        defer { relay.terminate() }
        let push = try run(["push", "text", "hello from the CLI test", "--url", "http://127.0.0.1:\(port)"], directory: directory)
        #expect(push.status == 0, "\(push.output)")
        #expect(push.output.contains("200 success"))
        let event = try run(["push", "event", "CLICK", "--event-key", "menu_1", "--url", "http://127.0.0.1:\(port)"], directory: directory)
        #expect(event.output.contains("200 success"), "\(event.output)")
        let ticket = try run(["push", "ticket", "--url", "http://127.0.0.1:\(port)"], directory: directory)
        #expect(ticket.output.contains("200 success"), "\(ticket.output)")
        // Any push from its XML: a message to the callback URL, an authorization event (InfoType) to the component's.
        let image = SamplePushes.text(to: "gh_0123456789ab", from: "oUser", content: "-", createTime: 1_795_558_566, msgId: "1234567890123456")
            .replacingOccurrences(of: "<MsgType><![CDATA[text]]></MsgType>", with: "<MsgType><![CDATA[image]]></MsgType><MediaId><![CDATA[m1]]></MediaId>")
        try image.write(toFile: directory + "/image.xml", atomically: true, encoding: .utf8)
        let unauthorized = SamplePushes.authorization(component: TestCredentials.componentAppid, infoType: "unauthorized",
                                                      authorizer: "wx2222222222222222", createTime: 1_795_558_566)
        try unauthorized.write(toFile: directory + "/unauthorized.xml", atomically: true, encoding: .utf8)
        for file in ["image.xml", "unauthorized.xml"] {
            let sent = try run(["push", "xml", file, "--url", "http://127.0.0.1:\(port)"], directory: directory)
            #expect(sent.status == 0 && sent.output.contains("200 success"), "\(file): \(sent.output)")
        }
        try "<xml><a>".write(toFile: directory + "/broken.xml", atomically: true, encoding: .utf8)
        let broken = try run(["push", "xml", "broken.xml", "--url", "http://127.0.0.1:\(port)"], directory: directory)
        #expect(broken.status != 0 && broken.output.contains("broken.xml: not XML the relay would take: the body is not well-formed XML"),
                "\(broken.output)")

        serve.terminate()  // SIGTERM
        serve.waitUntilExit()
        #expect(serve.terminationReason == .exit)
        #expect(serve.terminationStatus == 0)
        // A backup of the running relay's database holds what it acknowledged.
        let backup = try run(["backup", "--to", "copy.sqlite"], directory: directory)
        #expect(backup.status == 0 && backup.output.contains("backed up relay.sqlite to copy.sqlite: 4 events"), "\(backup.output)")
        let named = try run(["backup", "--database", directory + "/relay.sqlite", "--to", "copy2.sqlite", "--config", "none.yml"], directory: directory)
        #expect(named.status == 0 && named.output.contains("copy2.sqlite: 4 events"), "\(named.output)")
        // A failure names the flag or key that gave the file.
        let again = try run(["backup", "--to", "copy.sqlite"], directory: directory)
        #expect(again.status != 0 && again.output.contains("--to: cannot create copy.sqlite: it exists"), "\(again.output)")
        let missing = try run(["backup", "--database", "none.sqlite", "--to", "copy3.sqlite", "--config", "none.yml"], directory: directory)
        #expect(missing.status != 0 && missing.output.contains("--database: none.sqlite does not exist"), "\(missing.output)")
        // Nothing listens now: the error says where and why, as the system names it.
        let refused = try run(["push", "text", "anyone there?", "--url", "http://127.0.0.1:\(port)"], directory: directory)
        #expect(refused.status != 0 && refused.output.contains("cannot reach the relay at http://127.0.0.1:\(port): Connection refused (errno 111)"),
                "\(refused.output)")
    }

    /// One SQLite file serves one relay process: a second `serve`, and `copy-store` from the
    /// file of a running relay, stop with the other process's id instead of sending the first
    /// one's deliveries again or copying a store that keeps changing.
    @Test func aSecondProcessOnTheSameSQLiteFileIsRefused() async throws {
        let directory = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let relay = try RelayProcess.start(in: directory)
        let serve = relay.process
        defer { relay.terminate() }

        let expected = "relay.sqlite is open in another process (pid \(serve.processIdentifier))"
        let copy = try await runStopping(["copy-store", "--to", "sqlite:moved.sqlite"], directory: directory)
        #expect(copy.status != 0 && copy.output.contains(expected), "\(copy.output)")
        let second = try await runStopping(["serve"], directory: directory)
        #expect(second.status != 0 && second.output.contains(expected), "\(second.output)")

        serve.terminate()
        serve.waitUntilExit()
        let after = try await runStopping(["copy-store", "--to", "sqlite:moved.sqlite"], directory: directory)
        #expect(after.status == 0, "\(after.output)")
    }

    /// A `serve` whose port is taken stops with the reason. Its other services are cancelled
    /// then, not shut down gracefully: the retention and token loops ignored that and spun,
    /// logging cancellation errors as fast as they could, and the process never exited, not even
    /// on SIGTERM.
    @Test func serveOnATakenPortStopsWithTheReason() async throws {
        let first = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").write(toFile: first + "/relay.yml", atomically: true, encoding: .utf8)
        let relay = try RelayProcess.start(in: first)
        defer { relay.terminate() }

        let second = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite", port: relay.port)
            .write(toFile: second + "/relay.yml", atomically: true, encoding: .utf8)
        let taken = try await runStopping(["serve"], directory: second)
        // Named values, so that a failure prints them rather than the whole (huge) output.
        let exitedByItself = !taken.stopped, status = taken.status, output = String(taken.output.prefix(2000))
        #expect(exitedByItself, "relay serve did not exit by itself: \(output)")
        #expect(status != 0 && output.contains("server.host/server.port: cannot listen on 127.0.0.1:\(relay.port): Address already in use"),
                "\(output)")
        #expect(!output.contains("CancellationError"), "\(output)")
    }

    @Test func serveLogsJSONLinesWhenAsked() async throws {
        let directory = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").replacingOccurrences(of: "host: 127.0.0.1", with: "host: not a host")
            .write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let result = try await runStopping(["serve", "--log-format", "json"], directory: directory)
        #expect(!result.stopped && result.status != 0)
        let objects = result.output.split(separator: "\n").filter { $0.hasPrefix("{") }
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let starting = objects.first { $0["message"] as? String == "relay starting" }
        #expect(starting?["store"] as? String == "sqlite:relay.sqlite" && starting?["admin_api"] as? String == "off", "\(result.output.prefix(2000))")
        let stopped = objects.first { $0["message"] as? String == "relay stopped: cannot listen" }
        #expect(stopped?["level"] as? String == "error" && (stopped?["error"] as? String)?.isEmpty == false,
                "\(result.output.prefix(2000))")
        let wrong = try run(["serve", "--log-format", "xml"], directory: directory)
        #expect(wrong.status != 0 && wrong.output.contains("--log-format"), "\(wrong.output)")
    }

    @Test func serveOnAHostThatIsNoAddressStopsNamingTheKey() async throws {
        let directory = makeTemporaryDirectory()
        try TestCredentials.yaml(storageURL: "sqlite:relay.sqlite").replacingOccurrences(of: "host: 127.0.0.1", with: "host: not a host")
            .write(toFile: directory + "/relay.yml", atomically: true, encoding: .utf8)
        let result = try await runStopping(["serve"], directory: directory)
        let output = String(result.output.prefix(2000))
        #expect(!result.stopped && result.status != 0, "\(output)")
        #expect(output.contains("server.host: cannot listen on not a host:"), "\(output)")
    }

    /// Like `run`, but a process still running after 30 s (a `serve` that should have refused to
    /// start) is stopped instead of hanging the test: SIGTERM, then SIGKILL. `stopped` says so.
    func runStopping(_ arguments: [String], directory: String) async throws -> (status: Int32, output: String, stopped: Bool) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try relayBinary)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("relay-cli-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = ContinuousClock.now + .seconds(30)
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let stopped = process.isRunning
        if stopped {
            process.terminate()
            let grace = ContinuousClock.now + .seconds(5)
            while process.isRunning && ContinuousClock.now < grace { try await Task.sleep(for: .milliseconds(50)) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        try handle.close()
        defer { try? FileManager.default.removeItem(at: output) }
        return (process.terminationStatus, try String(contentsOf: output, encoding: .utf8), stopped)
    }
}
