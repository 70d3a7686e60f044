import Foundation
import Hummingbird
import Logging
import RelayCore

/// `GET /onboarding`, the page platforms link merchants to (WeChat requires the authorization page
/// to be opened from the platform's own domain), and `GET /onboarding/callback`, where WeChat
/// sends the merchant back with an `auth_code`.
struct OnboardingRoutes: Sendable {
    let links: AuthLinkBuilder
    let authorization: AuthorizationService
    /// URL prefixes `return_to` may point at (`onboarding.return_to`); anything else is refused.
    let returnToAllowList: [String]
    /// Callbacks without a valid seal, and failing clicks, come at their sender's rate.
    let refusals: LogThrottle
    /// Clicks that may spend a pre-auth code (`onboarding.links_per_minute`, and
    /// `links_per_client_per_minute` of one client). The page is public, and codes come from a
    /// daily quota that `/v1/auth-links` shares: a script clicking all day would otherwise leave
    /// the platform without links until midnight.
    let clicks: Budget
    /// Who clicked, for the client's share.
    let clients: ClientAddress

    func register(on router: some RouterMethods<RelayRequestContext>) {
        // The page asks WeChat for nothing: each link goes through `/onboarding/authorize`,
        // which gets a pre-auth code when the merchant clicks. Codes made with the page expired
        // after 10 minutes (a merchant who read the page first reached WeChat's error page), and
        // every view spent two — link previews and crawlers included.
        router.get("/onboarding") { request, context in
            let query = request.uri.queryParameters
            let parameters = ["component_appid", "auth_type", "biz_appid", "return_to"].compactMap { (name: Substring) in
                query[name].map { "&\(name)=\(AuthLinkBuilder.encode(String($0)))" }
            }.joined()
            do {
                try checked(query)
            } catch let refusal as Refusal {
                return refusal.response
            }
            // Before the component's first ticket every click fails: say so on the page rather
            // than offer links that lead to the same message.
            if let component = try? authorization.component(query["component_appid"].map(String.init)),
               await !authorization.tokens.mayIssueLinks(component) {
                refusals.log("page without ticket", .notice, "onboarding page shown as unavailable: the component has no component_verify_ticket yet",
                             ["component_appid": .string(component)], to: context.logger)
                return OnboardingPage.unavailable
            }
            return OnboardingPage.response(.ok, OnboardingPage.start(pc: "/onboarding/authorize?kind=pc" + parameters,
                                                                     mobile: "/onboarding/authorize?kind=mobile" + parameters))
        }
        router.get("/onboarding/authorize") { request, context in
            let query = request.uri.queryParameters
            guard let kind = query["kind"].map(String.init), ["pc", "mobile"].contains(kind) else {
                return OnboardingPage.response(.badRequest, OnboardingPage.message(
                    title: "Link not valid", text: "kind must be pc or mobile; start again from the platform's page."))
            }
            do {
                let returnTo = try checked(query)
                // A HEAD (a link checker's, say) must not spend a code.
                guard request.method != .head else { return OnboardingPage.response(.ok, "") }
                let now = authorization.clock.now()
                let client = clients.of(request, context: context)
                if let refusal = clicks.take(client: client, at: now) {
                    if refusal.clientsShare {
                        refusals.log("links paused for a client", .notice, "onboarding click refused: onboarding.links_per_client_per_minute spent",
                                     ["client": .string(client)], to: context.logger)
                    } else {
                        refusals.log("links paused", .notice, "onboarding click refused: onboarding.links_per_minute spent", to: context.logger)
                    }
                    var response = OnboardingPage.busy
                    response.headers[.retryAfter] = String(refusal.retryAfter)
                    return response
                }
                let link = try await links.link(kind: kind, componentAppid: query["component_appid"].map(String.init),
                                                authType: query["auth_type"].map(String.init), bizAppid: query["biz_appid"].map(String.init),
                                                redirectURI: nil, returnTo: returnTo)
                return Response(status: .found, headers: [.location: link.url, .cacheControl: "no-store"])
            } catch let refusal as Refusal {
                return refusal.response
            } catch let error as TokenError {
                logLinkFailure(error, context)
                guard case .noTicket = error else {
                    return OnboardingPage.response(.badRequest, OnboardingPage.message(title: "Link not valid", text: error.description))
                }
                return OnboardingPage.unavailable
            } catch {
                logLinkFailure(error, context)
                return OnboardingPage.unavailable
            }
        }
        router.get("/onboarding/callback") { request, context in
            let query = request.uri.queryParameters
            guard let code = query["auth_code"].map(String.init), !code.isEmpty else {
                return OnboardingPage.response(.badRequest, OnboardingPage.message(title: "Missing authorization code",
                                                                                   text: "This page is opened by WeChat after an authorization."))
            }
            let returnTo = query["return_to"].map(String.init)
            // A component this relay does not have, like a missing or wrong seal: not one of its links.
            guard let component = try? authorization.component(query["component_appid"].map(String.init)),
                  links.seal(component).isValid(query[Substring(CallbackSeal.parameter)].map(String.init), component: component,
                                                returnTo: returnTo, now: authorization.clock.now()) else {
                refusals.log("callback unsealed", .notice, "authorization callback refused: not a link of this relay, or older than 2 hours",
                             to: context.logger)
                return OnboardingPage.response(.forbidden, OnboardingPage.message(
                    title: "Link not recognised",
                    text: "This page only finishes authorizations started from the platform's page in the last two hours. "
                        + "If you have just authorized, it completes anyway; otherwise please start again from the platform's page."))
            }
            do {
                let authorizer = try await authorization.complete(code: code, componentAppid: component)
                if let returnTo, isAllowed(returnTo), var target = URLComponents(string: returnTo) {
                    target.queryItems = (target.queryItems ?? []) + [URLQueryItem(name: "authorizer_appid", value: authorizer.appid)]
                    return Response(status: .found, headers: [.location: target.string ?? returnTo])
                }
                return OnboardingPage.response(.ok, OnboardingPage.message(
                    title: "Authorization complete",
                    text: "\(authorizer.name ?? authorizer.appid) is now connected. You can close this page."))
            } catch {
                context.logger.error("authorization callback failed", metadata: ["error": "\(error)"])
                return OnboardingPage.response(.badGateway, OnboardingPage.message(
                    title: "Authorization failed", text: "WeChat did not confirm the authorization. Please start again from the platform's page."))
            }
        }
    }

    /// Each click on a public page may fail the same way (no ticket yet, WeChat unreachable): one
    /// line a second for each kind of failure.
    private func logLinkFailure(_ error: any Error, _ context: RelayRequestContext) {
        refusals.log("links \(type(of: error))", .error, "cannot build authorization links", ["error": "\(error)"], to: context.logger)
    }

    /// A link's parameters that cannot work, as the page that says so.
    struct Refusal: Error {
        let response: Response
    }

    /// The page's and the links' parameters checked, without asking WeChat; `return_to` if any.
    @discardableResult
    private func checked(_ query: Parameters) throws(Refusal) -> String? {
        let returnTo = query["return_to"].map(String.init)
        if let returnTo, !isAllowed(returnTo) {
            throw Refusal(response: OnboardingPage.response(.badRequest, OnboardingPage.message(
                title: "Link not allowed", text: "The return address of this link is not on the platform's allow-list.")))
        }
        do {
            try links.check(componentAppid: query["component_appid"].map(String.init), authType: query["auth_type"].map(String.init),
                            bizAppid: query["biz_appid"].map(String.init))
        } catch let error as AuthLinkBuilder.BadParameter {
            throw Refusal(response: OnboardingPage.response(.badRequest, OnboardingPage.message(title: "Link not valid", text: error.description)))
        } catch {
            throw Refusal(response: OnboardingPage.response(.badRequest, OnboardingPage.message(title: "Link not valid", text: "\(error)")))
        }
        return returnTo
    }

    /// Same scheme, host and port as an allow-list entry, and a path under the entry's path.
    func isAllowed(_ candidate: String) -> Bool {
        guard let url = URLComponents(string: candidate), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else { return false }
        return returnToAllowList.contains { entry in
            guard let allowed = URLComponents(string: entry) else { return false }
            let path = allowed.path.isEmpty ? "/" : allowed.path
            return allowed.scheme == url.scheme && allowed.host == url.host && allowed.port == url.port
                && (url.path.isEmpty ? "/" : url.path).hasPrefix(path)
        }
    }
}

/// The merchant-facing pages: plain server-rendered HTML, readable on a phone.
enum OnboardingPage {
    static func response(_ status: HTTPResponse.Status, _ html: String) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static let unavailable = response(.serviceUnavailable, message(
        title: "Authorization is unavailable", text: "The platform cannot start an authorization right now. Please try again in a few minutes."))

    static let busy = response(.tooManyRequests, message(
        title: "Too many authorizations at once", text: "More merchants than usual are starting an authorization. Please try again in a minute."))

    /// `nofollow`: each link spends a pre-auth code when followed.
    static func start(pc: String, mobile: String) -> String {
        page(title: "Authorize your account", body: """
            <p>Connect your Official Account or Mini Program to this platform. You will confirm on WeChat.</p>
            <p><a class="button" rel="nofollow" href="\(HTML.escape(pc))">Authorize on PC (scan a QR code)</a></p>
            <p><a class="button" rel="nofollow" href="\(HTML.escape(mobile))">Authorize on mobile (inside WeChat)</a></p>
            """)
    }

    static func message(title: String, text: String) -> String {
        page(title: title, body: "<p>\(HTML.escape(text))</p>")
    }

    private static func page(title: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="robots" content="noindex, nofollow">
        <title>\(HTML.escape(title))</title>
        <style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
        .button{display:block;text-align:center;padding:.9rem;border-radius:.5rem;background:#07c160;color:#fff;text-decoration:none}</style>
        </head><body><h1>\(HTML.escape(title))</h1>
        \(body)
        </body></html>
        """
    }
}
