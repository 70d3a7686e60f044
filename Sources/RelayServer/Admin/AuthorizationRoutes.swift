import Foundation
import Hummingbird
import RelayCore
import WeChatXML

/// `/v1` routes of the authorization flow: links, code exchange, authorizers, tokens, components.
struct AuthorizationRoutes: Sendable {
    let authorization: AuthorizationService
    let links: AuthLinkBuilder
    let store: any RelayStore
    let clock: any RelayClock

    var tokens: TokenService { authorization.tokens }

    func register(on group: RouterGroup<RelayRequestContext>) {
        group.post("auth-links") { request, _ in
            let body = try await JSONBody.read(request, allowed: ["kind", "component_appid", "auth_type", "biz_appid", "redirect_uri"])
            let kind = try body.string("kind") ?? "pc"
            guard kind == "pc" || kind == "mobile" else { throw AdminError.badRequest("kind must be pc or mobile") }
            let link = try await mapped {
                try await links.link(kind: kind, componentAppid: try body.string("component_appid"), authType: try body.string("auth_type"),
                                     bizAppid: try body.string("biz_appid"), redirectURI: try body.string("redirect_uri"), returnTo: nil)
            }
            return AdminJSON.response(.object([("url", .string(link.url)), ("expires_at", .string(Timestamp.iso8601(link.expiresAt)))]))
        }
        group.post("authorizations") { request, _ in
            let body = try await JSONBody.read(request, allowed: ["auth_code", "component_appid"])
            guard let code = try body.string("auth_code"), !code.isEmpty else { throw AdminError.badRequest("auth_code is required") }
            let authorizer = try await mapped {
                try await authorization.complete(code: code, componentAppid: try authorization.component(try body.string("component_appid")))
            }
            return AdminJSON.response(AdminJSON.authorizer(authorizer), status: .created)
        }
        group.get("authorizers") { _, _ in
            let all = try await store.authorizers()
            return AdminJSON.list(all.map(AdminJSON.authorizer), lastId: nil, limit: Int.max)
        }
        group.post("authorizers/sync") { request, _ in
            let body = try await JSONBody.read(request, allowed: ["component_appid"])
            if let only = try body.string("component_appid") {
                let recovered = try await mapped { try await authorization.sync(componentAppid: try authorization.component(only)) }
                return AdminJSON.response(.object([("recovered", .number(Double(recovered))), ("errors", .array([]))]))
            }
            // All components: one that cannot sync (no ticket yet, say) does not stop the others.
            var recovered = 0
            var errors: [JSONValue] = []
            for component in tokens.components.keys.sorted() {
                do {
                    recovered += try await mapped { try await authorization.sync(componentAppid: component) }
                } catch let error as AdminError {
                    errors.append(.object([("component_appid", .string(component)), ("message", .string(error.message))]))
                }
            }
            return AdminJSON.response(.object([("recovered", .number(Double(recovered))), ("errors", .array(errors))]))
        }
        group.get("authorizers/{appid}") { _, context in
            let appid = context.parameters.get("appid") ?? ""
            guard let authorizer = try await store.authorizer(appid: appid) else { throw AdminError.notFound("authorizer \(appid)") }
            return AdminJSON.response(AdminJSON.authorizer(authorizer))
        }
        group.get("authorizers/{appid}/access-token") { request, context in
            let appid = context.parameters.get("appid") ?? ""
            let force = try Self.force(request)
            let token = try await mapped { try await tokens.authorizerToken(appid, force: force) }
            return AdminJSON.response(AdminJSON.token(token))
        }
        group.get("components") { _, _ in
            var items: [JSONValue] = []
            for appid in tokens.components.keys.sorted() {
                let ticket = try await store.ticket(componentAppid: appid)
                let token = try await store.componentToken(appid: appid)
                items.append(.object([
                    ("appid", .string(appid)),
                    ("ticket_received_at", ticket.map { .string(Timestamp.iso8601($0.receivedAt)) } ?? .null),
                    ("ticket_age_seconds", ticket.map { .number(max(0, clock.now().timeIntervalSince($0.receivedAt)).rounded()) } ?? .null),
                    ("access_token_expires_at", token.map { .string(Timestamp.iso8601($0.expiresAt)) } ?? .null),
                ]))
            }
            return AdminJSON.list(items, lastId: nil, limit: Int.max)
        }
        group.get("components/{appid}/access-token") { request, context in
            let appid = context.parameters.get("appid") ?? ""
            let force = try Self.force(request)
            let token = try await mapped { try await tokens.componentToken(appid, force: force) }
            return AdminJSON.response(AdminJSON.token(token))
        }
    }

    /// `force=true` (or 1) refreshes first; anything but true, false, 1 or 0 is refused rather than
    /// read as false (`force=yes` handed back the cached token the caller meant to replace).
    static func force(_ request: Request) throws -> Bool {
        guard let value = request.uri.queryParameters["force"] else { return false }
        switch value {
        case "true", "1": return true
        case "false", "0": return false
        default: throw AdminError.badRequest("query parameter force must be true or false, not \(value)")
        }
    }
}

/// Turns token and WeChat failures into admin errors with a fitting status.
func mapped<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as TokenError {
        switch error {
        case .unknownComponent, .unknownAuthorizer: throw AdminError(status: .notFound, code: "not_found", message: error.description)
        case .componentRequired: throw AdminError.badRequest(error.description)
        case .revoked: throw AdminError(status: .conflict, code: "authorizer_revoked", message: error.description)
        case .noRefreshToken: throw AdminError(status: .conflict, code: "no_refresh_token", message: error.description)
        case .noTicket: throw AdminError(status: .serviceUnavailable, code: "no_ticket", message: error.description)
        case .lockBusy: throw AdminError(status: .serviceUnavailable, code: "busy", message: error.description)
        }
    } catch let error as WeChatAPIError {
        throw AdminError(status: .badGateway, code: error.errcode == -2 ? "wechat_unreachable" : "wechat_error", message: error.description)
    } catch let error as AuthLinkBuilder.BadParameter {
        throw AdminError.badRequest(error.description)
    }
}

extension AdminJSON {
    static func token(_ token: StoredToken) -> JSONValue {
        .object([("access_token", .string(token.token)), ("expires_at", .string(Timestamp.iso8601(token.expiresAt)))])
    }

    /// Never a refresh token or an access token.
    static func authorizer(_ a: Authorizer) -> JSONValue {
        .object([
            ("appid", .string(a.appid)), ("component_appid", .string(a.componentAppid)), ("name", a.name.map(JSONValue.string) ?? .null),
            ("type", a.type.map(JSONValue.string) ?? .null), ("user_name", a.userName.map(JSONValue.string) ?? .null),
            ("status", .string(a.status.rawValue)), ("permissions", .array(a.permissions.map { .number(Double($0)) })),
            ("access_token_expires_at", a.accessToken.map { .string(Timestamp.iso8601($0.expiresAt)) } ?? .null),
            ("authorized_at", .string(Timestamp.iso8601(a.authorizedAt))),
        ])
    }
}
