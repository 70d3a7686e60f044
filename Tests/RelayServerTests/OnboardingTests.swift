import Foundation
import Hummingbird
import Logging
import HummingbirdTesting
import NIOCore
import RelayCore
@testable import RelayServer
import RelayTestSupport
import Testing

/// The authorization flow against the fake WeChat API.
@Suite(.timeLimit(.minutes(1))) struct OnboardingTests {
    static let component = TestCredentials.componentAppid
    static let admin = """
        admin:
          token: \(AdminAPITests.token)
        onboarding:
          return_to: ["https://platform.example.com/done"]
        """

    /// A relay pointed at a fake WeChat that holds a valid ticket the relay has received.
    static func withRelay(on backend: StoreBackend = .sqlite, _ body: @Sendable (TestRelay, FakeWeChat, any TestClientProtocol) async throws -> Void,
                          reports: Reports? = nil) async throws {
        try await backend.withStorageURL { url in
            try await FakeWeChat.run { fake, base in
                try await TestRelay.with(extraYAML: admin, apiBase: base, storageURL: url) { relay in
                    fake.addTicket("ticket@@@valid")
                    try await relay.application().test(.router) { client async throws in
                        #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@valid")).body == "success")
                        try await body(relay, fake, client)
                    }
                }
            }
        }
    }

    static func call(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, json: String? = nil)
        async throws -> (status: Int, body: [String: Any]) {
        try await AdminAPITests.call(client, method, uri, json: json)
    }

    /// Merchant `appid` authorizes with `code` through the callback.
    static func authorize(_ client: some TestClientProtocol, _ fake: FakeWeChat, appid: String, code: String) async throws {
        fake.addAuthCode(code, authorizer: appid)
        let page = try await client.get(callback(code: code))
        #expect(page.status == 200, "\(page.body)")
    }

    /// Where WeChat sends a merchant back: the relay's own sealed `redirect_uri` (as a link made
    /// at `now` has it), with `auth_code` and `expires_in` appended.
    static func callback(code: String, returnTo: String? = nil, now: Date = Date()) -> String {
        var uri = URLComponents()
        uri.path = "/onboarding/callback"
        uri.queryItems = [URLQueryItem(name: "component_appid", value: component)]
            + (returnTo.map { [URLQueryItem(name: "return_to", value: $0)] } ?? [])
            + [URLQueryItem(name: "seal", value: CallbackSeal(appsecret: TestCredentials.secret).issue(component: component, returnTo: returnTo, now: now)),
               URLQueryItem(name: "auth_code", value: code), URLQueryItem(name: "expires_in", value: "600")]
        return uri.string ?? ""
    }

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
            #expect(fake.calls(to: "api_start_push_ticket").count == 1)
        }
    }

    @Test func onboardingRoundTripStoresOneAuthorizerAndOneEventWithThePushAfterwards() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            let page = try await client.get("/onboarding?auth_type=1&biz_appid=wx1234&component_appid=\(Self.component)")
            #expect(page.status == 200)
            let parameters = "&amp;component_appid=\(Self.component)&amp;auth_type=1&amp;biz_appid=wx1234"
            #expect(page.body.contains(#"href="/onboarding/authorize?kind=pc\#(parameters)""#), "\(page.body)")
            #expect(page.body.contains(#"href="/onboarding/authorize?kind=mobile\#(parameters)""#))
            #expect(fake.calls(to: "api_create_preauthcode").isEmpty)  // a view spends no code

            let pc = try await client.execute(uri: "/onboarding/authorize?kind=pc&component_appid=\(Self.component)&auth_type=1&biz_appid=wx1234",
                                              method: .get) { $0 }
            #expect(pc.status == .found)
            let location = try #require(pc.headers[.location])
            #expect(location.hasPrefix("https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=\(Self.component)&pre_auth_code=preauthcode%40%40%40fake-"))
            #expect(location.contains("redirect_uri=http%3A%2F%2Flocalhost%3A0%2Fonboarding%2Fcallback"))
            #expect(location.contains("auth_type=1") && location.contains("biz_appid=wx1234"))
            let mobile = try await client.execute(uri: "/onboarding/authorize?kind=mobile&component_appid=\(Self.component)", method: .get) { $0 }
            #expect(mobile.headers[.location]?.contains("bindcomponent") == true && mobile.headers[.location]?.hasSuffix("#wechat_redirect") == true)
            #expect(fake.calls(to: "api_create_preauthcode").count == 2)  // a fresh code for each click

            try await Self.authorize(client, fake, appid: "wxauthorizer00001", code: "queryauthcode@@@one")
            // WeChat's own push for the same grant arrives after the callback.
            let push = PushComposer.componentPush(
                xml: SamplePushes.authorization(component: Self.component, infoType: "authorized", authorizer: "wxauthorizer00001",
                                                authorizationCode: "queryauthcode@@@one", createTime: relay.timestamp),
                component: TestCredentials.component, timestamp: relay.timestamp, nonce: "1")
            #expect(try await client.send(push).body == "success")

            let authorizer = try #require(try await relay.store.authorizer(appid: "wxauthorizer00001"))
            #expect(authorizer.status == .active)
            #expect(authorizer.permissions == [1, 15])
            #expect(authorizer.name == "Shop 0001")
            #expect(authorizer.userName == "gh_horizer00001")
            #expect(fake.calls(to: "api_query_auth").count == 1)
            #expect(try await relay.store.events(EventQuery(type: "authorizer.authorized")).count == 1)

            let listed = try await Self.call(client, .get, "/v1/authorizers/wxauthorizer00001")
            #expect(listed.body["status"] as? String == "active")
            #expect(listed.body["permissions"] as? [Int] == [1, 15])
            #expect(listed.body["refresh_token"] == nil && listed.body["access_token"] == nil)
            #expect(listed.body["component_appid"] as? String == Self.component)
        }
    }

    /// WeChat's JSON may carry `\u0000` in a name; PostgreSQL's text refuses NUL, which failed the
    /// whole authorization there (the callback answered 502 and no authorizer was kept).
    @Test(arguments: StoreBackend.available)
    func aNameWithANULStillCompletesTheAuthorization(backend: StoreBackend) async throws {
        try await Self.withRelay(on: backend) { relay, fake, client async throws in
            fake.setNickName("Shop\u{0}One", for: "wxauthorizer00009")
            try await Self.authorize(client, fake, appid: "wxauthorizer00009", code: "queryauthcode@@@nul")
            let authorizer = try #require(try await relay.store.authorizer(appid: "wxauthorizer00009"))
            #expect(authorizer.status == .active)
            #expect(authorizer.name == "Shop\u{FFFD}One")
        }
    }

    /// WeChat slow to exchange the code: the push is answered after its follow-up budget (2 s),
    /// but the exchange goes on, so the merchant's callback, arriving meanwhile, shares it and
    /// shows the authorizer. The exchange was cancelled at the budget; WeChat had consumed the
    /// code by then, so the callback's own exchange got "code is invalid" (61009) and the
    /// merchant an error page. (The cut-short exchange had also been logged as an error and
    /// counted as errcode -2 before that.)
    @Test func aSlowExchangeGoesOnAfterThePushIsAnsweredAndTheCallbackSharesIt() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin, apiBase: base) { relay in
                fake.addTicket("ticket@@@valid")
                fake.addAuthCode("queryauthcode@@@slow", authorizer: "wxauthorizer00010")
                fake.delay("api_query_auth", by: .seconds(3))  // past the 2 s budget
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }).test(.router) { client async throws in
                    #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@valid")).body == "success")
                    #expect(try await client.send(Self.authorizedPush(relay, code: "queryauthcode@@@slow", authorizer: "wxauthorizer00010")).body == "success")
                    #expect(try await relay.store.authorizer(appid: "wxauthorizer00010") == nil)  // still exchanging
                    let page = try await client.get(Self.callback(code: "queryauthcode@@@slow"))
                    #expect(page.status == 200, "\(page.body)")
                    #expect(try await relay.store.authorizer(appid: "wxauthorizer00010")?.status == .active)
                    #expect(fake.calls(to: "api_query_auth").count == 1)
                }
                #expect(!logs.lines.contains { $0.hasPrefix("error") || $0.hasPrefix("warning") }, "\(logs.lines)")
                #expect(!relay.metrics.exposition().contains(#"relay_wechat_api_errors_total{api="api_query_auth""#))
            }
        }
    }

    /// An exchange under way when the relay stops finishes before it stops: nothing else would
    /// keep the refresh token WeChat hands back (a cancelled exchange lost it, and only a sync
    /// of the authorizer list brought it back).
    @Test func aGracefulShutdownLetsAnExchangeUnderWayFinish() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin, apiBase: base) { relay in
                fake.addTicket("ticket@@@valid")
                fake.addAuthCode("queryauthcode@@@stop", authorizer: "wxauthorizer00011")
                fake.delay("api_query_auth", by: .seconds(3))
                try await relay.application().test(.router) { client async throws in
                    #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@valid")).body == "success")
                    #expect(try await client.send(Self.authorizedPush(relay, code: "queryauthcode@@@stop", authorizer: "wxauthorizer00011")).body == "success")
                    #expect(try await relay.store.authorizer(appid: "wxauthorizer00011") == nil)
                }  // the relay stops here, the exchange still waiting for WeChat
                let authorizer = try #require(try await relay.store.authorizer(appid: "wxauthorizer00011"))
                #expect(authorizer.refreshToken == fake.currentRefreshToken("wxauthorizer00011"))
            }
        }
    }

    /// Follow-ups are bounded (64 under way): past that a push is still stored and answered, its
    /// exchange left to the callback, with a warning.
    @Test func followUpsPastTheirBoundAreLeftToTheCallback() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin, apiBase: base) { relay in
                fake.addTicket("ticket@@@valid")
                let merchants = (0..<65).map { (code: "queryauthcode@@@many\($0)", appid: String(format: "wxmany%012d", $0)) }
                for merchant in merchants { fake.addAuthCode(merchant.code, authorizer: merchant.appid) }
                fake.delay("api_query_auth", by: .seconds(3))
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }).test(.router) { client async throws in
                    #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@valid")).body == "success")
                    try await withThrowingTaskGroup(of: String.self) { group in
                        for merchant in merchants {
                            group.addTask { try await client.send(Self.authorizedPush(relay, code: merchant.code, authorizer: merchant.appid)).body }
                        }
                        for try await answer in group { #expect(answer == "success") }
                    }
                    #expect(logs.lines.filter { $0.hasPrefix("warning authorization push stored but not followed") }.count == 1, "\(logs.lines)")
                }
                #expect(fake.calls(to: "api_query_auth").count == 64)
                var left: [(code: String, appid: String)] = []
                for merchant in merchants where try await relay.store.authorizer(appid: merchant.appid) == nil { left.append(merchant) }
                let merchant = try #require(left.count == 1 ? left.first : nil, "\(left)")
                fake.delay("api_query_auth", by: .zero)
                try await relay.application().test(.router) { client async throws in
                    try await Self.authorize(client, fake, appid: merchant.appid, code: merchant.code)
                }
                #expect(try await relay.store.authorizer(appid: merchant.appid)?.status == .active)
            }
        }
    }

    static func authorizedPush(_ relay: TestRelay, code: String, authorizer: String) -> ComposedPush {
        PushComposer.componentPush(
            xml: SamplePushes.authorization(component: component, infoType: "authorized", authorizer: authorizer,
                                            authorizationCode: code, createTime: relay.timestamp),
            component: TestCredentials.component, timestamp: relay.timestamp, nonce: authorizer)
    }

    @Test func thePushBeforeTheCallbackAlsoGivesOneExchangeAndOneEvent() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            fake.addAuthCode("queryauthcode@@@two", authorizer: "wxauthorizer00002")
            let push = PushComposer.componentPush(
                xml: SamplePushes.authorization(component: Self.component, infoType: "authorized", authorizer: "wxauthorizer00002",
                                                authorizationCode: "queryauthcode@@@two", createTime: relay.timestamp),
                component: TestCredentials.component, timestamp: relay.timestamp, nonce: "2")
            #expect(try await client.send(push).body == "success")
            #expect(try await relay.store.authorizer(appid: "wxauthorizer00002")?.status == .active)
            let page = try await client.get(Self.callback(code: "queryauthcode@@@two"))
            #expect(page.status == 200)
            #expect(fake.calls(to: "api_query_auth").count == 1)
            #expect(try await relay.store.events(EventQuery(type: "authorizer.authorized")).count == 1)
            // And by hand through the admin API: still the same authorizer, no new exchange.
            let manual = try await Self.call(client, .post, "/v1/authorizations", json: #"{"auth_code": "queryauthcode@@@two", "component_appid": "\#(Self.component)"}"#)
            #expect(manual.body["appid"] as? String == "wxauthorizer00002", "\(manual)")
            #expect(fake.calls(to: "api_query_auth").count == 1)
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

    @Test func authLinksAndReturnToAllowList() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            let link = try await Self.call(client, .post, "/v1/auth-links", json: #"{"kind": "mobile", "biz_appid": "wxabc", "component_appid": "\#(Self.component)"}"#)
            #expect(link.status == 200, "\(link)")
            #expect((link.body["url"] as? String)?.hasPrefix("https://mp.weixin.qq.com/safe/bindcomponent?action=bindcomponent") == true)
            #expect(link.body["expires_at"] is String)
            for path in ["/onboarding?", "/onboarding/authorize?kind=pc&"] {
                #expect(try await client.get(path + "return_to=https://evil.example.com/done").status == 400)
                #expect(try await client.get(path).status == 400)  // two components, none named
                #expect(try await client.get(path + "return_to=https://platform.example.com.evil.com/done").status == 400)
            }
            // The page passes return_to on to its links, which pass it to the callback.
            let page = try await client.get("/onboarding?component_appid=\(Self.component)&return_to=https%3A%2F%2Fplatform.example.com%2Fdone%2Fok%3Fa%3D1%26b%3D2")
            #expect(page.body.contains("return_to=https%3A%2F%2Fplatform.example.com%2Fdone%2Fok%3Fa%3D1%26b%3D2"), "\(page.body)")
            let click = try await client.execute(
                uri: "/onboarding/authorize?kind=pc&component_appid=\(Self.component)&return_to=https%3A%2F%2Fplatform.example.com%2Fdone%2Fok%3Fa%3D1%26b%3D2",
                method: .get) { $0 }
            let redirectURI = URLComponents(string: try #require(click.headers[.location]))?.queryItems?.first { $0.name == "redirect_uri" }?.value
            let returnTo = redirectURI.flatMap(URLComponents.init(string:))?.queryItems?.first { $0.name == "return_to" }?.value
            #expect(returnTo == "https://platform.example.com/done/ok?a=1&b=2", "\(click.headers)")
            fake.addAuthCode("queryauthcode@@@eight", authorizer: "wxauthorizer00008")
            // WeChat appends the code to the redirect_uri as the link has it, seal included.
            let callback = try #require(redirectURI.flatMap(URLComponents.init(string:)))
            let redirected = try await client.execute(uri: "\(callback.path)?\(callback.percentEncodedQuery ?? "")&auth_code=queryauthcode@@@eight&expires_in=600",
                                                      method: .get) { $0 }
            #expect(redirected.status == .found)
            #expect(redirected.headers[.location] == "https://platform.example.com/done/ok?a=1&b=2&authorizer_appid=wxauthorizer00008")
        }
    }

    /// Clicks that cannot get a link (no ticket yet) come at the merchants' — or anyone's — rate:
    /// one line a second.
    @Test func failingClicksAreLoggedOnceASecond() async throws {
        try await TestRelay.with(extraYAML: Self.admin) { relay in
            let logs = CapturedLogs()
            try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }, logThrottleInterval: 600)
                .test(.router) { client async throws in
                for _ in 0..<3 {
                    #expect(try await client.get("/onboarding/authorize?kind=pc&component_appid=\(Self.component)").status == 503)
                }
            }
            #expect(logs.lines.filter { $0.contains("cannot build authorization links") }.count == 1, "\(logs.lines)")
        }
    }

    /// Each click spends one of WeChat's single-use pre-auth codes, from a daily quota the admin
    /// API's links share; a public page clicked by a script all day must not spend it.
    @Test func clicksPastLinksPerMinuteWaitAndSpendNoCode() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(extraYAML: Self.admin + "\n  links_per_minute: 3", apiBase: base) { relay in
                fake.addTicket("ticket@@@valid")
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }, logThrottleInterval: 600)
                    .test(.router) { client async throws in
                    #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@valid")).body == "success")
                    let click = "/onboarding/authorize?kind=pc&component_appid=\(Self.component)"
                    _ = try await client.execute(uri: click, method: .head) { $0 }  // spends nothing
                    for _ in 0..<3 { #expect(try await client.execute(uri: click, method: .get) { $0 }.status == .found) }
                    for _ in 0..<2 {
                        let busy = try await client.execute(uri: click, method: .get) { $0 }
                        #expect(busy.status == .tooManyRequests)
                        #expect(["19", "20"].contains(busy.headers[.retryAfter] ?? ""), "\(busy.headers)")  // the test clock also runs
                        #expect(String(buffer: busy.body).contains("Too many authorizations at once"))
                    }
                    #expect(fake.calls(to: "api_create_preauthcode").count == 3)
                    #expect(logs.lines.filter { $0.contains("onboarding.links_per_minute spent") }.count == 1, "\(logs.lines)")
                    // The admin API's links are not the public's to spend.
                    let link = try await Self.call(client, .post, "/v1/auth-links", json: #"{"kind": "pc", "component_appid": "\#(Self.component)"}"#)
                    #expect(link.status == 200)
                    relay.clock.advance(by: 20)
                    #expect(try await client.execute(uri: click, method: .get) { $0 }.status == .found)
                    #expect(try await client.execute(uri: click, method: .get) { $0 }.status == .tooManyRequests)
                    #expect(fake.calls(to: "api_create_preauthcode").count == 5)
                }
            }
        }
    }

    /// Only the relay's own links lead to a code exchange: a callback without their seal, with
    /// another's, an expired one, with its return_to changed or for a component the relay does not
    /// have, asks WeChat nothing (made-up
    /// codes used to spend the component's api_query_auth quota, one call each).
    @Test func aCallbackWithoutTheRelaysSealAsksWeChatNothing() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            fake.addAuthCode("queryauthcode@@@sealed", authorizer: "wxauthorizer00011")
            let sealed = Self.callback(code: "queryauthcode@@@sealed", returnTo: "https://platform.example.com/done")
            let forged = [
                "/onboarding/callback?auth_code=queryauthcode@@@sealed&expires_in=600&component_appid=\(Self.component)",
                sealed.replacingOccurrences(of: "seal=", with: "seal=1"),
                Self.callback(code: "queryauthcode@@@sealed", now: relay.clock.now().addingTimeInterval(-CallbackSeal.lifetime - 1)),
                sealed.replacingOccurrences(of: "done", with: "done2"),
                sealed.replacingOccurrences(of: Self.component, with: "wx1234567890abcdef"),  // a component it does not have (was a 502)
            ]
            for uri in forged {
                let page = try await client.get(uri)
                #expect(page.status == 403, "\(uri)")
                #expect(page.body.contains("Link not recognised"))
            }
            #expect(fake.calls(to: "api_query_auth").isEmpty)
            #expect(try await relay.store.authorizer(appid: "wxauthorizer00011") == nil)
            let page = try await client.execute(uri: sealed, method: .get) { $0 }
            #expect(page.status == .found)
            #expect(fake.calls(to: "api_query_auth").count == 1)
        }
    }

    /// Parameters WeChat could not use are a 400 naming them, before a pre-auth code is spent. A
    /// redirect_uri that URLComponents could not parse used to stop the relay (a force unwrap).
    @Test func authLinkParametersWeChatCannotUseAreA400() async throws {
        try await Self.withRelay { relay, fake, client async throws in
            let before = fake.calls(to: "api_create_preauthcode").count
            for (json, message) in [
                (#""redirect_uri": "http://a b/""#, "redirect_uri must be an http(s) URL"),
                (#""redirect_uri": "javascript:alert(1)""#, "redirect_uri must be an http(s) URL"),
                (#""auth_type": "both""#, "auth_type must be a number"),
                (#""biz_appid": "wx 1""#, "biz_appid must be an AppID"),
            ] {
                let answer = try await Self.call(client, .post, "/v1/auth-links", json: #"{"component_appid": "\#(Self.component)", \#(json)}"#)
                #expect(answer.status == 400, "\(json)")
                #expect(((answer.body["error"] as? [String: Any])?["message"] as? String)?.hasPrefix(message) == true, "\(answer.body)")
            }
            let page = try await client.get("/onboarding?component_appid=\(Self.component)&auth_type=both")
            #expect(page.status == 400 && page.body.contains("auth_type must be a number"))
            let click = try await client.get("/onboarding/authorize?kind=pc&component_appid=\(Self.component)&biz_appid=wx%201")
            #expect(click.status == 400 && click.body.contains("biz_appid must be an AppID"))
            let kind = try await client.get("/onboarding/authorize?kind=tablet&component_appid=\(Self.component)")
            #expect(kind.status == 400 && kind.body.contains("kind must be pc or mobile"))
            // A link checker's HEAD is answered without spending a code.
            #expect(try await client.execute(uri: "/onboarding/authorize?kind=pc&component_appid=\(Self.component)", method: .head) { $0 }
                .status == .ok)
            #expect(fake.calls(to: "api_create_preauthcode").count == before)
            let good = try await Self.call(client, .post, "/v1/auth-links",
                                           json: #"{"component_appid": "\#(Self.component)", "auth_type": "2", "redirect_uri": "https://platform.example.com/back?x=1"}"#)
            #expect(good.status == 200)
            #expect((good.body["url"] as? String)?.contains("redirect_uri=https%3A%2F%2Fplatform.example.com%2Fback%3Fx%3D1") == true)
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
