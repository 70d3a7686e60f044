import Foundation
import RelayCore
import WeChatCrypto
import Yams

/// `relay.yml`, validated. Every section documents its keys in the README; secrets are marked
/// and never printed (see `summary`).
public struct RelayConfig: Sendable {
    public struct Server: Sendable {
        public var host = "0.0.0.0"
        public var port = 8080
        /// How WeChat and browsers reach this relay (used to build callback URLs).
        public var publicURL = "http://localhost:8080"
        public var maxBodyBytes = 1_048_576
        /// How long a connection may sit without a request before it is closed: an idle or
        /// silent client does not hold a socket (and a file descriptor) for ever.
        public var idleTimeout: Duration = .seconds(60)
        /// How long after its head a request's body may take to arrive whole before the
        /// connection is closed: a client trickling a body does not hold a handler for ever.
        public var bodyTimeout: Duration = .seconds(30)
        /// Proxies (load balancers) whose `X-Forwarded-For` names the client, for the budgets
        /// each client gets; nobody else's is believed.
        public var trustedProxies: [AddressRange] = []
    }

    public struct Admin: Sendable {
        /// Bearer token for `/v1` (secret); nil means the admin API is off.
        public var token: String?
    }

    public enum StorageURL: Sendable, Equatable {
        case sqlite(path: String)
        case postgres(url: String)
    }

    public struct Storage: Sendable {
        public var url: StorageURL = .sqlite(path: "relay.sqlite")
        /// Base64 of 32 bytes (secret); seals tickets, tokens and webhook secrets at rest.
        public var encryptionKey: String?
        public var retention: Duration = .seconds(30 * 86_400)
    }

    public struct Component: Sendable {
        public var appid: String
        public var credentials: ComponentCredentials
    }

    public struct WeChat: Sendable {
        public var apiBase = "https://api.weixin.qq.com"
        public var maxClockSkew: Duration = .seconds(300)
        public var components: [Component] = []
        public var accounts: [AccountCredentials] = []
    }

    public struct Delivery: Sendable {
        public var timeout: Duration = .seconds(10)
        public var retrySchedule: [Duration] = [5, 30, 120, 600, 1800, 3600, 10_800, 21_600, 43_200, 86_400].map { .seconds($0) }
        public var maxInFlightPerSubscription = 32
        public var allowPrivateNetworks = false
        /// `delivery.circuit_breaker`: when a subscriber that keeps failing gets one probe at a time.
        public var circuitBreaker = CircuitBreakerPolicy()
    }

    public struct Reply: Sendable {
        public var deadline: Duration = .seconds(4)
        /// Answer WeChat's full-network release test (全网发布) for its test accounts.
        public var releaseTest = true
        /// More AppIDs or `gh_` ids to treat as release-test accounts.
        public var releaseTestAccounts: [String] = []
    }

    public struct Onboarding: Sendable {
        /// URL prefixes `return_to` may redirect merchants to after authorizing.
        public var returnTo: [String] = []
        /// Clicks on `/onboarding/authorize` a node turns into pre-auth codes per minute (also the
        /// burst); 0 for no limit. Each click spends one of WeChat's codes, from a daily quota.
        public var linksPerMinute = 20
        /// The same for one client (`ClientAddress`), so that one cannot spend the node's all; 0 for no such limit.
        public var linksPerClientPerMinute = 5
    }

    public struct Subscription: Sendable {
        public var id: String
        public var url: String
        /// `whsec_…` (secret); generated when omitted.
        public var secret: String?
        public var appids: [String] = ["*"]
        public var events: [String] = ["*"]
        public var ordered = false
        public var reply = false
    }

    public var server = Server()
    public var admin = Admin()
    public var storage = Storage()
    public var wechat = WeChat()
    public var delivery = Delivery()
    public var reply = Reply()
    public var onboarding = Onboarding()
    public var subscriptions: [Subscription] = []

    public init() {}

    /// The credentials every push is verified against.
    public var credentials: CredentialRegistry {
        CredentialRegistry(components: wechat.components.map(\.credentials), accounts: wechat.accounts)
    }
}
