import RelayCore
import RelayStore
import WeChatCrypto

extension RelayConfig {
    /// What `relay serve` logs when it starts: enough to tell, reading logs after a restart,
    /// which store and how much configuration it ran with (never a secret, nor a password).
    public var startMetadata: [String: String] {
        let store: String
        switch storage.url {
        case .sqlite(let path): store = "sqlite:" + path
        case .postgres(let url): store = "postgres:" + ((try? PostgresURL(url))?.location ?? "?")
        }
        return ["store": store, "components": "\(wechat.components.count)", "accounts": "\(wechat.accounts.count)",
                "config_subscriptions": "\(subscriptions.count)", "admin_api": admin.token == nil ? "off" : "on",
                "secrets_sealed": storage.encryptionKey == nil ? "no" : "yes"]
    }

    /// A human summary for `relay check`: what is configured, never a secret's value.
    public var summary: String {
        var lines = ["configuration is valid"]
        func text(_ duration: Duration) -> String { ConfigDuration.text(duration) }
        lines.append("server: \(server.host):\(server.port), public URL \(server.publicURL), bodies up to \(server.maxBodyBytes) bytes "
            + "within \(text(server.bodyTimeout)), idle connections closed after \(text(server.idleTimeout))"
            + (server.trustedProxies.isEmpty ? "" : ", X-Forwarded-For believed from \(server.trustedProxies.map(\.description).joined(separator: ", "))"))
        lines.append("admin API: \(admin.token == nil ? "off (no admin.token)" : "on (token set)")")
        switch storage.url {
        case .sqlite(let path): lines.append("storage: SQLite at \(path)")
        case .postgres(let url):
            // Validated when the file was read; the password is not repeated.
            let parsed = try? PostgresURL(url)
            lines.append("storage: PostgreSQL" + (parsed.map { " at \($0.location), sslmode \($0.sslMode.rawValue)" } ?? ""))
        }
        lines.append("secrets at rest: \(storage.encryptionKey == nil ? "not sealed (no storage.encryption_key)" : "sealed with AES-GCM")")
        lines.append("retention: \(text(storage.retention))")
        lines.append("WeChat API: \(wechat.apiBase), clock skew allowed: \(text(wechat.maxClockSkew))")
        for component in wechat.components {
            let rotation = component.credentials.crypto.hasPreviousKey ? ", previous AES key set" : ""
            lines.append("component \(component.appid): token, AES key and secret set\(rotation)")
        }
        for account in wechat.accounts {
            lines.append("account \(account.appid): \(account.crypto == nil ? "plaintext mode" : "encrypted mode")")
        }
        lines.append("delivery: timeout \(text(delivery.timeout)), \(delivery.retrySchedule.count) retries (\(delivery.retrySchedule.map(text).joined(separator: ", "))), "
            + "\(delivery.maxInFlightPerSubscription) in flight per subscription, private networks \(delivery.allowPrivateNetworks ? "allowed" : "refused")")
        let breaker = delivery.circuitBreaker
        lines.append(breaker.failures == 0 ? "circuit breaker: off"
            : "circuit breaker: after \(breaker.failures) failed attempts in a row, one probe at a time every \(text(breaker.probe)) to \(text(breaker.maxProbe))")
        lines.append("reply deadline: \(text(reply.deadline)), full-network release test \(reply.releaseTest ? "answered" : "off")")
        lines.append("onboarding: " + (onboarding.linksPerMinute == 0 ? "authorization links not limited" : "at most \(onboarding.linksPerMinute) authorization links a minute per node")
            + (onboarding.linksPerClientPerMinute == 0 ? "" : ", \(onboarding.linksPerClientPerMinute) per client")
            + ", return_to " + (onboarding.returnTo.isEmpty ? "refused (no onboarding.return_to)" : "allowed under \(onboarding.returnTo.joined(separator: ", "))"))
        for subscription in subscriptions {
            var flags: [String] = []
            if subscription.ordered { flags.append("ordered") }
            if subscription.reply { flags.append("reply endpoint") }
            lines.append("subscription \(subscription.id): \(subscription.url) appids \(subscription.appids) events \(subscription.events)"
                + (flags.isEmpty ? "" : " (\(flags.joined(separator: ", ")))"))
        }
        return lines.joined(separator: "\n")
    }
}
