/// Why a token cannot be handed out; each says what to do.
public enum TokenError: Error, CustomStringConvertible, Sendable {
    case unknownComponent(String)
    case componentRequired
    case noTicket(component: String)
    case unknownAuthorizer(String)
    case revoked(String)
    case noRefreshToken(String)
    case lockBusy(String)

    public var description: String {
        switch self {
        case .unknownComponent(let appid): "component \(appid) is not configured"
        case .componentRequired: "several components are configured: pass component_appid"
        case .noTicket(let component):
            "component \(component) has no usable component_verify_ticket yet; WeChat was asked to push one "
                + "(api_start_push_ticket) and pushes it to /wechat/component within about 10 minutes"
        case .unknownAuthorizer(let appid): "authorizer \(appid) is not known; complete an authorization or run POST /v1/authorizers/sync"
        case .revoked(let appid): "authorizer \(appid) revoked its authorization; the merchant must authorize again"
        case .noRefreshToken(let appid): "authorizer \(appid) has no refresh token; run POST /v1/authorizers/sync or authorize again"
        case .lockBusy(let work): "another relay node is \(work); try again shortly"
        }
    }
}
