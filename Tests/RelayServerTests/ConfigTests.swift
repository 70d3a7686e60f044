import Foundation
@testable import RelayServer
import RelayTestSupport
import Testing

@Suite struct ConfigTests {
    let minimal = """
        wechat:
          components:
            - appid: wx0000000000000000
              appsecret: s
              token: tok123
              encoding_aes_key: Kz3vQ8pLm2Nw7Xy4Rt6Ub9Ce1Df5Gh0Jk8Lm3Np7Qr2
        """

    func error(_ yaml: String, environment: [String: String] = [:]) -> String {
        do {
            _ = try RelayConfig.parse(yaml: yaml, environment: environment)
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func theRepositoryConfigLoadsWithNoEnvironment() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let config = try RelayConfig.load(path: root.appendingPathComponent("relay.yml").path, environment: [:])
        #expect(config.wechat.components.count == 1)
        #expect(config.storage.url == .sqlite(path: "relay.sqlite"))
        #expect(config.admin.token == nil)
        #expect(config.delivery.retrySchedule.count == 10)
        #expect(config.onboarding.linksPerMinute == 20 && config.onboarding.returnTo.isEmpty)
        #expect(config.onboarding.linksPerClientPerMinute == 5 && config.server.trustedProxies.isEmpty)
    }

    @Test func defaultsAndDurations() throws {
        let config = try RelayConfig.parse(yaml: minimal + """

            delivery:
              timeout: 1500ms
              retry_schedule: [5s, 2m, 1h]
            storage:
              retention: 7d
            """, environment: [:])
        #expect(config.server.port == 8080)
        #expect(config.delivery.timeout == .milliseconds(1500))
        #expect(config.delivery.retrySchedule == [.seconds(5), .seconds(120), .seconds(3600)])
        #expect(config.storage.retention == .seconds(7 * 86_400))
        #expect(config.wechat.maxClockSkew == .seconds(300))
    }

    @Test func environmentInterpolation() throws {
        let yaml = minimal.replacingOccurrences(of: "token: tok123", with: "token: ${TOKEN}") + """

            storage:
              url: sqlite:${DATA:-/tmp}/relay.sqlite
            """
        let config = try RelayConfig.parse(yaml: yaml, environment: ["TOKEN": "fromEnv1"])
        #expect(config.wechat.components[0].credentials.crypto.token == "fromEnv1")
        #expect(config.storage.url == .sqlite(path: "/tmp/relay.sqlite"))
        #expect(error(yaml) == "wechat.components[0].token: environment variable TOKEN is not set (write ${TOKEN:-default} to give a default)")
    }

    @Test func circuitBreaker() throws {
        #expect(try RelayConfig.parse(yaml: minimal, environment: [:]).delivery.circuitBreaker
            == { var p = CircuitBreakerPolicy(); (p.failures, p.probe, p.maxProbe) = (10, .seconds(1), .seconds(60)); return p }())
        let set = try RelayConfig.parse(yaml: minimal + "\ndelivery:\n  circuit_breaker:\n    failures: 0\n    probe: 5s\n    max_probe: 10m",
                                        environment: [:]).delivery.circuitBreaker
        #expect([set.failures] == [0] && [set.probe, set.maxProbe] == [.seconds(5), .seconds(600)])
        // A first wait longer than the default longest: the longest follows it.
        #expect(try RelayConfig.parse(yaml: minimal + "\ndelivery:\n  circuit_breaker: {probe: 5m}", environment: [:])
            .delivery.circuitBreaker.maxProbe == .seconds(300))
        #expect(error(minimal + "\ndelivery:\n  circuit_breaker: {failures: -1}").hasPrefix("delivery.circuit_breaker.failures: expected a whole number"))
        #expect(error(minimal + "\ndelivery:\n  circuit_breaker: {probe: 1ms}") == "delivery.circuit_breaker.probe: must be from 10ms to 1h (such as 1s)")
        #expect(error(minimal + "\ndelivery:\n  circuit_breaker: {probe: 10s, max_probe: 5s}")
            == "delivery.circuit_breaker.max_probe: must be at least circuit_breaker.probe and at most 24h (such as 1m)")
        #expect(error(minimal + "\ndelivery:\n  circuit_breaker: {failure: 3}") == "delivery.circuit_breaker.failure: unknown key")
    }

    @Test func trustedProxiesAreAddressesOrRanges() throws {
        #expect(try RelayConfig.parse(yaml: minimal, environment: [:]).server.trustedProxies.isEmpty)
        let proxies = try RelayConfig.parse(yaml: minimal + "\nserver: {trusted_proxies: [10.0.0.0/8, \"::1\", 192.0.2.7]}", environment: [:])
            .server.trustedProxies
        #expect(proxies.map(\.description) == ["10.0.0.0/8", "::1", "192.0.2.7"])
        #expect(error(minimal + "\nserver: {trusted_proxies: [10.0.0.0/33]}")
            == "server.trusted_proxies[0]: expected an address or a CIDR range such as 10.0.0.0/8, not 10.0.0.0/33")
        #expect(error(minimal + "\nserver: {trusted_proxies: [10.0.0.1, lb.internal]}").hasPrefix("server.trusted_proxies[1]: expected an address"))
    }

    @Test func onboardingLinksPerMinute() throws {
        #expect(try RelayConfig.parse(yaml: minimal, environment: [:]).onboarding.linksPerMinute == 20)
        #expect(try RelayConfig.parse(yaml: minimal, environment: [:]).onboarding.linksPerClientPerMinute == 5)
        #expect(try RelayConfig.parse(yaml: minimal + "\nonboarding: {links_per_client_per_minute: 0}", environment: [:])
            .onboarding.linksPerClientPerMinute == 0)
        #expect(try RelayConfig.parse(yaml: minimal + "\nonboarding: {links_per_minute: 0}", environment: [:]).onboarding.linksPerMinute == 0)
        #expect(error(minimal + "\nonboarding: {links_per_minute: many}")
            == "onboarding.links_per_minute: expected a whole number from 0 to 100000, got \"many\"")
    }

    /// `relay check` writes durations as relay.yml does (it printed `2592000.0 seconds` for 30d),
    /// and names the onboarding settings.
    @Test func theSummaryWritesDurationsAsTheFileDoes() throws {
        for text in ["1500ms", "90s", "5m", "1h", "30d", "250ms", "36h"] {
            #expect(ConfigDuration.text(try ConfigDuration.parse(text, at: "x")) == text)
        }
        #expect(ConfigDuration.text(.seconds(3600)) == "1h" && ConfigDuration.text(.zero) == "0ms")
        let summary = try RelayConfig.parse(yaml: minimal + "\nonboarding: {links_per_minute: 5, return_to: [\"https://p.example.com/done\"]}",
                                            environment: [:]).summary
        #expect(summary.contains("retention: 30d"), "\(summary)")
        #expect(summary.contains("delivery: timeout 10s, 10 retries (5s, 30s, 2m, 10m, 30m, 1h, 3h, 6h, 12h, 1d)"), "\(summary)")
        #expect(summary.contains("onboarding: at most 5 authorization links a minute per node, 5 per client, return_to allowed under https://p.example.com/done"))
    }

    @Test func unknownKeysAreNamedByPath() {
        #expect(error(minimal + "\nserver:\n  prot: 8080") == "server.prot: unknown key")
        #expect(error(minimal.replacingOccurrences(of: "token: tok123", with: "token: tok123\n      tokn: x")) == "wechat.components[0].tokn: unknown key")
        #expect(error(minimal + "\nextra: 1") == "extra: unknown key")
    }

    @Test func badValuesNameTheirKey() {
        #expect(error(minimal.replacingOccurrences(of: "Kz3vQ8pLm2Nw7Xy4Rt6Ub9Ce1Df5Gh0Jk8Lm3Np7Qr2", with: "short"))
            == "wechat.components[0].encoding_aes_key: illegal EncodingAESKey: expected 43 characters, got 5")
        #expect(error(minimal + "\ndelivery:\n  timeout: soon").hasPrefix("delivery.timeout: expected a duration"))
        #expect(error(minimal + "\nserver:\n  port: 99999").hasPrefix("server.port: expected a whole number"))
        // Durations that would stop or break the relay: each named, none accepted.
        #expect(error(minimal + "\ndelivery:\n  timeout: 0s") == "delivery.timeout: must be more than 0 and at most 1h (such as 10s)")
        #expect(error(minimal + "\ndelivery:\n  timeout: 1e30s") == #"delivery.timeout: must be at most 3650d, got "1e30s""#)  // trapped
        #expect(error(minimal + "\nreply:\n  deadline: 0ms") == "reply.deadline: must be more than 0 (such as 4s)")
        #expect(error(minimal + "\nserver:\n  idle_timeout: 0s") == "server.idle_timeout: must be more than 0 (such as 60s)")
        #expect(error(minimal.replacingOccurrences(of: "wechat:", with: "wechat:\n  max_clock_skew: 0s")).hasPrefix("wechat.max_clock_skew: must be at least 1s"))
        #expect(error(minimal + "\nstorage:\n  retention: 3651d") == #"storage.retention: must be at most 3650d, got "3651d""#)
        #expect(error(minimal + "\nstorage:\n  url: mysql://x").hasPrefix("storage.url: expected sqlite:PATH"))
        #expect(error(minimal + "\nstorage:\n  url: postgres://db.internal/relay") == "storage.url: the PostgreSQL URL names no user")
        #expect(error(minimal + "\nstorage:\n  url: postgres://relay@db.internal/relay?sslmode=maybe")
            == "storage.url: sslmode must be one of disable, prefer, require, verify-full")
        #expect(error(minimal + "\nstorage:\n  url: postgres://relay@db.internal/relay?pool=3").hasPrefix("storage.url: unknown parameter pool"))
        #expect(error(minimal + "\nstorage:\n  url: postgres://relay:p%40ss@db.internal:6432/relay?sslmode=require&max_connections=5")
            == "no error")
        #expect(error(minimal + "\nstorage:\n  encryption_key: abc").hasPrefix("storage.encryption_key: must be base64"))
        #expect(error(minimal + "\nadmin:\n  token: short").hasPrefix("admin.token: must be at least 16"))
        #expect(error(minimal + "\nsubscriptions:\n  - id: a\n    url: ftp://x").hasPrefix("subscriptions[0].url: expected an http(s) URL"))
        #expect(error(minimal + "\nsubscriptions:\n  - id: a\n    url: https://crm:s3cret@crm.internal/hook")
            .hasPrefix("subscriptions[0].url: must not carry a user name or password (user:password@)"))
        #expect(error(minimal + "\nsubscriptions:\n  - id: a\n    url: https://x\n  - id: a\n    url: https://y")
            == "subscriptions[1].id: subscription id a is used twice")
        #expect(error("wechat:\n  components:\n    - appid: wx1\n      token: tok123\n      encoding_aes_key: Kz3vQ8pLm2Nw7Xy4Rt6Ub9Ce1Df5Gh0Jk8Lm3Np7Qr2")
            == "wechat.components[0].appsecret: is required")
        // AppIDs and event globs that could never match are named, not kept as a subscription that receives nothing.
        let subscription = minimal + "\nsubscriptions:\n  - id: a\n    url: https://x\n"
        #expect(error(subscription + "    appids: [wx1234567890abcdef, 'wx1234567890abcde ']")
            == #"subscriptions[0].appids[1]: "wx1234567890abcde " is not an AppID (letters and digits, at most 32, such as wx1234567890abcdef) or *"#)
        #expect(error(subscription + "    appids: []") == "subscriptions[0].appids: list at least one AppID, or * for all")
        #expect(error(subscription + "    events: ['message. *']").hasPrefix(#"subscriptions[0].events[0]: "message. *" is not an event type or glob"#))
        #expect(error(subscription + "    events: ['']").hasPrefix(#"subscriptions[0].events[0]: "" is not an event type"#))
        #expect(error(subscription + "    appids: ['*', wx1234567890abcdef]\n    events: [message.*, event.subscribe]") == "no error")
        // No credentials at all: every push would be refused (it passed relay check as valid).
        #expect(error("server:\n  port: 8080") == "wechat.components: list at least one component (appid, appsecret, token, "
            + "encoding_aes_key), or an account under wechat.accounts: without credentials the relay refuses every push")
        #expect(error("wechat:\n  components: []\n  accounts: [{appid: wx1234567890abcdef, token: tok123}]") == "no error")
        #expect(error("- just\n- a list").hasPrefix("expected a mapping"))
        #expect(error("key: [unclosed").hasPrefix("not valid YAML"))
    }
}
