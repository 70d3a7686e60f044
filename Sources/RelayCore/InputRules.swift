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

    /// A C0 or C1 control character, or DEL: never part of an id, a URL, an AppID or an event type.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
}
