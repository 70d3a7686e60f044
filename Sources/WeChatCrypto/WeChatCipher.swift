import Crypto
import CryptoExtras
import Foundation

/// AES-256-CBC with WeChat's framing: `random(16) | uint32 length | message | receiver id`,
/// padded with PKCS#7 over 32-byte blocks, IV = first 16 key bytes.
public struct WeChatCipher: Sendable {
    /// The AppID that must follow every message (for a third-party platform, the component AppID).
    public let receiverId: String
    private let key: SymmetricKey
    private let iv: AES._CBC.IV

    public init(key: EncodingAESKey, receiverId: String) {
        self.receiverId = receiverId
        self.key = SymmetricKey(data: key.bytes)
        // 16 bytes always make a valid IV, so this cannot throw.
        self.iv = try! AES._CBC.IV(ivBytes: key.bytes.prefix(16))
    }

    /// Encrypts `message` to the base64 `Encrypt` value. `randomPrefix` (16 bytes) is for tests and
    /// vectors; production leaves it out and gets 16 random alphanumerics, as WeChat's SDKs do.
    public func encrypt(_ message: [UInt8], randomPrefix: [UInt8]? = nil) -> String {
        let receiver = Array(receiverId.utf8)
        var raw = randomPrefix ?? Self.randomAlphanumerics(16)
        precondition(raw.count == 16, "the random prefix is 16 bytes")
        let length = UInt32(message.count)
        raw.append(contentsOf: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
        raw.append(contentsOf: message)
        raw.append(contentsOf: receiver)
        let pad = 32 - raw.count % 32
        raw.append(contentsOf: repeatElement(UInt8(pad), count: pad))
        // A whole number of blocks with a valid key never fails in BoringSSL.
        let ciphertext = try! AES._CBC.encrypt(raw, using: key, iv: iv, noPadding: true)
        return ciphertext.base64EncodedString()
    }

    /// Encrypts a UTF-8 string.
    public func encrypt(_ message: String, randomPrefix: [UInt8]? = nil) -> String {
        encrypt(Array(message.utf8), randomPrefix: randomPrefix)
    }

    /// Decrypts an `Encrypt` value and checks the receiver id; returns the message bytes.
    public func decrypt(_ encrypted: String) throws(WeChatCryptoError) -> [UInt8] {
        let opened = try open(encrypted)
        guard opened.receiver == Array(receiverId.utf8) else {
            throw .receiverMismatch(expected: receiverId, found: String(decoding: opened.receiver, as: UTF8.self))
        }
        return opened.message
    }

    /// Decrypts without judging the receiver id (for callers that accept several).
    public func open(_ encrypted: String) throws(WeChatCryptoError) -> (message: [UInt8], receiver: [UInt8]) {
        guard let ciphertext = Data(base64Encoded: encrypted) else { throw .invalidBase64 }
        guard !ciphertext.isEmpty, ciphertext.count % 16 == 0 else {
            throw .invalidCiphertextLength(ciphertext.count)
        }
        let plain: [UInt8]
        do {
            plain = Array(try AES._CBC.decrypt(ciphertext, using: key, iv: iv, noPadding: true))
        } catch {
            throw .aesFailure
        }
        let pad = plain[plain.count - 1]
        guard (1...32).contains(pad), Int(pad) <= plain.count,
            plain[(plain.count - Int(pad))...].allSatisfy({ $0 == pad })
        else {
            throw .invalidPadding(pad)
        }
        let unpadded = plain[..<(plain.count - Int(pad))]
        guard unpadded.count >= 20 else { throw .truncatedPlaintext(unpadded.count) }
        let base = unpadded.startIndex
        let lengthBytes = unpadded[(base + 16)..<(base + 20)]
        let declared = lengthBytes.reduce(0) { $0 << 8 | Int($1) }
        let available = unpadded.count - 20
        guard declared <= available else { throw .lengthOutOfRange(declared: declared, available: available) }
        let messageStart = base + 20
        let message = Array(unpadded[messageStart..<(messageStart + declared)])
        let receiver = Array(unpadded[(messageStart + declared)...])
        return (message, receiver)
    }

    static func randomAlphanumerics(_ count: Int) -> [UInt8] {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        var rng = SystemRandomNumberGenerator()
        return (0..<count).map { _ in alphabet.randomElement(using: &rng)! }
    }
}
