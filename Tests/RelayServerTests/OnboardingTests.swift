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

    /// Before the component's first ticket the page says authorization is unavailable instead of
    /// offering links whose every click failed with that message.
    @Test func thePageSaysUnavailableUntilTheFirstTicket() async throws {
        try await TestRelay.with(extraYAML: Self.admin) { relay in
            try await relay.application().test(.router) { client async throws in
                let before = try await client.get("/onboarding?component_appid=\(Self.component)")
                #expect(before.status == 503 && before.body.contains("Authorization is unavailable") && !before.body.contains("/onboarding/authorize"))
                #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@first")).body == "success")
                let after = try await client.get("/onboarding?component_appid=\(Self.component)")
                #expect(after.status == 200 && after.body.contains("/onboarding/authorize?kind=pc"), "\(after.body)")
            }
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
                        #expect(busy.headers[.retryAfter] == "20", "\(busy.headers)")
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
}
