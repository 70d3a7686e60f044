import Crypto

/// WeChat's SHA-1 signatures: `signature` over (token, timestamp, nonce) and `msg_signature` over
/// (token, timestamp, nonce, Encrypt) — the strings sorted byte-wise, concatenated, hex-encoded.
public enum WeChatSignature {
    /// The lowercase hex SHA-1 of the byte-wise sorted, concatenated parts.
    public static func compute(_ parts: [String]) -> String {
        let sorted = parts.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
        var hasher = Insecure.SHA1()
        for part in sorted { hasher.update(data: part) }
        return Hex.encode(hasher.finalize())
    }

    /// Checks `candidate` against the signature of `parts` without leaking where they differ.
    public static func verify(_ candidate: String, parts: [String]) -> Bool {
        constantTimeEquals(Array(compute(parts).utf8), Array(candidate.lowercased().utf8))
    }
}

/// Compares two byte strings in time that depends only on their lengths.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in a.indices { difference |= a[i] ^ b[i] }
    return difference == 0
}
