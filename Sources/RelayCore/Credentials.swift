import WeChatCrypto

/// A third-party platform (component) as configured: its AppID, secret and message crypto.
public struct ComponentCredentials: Sendable {
    public let appid: String
    public let appsecret: String
    /// Verifies and decrypts pushes addressed to this component; receiver id = the component AppID.
    public let crypto: MessageCrypto

    public init(appid: String, appsecret: String, token: String, key: EncodingAESKey, previousKey: EncodingAESKey?) {
        self.appid = appid
        self.appsecret = appsecret
        self.crypto = MessageCrypto(token: token, key: key, previousKey: previousKey, receiverId: appid)
    }
}

/// An Official Account or Mini Program configured directly (not through a component).
public struct AccountCredentials: Sendable {
    public let appid: String
    public let token: String
    public let appsecret: String?
    /// nil for plaintext mode; otherwise the account's own crypto (receiver id = its AppID).
    public let crypto: MessageCrypto?

    public init(appid: String, token: String, key: EncodingAESKey?, previousKey: EncodingAESKey? = nil, appsecret: String?) {
        self.appid = appid
        self.token = token
        self.appsecret = appsecret
        self.crypto = key.map { MessageCrypto(token: token, key: $0, previousKey: previousKey, receiverId: appid) }
    }
}

/// Every receiver the relay can authenticate pushes for.
public struct CredentialRegistry: Sendable {
    public let components: [ComponentCredentials]
    public let accounts: [AccountCredentials]

    public init(components: [ComponentCredentials], accounts: [AccountCredentials]) {
        self.components = components
        self.accounts = accounts
    }

    public func component(_ appid: String) -> ComponentCredentials? {
        components.first { $0.appid == appid }
    }

    public func account(_ appid: String) -> AccountCredentials? {
        accounts.first { $0.appid == appid }
    }
}
