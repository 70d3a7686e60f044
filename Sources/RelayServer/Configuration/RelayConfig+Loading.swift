import Foundation
import RelayCore
import RelayStore
import WeChatCrypto
import Yams

extension RelayConfig {
    /// Reads and validates the file at `path`.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigError) -> RelayConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            // The path is named by whoever prints this; say why, and where a relative path was looked for.
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                let place = path.hasPrefix("/") ? "" : " in \(FileManager.default.currentDirectoryPath)"
                throw ConfigError("", "no such file\(place) (--config names another)")
            }
            guard !isDirectory.boolValue else { throw ConfigError("", "a directory, not a file") }
            guard FileManager.default.isReadableFile(atPath: path) else { throw ConfigError("", "this user may not read it") }
            throw ConfigError("", "cannot be read as UTF-8 text: \(error.localizedDescription)")
        }
        return try parse(yaml: text, environment: environment)
    }

    /// Parses and validates YAML text.
    public static func parse(yaml: String, environment: [String: String]) throws(ConfigError) -> RelayConfig {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError("", "not valid YAML: \(error)")
        }
        let root = try ConfigMapping(node, path: "", environment: environment)
        var config = RelayConfig()
        config.server = try readServer(root.mapping("server"))
        config.admin = try readAdmin(root.mapping("admin"))
        config.storage = try readStorage(root.mapping("storage"))
        config.wechat = try readWeChat(root.mapping("wechat"))
        config.delivery = try readDelivery(root.mapping("delivery"))
        config.reply = try readReply(root.mapping("reply"))
        config.onboarding = try readOnboarding(root.mapping("onboarding"))
        config.subscriptions = try root.mappings("subscriptions").map(readSubscription)
        try root.finish()
        try validateSubscriptions(config.subscriptions)
        return config
    }

    private static func readServer(_ m: ConfigMapping) throws(ConfigError) -> Server {
        var server = Server()
        server.host = try m.string("host", default: server.host)
        server.port = try m.int("port", default: server.port, range: 0...65_535)
        server.publicURL = try m.string("public_url", default: "http://localhost:\(server.port)")
        guard let url = URL(string: server.publicURL), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw ConfigError(m.child("public_url"), "expected an http(s) URL such as https://relay.example.com")
        }
        server.maxBodyBytes = try m.int("max_body_bytes", default: server.maxBodyBytes, range: 1024...(64 << 20))
        server.idleTimeout = try m.duration("idle_timeout", default: server.idleTimeout)
        guard server.idleTimeout > .zero else { throw ConfigError(m.child("idle_timeout"), "must be more than 0 (such as 60s)") }
        server.bodyTimeout = try m.duration("body_timeout", default: server.bodyTimeout)
        guard server.bodyTimeout > .zero else { throw ConfigError(m.child("body_timeout"), "must be more than 0 (such as 30s)") }
        for (index, text) in try m.strings("trusted_proxies", default: []).enumerated() {
            guard let range = AddressRange(text) else {
                throw ConfigError("\(m.child("trusted_proxies"))[\(index)]", "expected an address or a CIDR range such as 10.0.0.0/8, not \(text)")
            }
            server.trustedProxies.append(range)
        }
        try m.finish()
        return server
    }

    private static func readAdmin(_ m: ConfigMapping) throws(ConfigError) -> Admin {
        let token = try m.optionalString("token")
        if let token, !token.isEmpty, token.count < 16 {
            throw ConfigError(m.child("token"), "must be at least 16 characters (or empty to turn the admin API off)")
        }
        try m.finish()
        return Admin(token: token?.isEmpty == false ? token : nil)
    }

    private static func readStorage(_ m: ConfigMapping) throws(ConfigError) -> Storage {
        var storage = Storage()
        storage.url = try StorageURL(parsing: try m.string("url", default: "sqlite:relay.sqlite"), key: m.child("url"))
        let key = try m.optionalString("encryption_key")
        if let key, !key.isEmpty {
            guard (try? SecretSealer(base64Key: key)) != nil else {
                throw ConfigError(m.child("encryption_key"), "must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)")
            }
            storage.encryptionKey = key
        }
        storage.retention = try m.duration("retention", default: storage.retention)
        guard storage.retention >= .seconds(3600) else { throw ConfigError(m.child("retention"), "must be at least 1h") }
        try m.finish()
        return storage
    }

    private static func readWeChat(_ m: ConfigMapping) throws(ConfigError) -> WeChat {
        var wechat = WeChat()
        wechat.apiBase = try m.string("api_base", default: wechat.apiBase)
        guard let url = URL(string: wechat.apiBase), ["http", "https"].contains(url.scheme ?? "") else {
            throw ConfigError(m.child("api_base"), "expected an http(s) URL")
        }
        wechat.maxClockSkew = try m.duration("max_clock_skew", default: wechat.maxClockSkew)
        guard wechat.maxClockSkew >= .seconds(1) else {
            throw ConfigError(m.child("max_clock_skew"), "must be at least 1s (WeChat's timestamps are whole seconds; 0 refuses almost every push)")
        }
        for c in try m.mappings("components") {
            let appid = try appidValue(c, "appid")
            let token = try tokenValue(c)
            let key = try aesKey(c, "encoding_aes_key", required: true)!
            let previous = try aesKey(c, "previous_encoding_aes_key", required: false)
            let secret = try c.requiredString("appsecret")
            try c.finish()
            guard !wechat.components.contains(where: { $0.appid == appid }) else {
                throw ConfigError(c.child("appid"), "component \(appid) is configured twice")
            }
            wechat.components.append(Component(appid: appid, credentials: ComponentCredentials(
                appid: appid, appsecret: secret, token: token, key: key, previousKey: previous)))
        }
        for a in try m.mappings("accounts") {
            let appid = try appidValue(a, "appid")
            let token = try tokenValue(a)
            let key = try aesKey(a, "encoding_aes_key", required: false)
            let previous = try aesKey(a, "previous_encoding_aes_key", required: false)
            let secret = try a.optionalString("appsecret")
            try a.finish()
            wechat.accounts.append(AccountCredentials(appid: appid, token: token, key: key, previousKey: previous,
                                                      appsecret: secret?.isEmpty == false ? secret : nil))
        }
        try m.finish()
        // Nothing to verify a push with: every push would be refused, and onboarding has no
        // platform to onboard to. (Such a file passed `relay check` as valid.)
        guard !wechat.components.isEmpty || !wechat.accounts.isEmpty else {
            throw ConfigError(m.child("components"), "list at least one component (appid, appsecret, token, encoding_aes_key), "
                              + "or an account under wechat.accounts: without credentials the relay refuses every push")
        }
        return wechat
    }

    private static func readDelivery(_ m: ConfigMapping) throws(ConfigError) -> Delivery {
        var delivery = Delivery()
        delivery.timeout = try m.duration("timeout", default: delivery.timeout)
        guard delivery.timeout > .zero, delivery.timeout <= .seconds(3600) else {
            throw ConfigError(m.child("timeout"), "must be more than 0 and at most 1h (such as 10s)")
        }
        delivery.retrySchedule = try m.durations("retry_schedule", default: delivery.retrySchedule)
        delivery.maxInFlightPerSubscription = try m.int("max_in_flight_per_subscription", default: delivery.maxInFlightPerSubscription, range: 1...1024)
        delivery.allowPrivateNetworks = try m.bool("allow_private_networks", default: false)
        delivery.circuitBreaker = try readCircuitBreaker(m.mapping("circuit_breaker"))
        try m.finish()
        return delivery
    }

    private static func readCircuitBreaker(_ m: ConfigMapping) throws(ConfigError) -> CircuitBreaker.Policy {
        var policy = CircuitBreaker.Policy()
        policy.failures = try m.int("failures", default: policy.failures, range: 0...1_000_000)
        policy.probe = try m.duration("probe", default: policy.probe)
        guard policy.probe >= .milliseconds(10), policy.probe <= .seconds(3600) else {
            throw ConfigError(m.child("probe"), "must be from 10ms to 1h (such as 1s)")
        }
        policy.maxProbe = try m.duration("max_probe", default: max(policy.maxProbe, policy.probe))
        guard policy.maxProbe >= policy.probe, policy.maxProbe <= .seconds(86_400) else {
            throw ConfigError(m.child("max_probe"), "must be at least circuit_breaker.probe and at most 24h (such as 1m)")
        }
        try m.finish()
        return policy
    }

    private static func readReply(_ m: ConfigMapping) throws(ConfigError) -> Reply {
        var reply = Reply()
        reply.deadline = try m.duration("deadline", default: reply.deadline)
        guard reply.deadline > .zero else { throw ConfigError(m.child("deadline"), "must be more than 0 (such as 4s)") }
        guard reply.deadline <= .milliseconds(4800) else {
            throw ConfigError(m.child("deadline"), "must leave WeChat's 5 s window room for encryption: at most 4800ms")
        }
        reply.releaseTest = try m.bool("release_test", default: true)
        reply.releaseTestAccounts = try m.strings("release_test_accounts", default: [])
        try m.finish()
        return reply
    }

    private static func readOnboarding(_ m: ConfigMapping) throws(ConfigError) -> Onboarding {
        let prefixes = try m.strings("return_to", default: [])
        for (index, prefix) in prefixes.enumerated() {
            guard let url = URL(string: prefix), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw ConfigError("\(m.child("return_to"))[\(index)]", "expected an http(s) URL prefix such as https://platform.example.com/done")
            }
        }
        let linksPerMinute = try m.int("links_per_minute", default: Onboarding().linksPerMinute, range: 0...100_000)
        let perClient = try m.int("links_per_client_per_minute", default: Onboarding().linksPerClientPerMinute, range: 0...100_000)
        try m.finish()
        return Onboarding(returnTo: prefixes, linksPerMinute: linksPerMinute, linksPerClientPerMinute: perClient)
    }

    private static func readSubscription(_ m: ConfigMapping) throws(ConfigError) -> Subscription {
        let id = try m.requiredString("id")
        guard InputRules.isSubscriptionID(id) else {
            throw ConfigError(m.child("id"), "use letters, digits, - and _ (at most 64)")
        }
        let url = try m.requiredString("url")
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
            throw ConfigError(m.child("url"), "expected an http(s) URL")
        }
        if let problem = InputRules.credentialsProblem(in: parsed) { throw ConfigError(m.child("url"), problem) }
        var subscription = Subscription(id: id, url: url)
        if let secret = try m.optionalString("secret"), !secret.isEmpty {
            guard WebhookSigner.isValidSecret(secret) else {
                throw ConfigError(m.child("secret"), "expected whsec_ followed by base64 of at least 24 bytes")
            }
            subscription.secret = secret
        }
        subscription.appids = try m.strings("appids", default: ["*"])
        subscription.events = try m.strings("events", default: ["*"])
        do throws(SubscriptionFilter.Problem) {
            try SubscriptionFilter.check(appids: subscription.appids)
            try SubscriptionFilter.check(events: subscription.events)
        } catch {
            throw ConfigError(m.child(error.path), error.message)
        }
        subscription.ordered = try m.bool("ordered", default: false)
        subscription.reply = try m.bool("reply", default: false)
        try m.finish()
        return subscription
    }

    private static func validateSubscriptions(_ subscriptions: [Subscription]) throws(ConfigError) {
        var seen: Set<String> = []
        for (index, subscription) in subscriptions.enumerated() {
            guard seen.insert(subscription.id).inserted else {
                throw ConfigError("subscriptions[\(index)].id", "subscription id \(subscription.id) is used twice")
            }
            guard subscription.reply else { continue }
            for other in subscriptions[..<index] where other.reply {
                if other.appids.contains("*") || subscription.appids.contains("*") || !Set(other.appids).isDisjoint(with: subscription.appids) {
                    throw ConfigError("subscriptions[\(index)].reply",
                                      "subscription \(other.id) is already the reply endpoint for these AppIDs; an AppID has at most one")
                }
            }
        }
    }

    private static func appidValue(_ m: ConfigMapping, _ key: String) throws(ConfigError) -> String {
        let appid = try m.requiredString(key)
        guard InputRules.isAppID(appid) else {
            throw ConfigError(m.child(key), "expected an AppID such as wx1234567890abcdef")
        }
        return appid
    }

    private static func tokenValue(_ m: ConfigMapping) throws(ConfigError) -> String {
        let token = try m.requiredString("token")
        guard (3...32).contains(token.count), token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw ConfigError(m.child("token"), "WeChat message tokens are 3 to 32 letters or digits")
        }
        return token
    }

    private static func aesKey(_ m: ConfigMapping, _ key: String, required: Bool) throws(ConfigError) -> EncodingAESKey? {
        guard let text = try m.optionalString(key), !text.isEmpty else {
            if required { throw ConfigError(m.child(key), "is required (the 43-character EncodingAESKey)") }
            return nil
        }
        do {
            return try EncodingAESKey(text)
        } catch {
            throw ConfigError(m.child(key), error.description)
        }
    }
}

extension RelayConfig.StorageURL {
    /// `sqlite:PATH` or `postgres://…`, checked; errors name `key`.
    public init(parsing url: String, key: String) throws(ConfigError) {
        if url.hasPrefix("sqlite:") {
            let path = String(url.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw ConfigError(key, "sqlite: needs a file path, e.g. sqlite:relay.sqlite") }
            self = .sqlite(path: path)
        } else if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            do {
                _ = try PostgresURL(url)
            } catch {
                throw ConfigError(key, error.description)
            }
            self = .postgres(url: url)
        } else {
            throw ConfigError(key, "expected sqlite:PATH or postgres://user:pass@host:port/db")
        }
    }
}
