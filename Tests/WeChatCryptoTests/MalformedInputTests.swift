import CryptoExtras
import Crypto
import Foundation
import RelayTestSupport
import Testing
import WeChatCrypto

/// One test per way an input can be wrong: each is a specific error, never a crash.
@Suite struct MalformedInputTests {
    let keyText = "Kz3vQ8pLm2Nw7Xy4Rt6Ub9Ce1Df5Gh0Jk8Lm3Np7Qr2"
    var key: EncodingAESKey { try! EncodingAESKey(keyText) }

    /// Encrypts raw bytes with WeChat's key and IV but no framing, to build broken plaintexts.
    func rawCiphertext(_ plain: [UInt8]) throws -> String {
        let k = key.bytes
        return try AES._CBC.encrypt(plain, using: SymmetricKey(data: k), iv: AES._CBC.IV(ivBytes: k.prefix(16)), noPadding: true)
            .base64EncodedString()
    }

    @Test func keyOfWrongLength() {
        #expect(throws: WeChatCryptoError.illegalAESKey("expected 43 characters, got 42")) { try EncodingAESKey(String(keyText.dropLast())) }
    }

    @Test func keyWithNonBase64Character() {
        #expect(throws: WeChatCryptoError.illegalAESKey("only the characters A-Z a-z 0-9 + / are allowed")) {
            try EncodingAESKey(String(keyText.dropLast()) + "-")
        }
    }

    @Test func badBase64Ciphertext() {
        #expect(throws: WeChatCryptoError.invalidBase64) { try WeChatCipher(key: key, receiverId: "wx1").decrypt("not base64!!") }
    }

    @Test func ciphertextNotWholeBlocks() {
        let fifteen = Data(repeating: 7, count: 15).base64EncodedString()
        #expect(throws: WeChatCryptoError.invalidCiphertextLength(15)) { try WeChatCipher(key: key, receiverId: "wx1").decrypt(fifteen) }
        #expect(throws: WeChatCryptoError.invalidCiphertextLength(0)) { try WeChatCipher(key: key, receiverId: "wx1").decrypt("") }
    }

    @Test func paddingOutOfRange() throws {
        var plain = [UInt8](repeating: 65, count: 64)
        plain[63] = 0
        #expect(throws: WeChatCryptoError.invalidPadding(0)) { try WeChatCipher(key: key, receiverId: "wx1").decrypt(try rawCiphertext(plain)) }
        plain[63] = 33
        #expect(throws: WeChatCryptoError.invalidPadding(33)) { try WeChatCipher(key: key, receiverId: "wx1").decrypt(try rawCiphertext(plain)) }
    }

    @Test func paddingBytesDisagree() throws {
        var plain = [UInt8](repeating: 65, count: 64)
        plain[63] = 3
        plain[62] = 3
        plain[61] = 9
        #expect(throws: WeChatCryptoError.invalidPadding(3)) { try WeChatCipher(key: key, receiverId: "wx1").decrypt(try rawCiphertext(plain)) }
    }

    @Test func plaintextTooShortForHeader() throws {
        // 32 bytes, pad 16: 16 bytes left, fewer than the 20 of prefix + length.
        let plain = [UInt8](repeating: 65, count: 16) + [UInt8](repeating: 16, count: 16)
        #expect(throws: WeChatCryptoError.truncatedPlaintext(16)) { try WeChatCipher(key: key, receiverId: "wx1").decrypt(try rawCiphertext(plain)) }
    }

    @Test func lengthFieldPastTheBuffer() throws {
        var plain = [UInt8](repeating: 65, count: 16) + [0, 0, 1, 0] + [UInt8](repeating: 66, count: 10)
        plain += [UInt8](repeating: 2, count: 2)
        #expect(throws: WeChatCryptoError.lengthOutOfRange(declared: 256, available: 10)) {
            try WeChatCipher(key: key, receiverId: "wx1").decrypt(try rawCiphertext(plain))
        }
    }

    @Test func wrongReceiverId() {
        let encrypted = WeChatCipher(key: key, receiverId: "wxOTHER").encrypt("hello")
        #expect(throws: WeChatCryptoError.receiverMismatch(expected: "wx1", found: "wxOTHER")) {
            try WeChatCipher(key: key, receiverId: "wx1").decrypt(encrypted)
        }
    }

    @Test func flippedSignature() throws {
        let v = CryptoVectors.shared.vector("gen_text_message_chinese_binary_prefix")
        let crypto = MessageCrypto(token: v.token, key: try EncodingAESKey(v.encoding_aes_key), receiverId: v.appid)
        var signature = Array(v.msg_signature)
        signature[0] = signature[0] == "0" ? "1" : "0"
        #expect(throws: WeChatCryptoError.signatureMismatch) {
            try crypto.decrypt(msgSignature: String(signature), timestamp: v.timestamp, nonce: v.nonce, encrypted: v.encrypt)
        }
        #expect(throws: WeChatCryptoError.signatureMismatch) {
            try crypto.decrypt(msgSignature: "", timestamp: v.timestamp, nonce: v.nonce, encrypted: v.encrypt)
        }
    }

    @Test func vectorWithAnotherExpectedAppid() throws {
        let v = CryptoVectors.shared.vector("gen_component_verify_ticket_push")
        let crypto = MessageCrypto(token: v.token, key: try EncodingAESKey(v.encoding_aes_key), receiverId: "wx0000000000000000")
        #expect(throws: WeChatCryptoError.receiverMismatch(expected: "wx0000000000000000", found: v.appid)) {
            try crypto.decrypt(msgSignature: v.msg_signature, timestamp: v.timestamp, nonce: v.nonce, encrypted: v.encrypt)
        }
        #expect(WeChatCryptoError.receiverMismatch(expected: "", found: "").sampleCode == -40005)
    }
}
