import Foundation
import RelayCore
import WeChatCrypto
import WeChatXML

/// A push ready to send: path, query string and body, encrypted and signed as WeChat does.
public struct ComposedPush: Sendable {
    public var path: String
    public var query: PushQuery
    public var body: String

    /// `path?query`.
    public var uri: String { "\(path)?\(query.rawQuery)" }
}

/// Builds pushes exactly as WeChat sends them (`relay push`, tests, benchmarks).
public enum PushComposer {
    /// Encrypts `xml` for a component and addresses it to the authorization-event URL.
    public static func componentPush(xml: String, component: ComponentCredentials, timestamp: Int, nonce: String) -> ComposedPush {
        signed(xml, crypto: component.crypto, path: "/wechat/component", timestamp: timestamp, nonce: nonce) {
            EncryptedEnvelope(encrypt: $0, appId: component.appid)
        }
    }

    /// Encrypts `xml` with `crypto` (a component's or an account's) for `/wechat/{appid}/callback`.
    public static func callbackPush(xml: String, appid: String, toUserName: String, crypto: MessageCrypto,
                                    timestamp: Int, nonce: String) -> ComposedPush {
        signed(xml, crypto: crypto, path: "/wechat/\(appid)/callback", timestamp: timestamp, nonce: nonce) {
            EncryptedEnvelope(encrypt: $0, toUserName: toUserName)
        }
    }

    /// A plaintext-mode push: the XML as the body, only the URL `signature`.
    public static func plaintextPush(xml: String, appid: String, token: String, timestamp: Int, nonce: String) -> ComposedPush {
        let signature = WeChatSignature.compute([token, String(timestamp), nonce])
        return ComposedPush(path: "/wechat/\(appid)/callback",
                            query: PushQuery(timestamp: String(timestamp), nonce: nonce, signature: signature), body: xml)
    }

    private static func signed(
        _ xml: String, crypto: MessageCrypto, path: String, timestamp: Int, nonce: String,
        envelope: (String) -> EncryptedEnvelope
    ) -> ComposedPush {
        let ts = String(timestamp)
        let sealed = crypto.seal(xml, timestamp: ts, nonce: nonce)
        let query = PushQuery(
            timestamp: ts, nonce: nonce, signature: WeChatSignature.compute([crypto.token, ts, nonce]),
            msgSignature: sealed.msgSignature, encryptType: "aes")
        return ComposedPush(path: path, query: query, body: envelope(sealed.encrypt).render())
    }

    /// A fresh numeric nonce, as WeChat sends.
    public static func nonce() -> String { String(UInt32.random(in: 100_000_000...UInt32.max)) }
}
