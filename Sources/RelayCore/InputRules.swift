import Foundation

/// What identifiers from configuration and the admin API may look like, checked in one place
/// wherever they come in (`relay.yml`, the API, onboarding links).
public enum InputRules {
    /// An AppID: 1 to 32 ASCII letters and digits, such as `wx1234567890abcdef`.
    public static func isAppID(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.count <= 32 && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
    }

    /// A subscription id: 1 to 64 letters, digits, `-` and `_`.
    public static func isSubscriptionID(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.count <= 64 && text.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
    }

    /// Why a subscriber URL with a user name or password in it is refused, or nil when it has
    /// none. The HTTP client does not send them (no Basic auth: the subscriber answered 401 to
    /// every attempt, and nothing said why), and the URL is shown in the admin API, the dashboard,
    /// `relay check` and the logs, where a password does not belong.
    public static func credentialsProblem(in url: URL) -> String? {
        guard url.user != nil || url.password != nil else { return nil }
        return "must not carry a user name or password (user:password@): the relay does not send them, and the URL is shown "
            + "wherever subscriptions are listed; subscribers tell the relay's requests by their webhook-signature"
    }

    /// A C0 or C1 control character, or DEL: never part of an id, a URL, an AppID or an event type.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
}
