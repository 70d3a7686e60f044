import Foundation
import RelayCore

/// Authorization links (protocol notes 6.4) with a fresh pre-auth code and a `redirect_uri` back
/// to the relay's `/onboarding/callback`.
struct AuthLinkBuilder: Sendable {
    let authorization: AuthorizationService
    let publicURL: String

    struct Link: Sendable {
        let url: String
        let expiresAt: Date
    }

    /// A link's parameter that WeChat could not use, named (a 400 from either route).
    struct BadParameter: Error, CustomStringConvertible {
        let description: String
    }

    func link(kind: String, componentAppid: String?, authType: String?, bizAppid: String?, redirectURI: String?,
              returnTo: String?) async throws -> Link {
        // Checked before a pre-auth code is asked for: a bad request spends none of WeChat's quota.
        let component = try check(componentAppid: componentAppid, authType: authType, bizAppid: bizAppid)
        guard var callback = URLComponents(string: redirectURI ?? publicURL.trimmingTrailingSlash + "/onboarding/callback"),
              ["http", "https"].contains(callback.scheme?.lowercased() ?? ""), callback.host?.isEmpty == false else {
            throw BadParameter(description: "redirect_uri must be an http(s) URL such as https://platform.example.com/wechat/authorized")
        }
        let code = try await authorization.withComponentToken(component) { token in
            try await authorization.api.createPreAuthCode(appid: component, token: token)
        }
        if redirectURI == nil {
            callback.queryItems = [URLQueryItem(name: "component_appid", value: component)]
                + (returnTo.map { [URLQueryItem(name: "return_to", value: $0)] } ?? [])
                + [URLQueryItem(name: CallbackSeal.parameter,
                                value: seal(component).issue(component: component, returnTo: returnTo, now: authorization.clock.now()))]
        }
        var items = [("component_appid", component), ("pre_auth_code", code.pre_auth_code),
                     ("redirect_uri", callback.string ?? publicURL), ("auth_type", authType ?? "3")]
        if let bizAppid, !bizAppid.isEmpty { items.append(("biz_appid", bizAppid)) }
        let query = items.map { "\($0.0)=\(Self.encode($0.1))" }.joined(separator: "&")
        let url = kind == "mobile"
            ? "https://mp.weixin.qq.com/safe/bindcomponent?action=bindcomponent&no_scan=1&\(query)#wechat_redirect"
            : "https://mp.weixin.qq.com/cgi-bin/componentloginpage?\(query)"
        return Link(url: url, expiresAt: authorization.clock.now().addingTimeInterval(TimeInterval(code.expires_in)))
    }

    /// The parameters a link would carry, checked without asking WeChat for anything; the
    /// component they name.
    @discardableResult
    func check(componentAppid: String?, authType: String?, bizAppid: String?) throws -> String {
        if let authType, authType.wholeMatch(of: /[1-9][0-9]?/) == nil {
            throw BadParameter(description: "auth_type must be a number such as 1 (official accounts), 2 (mini programs) or 3 (both)")
        }
        if let bizAppid, !bizAppid.isEmpty, !InputRules.isAppID(bizAppid) {
            throw BadParameter(description: "biz_appid must be an AppID such as wx1234567890abcdef")
        }
        return try authorization.component(componentAppid)
    }

    /// The seal of the relay's own callback links for `component` (a configured one).
    func seal(_ component: String) -> CallbackSeal {
        CallbackSeal(appsecret: authorization.tokens.components[component]?.appsecret ?? "")
    }

    static func encode(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? value
    }
}

extension String {
    var trimmingTrailingSlash: String { hasSuffix("/") ? String(dropLast()) : self }
}
