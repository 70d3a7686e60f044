import Foundation
import RelayTestSupport
import Testing
import WeChatCrypto

/// Every vector of `shared/vectors/wechat-crypto.json`, unchanged.
@Suite struct VectorTests {
    static let vectors = CryptoVectors.shared.vectors

    @Test(arguments: vectors.map(\.name))
    func keyDerivation(name: String) throws {
        let v = CryptoVectors.shared.vector(name)
        let key = try EncodingAESKey(v.encoding_aes_key)
        #expect(key.bytes == [UInt8](hex: v.aes_key_hex))
        #expect(Array(key.bytes.prefix(16)) == [UInt8](hex: v.iv_hex))
    }

    @Test(arguments: vectors.map(\.name))
    func encryptWithGivenPrefixMatchesExactly(name: String) throws {
        let v = CryptoVectors.shared.vector(name)
        let crypto = MessageCrypto(token: v.token, key: try EncodingAESKey(v.encoding_aes_key), receiverId: v.appid)
        let reply = crypto.seal(v.plaintext, timestamp: v.timestamp, nonce: v.nonce,
                                        randomPrefix: [UInt8](hex: v.random_prefix_hex))
        #expect(reply.encrypt == v.encrypt)
        #expect(reply.msgSignature == v.msg_signature)
        #expect(Data(base64Encoded: reply.encrypt)?.count == v.padded_len)
    }

    @Test(arguments: vectors.map(\.name))
    func decryptToThePlaintext(name: String) throws {
        let v = CryptoVectors.shared.vector(name)
        let crypto = MessageCrypto(token: v.token, key: try EncodingAESKey(v.encoding_aes_key), receiverId: v.appid)
        let message = try crypto.decrypt(msgSignature: v.msg_signature, timestamp: v.timestamp, nonce: v.nonce, encrypted: v.encrypt)
        #expect(String(decoding: message, as: UTF8.self) == v.plaintext)
        #expect(message.count == v.plaintext_utf8_len)
    }

    @Test(arguments: vectors.map(\.name))
    func urlSignature(name: String) {
        let v = CryptoVectors.shared.vector(name)
        #expect(WeChatSignature.compute([v.token, v.timestamp, v.nonce]) == v.signature)
        #expect(WeChatSignature.verify(v.signature, parts: [v.token, v.timestamp, v.nonce]))
    }

    /// Verification compares digits, not strings: either case passes; any other length or a
    /// non-hex character fails, however close.
    @Test(arguments: vectors.map(\.name))
    func signatureVerificationIgnoresCaseAndRefusesMalformedHex(name: String) {
        let v = CryptoVectors.shared.vector(name)
        let parts = [v.token, v.timestamp, v.nonce]
        #expect(WeChatSignature.verify(v.signature.uppercased(), parts: parts))
        #expect(!WeChatSignature.verify(String(v.signature.dropLast()), parts: parts))
        #expect(!WeChatSignature.verify(v.signature + "0", parts: parts))
        #expect(!WeChatSignature.verify(String(v.signature.dropLast()) + "g", parts: parts))
        let flipped = String(v.signature.dropLast()) + (v.signature.hasSuffix("0") ? "1" : "0")
        #expect(!WeChatSignature.verify(flipped, parts: parts))
        #expect(!WeChatSignature.verify("", parts: parts))
    }

    @Test func plainURLVerificationVector() throws {
        let v = try #require(CryptoVectors.shared.url_verification_vectors.first { $0.signature != nil })
        #expect(WeChatSignature.compute([v.token, v.timestamp, v.nonce]) == v.signature)
        #expect(v.echostr == v.expected_response)
    }

    @Test func encryptedEchostrVector() throws {
        let v = try #require(CryptoVectors.shared.url_verification_vectors.first { $0.msg_signature != nil })
        let crypto = MessageCrypto(token: v.token, key: try EncodingAESKey(v.encoding_aes_key!), receiverId: v.receiver_id!)
        let echo = try crypto.decrypt(msgSignature: v.msg_signature!, timestamp: v.timestamp, nonce: v.nonce, encrypted: v.echostr)
        #expect(String(decoding: echo, as: UTF8.self) == v.expected_response)
        // And the other way: encrypting the answer with the vector's prefix gives the vector's echostr.
        let cipher = WeChatCipher(key: try EncodingAESKey(v.encoding_aes_key!), receiverId: v.receiver_id!)
        #expect(cipher.encrypt(v.expected_response, randomPrefix: [UInt8](hex: v.random_prefix_hex!)) == v.echostr)
    }

    @Test func nonCanonicalKeysDecodeLeniently() throws {
        let nonCanonical = Self.vectors.filter { !$0.encoding_aes_key_is_canonical_base64 }
        #expect(nonCanonical.count >= 6)
        for v in nonCanonical {
            #expect(try EncodingAESKey(v.encoding_aes_key).bytes == [UInt8](hex: v.aes_key_hex))
        }
    }

    @Test func fullPaddingBlockIsThirtyTwoBytes() throws {
        let v = CryptoVectors.shared.vector("gen_full_padding_block")
        #expect(v.pad_len == 32)
        let cipher = WeChatCipher(key: try EncodingAESKey(v.encoding_aes_key), receiverId: v.appid)
        #expect(String(decoding: try cipher.decrypt(v.encrypt), as: UTF8.self) == v.plaintext)
    }
}
