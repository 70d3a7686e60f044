import Foundation

/// The AES-256 key WeChat derives from a 43-character EncodingAESKey.
///
/// 43 base64 characters carry 258 bits; WeChat uses the first 256 and ignores the low two bits of
/// the last character. Many real keys have those bits set, which strict base64 decoders reject, so
/// the last character is canonicalised before decoding.
public struct EncodingAESKey: Sendable, Equatable {
    /// The 32 key bytes.
    public let bytes: [UInt8]

    /// Derives the key; throws `illegalAESKey` for anything but 43 standard base64 characters.
    public init(_ encoded: String) throws(WeChatCryptoError) {
        let scalars = Array(encoded.unicodeScalars)
        guard scalars.count == 43 else {
            throw .illegalAESKey("expected 43 characters, got \(scalars.count)")
        }
        guard let lastValue = Self.base64Value(of: scalars[42]),
            scalars.allSatisfy({ Self.base64Value(of: $0) != nil })
        else {
            throw .illegalAESKey("only the characters A-Z a-z 0-9 + / are allowed")
        }
        // Clear the two bits that fall past the 256th and would make the string non-canonical.
        let canonicalLast = Self.alphabet[Int(lastValue & 0b11_1100)]
        let canonical = String(String.UnicodeScalarView(scalars[0..<42])) + String(canonicalLast) + "="
        guard let data = Data(base64Encoded: canonical), data.count == 32 else {
            throw .illegalAESKey("does not decode to 32 bytes")
        }
        self.bytes = Array(data)
    }

    /// Wraps 32 raw key bytes (tests and key generation).
    public init(rawBytes: [UInt8]) throws(WeChatCryptoError) {
        guard rawBytes.count == 32 else { throw .illegalAESKey("expected 32 key bytes") }
        self.bytes = rawBytes
    }

    /// The 43-character form WeChat's console shows.
    public var encoded: String {
        String(Data(bytes).base64EncodedString().dropLast())
    }

    /// A fresh random key in its 43-character form.
    public static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let raw = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        return String(Data(raw).base64EncodedString().dropLast())
    }

    private static let alphabet: [Character] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

    private static func base64Value(of scalar: Unicode.Scalar) -> UInt8? {
        switch scalar.value {
        case 0x41...0x5A: UInt8(scalar.value - 0x41)
        case 0x61...0x7A: UInt8(scalar.value - 0x61 + 26)
        case 0x30...0x39: UInt8(scalar.value - 0x30 + 52)
        case 0x2B: 62
        case 0x2F: 63
        default: nil
        }
    }
}
