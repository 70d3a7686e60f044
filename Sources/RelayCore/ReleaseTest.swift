/// WeChat's automated full-network release test (全网发布接入检测, protocol notes section 7).
public struct ReleaseTest: Sendable {
    /// The five test groups' Official Accounts and Mini Programs: AppIDs and original ids.
    public static let wechatTestAccounts: Set<String> = [
        "wx570bc396a51b8ff8", "gh_3c884a361561", "wxd101a85aa106f53e", "gh_8dad206e9538",
        "wx9252c5e0bb1836fc", "gh_c0f28a78b318", "wxc39235c15087f6f3", "gh_905ae9d01059",
        "wx8e1097c5bc82cde9", "gh_3f222ed8d140", "wx7720d01d4b2a4500", "gh_393666f1fdf4",
        "wx14550af28c71a144", "gh_26128078e9ab", "wx05d483572dcd5d8b", "gh_39abb5d4e1b7",
        "wxa35b9c23cfe664eb", "gh_2b3713f184a6", "wx5910277cae6fd970", "gh_7818dcb60240",
    ]

    public static let textCase = "TESTCOMPONENT_MSG_TYPE_TEXT"
    public static let queryAuthCodePrefix = "QUERY_AUTH_CODE:"

    public let enabled: Bool
    /// WeChat's test accounts plus those added in `reply.release_test_accounts`.
    public let accounts: Set<String>

    public init(enabled: Bool, extraAccounts: [String]) {
        self.enabled = enabled
        self.accounts = Self.wechatTestAccounts.union(extraAccounts)
    }

    /// What the relay does for a push from `appid` whose decrypted XML has these fields.
    public enum Action: Equatable, Sendable {
        /// Reply at once with this text.
        case replyText(String)
        /// Answer the empty string now, then exchange the code and send `<code>_from_api`.
        case queryAuthCode(String)
    }

    public func action(appid: String, toUserName: String?, msgType: String?, content: String?, event: String?) -> Action? {
        guard enabled, accounts.contains(appid) || toUserName.map(accounts.contains) == true else { return nil }
        if msgType == "event", let event { return .replyText(event + "from_callback") }
        guard msgType == "text", let content else { return nil }
        if content == Self.textCase { return .replyText(Self.textCase + "_callback") }
        if content.hasPrefix(Self.queryAuthCodePrefix) {
            return .queryAuthCode(String(content.dropFirst(Self.queryAuthCodePrefix.count)))
        }
        return nil
    }
}
