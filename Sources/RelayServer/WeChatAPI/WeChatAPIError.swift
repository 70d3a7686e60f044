/// A WeChat API call that did not succeed: WeChat's own `errcode`/`errmsg`, or a transport failure.
public struct WeChatAPIError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The API, e.g. `api_component_token`.
    public let api: String
    /// WeChat's errcode; -2 for a transport failure, -3 for an answer that was not the expected JSON.
    public let errcode: Int
    public let errmsg: String

    public init(api: String, errcode: Int, errmsg: String) {
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg
    }

    public var description: String {
        "WeChat \(api) failed: errcode \(errcode) (\(errmsg))" + (hint.map { ": " + $0 } ?? "")
    }

    /// What to do, for the errcodes an operator fixes rather than waits out.
    public var hint: String? {
        switch errcode {
        case -2: "WeChat could not be reached, or answered with an HTTP error; check this server's network and wechat.api_base"
        case 61004: "add this server's outbound IP to the platform's IP whitelist (Open Platform console, 开发资料 → 白名单IP)"
        case 40125, 41004: "check the component's appsecret in relay.yml (wechat.components[].appsecret)"
        case 61011: "this AppID is not a third-party platform; check wechat.components[].appid in relay.yml"
        case 45009: "the API's daily quota is used up; it resets at midnight Beijing time (or clear it with clear_quota)"
        case 48001, 61007: "the platform was not granted this API's permission set; apply for it in the Open Platform console"
        default: nil
        }
    }

    /// 40001, 40014, 42001: the access token is invalid or expired; refresh once and retry.
    public var isTokenError: Bool { [40001, 40014, 42001].contains(errcode) }
    /// 61005, 61006: the component_verify_ticket is expired or invalid.
    public var isTicketError: Bool { [61005, 61006].contains(errcode) }
    /// 61023: the authorizer refresh token is invalid (revoked or superseded).
    public var isRefreshTokenInvalid: Bool { errcode == 61023 }
}
