import Foundation
import WeChatCrypto
import WeChatXML

/// A push whose signature verified and whose body decrypted and parsed. Only the verifier makes
/// these, so code that takes one cannot see an unauthenticated body.
public struct VerifiedPush: Sendable {
    public let endpoint: PushEndpoint
    /// The AppID in the callback URL path, if any.
    public let pathAppid: String?
    /// The component whose key decrypted the push; nil for directly configured accounts.
    public let componentAppid: String?
    /// The decrypted XML exactly as received.
    public let plaintext: [UInt8]
    /// The decrypted XML, parsed.
    public let root: XMLNode
    public let receivedAt: Date
    /// How a passive reply to this push must be sealed: nil means plaintext mode.
    public let replyCrypto: MessageCrypto?

    init(endpoint: PushEndpoint, pathAppid: String?, componentAppid: String?, plaintext: [UInt8],
         root: XMLNode, receivedAt: Date, replyCrypto: MessageCrypto?) {
        self.endpoint = endpoint
        self.pathAppid = pathAppid
        self.componentAppid = componentAppid
        self.plaintext = plaintext
        self.root = root
        self.receivedAt = receivedAt
        self.replyCrypto = replyCrypto
    }
}
