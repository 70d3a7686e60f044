/// WXBizMsgCrypt for one receiver: verifies and decrypts pushes, encrypts and signs replies.
///
/// Holds the message-check token, the current EncodingAESKey and optionally the previous one, which
/// is tried when the current one fails so pushes encrypted just before a key change are not lost.
public struct MessageCrypto: Sendable {
    public let token: String
    public let receiverId: String
    private let current: WeChatCipher
    private let previous: WeChatCipher?

    public init(token: String, key: EncodingAESKey, previousKey: EncodingAESKey? = nil, receiverId: String) {
        self.token = token
        self.receiverId = receiverId
        self.current = WeChatCipher(key: key, receiverId: receiverId)
        self.previous = previousKey.map { WeChatCipher(key: $0, receiverId: receiverId) }
    }

    /// Whether a previous key is configured as a fallback.
    public var hasPreviousKey: Bool { previous != nil }

    /// Checks the plain `signature` (token, timestamp, nonce) in constant time.
    public func verifySignature(_ signature: String, timestamp: String, nonce: String) -> Bool {
        WeChatSignature.verify(signature, parts: [token, timestamp, nonce])
    }

    /// Checks `msg_signature` (token, timestamp, nonce, Encrypt) in constant time.
    public func verifyMessageSignature(_ signature: String, timestamp: String, nonce: String, encrypted: String) -> Bool {
        WeChatSignature.verify(signature, parts: [token, timestamp, nonce, encrypted])
    }

    /// Verifies `msg_signature`, then decrypts with the current key, falling back to the previous.
    public func decrypt(
        msgSignature: String, timestamp: String, nonce: String, encrypted: String
    ) throws(WeChatCryptoError) -> [UInt8] {
        guard verifyMessageSignature(msgSignature, timestamp: timestamp, nonce: nonce, encrypted: encrypted) else {
            throw .signatureMismatch
        }
        return try decrypt(encrypted)
    }

    /// Decrypts an already-authenticated `Encrypt` value, trying the previous key on failure.
    public func decrypt(_ encrypted: String) throws(WeChatCryptoError) -> [UInt8] {
        do {
            return try current.decrypt(encrypted)
        } catch {
            // Base64 and length errors do not depend on the key: no point in a second try.
            guard let previous, error != .invalidBase64, !Self.isLengthError(error) else { throw error }
            if let message = try? previous.decrypt(encrypted) { return message }
            throw error
        }
    }

    /// Encrypts and signs a message: a passive reply (whose `timestamp`/`nonce` may echo the
    /// request's or be fresh), or a push composed the way WeChat sends it.
    public func seal(
        _ message: String, timestamp: String, nonce: String, randomPrefix: [UInt8]? = nil
    ) -> SealedMessage {
        let encrypted = current.encrypt(message, randomPrefix: randomPrefix)
        let signature = WeChatSignature.compute([token, timestamp, nonce, encrypted])
        return SealedMessage(encrypt: encrypted, msgSignature: signature, timestamp: timestamp, nonce: nonce)
    }

    private static func isLengthError(_ error: WeChatCryptoError) -> Bool {
        if case .invalidCiphertextLength = error { return true }
        return false
    }
}

/// The four values of a sealed message: what a reply envelope and a push query carry.
public struct SealedMessage: Sendable, Equatable {
    public let encrypt: String
    public let msgSignature: String
    public let timestamp: String
    public let nonce: String
}
