/// A failure of WeChat's message crypto, one case per way an input can be wrong.
///
/// Each case carries the code the official WXBizMsgCrypt samples use for it (`sampleCode`), so log
/// lines can be matched against WeChat's own documentation. Descriptions never contain key material.
public enum WeChatCryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The EncodingAESKey is not 43 base64 characters, so no 32-byte key can be derived.
    case illegalAESKey(String)
    /// The computed SHA-1 signature differs from the one WeChat sent.
    case signatureMismatch
    /// The ciphertext is not valid standard base64.
    case invalidBase64
    /// The ciphertext is empty or not a whole number of AES blocks.
    case invalidCiphertextLength(Int)
    /// The AES primitive itself refused the input.
    case aesFailure
    /// The last byte of the plaintext is not a WeChat PKCS#7 pad (1...32, all pad bytes equal).
    case invalidPadding(UInt8)
    /// The plaintext is shorter than the 16-byte random prefix plus the 4-byte length.
    case truncatedPlaintext(Int)
    /// The big-endian length field points past the end of the decrypted buffer.
    case lengthOutOfRange(declared: Int, available: Int)
    /// The receiver id after the message is not the expected AppID.
    case receiverMismatch(expected: String, found: String)

    /// The error code of the official WXBizMsgCrypt sample for this failure.
    public var sampleCode: Int {
        switch self {
        case .illegalAESKey: -40004
        case .signatureMismatch: -40001
        case .invalidBase64: -40010
        case .invalidCiphertextLength, .aesFailure: -40007
        case .invalidPadding, .truncatedPlaintext, .lengthOutOfRange: -40008
        case .receiverMismatch: -40005
        }
    }

    public var description: String {
        switch self {
        case .illegalAESKey(let reason): "illegal EncodingAESKey: \(reason)"
        case .signatureMismatch: "signature mismatch"
        case .invalidBase64: "ciphertext is not valid base64"
        case .invalidCiphertextLength(let n): "ciphertext length \(n) is not a positive multiple of 16 bytes"
        case .aesFailure: "AES-CBC decryption failed"
        case .invalidPadding(let pad): "invalid padding byte \(pad) (expected 1...32, all pad bytes equal)"
        case .truncatedPlaintext(let n): "decrypted buffer of \(n) bytes is too short for prefix and length"
        case .lengthOutOfRange(let declared, let available):
            "declared message length \(declared) exceeds the \(available) bytes available"
        case .receiverMismatch(let expected, let found):
            "receiver id \(found.prefix(64)) does not match \(expected)"
        }
    }
}
