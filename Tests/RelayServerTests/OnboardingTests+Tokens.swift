import Foundation
import Hummingbird
import Logging
import HummingbirdTesting
import NIOCore
import RelayCore
@testable import RelayServer
import RelayTestSupport
import Testing

/// Tickets, component and authorizer tokens, their refreshes, the proxy and the authorizer list,
/// against the fake WeChat API (the helpers are `OnboardingTests`').
extension OnboardingTests {
    @Test func coldComponentTokenIsFetchedOnceForTwentyConcurrentRequests() async throws {
        try await Self.withRelay { _, fake, client async throws in
            let tokens = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<20 {
                    group.addTask { try await Self.call(client, .get, "/v1/components/\(Self.component)/access-token").body["access_token"] as? String ?? "" }
                }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(tokens.count == 1 && !tokens.contains(""))
            #expect(fake.calls(to: "api_component_token").count == 1)
            #expect(fake.calls(to: "api_component_token").first?.body["component_verify_ticket"] == "ticket@@@valid")
            let components = try await Self.call(client, .get, "/v1/components")
            let first = try #require((components.body["data"] as? [[String: Any]])?.first { $0["appid"] as? String == Self.component })
            #expect(first["ticket_age_seconds"] is NSNumber)
            #expect(first["access_token_expires_at"] is String)
            #expect(first["ticket"] == nil && first["access_token"] == nil)
            let metrics = try await client.get("/metrics").body
            #expect(metrics.contains("relay_ticket_age_seconds{component=\"\(Self.component)\"}"))
            #expect(metrics.contains(#"relay_wechat_api_calls_total{api="api_component_token",errcode="0"} 1"#))
            #expect(metrics.contains(#"relay_token_refreshes_total{kind="component",outcome="refreshed"} 1"#))
        }
    }

    @Test func withoutATicketTheRelayAsksWeChatToPushOne() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin, apiBase: base) { relay in
                try await relay.application().test(.router) { client async throws in
                    let answer = try await Self.call(client, .get, "/v1/components/\(Self.component)/access-token")
                    #expect(answer.status == 503)
                    #expect(AdminAPITests.errorCode(answer.body) == "no_ticket")
                    #expect(fake.calls(to: "api_start_push_ticket").count == 1)
                    // A ticket WeChat does not know (61006) is reported the same way.
                    _ = try await client.send(relay.ticketPush(ticket: "ticket@@@unknown"))
                    #expect(try await Self.call(client, .get, "/v1/components/\(Self.component)/access-token").status == 503)
                    #expect(fake.calls(to: "api_component_token").count == 1)
                    #expect(try await client.get("/metrics").body.contains(#"relay_wechat_api_errors_total{api="api_component_token",errcode="61006"} 1"#))
                }
            }
        }
    }

    /// A WeChat that cannot be reached is a 502 `wechat_unreachable` naming the socket error; it
    /// was `wechat_error` (which means WeChat answered an errcode), after the connect timeout, with
    /// NIO's "connection reset (error set): Connection refused)".
    @Test func aWeChatThatRefusesConnectionsIsReportedAsUnreachableAtOnce() async throws {
        // The default api_base is a closed loopback port.
        try await TestRelay.with(extraYAML: Self.admin) { relay in
            try await relay.application().test(.router) { client async throws in
                _ = try await client.send(relay.ticketPush(ticket: "ticket@@@valid"))
                let started = ContinuousClock.now
                let answer = try await Self.call(client, .get, "/v1/components/\(Self.component)/access-token")
                #expect(ContinuousClock.now - started < .seconds(2))  // the connect timeout is 5 s
                #expect(answer.status == 502)
                #expect(AdminAPITests.errorCode(answer.body) == "wechat_unreachable")
                let message = try #require((answer.body["error"] as? [String: Any])?["message"] as? String)
                #expect(message.contains("errcode -2 (Connection refused (errno 111)): WeChat could not be reached"), "\(message)")
            }
        }
    }

    /// Every token request without a ticket would ask WeChat for a ticket push; it is asked at
    /// most once in ten minutes (the time it takes to push one), once a minute while it refuses.
    @Test func ticketPushesAreRequestedAtMostOnceInTenMinutes() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin, apiBase: base) { relay in
                try await relay.application().test(.router) { client async throws in
                    let tokenPath = "/v1/components/\(Self.component)/access-token"
                    for _ in 0..<3 { #expect(try await Self.call(client, .get, tokenPath).status == 503) }
                    #expect(fake.calls(to: "api_start_push_ticket").count == 1)
                    relay.clock.advance(by: 590)
                    #expect(try await Self.call(client, .get, tokenPath).status == 503)
                    #expect(fake.calls(to: "api_start_push_ticket").count == 1)
                    relay.clock.advance(by: 11)
                    fake.refuseTicketRequests()
                    #expect(try await Self.call(client, .get, tokenPath).status == 503)
                    #expect(fake.calls(to: "api_start_push_ticket").count == 2)
                    // Refused: asked again after a minute, not ten.
                    relay.clock.advance(by: 30)
                    #expect(try await Self.call(client, .get, tokenPath).status == 503)
                    #expect(fake.calls(to: "api_start_push_ticket").count == 2)
                    relay.clock.advance(by: 31)
                    #expect(try await Self.call(client, .get, tokenPath).status == 503)
                    #expect(fake.calls(to: "api_start_push_ticket").count == 3)
                }
            }
        }
    }

    @Test func aTicketPastItsValidityTriggersANewTicketPush() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            relay.clock.advance(by: 13 * 3600)
            #expect(try await Self.call(client, .get, "/v1/components/\(Self.component)/access-token?force=true").status == 200)
            // Not a boolean: refused, not read as false (which handed back the cached token).
            let yes = try await Self.call(client, .get, "/v1/components/\(Self.component)/access-token?force=yes")
            #expect(yes.status == 400 && ((yes.body["error"] as? [String: Any])?["message"] as? String) == "query parameter force must be true or false, not yes")
            #expect(fake.calls(to: "api_start_push_ticket").count == 1)
        }
    }

    @Test func twentyConcurrentForcedRefreshesLeaveAWorkingRefreshToken() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            try await Self.authorize(client, fake, appid: "wxauthorizer00003", code: "queryauthcode@@@three")
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask { try await Self.call(client, .get, "/v1/authorizers/wxauthorizer00003/access-token?force=true").status }
                }
                for try await status in group { #expect(status == 200) }
            }
            let stored = try await relay.store.authorizer(appid: "wxauthorizer00003")?.refreshToken
            #expect(stored == fake.currentRefreshToken("wxauthorizer00003"))
            let again = try await Self.call(client, .get, "/v1/authorizers/wxauthorizer00003/access-token?force=true")
            #expect(again.status == 200)
            #expect((again.body["access_token"] as? String)?.hasPrefix("atok-wxauthorizer00003") == true)
        }
    }

    /// A refresh token superseded without the relay hearing of it (the merchant authorized
    /// again while the relay was down, say) answers 61023; the current one comes from WeChat's
    /// account details and the refresh succeeds. It failed with 502 until the six-hourly
    /// reconcile, and every minute's refresh logged an error meanwhile.
    @Test(arguments: StoreBackend.available)
    func aSupersededRefreshTokenIsRecoveredFromTheAccountDetails(backend: StoreBackend) async throws {
        try await Self.withRelay(on: backend) { relay, fake, client async throws in
            try await Self.authorize(client, fake, appid: "wxauthorizer00012", code: "queryauthcode@@@twelve")
            fake.supersedeRefreshToken("wxauthorizer00012")
            let answer = try await Self.call(client, .get, "/v1/authorizers/wxauthorizer00012/access-token?force=true")
            #expect(answer.status == 200, "\(answer.body)")
            #expect((answer.body["access_token"] as? String)?.hasPrefix("atok-wxauthorizer00012") == true)
            #expect(try await relay.store.authorizer(appid: "wxauthorizer00012")?.refreshToken == fake.currentRefreshToken("wxauthorizer00012"))
            #expect(fake.calls(to: "api_authorizer_token").count == 2)
        }
    }

    /// An authorization withdrawn without the relay hearing of it (a missed `unauthorized` push):
    /// the refresh answers 61023, the account details 61003, and the authorizer is marked revoked
    /// — a clear 409 from then on instead of WeChat's error on every call.
    @Test func aWithdrawnAuthorizationIsMarkedRevokedAtItsNextRefresh() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            try await Self.authorize(client, fake, appid: "wxauthorizer00013", code: "queryauthcode@@@thirteen")
            fake.withdrawAuthorization("wxauthorizer00013")
            let answer = try await Self.call(client, .get, "/v1/authorizers/wxauthorizer00013/access-token?force=true")
            #expect(answer.status == 409, "\(answer.body)")
            #expect(AdminAPITests.errorCode(answer.body) == "authorizer_revoked")
            let authorizer = try #require(try await relay.store.authorizer(appid: "wxauthorizer00013"))
            #expect(authorizer.status == .revoked && authorizer.refreshToken == nil)
        }
    }

    /// WeChat errors an operator fixes say what to do: 61004 (this server's IP is not on the
    /// platform's whitelist) was only "access clientip is not registered".
    @Test func wechatErrorsAnOperatorFixesSayWhatToDo() async throws {
        try await Self.withRelay { _, fake, client async throws in
            fake.fail("api_component_token", errcode: 61004, "access clientip is not registered requestIP: 203.0.113.7")
            let answer = try await Self.call(client, .get, "/v1/components/\(Self.component)/access-token")
            #expect(answer.status == 502)
            #expect((answer.body["error"] as? [String: Any])?["message"] as? String == "WeChat api_component_token failed: errcode 61004 "
                    + "(access clientip is not registered requestIP: 203.0.113.7 rid: fake): add this server's outbound IP to the "
                    + "platform's IP whitelist (Open Platform console, 开发资料 → 白名单IP)")
        }
        #expect(WeChatAPIError(api: "api_query_auth", errcode: 61010, errmsg: "code is expired").description
                == "WeChat api_query_auth failed: errcode 61010 (code is expired)")
    }

    @Test func unauthorizedRevokesAndTokenRequestsAnswerClearly() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            try await Self.authorize(client, fake, appid: "wxauthorizer00004", code: "queryauthcode@@@four")
            let push = PushComposer.componentPush(
                xml: SamplePushes.authorization(component: Self.component, infoType: "unauthorized", authorizer: "wxauthorizer00004",
                                                createTime: relay.timestamp),
                component: TestCredentials.component, timestamp: relay.timestamp, nonce: "4")
            #expect(try await client.send(push).body == "success")
            let authorizer = try #require(try await relay.store.authorizer(appid: "wxauthorizer00004"))
            #expect(authorizer.status == .revoked && authorizer.refreshToken == nil && authorizer.accessToken == nil)
            let answer = try await Self.call(client, .get, "/v1/authorizers/wxauthorizer00004/access-token")
            #expect(answer.status == 409)
            #expect(AdminAPITests.errorCode(answer.body) == "authorizer_revoked")
        }
    }

    @Test func proxyInjectsTheTokenAndRetriesOnceOnAStaleToken() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            try await Self.authorize(client, fake, appid: "wxauthorizer00005", code: "queryauthcode@@@five")
            fake.invalidateTokens()
            let answer = try await Self.call(client, .post, "/v1/wechat/wxauthorizer00005/cgi-bin/message/custom/send?foo=bar",
                                             json: #"{"touser": "oU", "msgtype": "text"}"#)
            #expect(answer.status == 200)
            #expect(answer.body["errcode"] as? Int == 0)
            let proxied = fake.calls.filter { $0.path == "/cgi-bin/message/custom/send" }
            #expect(proxied.count == 2)
            #expect(proxied.allSatisfy { $0.query.contains("foo=bar") && $0.query.contains("access_token=") })
            #expect(proxied.last?.body["touser"] == "oU")
        }
    }

    @Test func expiryDrivenRefreshUsesTheInjectedClock() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin, apiBase: base) { relay in
                fake.addTicket("ticket@@@valid")
                let app = try await relay.application()
                try await app.test(.router) { client async throws in
                    _ = try await client.send(relay.ticketPush(ticket: "ticket@@@valid"))
                    try await Self.authorize(client, fake, appid: "wxauthorizer00006", code: "queryauthcode@@@six")
                }
                let service = try await Self.refreshService(relay, base: base)
                #expect(await service.refreshDue().isEmpty)                  // fresh for two hours
                relay.clock.advance(by: 7200 - 300)                           // five minutes left: inside the margin
                #expect(await service.refreshDue() == ["wxauthorizer00006"])
                #expect(fake.calls(to: "api_authorizer_token").count == 1)
                #expect(try await relay.store.authorizer(appid: "wxauthorizer00006")?.refreshToken == fake.currentRefreshToken("wxauthorizer00006"))
            }
        }
    }

    /// A refresh that keeps failing is tried again after a minute, then two, four… (30 at most):
    /// it was tried every minute, each a call against WeChat's daily quota and an error line.
    @Test func failingBackgroundRefreshesBackOff() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin, apiBase: base) { relay in
                fake.addTicket("ticket@@@valid")
                try await relay.application().test(.router) { client async throws in
                    _ = try await client.send(relay.ticketPush(ticket: "ticket@@@valid"))
                    try await Self.authorize(client, fake, appid: "wxauthorizer00008", code: "queryauthcode@@@eight")
                }
                let service = try await Self.refreshService(relay, base: base)
                fake.fail("api_authorizer_token", errcode: 45009, "reach max api daily quota limit")
                relay.clock.advance(by: 7200 - 300)
                func calls() -> Int { fake.calls(to: "api_authorizer_token").count }
                #expect(await service.refreshDue().isEmpty && calls() == 1)
                #expect(await service.refreshDue().isEmpty && calls() == 1)   // the next round, at once: not yet
                relay.clock.advance(by: 60)
                #expect(await service.refreshDue().isEmpty && calls() == 2)   // a minute later
                relay.clock.advance(by: 60)
                #expect(await service.refreshDue().isEmpty && calls() == 2)   // now two minutes are due
                relay.clock.advance(by: 60)
                #expect(await service.refreshDue().isEmpty && calls() == 3)
                fake.recover("api_authorizer_token")
                relay.clock.advance(by: 240)
                #expect(await service.refreshDue() == ["wxauthorizer00008"] && calls() == 4)
                #expect(await service.refreshDue().isEmpty && calls() == 4)   // fresh again
            }
        }
    }

    /// Due refreshes run eight at a time: one at a time, each waited for WeChat's answer, and a
    /// platform with tens of thousands of authorizers fell behind whenever WeChat was slow. The
    /// fake holds each refresh until eight are under way together; one at a time, the first
    /// would wait alone and fail.
    @Test func dueRefreshesRunEightAtATime() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin, apiBase: base) { relay in
                fake.addTicket("ticket@@@valid")
                let appids = (10..<26).map { "wxauthorizer000\($0)" }
                let app = try await relay.application()
                try await app.test(.router) { client async throws in
                    _ = try await client.send(relay.ticketPush(ticket: "ticket@@@valid"))
                    for (index, appid) in appids.enumerated() {
                        try await Self.authorize(client, fake, appid: appid, code: "queryauthcode@@@\(index)")
                    }
                }
                let service = try await Self.refreshService(relay, base: base)
                fake.holdUntilConcurrent("api_authorizer_token", count: 8)
                relay.clock.advance(by: 7200 - 300)
                #expect(await service.refreshDue() == appids)
                #expect(fake.calls(to: "api_authorizer_token").count == 16)
            }
        }
    }

    @Test func syncRecoversAuthorizersFromWeChatsList() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            try await Self.authorize(client, fake, appid: "wxauthorizer00007", code: "queryauthcode@@@seven")
            try await relay.store.revokeAuthorizer(appid: "wxauthorizer00007")  // the refresh token is lost locally
            let synced = try await Self.call(client, .post, "/v1/authorizers/sync")
            #expect(synced.body["recovered"] as? Int == 1, "\(synced)")
            // The second test component has no ticket: reported, without stopping the first.
            #expect((synced.body["errors"] as? [[String: Any]])?.first?["component_appid"] as? String == TestCredentials.otherComponentAppid)
            let recovered = try await relay.store.authorizer(appid: "wxauthorizer00007")
            #expect(recovered?.status == .active && recovered?.refreshToken == fake.currentRefreshToken("wxauthorizer00007"))
            #expect(try await Self.call(client, .get, "/v1/authorizers/wxauthorizer00007/access-token").status == 200)
        }
    }

    /// WeChat's answer is read against the call's timeout as a whole: one that sent its head and
    /// then trickled held the caller (a token refresh, under its lock) indefinitely.
    @Test func aWeChatAnswerThatNeverEndsFailsAtTheTimeout() async throws {
        try await FakeWeChat.run { fake, base in
            fake.trickle("api_component_token")
            var api = WeChatAPIClient(client: HTTPClientHolder.shared, baseURL: base, metrics: RelayMetrics())
            api.timeout = .seconds(2)  // ample for the head, even on a loaded machine: the body is what never ends
            let started = ContinuousClock.now
            do {
                _ = try await api.post("api_component_token", path: "/cgi-bin/component/api_component_token", query: [], body: Data("{}".utf8))
                Issue.record("a call whose answer never ended returned")
            } catch let error as WeChatAPIError {
                #expect(error.errcode == -2)
                #expect(error.errmsg.contains("did not arrive in time"), "\(error)")
            }
            #expect(ContinuousClock.now - started < .seconds(8))
        }
    }

    /// A refresh service wired like the application's, on the relay's store and clock.
    static func refreshService(_ relay: TestRelay, base: String) async throws -> TokenRefreshService {
        let client = HTTPClientHolder.shared
        let api = WeChatAPIClient(client: client, baseURL: base, metrics: relay.metrics)
        let tokens = TokenService(store: relay.store, tickets: relay.store, api: api, components: relay.config.wechat.components.map(\.credentials),
                                  clock: relay.clock, metrics: relay.metrics, logger: relay.logger)
        let authorization = AuthorizationService(tokens: tokens, store: relay.store, api: api, registry: SubscriptionRegistry([]),
                                                 clock: relay.clock, logger: relay.logger) { _ in }
        return TokenRefreshService(authorization: authorization, logger: relay.logger)
    }
}

import AsyncHTTPClient
enum HTTPClientHolder {
    static var shared: HTTPClient { HTTPClient.shared }
}
