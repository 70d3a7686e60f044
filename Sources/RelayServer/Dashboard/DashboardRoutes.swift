import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RelayCore
import WeChatCrypto

/// `/dashboard`: the relay at a glance for operators — queue, components, authorizers,
/// subscriptions with replay, failing and dead deliveries with retry, recent events. It takes the
/// admin token as a bearer header or through a sign-in form that sets a session cookie; without
/// `admin.token` it is off (404), like the admin API. Forms post back to the same origin only.
struct DashboardRoutes: Sendable {
    let store: any RelayStore
    let dispatcher: Dispatcher
    let clock: any RelayClock
    let adminToken: String?
    let components: [String]
    /// Whether the relay is reached over https (`server.public_url`): the cookie is then `Secure`.
    let secureCookie: Bool
    /// Wrong tokens allowed: ten, then one every 6 s, and of those five, then one every 12 s,
    /// from one client (`ClientAddress`), so that one guesser alone cannot pause everybody's
    /// sign-in. Operators are never locked out of the API: the bearer token still works.
    let throttle = Budget(node: TokenBucket(burst: signInBurst, interval: signInInterval),
                          perClient: ClientBuckets(burst: signInBurst / 2, interval: signInInterval * 2))
    static let signInBurst = 10
    static let signInInterval: TimeInterval = 6
    /// Who signs in, for the client's share.
    let clients: ClientAddress
    /// While sign-in is paused every attempt is refused unchecked, at the guesser's rate.
    let refusals: LogThrottle

    var session: DashboardSession? { adminToken.map { DashboardSession(adminToken: $0, secure: secureCookie) } }

    func register(on router: some RouterMethods<RelayRequestContext>) {
        router.get("/dashboard") { request, context in
            try await guarded(request, context, post: false) {
                HTML.response(.ok, DashboardPage.overview(try await snapshot(), notice: notice(request)))
            }
        }
        router.post("/dashboard/sign-in") { request, context in
            guard let session, let adminToken else { return Self.off }
            guard isSameOrigin(request) else { return Self.crossOrigin }
            let now = clock.now()
            let client = clients.of(request, context: context)
            guard throttle.allows(client: client, at: now) else {
                refusals.log("dashboard sign-in paused", .notice, "dashboard sign-in refused unchecked: too many wrong tokens",
                             to: context.logger)
                var response = HTML.response(.tooManyRequests, DashboardPage.signIn(failed: false, throttled: true))
                response.headers[.retryAfter] = String(throttle.secondsUntilAllowed(client: client, at: now))
                return response
            }
            guard let form = try await form(SignInForm.self, request) else { return Self.unreadableForm }
            let token = form.token ?? ""
            guard constantTimeEquals(Array(token.utf8), Array(adminToken.utf8)) else {
                throttle.spend(client: client, at: now)
                context.logger.notice("dashboard sign-in refused: wrong admin token")
                return HTML.response(.unauthorized, DashboardPage.signIn(failed: true))
            }
            return Self.redirect("/dashboard", cookie: session.setCookie(session.issue(now: clock.now())))
        }
        router.post("/dashboard/sign-out") { request, _ in
            guard let session else { return Self.off }
            guard isSameOrigin(request) else { return Self.crossOrigin }
            return Self.redirect("/dashboard", cookie: session.clearCookie)
        }
        router.post("/dashboard/deliveries/{id}/retry") { request, context in
            try await guarded(request, context, post: true) {
                let id = context.parameters.get("id") ?? ""
                guard let delivery = try await store.retryDelivery(id: id, now: clock.now()) else {
                    return Self.redirect("/dashboard?done=missing")
                }
                dispatcher.notify(subscriptionIds: [delivery.subscriptionId])
                return Self.redirect("/dashboard?done=retried&id=\(Self.queryValue(id))")
            }
        }
        router.post("/dashboard/subscriptions/{id}/replay") { request, context in
            try await guarded(request, context, post: true) {
                let id = context.parameters.get("id") ?? ""
                guard let subscription = try await store.subscription(id: id) else { return Self.redirect("/dashboard?done=missing") }
                guard let form = try await form(ReplayForm.self, request) else { return Self.unreadableForm }
                guard let hours = form.hours.flatMap(Int.init), (1...720).contains(hours) else {
                    return HTML.response(.badRequest, "<p>hours must be a whole number from 1 to 720.</p>")
                }
                let now = clock.now()
                let count = try await store.replay(subscription: subscription, since: now.addingTimeInterval(-Double(hours) * 3600),
                                                   until: now.addingTimeInterval(1), status: nil, now: now)
                dispatcher.notify(subscriptionIds: [subscription.id])
                return Self.redirect("/dashboard?done=replayed&id=\(Self.queryValue(id))&count=\(count)")
            }
        }
    }

    /// Runs `page` for a signed-in operator; answers the sign-in form otherwise. A store that
    /// fails (read or write) gets a page saying so, not a bare 500.
    private func guarded(_ request: Request, _ context: RelayRequestContext, post: Bool,
                         _ page: () async throws -> Response) async throws -> Response {
        guard let session, let adminToken else { return Self.off }
        if post, !isSameOrigin(request) { return Self.crossOrigin }
        let cookie = DashboardSession.value(inCookieHeader: request.headers[.cookie]).map { session.isValid($0, now: clock.now()) }
        guard BearerToken.matches(adminToken, in: request) || cookie == true else {
            return HTML.response(.unauthorized, DashboardPage.signIn(failed: false))
        }
        do {
            return try await page()
        } catch is NIOTooManyBytesError {
            return HTML.response(.contentTooLarge, "<p>The form is too large.</p>")
        } catch {
            context.logger.error("dashboard cannot use the store", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return HTML.response(.serviceUnavailable, "<p>The store cannot be used right now; nothing was changed. See the relay's log.</p>")
        }
    }

    /// A browser names the page a form came from in `Origin`; it must be this relay. (The cookie is
    /// `SameSite=Strict` as well; this also covers browsers that ignore that.) Clients that send
    /// no `Origin`, like curl with a bearer token, are not browsers submitting someone's form.
    private func isSameOrigin(_ request: Request) -> Bool {
        guard let origin = request.headers[.origin] else { return true }
        guard let url = URLComponents(string: origin), let host = url.host, let authority = request.head.authority else { return false }
        return (url.port.map { "\(host):\($0)" } ?? host) == authority
    }

    private struct SignInForm: Decodable { var token: String? }
    private struct ReplayForm: Decodable { var hours: String? }

    /// The posted form, or nil when it cannot be read (a bad percent escape, a repeated field).
    /// (It was read through `URLComponents.percentEncodedQuery`, whose setter traps on such input:
    /// one unauthenticated sign-in post stopped the whole relay.)
    private func form<Form: Decodable>(_ type: Form.Type, _ request: Request) async throws -> Form? {
        let body = try await request.body.collect(upTo: 16_384)
        return try? URLEncodedFormDecoder().decode(Form.self, from: String(buffer: body))
    }

    private static var unreadableForm: Response {
        HTML.response(.badRequest, "<p>The form could not be read: send it from the dashboard's own page.</p>")
    }

    private func notice(_ request: Request) -> String? {
        let query = request.uri.queryParameters
        let id = query["id"].map(String.init) ?? ""
        switch query["done"].map(String.init) {
        case "retried": return "Delivery \(id) is due again."
        case "replayed": return "Subscription \(id): \(query["count"].map(String.init) ?? "0") deliveries made due again."
        case "missing": return "It no longer exists."
        default: return nil
        }
    }

    private func snapshot() async throws -> DashboardSnapshot {
        var components: [DashboardSnapshot.Component] = []
        for appid in self.components {
            components.append(.init(appid: appid, ticketReceivedAt: try await store.ticket(componentAppid: appid)?.receivedAt,
                                    tokenExpiresAt: try await store.componentToken(appid: appid)?.expiresAt))
        }
        let subscriptions = try await store.subscriptions()
        var events: [(event: RelayEvent, deliveries: [DeliveryRecord])] = []
        for event in try await store.events(EventQuery(limit: 20)) { events.append((event, try await store.deliveries(eventId: event.id))) }
        let troubled = try await store.deliveries(DeliveryQuery(status: .failed, limit: 50))
            + store.deliveries(DeliveryQuery(status: .dead, limit: 50))
        return DashboardSnapshot(now: clock.now(), queue: try await store.queueStats(), components: components,
                                 authorizers: try await store.authorizers(), subscriptions: subscriptions,
                                 circuits: subscriptions.reduce(into: [:]) { $0[$1.id] = dispatcher.circuit(subscriptionId: $1.id) },
                                 events: events, troubled: Array(troubled.sorted { $0.id > $1.id }.prefix(50)))
    }

    static let off = HTML.response(.notFound, "<p>The dashboard is off: set admin.token in relay.yml to turn it on.</p>")
    static let crossOrigin = HTML.response(.forbidden, "<p>This form can only be sent from the relay's own dashboard.</p>")

    static func redirect(_ location: String, cookie: String? = nil) -> Response {
        var headers: HTTPFields = [.location: location, .cacheControl: "no-store"]
        if let cookie { headers[.setCookie] = cookie }
        return Response(status: .seeOther, headers: headers)
    }

    static func queryValue(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }
}
