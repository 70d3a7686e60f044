import Crypto

/// WeChat's SHA-1 signatures: `signature` over (token, timestamp, nonce) and `msg_signature` over
/// (token, timestamp, nonce, Encrypt) — the strings sorted byte-wise, concatenated, hex-encoded.
public enum WeChatSignature {
    /// The lowercase hex SHA-1 of the byte-wise sorted, concatenated parts.
    public static func compute(_ parts: [String]) -> String {
        Hex.encode(digest(parts))
    }

    /// Checks `candidate` (hex, either case) against the signature of `parts` without leaking
    /// where they differ.
    public static func verify(_ candidate: String, parts: [String]) -> Bool {
        let expected = digest(parts)
        let hex = candidate.utf8
        guard hex.count == 2 * Insecure.SHA1Digest.byteCount else { return false }
        var difference: UInt8 = 0
        var digits = hex.makeIterator()
        for byte in expected {
            difference |= (Hex.value(of: digits.next()!) ?? 0xFF) ^ (byte >> 4)
            difference |= (Hex.value(of: digits.next()!) ?? 0xFF) ^ (byte & 0x0F)
        }
        return difference == 0
    }

    /// The parts are hashed in place: copying each into an array to sort it cost more than the hash.
    static func digest(_ parts: [String]) -> Insecure.SHA1Digest {
        var hasher = Insecure.SHA1()
        for var part in parts.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            part.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        }
        return hasher.finalize()
    }
}

/// Compares two byte strings in time that depends only on their lengths.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in a.indices { difference |= a[i] ^ b[i] }
    return difference == 0
}
