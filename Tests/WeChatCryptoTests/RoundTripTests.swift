import Foundation
import Testing
import WeChatCrypto

@Suite struct RoundTripTests {
    let key = try! EncodingAESKey("Kz3vQ8pLm2Nw7Xy4Rt6Ub9Ce1Df5Gh0Jk8Lm3Np7Qr2")

    /// Payload lengths 0...200 cover every residue mod 32, so 0 to 3 padding-relevant blocks and
    /// the full 32-byte pad; multi-byte text checks that lengths are counted in bytes.
    @Test func everyLengthRoundTrips() throws {
        let cipher = WeChatCipher(key: key, receiverId: "wx3f9a2b7c1d4e5f60")
        var generator = SystemRandomNumberGenerator()
        for length in 0...200 {
            let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encrypted = cipher.encrypt(payload)
            let count = try #require(Data(base64Encoded: encrypted)).count
            #expect(count % 32 == 0)
            #expect(count - (16 + 4 + length + 18) >= 1 && count - (16 + 4 + length + 18) <= 32)
            #expect(try cipher.decrypt(encrypted) == payload)
        }
    }

    @Test func multiByteUTF8RoundTrips() throws {
        let crypto = MessageCrypto(token: "tok123", key: key, receiverId: "wx3f9a2b7c1d4e5f60")
        for text in ["你好", "😀👍🏽 emoji", "混合 mixed ñ é ü", String(repeating: "中", count: 333), ""] {
            let reply = crypto.seal(text, timestamp: "1700000000", nonce: "42")
            let back = try crypto.decrypt(msgSignature: reply.msgSignature, timestamp: "1700000000", nonce: "42", encrypted: reply.encrypt)
            #expect(String(decoding: back, as: UTF8.self) == text)
        }
    }

    @Test func previousKeyIsTriedWhenTheCurrentOneFails() throws {
        let old = try EncodingAESKey(EncodingAESKey.generate())
        let oldCipher = WeChatCipher(key: old, receiverId: "wxabc")
        let encrypted = oldCipher.encrypt("before the key change")
        let rotated = MessageCrypto(token: "tok123", key: key, previousKey: old, receiverId: "wxabc")
        #expect(String(decoding: try rotated.decrypt(encrypted), as: UTF8.self) == "before the key change")
        let withoutFallback = MessageCrypto(token: "tok123", key: key, receiverId: "wxabc")
        #expect(throws: WeChatCryptoError.self) { try withoutFallback.decrypt(encrypted) }
    }

    @Test func generatedKeysAreValid() throws {
        let text = EncodingAESKey.generate()
        #expect(text.count == 43)
        #expect(try EncodingAESKey(text).encoded == text)
    }
}
