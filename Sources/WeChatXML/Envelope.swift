/// The outer XML of an encrypted push: `<Encrypt>` plus the routing hints WeChat puts beside it
/// (`ToUserName` on the message URL, `AppId` on the authorization-event URL).
public struct EncryptedEnvelope: Sendable, Equatable {
    public var encrypt: String
    public var toUserName: String?
    public var appId: String?

    public init(encrypt: String, toUserName: String? = nil, appId: String? = nil) {
        self.encrypt = encrypt
        self.toUserName = toUserName
        self.appId = appId
    }

    /// Parses an inbound envelope; `Encrypt` must be present and non-empty.
    public static func parse(_ body: some Collection<UInt8>, limits: XMLLimits = .default) throws(WeChatXMLError) -> EncryptedEnvelope {
        let root = try XMLTreeParser.parse(body, limits: limits)
        guard let encrypt = root.childText("Encrypt"), !encrypt.isEmpty else { throw .missingElement("Encrypt") }
        return EncryptedEnvelope(encrypt: encrypt, toUserName: root.childText("ToUserName"), appId: root.childText("AppId"))
    }

    /// The inbound form WeChat posts (used by `relay push` and tests).
    public func render() -> String {
        var writer = XMLWriter()
        writer.element("xml") { xml in
            if let appId { xml.text("AppId", appId) }
            if let toUserName { xml.text("ToUserName", toUserName) }
            xml.text("Encrypt", encrypt)
        }
        return writer.output
    }
}

/// The encrypted passive-reply envelope the relay answers WeChat with.
public struct ReplyEnvelope: Sendable, Equatable {
    public var encrypt: String
    public var msgSignature: String
    public var timestamp: String
    public var nonce: String

    public init(encrypt: String, msgSignature: String, timestamp: String, nonce: String) {
        self.encrypt = encrypt
        self.msgSignature = msgSignature
        self.timestamp = timestamp
        self.nonce = nonce
    }

    /// `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`, byte-compatible with WeChat's SDKs.
    public func render() -> String {
        var writer = XMLWriter()
        writer.element("xml") { xml in
            xml.text("Encrypt", encrypt)
            xml.text("MsgSignature", msgSignature)
            xml.bare("TimeStamp", timestamp)
            xml.text("Nonce", nonce)
        }
        return writer.output
    }

    /// Parses a reply envelope (tests, and clients checking the relay's answer).
    public static func parse(_ body: some Collection<UInt8>) throws(WeChatXMLError) -> ReplyEnvelope {
        let root = try XMLTreeParser.parse(body)
        func required(_ name: String) throws(WeChatXMLError) -> String {
            guard let value = root.childText(name) else { throw .missingElement(name) }
            return value
        }
        return ReplyEnvelope(encrypt: try required("Encrypt"), msgSignature: try required("MsgSignature"),
                             timestamp: try required("TimeStamp"), nonce: try required("Nonce"))
    }
}
