import Foundation
import Logging
import RelayCore
import WeChatXML

/// Completes authorizations and follows their lifecycle: the code exchange (idempotent, whether
/// it comes from the onboarding callback, WeChat's `authorized` push or the admin API), the
/// authorizer's profile, revocation, and recovery from WeChat's authorizer list.
final class AuthorizationService: Sendable {
    let tokens: TokenService
    let store: any RelayStore
    let api: WeChatAPIClient
    let registry: SubscriptionRegistry
    let clock: any RelayClock
    let logger: Logger
    let deliveriesCreated: @Sendable ([String]) -> Void
    private let exchanges = SingleFlight<Authorizer>()

    init(tokens: TokenService, store: any RelayStore, api: WeChatAPIClient, registry: SubscriptionRegistry,
         clock: any RelayClock, logger: Logger, deliveriesCreated: @escaping @Sendable ([String]) -> Void) {
        self.tokens = tokens
        self.store = store
        self.api = api
        self.registry = registry
        self.clock = clock
        self.logger = logger
        self.deliveriesCreated = deliveriesCreated
    }

    /// The component a request means: the one named, or the only one configured.
    func component(_ appid: String?) throws -> String {
        if let appid {
            guard tokens.components[appid] != nil else { throw TokenError.unknownComponent(appid) }
            return appid
        }
        guard tokens.components.count == 1, let only = tokens.components.keys.first else {
            throw TokenError.componentRequired
        }
        return only
    }

    /// Exchanges an authorization code once, stores the authorizer with its tokens, permissions and
    /// profile, and stores one `authorizer.authorized` event for the grant. Repeated calls with the
    /// same code return the stored authorizer without calling WeChat again.
    func complete(code: String, componentAppid: String) async throws -> Authorizer {
        // One exchange per code in this process (the flight) and across nodes (the store lock):
        // WeChat sends the `authorized` push as it sends the merchant to the callback, and behind
        // a load balancer the two reach different nodes.
        try await exchanges.run("code:\(code)") {
            try await self.tokens.locked("exchange:\(code)", doing: "exchanging this authorization code",
                                         recheck: { try await self.previousExchange(code) }) {
                try await self.exchange(code: code, componentAppid: componentAppid)
            }
        }
    }

    /// The exchange itself; `complete` makes sure it runs once per code.
    private func exchange(code: String, componentAppid: String) async throws -> Authorizer {
        let info: WeChatAPIClient.AuthorizationInfo
        do {
            info = try await withComponentToken(componentAppid) { token in
                try await api.queryAuth(appid: componentAppid, token: token, code: code)
            }
        } catch let error as WeChatAPIError where error.errcode == 61009 {
            // Used a moment ago by a node that lost the lock to a timeout (its lease is 30 s).
            if let known = try await previousExchange(code) { return known }
            throw error
        }
        let now = clock.now()
        var authorizer = try await store.authorizer(appid: info.authorizer_appid)
            ?? Authorizer(appid: info.authorizer_appid, componentAppid: componentAppid, authorizedAt: now)
        authorizer.componentAppid = componentAppid
        authorizer.status = .active
        authorizer.authorizedAt = now
        authorizer.permissions = (info.func_info ?? []).map(\.funcscope_category.id)
        authorizer.refreshToken = info.authorizer_refresh_token ?? authorizer.refreshToken
        if let access = info.authorizer_access_token {
            authorizer.accessToken = StoredToken(token: access, expiresAt: now.addingTimeInterval(TimeInterval(info.expires_in ?? 7200)))
        }
        await addProfile(to: &authorizer)
        try await store.saveAuthorizer(authorizer)
        try await store.recordExchange(code: code, authorizerAppid: authorizer.appid, at: now)
        try await storeAuthorizedEvent(authorizer: authorizer, code: code, at: now)
        logger.info("authorization completed", metadata: ["authorizer_appid": .string(authorizer.appid),
                                                          "component_appid": .string(componentAppid)])
        return try await store.authorizer(appid: authorizer.appid) ?? authorizer
    }

    private func previousExchange(_ code: String) async throws -> Authorizer? {
        guard let appid = try await store.exchangedCode(code) else { return nil }
        return try await store.authorizer(appid: appid)
    }

    func withComponentToken<T: Sendable>(_ component: String, _ call: @Sendable (String) async throws -> T) async throws -> T {
        try await tokens.withComponentToken(component, call)
    }

    private func addProfile(to authorizer: inout Authorizer) async {
        let appid = authorizer.appid, component = authorizer.componentAppid
        do {
            let profile = try await withComponentToken(component) { token in
                try await self.api.authorizerInfo(appid: component, token: token, authorizer: appid)
            }
            authorizer.name = Self.storable(profile.authorizer_info.nick_name)
            authorizer.userName = Self.storable(profile.authorizer_info.user_name)
            authorizer.type = profile.kind
        } catch {
            logger.warning("cannot fetch the authorizer's profile", metadata: ["authorizer_appid": .string(appid), "error": "\(error)"])
        }
    }

    /// Text from WeChat's answer with NUL as U+FFFD: PostgreSQL's text refuses NUL, and a name
    /// holding one would fail the whole authorization there (JSON may carry `\u0000`).
    static func storable(_ text: String?) -> String? {
        text.map { $0.contains("\u{0}") ? $0.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}") : $0 }
    }

    /// The grant's event, keyed like WeChat's `authorized` push so that only one of the two is stored.
    private func storeAuthorizedEvent(authorizer: Authorizer, code: String, at now: Date) async throws {
        let data = JSONValue.object([
            ("AppId", .string(authorizer.componentAppid)), ("CreateTime", .string(String(Int(now.timeIntervalSince1970)))),
            ("InfoType", .string("authorized")), ("AuthorizerAppid", .string(authorizer.appid)),
            ("AuthorizationCode", .string(code)),
        ])
        let event = RelayEvent(id: EventID.make(at: now), type: "authorizer.authorized", appid: authorizer.appid,
                               componentAppid: authorizer.componentAppid, receivedAt: now, dataJSON: data.serialized,
                               dedupKey: EventBuilder.grantKey(code: code), fromUser: nil)
        let deliveries = PlannedDelivery.plan(for: event, subscriptions: registry.all)
        if case .stored = try await store.commit(IntakeRecord(event: event, ticket: nil, deliveries: deliveries)), !deliveries.isEmpty {
            deliveriesCreated(deliveries.map(\.subscriptionId))
        }
    }

    /// Follows an authorization push already stored by intake.
    func handle(pushed event: RelayEvent, root: XMLNode) async {
        guard let component = event.componentAppid else { return }
        do {
            switch root.childText("InfoType") {
            case "authorized", "updateauthorized":
                guard let code = root.childText("AuthorizationCode"), !code.isEmpty else { return }
                _ = try await complete(code: code, componentAppid: component)
            case "unauthorized":
                guard let appid = root.childText("AuthorizerAppid"), !appid.isEmpty else { return }
                try await store.revokeAuthorizer(appid: appid)
                logger.info("authorization revoked", metadata: ["authorizer_appid": .string(appid)])
            case "notify_third_fasteregister":
                guard root.childText("status") == "0", let code = root.childText("auth_code"), !code.isEmpty else { return }
                _ = try await complete(code: code, componentAppid: component)
            default:
                return
            }
        } catch is CancellationError {
            // Only a forced shutdown cancels a follow-up; the exchange is idempotent.
            logger.notice("authorization push follow-up cancelled by the relay stopping; the callback or the next sync completes it",
                          metadata: ["event_id": .string(event.id)])
        } catch {
            logger.error("cannot process an authorization push", metadata: ["event_id": .string(event.id), "error": "\(error)"])
        }
    }

    /// Recovers authorizers and refresh tokens from `api_get_authorizer_list` (all pages).
    func sync(componentAppid: String) async throws -> Int {
        var offset = 0, recovered = 0
        while true {
            let from = offset
            let page = try await withComponentToken(componentAppid) { token in
                try await self.api.authorizerList(appid: componentAppid, token: token, offset: from, count: 500)
            }
            for item in page.list {
                var authorizer = try await store.authorizer(appid: item.authorizer_appid)
                    ?? Authorizer(appid: item.authorizer_appid, componentAppid: componentAppid,
                                  authorizedAt: item.auth_time.map { Date(timeIntervalSince1970: TimeInterval($0)) } ?? clock.now())
                if let refresh = item.refresh_token, !refresh.isEmpty, refresh != authorizer.refreshToken || authorizer.status != .active {
                    authorizer.refreshToken = refresh
                    authorizer.status = .active
                    authorizer.accessToken = nil
                    if authorizer.name == nil { await addProfile(to: &authorizer) }
                    try await store.saveAuthorizer(authorizer)
                    recovered += 1
                }
            }
            offset += page.list.count
            if page.list.isEmpty || offset >= page.total_count { break }
        }
        return recovered
    }
}
