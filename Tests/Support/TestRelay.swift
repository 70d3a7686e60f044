import Foundation
import Hummingbird
import Logging
import RelayCore
import RelayServer
import WeChatCrypto

/// The credentials tests push with: the component of the generated crypto vectors.
public enum TestCredentials {
    public static let componentAppid = "wx3f9a2b7c1d4e5f60"
    public static let token = "relayTestToken2024"
    public static let aesKey = "Kz3vQ8pLm2Nw7Xy4Rt6Ub9Ce1Df5Gh0Jk8Lm3Np7Qr2"
    public static let secret = "test-component-secret"
    /// A second component, to check that one component's push cannot touch another's state.
    public static let otherComponentAppid = "wx9999999999999999"
    public static let otherToken = "otherToken42"
    public static let otherAesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    /// A directly configured account in encrypted mode and one in plaintext mode.
    public static let directAppid = "wxd1d1d1d1d1d1d1d1"
    public static let directToken = "directToken1"
    public static let directAesKey = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
    public static let plainAppid = "wxp1p1p1p1p1p1p1p1"
    public static let plainToken = "plainToken1"

    public static var component: ComponentCredentials {
        ComponentCredentials(appid: componentAppid, appsecret: secret, token: token,
                             key: try! EncodingAESKey(aesKey), previousKey: nil)
    }

    public static var otherComponent: ComponentCredentials {
        ComponentCredentials(appid: otherComponentAppid, appsecret: secret, token: otherToken,
                             key: try! EncodingAESKey(otherAesKey), previousKey: nil)
    }

    public static var directCrypto: MessageCrypto {
        MessageCrypto(token: directToken, key: try! EncodingAESKey(directAesKey), receiverId: directAppid)
    }

    /// A complete `relay.yml` for tests; `extra` is appended at the top level.
    /// `apiBase` defaults to a closed loopback port: tests never reach the real WeChat.
    public static func yaml(storageURL: String, port: Int = 0, encryptionKey: String? = nil, apiBase: String = "http://127.0.0.1:9",
                            idleTimeout: String = "60s", bodyTimeout: String = "30s", trustedProxies: [String] = [],
                            extra: String = "") -> String {
        """
        server:
          host: 127.0.0.1
          port: \(port)
          max_body_bytes: 65536
          idle_timeout: \(idleTimeout)
          body_timeout: \(bodyTimeout)
          trusted_proxies: [\(trustedProxies.map { "\"\($0)\"" }.joined(separator: ", "))]
        storage:
          url: \(storageURL)
          encryption_key: \(encryptionKey ?? "")
        wechat:
          api_base: \(apiBase)
          max_clock_skew: 5m
          components:
            - appid: \(componentAppid)
              appsecret: \(secret)
              token: \(token)
              encoding_aes_key: \(aesKey)
            - appid: \(otherComponentAppid)
              appsecret: \(secret)
              token: \(otherToken)
              encoding_aes_key: \(otherAesKey)
          accounts:
            - appid: \(directAppid)
              token: \(directToken)
              encoding_aes_key: \(directAesKey)
            - appid: \(plainAppid)
              token: \(plainToken)
        \(extra)
        """
    }
}

/// A fresh directory under the system's temporary directory.
public func makeTemporaryDirectory() -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("relay-test-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A relay built by the same builder `relay serve` uses, on a SQLite file of its own.
public struct TestRelay: Sendable {
    public let config: RelayConfig
    public let store: any RelayStore
    public let clock: TestClock
    public let metrics: RelayMetrics
    public let directory: String

    /// Runs `body` with a fresh (or reopened, given the same `directory`) relay whose clock starts
    /// at `now`, and closes its store afterwards, however `body` ends. `storageURL` replaces the
    /// SQLite file in `directory` (a PostgreSQL database, say).
    public static func with<T: Sendable>(directory: String = makeTemporaryDirectory(), now: Date = Date(), extraYAML: String = "",
                                         port: Int = 0, encryptionKey: String? = nil, apiBase: String = "http://127.0.0.1:9",
                                         storageURL: String? = nil, idleTimeout: String = "60s", bodyTimeout: String = "30s",
                                         trustedProxies: [String] = [], _ body: (TestRelay) async throws -> T) async throws -> T {
        let config = try RelayConfig.parse(yaml: TestCredentials.yaml(storageURL: storageURL ?? "sqlite:" + directory + "/relay.sqlite",
                                                                      port: port, encryptionKey: encryptionKey, apiBase: apiBase,
                                                                      idleTimeout: idleTimeout, bodyTimeout: bodyTimeout,
                                                                      trustedProxies: trustedProxies, extra: extraYAML),
                                           environment: [:])
        return try await StoreFactory.withStore(config.storage, logger: Logger(label: "test")) { store in
            try await body(TestRelay(config: config, store: store, clock: TestClock(now), metrics: RelayMetrics(), directory: directory))
        }
    }

    public var logger: Logger {
        var logger = Logger(label: "relay-test")
        logger.logLevel = .warning
        return logger
    }

    /// The application, wired exactly as in production but with this relay's clock and store.
    public func application(store override: (any RelayStore)? = nil, logger: Logger? = nil,
                            subscriptionReloadInterval: Duration = .seconds(10), logThrottleInterval: TimeInterval = 1,
                            onListening: @escaping @Sendable (Int) async -> Void = { _ in },
                            onDeliveryAttempt: @escaping @Sendable (DeliveryReport) -> Void = { _ in }) async throws -> some ApplicationProtocol {
        var dependencies = RelayDependencies(store: override ?? store, clock: clock, metrics: metrics, logger: logger ?? self.logger,
                                             onListening: onListening, onDeliveryAttempt: onDeliveryAttempt)
        dependencies.subscriptionReloadInterval = subscriptionReloadInterval
        dependencies.logThrottleInterval = logThrottleInterval
        return try await RelayApplication.build(config: config, dependencies: dependencies)
    }

    /// Unix seconds of the test clock, for push timestamps.
    public var timestamp: Int { Int(clock.now().timeIntervalSince1970) }

    /// An encrypted text message to `appid`'s callback URL, sealed with the test component.
    public func textPush(appid: String = "wx1111111111111111", content: String = "你好", msgId: String = "24681357924681357",
                         from: String = "oUser123", createTime: Int? = nil, nonce: String = PushComposer.nonce()) -> ComposedPush {
        let xml = SamplePushes.text(to: "gh_abcdef123456", from: from, content: content, createTime: createTime ?? timestamp, msgId: msgId)
        return PushComposer.callbackPush(xml: xml, appid: appid, toUserName: "gh_abcdef123456",
                                         crypto: TestCredentials.component.crypto, timestamp: timestamp, nonce: nonce)
    }

    /// An encrypted event to `appid`'s callback URL.
    public func eventPush(appid: String = "wx1111111111111111", event: String = "subscribe", eventKey: String? = nil,
                          from: String = "oUser123", createTime: Int? = nil, nonce: String = PushComposer.nonce()) -> ComposedPush {
        let xml = SamplePushes.event(to: "gh_abcdef123456", from: from, event: event, eventKey: eventKey, createTime: createTime ?? timestamp)
        return PushComposer.callbackPush(xml: xml, appid: appid, toUserName: "gh_abcdef123456",
                                         crypto: TestCredentials.component.crypto, timestamp: timestamp, nonce: nonce)
    }

    /// A ticket push to the authorization-event URL.
    public func ticketPush(ticket: String, component: ComponentCredentials = TestCredentials.component,
                           createTime: Int? = nil, nonce: String = PushComposer.nonce()) -> ComposedPush {
        let xml = SamplePushes.ticket(component: component.appid, ticket: ticket, createTime: createTime ?? timestamp)
        return PushComposer.componentPush(xml: xml, component: component, timestamp: timestamp, nonce: nonce)
    }
}
