import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Logging
import RelayCore
@testable import RelayServer
import RelayTestSupport
import Testing

/// `/dashboard`: off without an admin token, a sign-in form without credentials, a session cookie
/// (HttpOnly, SameSite=Strict) or the bearer token to get in, escaped content, and retry and
/// replay buttons that work — from the relay's own pages only.
@Suite struct DashboardTests {
    static let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]

    static func page(_ client: some TestClientProtocol, _ uri: String = "/dashboard", headers: HTTPFields = [:])
        async throws -> (status: HTTPResponse.Status, body: String) {
        try await client.execute(uri: uri, method: .get, headers: headers) { ($0.status, String(buffer: $0.body)) }
    }

    static func post(_ client: some TestClientProtocol, _ uri: String, form body: String = "", headers: HTTPFields = [:])
        async throws -> TestResponse {
        var all = Self.form
        all.append(contentsOf: headers)
        return try await client.execute(uri: uri, method: .post, headers: all, body: ByteBuffer(string: body)) { $0 }
    }

    /// Signs in with the form and returns the `Cookie` header value to send back.
    static func signIn(_ client: some TestClientProtocol) async throws -> String {
        let answer = try await post(client, "/dashboard/sign-in", form: "token=\(AdminAPITests.token)")
        #expect(answer.status == .seeOther)
        #expect(answer.headers[.location] == "/dashboard")
        let cookie = try #require(answer.headers[.setCookie])
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=43200"] {
            #expect(cookie.contains(attribute), "\(cookie) lacks \(attribute)")
        }
        #expect(!cookie.contains("Secure"))  // the test relay's public URL is http
        return String(cookie.prefix { $0 != ";" })
    }

    /// A relay whose one subscriber always fails, holding one dead delivery (no retries), signed in.
    static func withDeadDelivery(_ body: @Sendable (TestRelay, any TestClientProtocol, Reports, DeliveryRecord, String) async throws -> Void)
        async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 500) }) { _, port in
            let yaml = AdminAPITests.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:\(port)/", schedule: "[]")
            try await TestRelay.with(extraYAML: yaml) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    _ = try await client.send(relay.textPush(content: "dead letter"))
                    #expect(try await reports.next(1).first?.verdict == .dead)
                    let dead = try #require(try await relay.store.deliveries(DeliveryQuery(status: .dead, limit: 5)).first)
                    try await body(relay, client, reports, dead, try await signIn(client))
                }
            }
        }
    }

    @Test func withoutAnAdminTokenTheDashboardIsOff() async throws {
        try await TestRelay.with { relay in
            try await relay.application().test(.router) { client async throws in
                #expect(try await Self.page(client).status == .notFound)
                #expect(try await Self.post(client, "/dashboard/sign-in", form: "token=x").status == .notFound)
            }
        }
    }

    @Test func aFailingStoreGetsAPageSayingSoNotABare500() async throws {
        try await TestRelay.with(extraYAML: AdminAPITests.yaml(subscriptions: "")) { relay in
            try await relay.application(store: FailingStore()).test(.router) { client async throws in
                let bearer: HTTPFields = [.authorization: "Bearer \(AdminAPITests.token)"]
                let page = try await Self.page(client, headers: bearer)
                #expect(page.status == .serviceUnavailable && page.body.contains("The store cannot be used right now"))
                for form in [try await Self.post(client, "/dashboard/deliveries/dlv_1/retry", headers: bearer),
                             try await Self.post(client, "/dashboard/subscriptions/crm/replay", form: "hours=2", headers: bearer)] {
                    #expect(form.status == .serviceUnavailable)
                    #expect(String(buffer: form.body).contains("The store cannot be used right now"))
                }
            }
        }
    }

    @Test func guessingTheTokenIsThrottledButTheBearerTokenStillWorks() async throws {
        try await TestRelay.with(extraYAML: AdminAPITests.yaml(subscriptions: "")) { relay in
            let logs = CapturedLogs()
            try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }, logThrottleInterval: 600)
                .test(.router) { client async throws in
                // All from one client (the router's tests have no peer address): its share, half the node's.
                for _ in 0..<DashboardRoutes.signInBurst / 2 {
                    #expect(try await Self.post(client, "/dashboard/sign-in", form: "token=guess").status == .unauthorized)
                }
                // The budget is spent: even the right token is not checked now.
                let paused = try await Self.post(client, "/dashboard/sign-in", form: "token=\(AdminAPITests.token)")
                #expect(paused.status == .tooManyRequests && paused.headers[.setCookie] == nil)
                #expect(paused.headers[.retryAfter] == "12", "\(paused.headers)")
                #expect(String(buffer: paused.body).contains("sign-in is paused"))
                // Refused unchecked at the guesser's rate: one line a second.
                for _ in 0..<5 { _ = try await Self.post(client, "/dashboard/sign-in", form: "token=guess") }
                #expect(logs.lines.filter { $0.contains("refused unchecked") }.count == 1, "\(logs.lines)")
                #expect(try await Self.page(client, headers: [.authorization: "Bearer \(AdminAPITests.token)"]).status == .ok)
                relay.clock.advance(by: DashboardRoutes.signInInterval * 2)
                _ = try await Self.signIn(client)
            }
        }
    }

    /// One guesser pauses its own sign-in, not everybody's: behind a proxy listed in
    /// `server.trusted_proxies` each client is the address the proxy forwarded. From anyone else
    /// that header is not believed, so a guesser cannot pass for many clients.
    @Test func aGuesserPausesItsOwnSignInOnlyBehindATrustedProxy() async throws {
        for trusted in [true, false] {
            try await TestRelay.with(extraYAML: AdminAPITests.yaml(subscriptions: ""), trustedProxies: trusted ? ["127.0.0.1", "::1"] : []) { relay in
                try await relay.application().test(.live) { client async throws in
                    let guesser: HTTPFields = [HTTPField.Name("X-Forwarded-For")!: "198.51.100.1"]
                    for _ in 0..<DashboardRoutes.signInBurst / 2 {
                        #expect(try await Self.post(client, "/dashboard/sign-in", form: "token=guess", headers: guesser).status == .unauthorized)
                    }
                    #expect(try await Self.post(client, "/dashboard/sign-in", form: "token=guess", headers: guesser).status == .tooManyRequests)
                    let other: HTTPFields = [HTTPField.Name("X-Forwarded-For")!: "203.0.113.5"]
                    let operator_ = try await Self.post(client, "/dashboard/sign-in", form: "token=\(AdminAPITests.token)", headers: other)
                    #expect(operator_.status == (trusted ? .seeOther : .tooManyRequests), "trusted proxy: \(trusted)")
                }
            }
        }
    }

    @Test func theThrottleAllowsABurstThenOneAttemptPerInterval() {
        let throttle = TokenBucket(burst: 10, interval: 6)
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        for _ in 0..<10 {
            #expect(throttle.allows(at: start))
            throttle.spend(at: start)
        }
        #expect(!throttle.allows(at: start) && throttle.secondsUntilAllowed(at: start) == 6)
        #expect(!throttle.allows(at: start + 5.9) && throttle.secondsUntilAllowed(at: start + 5.9) == 1)
        #expect(throttle.allows(at: start + 6))
        throttle.spend(at: start + 6)
        #expect(!throttle.allows(at: start + 6))
        // Time without failures refills the budget, up to the burst.
        #expect(throttle.allows(at: start + 3600))
        for _ in 0..<10 { throttle.spend(at: start + 3600) }
        #expect(!throttle.allows(at: start + 3600))
        // take: spends when it can, and says so.
        #expect(throttle.take(at: start + 3606) && !throttle.take(at: start + 3606))
    }

    @Test func signingInWithTheFormOrTheBearerToken() async throws {
        try await TestRelay.with(extraYAML: AdminAPITests.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:9/hook")) { relay in
            try await relay.application().test(.router) { client async throws in
                let anonymous = try await Self.page(client)
                #expect(anonymous.status == .unauthorized)
                #expect(anonymous.body.contains(#"<form method="post" action="/dashboard/sign-in">"#))
                let wrong = try await Self.post(client, "/dashboard/sign-in", form: "token=guess")
                #expect(wrong.status == .unauthorized)
                #expect(String(buffer: wrong.body).contains("not the admin token"))
                #expect(wrong.headers[.setCookie] == nil)

                let cookie = try await Self.signIn(client)
                let signedIn = try await Self.page(client, headers: [.cookie: cookie])
                #expect(signedIn.status == .ok)
                #expect(signedIn.body.contains("<td>crm</td>"))
                #expect(signedIn.body.contains("<td>crm</td><td>http://127.0.0.1:9/hook</td><td>*</td><td>*</td><td>enabled</td><td>config</td><td>0</td>"),
                        "nothing waiting: \(signedIn.body)")
                // The router alone runs here (no dispatcher): a push waits, and the page says for how long.
                _ = try await client.send(relay.textPush())
                relay.clock.advance(by: 125)
                let bearer = try await Self.page(client, headers: [.authorization: "Bearer \(AdminAPITests.token)"])
                #expect(bearer.status == .ok)
                #expect(bearer.body.contains("<td>config</td><td>1, oldest 2 min</td>"), "\(bearer.body)")
                // A forged or expired cookie does not get in.
                let expiry = Int(relay.clock.now().timeIntervalSince1970) + 3600
                #expect(try await Self.page(client, headers: [.cookie: "relay_session=\(expiry).00"]).status == .unauthorized)
                relay.clock.advance(by: DashboardSession.lifetime + 1)
                #expect(try await Self.page(client, headers: [.cookie: cookie]).status == .unauthorized)

                let out = try await Self.post(client, "/dashboard/sign-out")
                #expect(out.status == .seeOther)
                #expect(out.headers[.setCookie]?.contains("Max-Age=0") == true)
            }
        }
    }

    /// A dead delivery is listed with a Retry button that makes it due again; a subscription's
    /// Replay form makes the last hours due again. Values that came from WeChat are escaped.
    @Test func retryAndReplayFromThePage() async throws {
        try await Self.withDeadDelivery { relay, client, reports, dead, cookie in
            try await relay.store.saveAuthorizer(Authorizer(
                appid: "wxmarkup", componentAppid: TestCredentials.componentAppid, name: "<script>alert(1)</script>",
                permissions: [1], authorizedAt: relay.clock.now()))
            let page = try await Self.page(client, headers: [.cookie: cookie]).body
            #expect(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(!page.contains("<script>"))
            #expect(page.contains(#"action="/dashboard/deliveries/\#(dead.id)/retry""#))

            let retried = try await Self.post(client, "/dashboard/deliveries/\(dead.id)/retry", headers: [.cookie: cookie])
            #expect(retried.status == .seeOther)
            #expect(retried.headers[.location] == "/dashboard?done=retried&id=\(dead.id.replacingOccurrences(of: "_", with: "%5F"))")
            #expect(try await reports.next(1).first?.deliveryId == dead.id)  // attempted again (and dead again)
            let notice = try await Self.page(client, retried.headers[.location]!, headers: [.cookie: cookie]).body
            #expect(notice.contains("Delivery \(dead.id) is due again."))

            let replayed = try await Self.post(client, "/dashboard/subscriptions/crm/replay", form: "hours=2", headers: [.cookie: cookie])
            #expect(replayed.status == .seeOther)
            #expect(replayed.headers[.location]?.hasSuffix("&count=1") == true)
            #expect(try await reports.next(1).first?.deliveryId == dead.id)
            let bad = try await Self.post(client, "/dashboard/subscriptions/crm/replay", form: "hours=0", headers: [.cookie: cookie])
            #expect(bad.status == .badRequest)
        }
    }

    /// A form that cannot be read is a 400, before or after signing in. It used to be read through
    /// `URLComponents.percentEncodedQuery`, whose setter traps on a bad escape: one anonymous post
    /// to the sign-in form stopped the whole relay, intake included.
    @Test func anUnreadableFormIsA400NotACrash() async throws {
        try await Self.withDeadDelivery { relay, client, _, dead, cookie in
            for body in ["token=%%%", "%ZZ=1", "token=a&token=b", "\u{FF}=%"] {
                let answer = try await Self.post(client, "/dashboard/sign-in", form: body)
                #expect(answer.status == .badRequest, "\(body)")
                #expect(String(buffer: answer.body).contains("The form could not be read"))
                #expect(answer.headers[.setCookie] == nil)
            }
            let replay = try await Self.post(client, "/dashboard/subscriptions/crm/replay", form: "hours=%G1", headers: [.cookie: cookie])
            #expect(replay.status == .badRequest)
            #expect(try await relay.store.delivery(id: dead.id)?.status == .dead)
            // Escapes that are well formed are decoded: `-` as %2D, and `+` is a space.
            let escaped = AdminAPITests.token.replacingOccurrences(of: "-", with: "%2D")
            #expect(try await Self.post(client, "/dashboard/sign-in", form: "token=\(escaped)").status == .seeOther)
            #expect(try await Self.post(client, "/dashboard/sign-in", form: "token=\(AdminAPITests.token)+").status == .unauthorized)
        }
    }

    /// The forms only work from the relay's own pages: a browser posting from elsewhere names
    /// its page in `Origin`. Nor does anything happen without a session.
    @Test func formsFromAnotherSiteOrWithoutASessionChangeNothing() async throws {
        try await Self.withDeadDelivery { relay, client, _, dead, cookie in
            let forged = try await Self.post(client, "/dashboard/deliveries/\(dead.id)/retry",
                                             headers: [.cookie: cookie, .origin: "https://evil.example"])
            #expect(forged.status == .forbidden)
            let anonymous = try await Self.post(client, "/dashboard/deliveries/\(dead.id)/retry", headers: [.origin: "http://localhost"])
            #expect(anonymous.status == .unauthorized)
            #expect(try await relay.store.delivery(id: dead.id)?.status == .dead)
            let signInElsewhere = try await Self.post(client, "/dashboard/sign-in", form: "token=\(AdminAPITests.token)",
                                                      headers: [.origin: "https://evil.example"])
            #expect(signInElsewhere.status == .forbidden && signInElsewhere.headers[.setCookie] == nil)
            // From the relay's own origin it works.
            let own = try await Self.post(client, "/dashboard/deliveries/\(dead.id)/retry", headers: [.cookie: cookie, .origin: "http://localhost"])
            #expect(own.status == .seeOther)
        }
    }

    @Test func aLargePlatformSeesItsLatestAuthorizers() async throws {
        try await TestRelay.with(extraYAML: AdminAPITests.yaml()) { relay in
            let start = relay.clock.now()
            for i in 0...DashboardPage.maxAuthorizers {
                try await relay.store.saveAuthorizer(Authorizer(appid: String(format: "wx%016d", i), componentAppid: TestCredentials.componentAppid,
                                                                authorizedAt: start.addingTimeInterval(Double(i))))
            }
            try await relay.application().test(.router) { client async throws in
                let page = try await Self.page(client, headers: [.authorization: "Bearer \(AdminAPITests.token)"]).body
                #expect(page.contains("Authorizers (\(DashboardPage.maxAuthorizers + 1))"))
                #expect(page.contains("The \(DashboardPage.maxAuthorizers) most recent"))
                #expect(page.contains(String(format: "wx%016d", DashboardPage.maxAuthorizers)))
                #expect(!page.contains(String(format: "wx%016d", 0)))
            }
        }
    }

    @Test func escapingCoversEveryCharacterThatEndsTextOrAnAttribute() {
        #expect(HTML.escape(#"<a href="x" title='y'>&amp;</a>"#) == "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;")
        #expect(HTML.escape("你好") == "你好")
    }
}
