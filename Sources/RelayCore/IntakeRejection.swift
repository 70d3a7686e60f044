/// Why a push or URL check was refused. Every case is the sender's fault (a 4xx): nothing is
/// stored for it. Messages are short, say what was wrong, and never echo secrets.
public enum IntakeRejection: Error, Equatable, Sendable, CustomStringConvertible {
    case missingParameter(String)
    case badSignature
    /// `offset` is the push's time minus this server's (nil: not a number), `allowed` the skew.
    case staleTimestamp(offset: Int?, allowed: Int)
    case unknownComponent(String)
    case unknownAccount(String)
    case tooLarge(limit: Int)
    case malformedBody(String)
    case undecryptable(String)
    case wrongReceiver
    case plaintextNotAllowed

    /// A short, stable label for metrics.
    public var metricLabel: String {
        switch self {
        case .missingParameter: "missing_parameter"
        case .badSignature: "bad_signature"
        case .staleTimestamp: "stale_timestamp"
        case .unknownComponent: "unknown_component"
        case .unknownAccount: "unknown_account"
        case .tooLarge: "too_large"
        case .malformedBody: "malformed_body"
        case .undecryptable: "undecryptable"
        case .wrongReceiver: "wrong_receiver"
        case .plaintextNotAllowed: "plaintext_not_allowed"
        }
    }

    public var description: String {
        switch self {
        case .missingParameter(let name): "missing query parameter \(name)"
        case .badSignature: "signature does not verify"
        case .staleTimestamp(let offset?, let allowed):
            "timestamp is \(abs(offset)) s \(offset < 0 ? "behind" : "ahead of") this server's clock, more than "
                + "wechat.max_clock_skew (\(allowed) s): a replayed push, or this server's clock is wrong (check NTP)"
        case .staleTimestamp(nil, _): "timestamp is not a number of seconds"
        case .unknownComponent(let appid): "component \(appid.prefix(40)) is not configured"
        case .unknownAccount(let appid): "no component or account configured to verify pushes for \(appid.prefix(40))"
        case .tooLarge(let limit): "body larger than \(limit) bytes"
        case .malformedBody(let reason): "body is not the expected XML: \(reason)"
        case .undecryptable(let reason): "cannot decrypt: \(reason)"
        case .wrongReceiver: "encrypted for a different receiver AppID"
        case .plaintextNotAllowed: "this account is configured for encrypted mode; plaintext pushes are refused"
        }
    }
}
