import Foundation
import Logging
import RelayCore
import Synchronization

/// Hands out valid WeChat tokens so no internal service calls WeChat's token APIs itself.
///
/// Each refresh is single-flight in this process and holds a store lease lock (`token:<appid>`), so
/// across relay nodes too only one refresh per token runs at a time; a node that finds the lock
/// taken waits for the token the holder stores.
final class TokenService: Sendable {
    let store: any AuthorizationStore
    let tickets: any RelayStore
    let api: WeChatAPIClient
    let components: [String: ComponentCredentials]
    let clock: any RelayClock
    let metrics: RelayMetrics
    let logger: Logger
    /// Tokens are refreshed when less than this is left (WeChat suggests ~10 minutes early).
    let refreshMargin: TimeInterval = 600
    let owner = "tokens-" + UUID().uuidString.prefix(8).lowercased()
    private let flights = SingleFlight<StoredToken>()
    private let ticketRequests = SingleFlight<Bool>()
    /// When each component last asked WeChat for a ticket push, and whether WeChat accepted.
    private let lastTicketRequest = Mutex<[String: (at: Date, accepted: Bool)]>([:])
    /// WeChat pushes a ticket within about ten minutes of an accepted request, so asking again
    /// sooner only spends the API's quota — yet every token request without a ticket would ask.
    let ticketRequestInterval: TimeInterval = 600
    /// After a refused or failed request, the wait before the next one.
    let ticketRetryInterval: TimeInterval = 60

    init(store: any AuthorizationStore, tickets: any RelayStore, api: WeChatAPIClient, components: [ComponentCredentials],
         clock: any RelayClock, metrics: RelayMetrics, logger: Logger) {
        self.store = store
        self.tickets = tickets
        self.api = api
        self.components = Dictionary(uniqueKeysWithValues: components.map { ($0.appid, $0) })
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Component tokens

    func componentToken(_ appid: String, force: Bool = false) async throws -> StoredToken {
        guard let component = components[appid] else { throw TokenError.unknownComponent(appid) }
        if !force, let cached = try await store.componentToken(appid: appid), cached.isFresh(at: clock.now(), margin: refreshMargin) {
            return cached
        }
        return try await flights.run("component:\(appid)") {
            try await self.locked("token:component:\(appid)", doing: "refreshing component:\(appid)", recheck: {
                force ? nil : try await self.store.componentToken(appid: appid).flatMap { $0.isFresh(at: self.clock.now(), margin: self.refreshMargin) ? $0 : nil }
            }) {
                try await self.refreshComponentToken(component)
            }
        }
    }

    /// Whether an authorization link can be made for `appid` now: its component token is fresh,
    /// or a ticket is stored to get one with. Without either a click can only fail until WeChat
    /// pushes a ticket. A store that cannot say counts as yes: the click reports what is wrong.
    func mayIssueLinks(_ appid: String) async -> Bool {
        do {
            if let token = try await store.componentToken(appid: appid), token.isFresh(at: clock.now(), margin: refreshMargin) { return true }
            return try await tickets.ticket(componentAppid: appid) != nil
        } catch {
            return true
        }
    }

    private func refreshComponentToken(_ component: ComponentCredentials) async throws -> StoredToken {
        guard let ticket = try await tickets.ticket(componentAppid: component.appid) else {
            await requestTicket(component)
            throw TokenError.noTicket(component: component.appid)
        }
        // Tickets are valid for 12 hours and arrive every 10 minutes: an old one means pushes stopped.
        // It may still work, so use it, but ask WeChat to restart the pushes.
        if clock.now().timeIntervalSince(ticket.receivedAt) > 12 * 3600 { await requestTicket(component) }
        do {
            let answer = try await api.componentToken(appid: component.appid, secret: component.appsecret, ticket: ticket.ticket)
            let token = StoredToken(token: answer.component_access_token,
                                    expiresAt: clock.now().addingTimeInterval(TimeInterval(answer.expires_in)))
            try await store.saveComponentToken(appid: component.appid, token)
            metrics.tokenRefresh(kind: "component", outcome: "refreshed")
            return token
        } catch let error as WeChatAPIError where error.isTicketError {
            metrics.tokenRefresh(kind: "component", outcome: "failed")
            await requestTicket(component)
            throw TokenError.noTicket(component: component.appid)
        } catch {
            metrics.tokenRefresh(kind: "component", outcome: "failed")
            throw error
        }
    }

    /// Asks WeChat to (re)start pushing tickets; several callers at once make one call, and
    /// callers within `ticketRequestInterval` of an accepted call (`ticketRetryInterval` of a
    /// failed one) make none.
    private func requestTicket(_ component: ComponentCredentials) async {
        let now = clock.now()
        if let last = lastTicketRequest.withLock({ $0[component.appid] }),
           now.timeIntervalSince(last.at) < (last.accepted ? ticketRequestInterval : ticketRetryInterval) {
            logger.debug("a ticket push was requested recently; not asking again yet", metadata: ["component_appid": .string(component.appid)])
            return
        }
        _ = try? await ticketRequests.run(component.appid) {
            let accepted: Bool
            do {
                try await self.api.startPushTicket(appid: component.appid, secret: component.appsecret)
                self.logger.notice("asked WeChat to push a component_verify_ticket", metadata: ["component_appid": .string(component.appid)])
                accepted = true
            } catch {
                self.logger.error("api_start_push_ticket failed", metadata: ["component_appid": .string(component.appid), "error": "\(error)"])
                accepted = false
            }
            self.lastTicketRequest.withLock { $0[component.appid] = (self.clock.now(), accepted) }
            return true
        }
    }

    /// Runs `call` with the component token; on a token error, once more with a fresh one.
    func withComponentToken<T: Sendable>(_ component: String, _ call: @Sendable (String) async throws -> T) async throws -> T {
        do {
            return try await call(try await componentToken(component).token)
        } catch let error as WeChatAPIError where error.isTokenError {
            return try await call(try await componentToken(component, force: true).token)
        }
    }

    // MARK: Authorizer tokens

    func authorizerToken(_ appid: String, force: Bool = false) async throws -> StoredToken {
        let authorizer = try await activeAuthorizer(appid)
        if !force, let cached = authorizer.accessToken, cached.isFresh(at: clock.now(), margin: refreshMargin) { return cached }
        return try await flights.run("authorizer:\(appid)") {
            try await self.locked("token:authorizer:\(appid)", doing: "refreshing authorizer:\(appid)", recheck: {
                guard !force, let cached = try await self.store.authorizer(appid: appid)?.accessToken,
                      cached.isFresh(at: self.clock.now(), margin: self.refreshMargin) else { return nil }
                return cached
            }) {
                try await self.refreshAuthorizerToken(appid)
            }
        }
    }

    private func activeAuthorizer(_ appid: String) async throws -> Authorizer {
        guard let authorizer = try await store.authorizer(appid: appid) else { throw TokenError.unknownAuthorizer(appid) }
        guard authorizer.status == .active else { throw TokenError.revoked(appid) }
        return authorizer
    }

    /// Refreshes with the stored refresh token and saves the new pair only if nobody saved in
    /// between (compare and swap), so an older refresh token never overwrites a newer one.
    private func refreshAuthorizerToken(_ appid: String) async throws -> StoredToken {
        let authorizer = try await activeAuthorizer(appid)  // re-read under the lock: the newest refresh token
        guard var refreshToken = authorizer.refreshToken else { throw TokenError.noRefreshToken(appid) }
        let component = authorizer.componentAppid
        @Sendable func refresh(with refreshToken: String) async throws -> WeChatAPIClient.AuthorizerToken {
            try await withComponentToken(component) { token in
                try await self.api.authorizerToken(appid: component, token: token, authorizer: appid, refreshToken: refreshToken)
            }
        }
        do {
            let answer: WeChatAPIClient.AuthorizerToken
            do {
                answer = try await refresh(with: refreshToken)
            } catch let error as WeChatAPIError where error.isRefreshTokenInvalid {
                // 61023: superseded (a re-authorization whose push the relay missed) or revoked.
                // WeChat's account details carry the current one; the refresh is tried once with it.
                guard let current = try await currentRefreshToken(appid, component: component), current != refreshToken else { throw error }
                logger.notice("authorizer refresh token was superseded; took the current one from WeChat's account details",
                              metadata: ["authorizer_appid": .string(appid)])
                refreshToken = current
                answer = try await refresh(with: current)
            }
            let token = StoredToken(token: answer.authorizer_access_token, expiresAt: clock.now().addingTimeInterval(TimeInterval(answer.expires_in)))
            let saved = try await store.saveAuthorizerTokens(appid: appid, expectedVersion: authorizer.version, accessToken: token,
                                                             refreshToken: answer.authorizer_refresh_token ?? refreshToken)
            if !saved { logger.warning("authorizer tokens changed during a refresh; kept the newer ones", metadata: ["appid": .string(appid)]) }
            metrics.tokenRefresh(kind: "authorizer", outcome: "refreshed")
            return token
        } catch {
            metrics.tokenRefresh(kind: "authorizer", outcome: "failed")
            throw error
        }
    }

    /// The refresh token WeChat's account details (`api_get_authorizer_info`) give for `appid`.
    /// WeChat answering 61003 (the account no longer authorizes the component: an `unauthorized`
    /// push the relay missed) marks the authorizer revoked, as that push would have.
    private func currentRefreshToken(_ appid: String, component: String) async throws -> String? {
        do {
            let info = try await withComponentToken(component) { token in
                try await self.api.authorizerInfo(appid: component, token: token, authorizer: appid)
            }
            return info.authorization_info?.authorizer_refresh_token.flatMap { $0.isEmpty ? nil : $0 }
        } catch let error as WeChatAPIError where error.errcode == 61003 {
            try await store.revokeAuthorizer(appid: appid)
            logger.warning("WeChat says the account no longer authorizes the component; authorizer marked revoked",
                           metadata: ["authorizer_appid": .string(appid)])
            throw TokenError.revoked(appid)
        }
    }

    // MARK: Cluster-wide lock

    /// Runs `run` holding the store lock `name` (a lease row: one holder across all nodes).
    /// When another node holds it, waits (up to ~10 s) for `recheck` to find what that node
    /// stores; `work` says what the holder is doing, for the error when it takes too long.
    func locked<T: Sendable>(_ name: String, doing work: String, recheck: @Sendable () async throws -> T?,
                             run: @Sendable () async throws -> T) async throws -> T {
        for _ in 0..<50 {
            let now = clock.now()
            if try await store.acquireLock(name: name, owner: owner, until: now.addingTimeInterval(30), now: now) {
                do {
                    let result: T
                    if let done = try await recheck() { result = done } else { result = try await run() }
                    try? await store.releaseLock(name: name, owner: owner)
                    return result
                } catch {
                    try? await store.releaseLock(name: name, owner: owner)
                    throw error
                }
            }
            if let done = try await recheck() { return done }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TokenError.lockBusy(work)
    }
}
