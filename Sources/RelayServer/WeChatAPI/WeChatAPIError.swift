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

    public var description: String { "WeChat \(api) failed: errcode \(errcode) (\(errmsg))" }

    /// 40001, 40014, 42001: the access token is invalid or expired; refresh once and retry.
    public var isTokenError: Bool { [40001, 40014, 42001].contains(errcode) }
    /// 61005, 61006: the component_verify_ticket is expired or invalid.
    public var isTicketError: Bool { [61005, 61006].contains(errcode) }
    /// 61023: the authorizer refresh token is invalid (revoked or superseded).
    public var isRefreshTokenInvalid: Bool { errcode == 61023 }
}
