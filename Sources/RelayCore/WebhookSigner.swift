import Crypto
import Foundation
import Synchronization

/// Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")),
/// where the key is the base64 part of a `whsec_` secret.
public enum WebhookSigner {
    /// A new secret: `whsec_` + base64 of 32 random bytes.
    public static func generateSecret() -> String {
        "whsec_" + Data(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }).base64EncodedString()
    }

    /// The key bytes of a `whsec_` secret, or nil when it is not one.
    public static func key(of secret: String) -> SymmetricKey? {
        guard secret.hasPrefix("whsec_"), let data = Data(base64Encoded: String(secret.dropFirst(6))), !data.isEmpty else { return nil }
        return SymmetricKey(data: data)
    }

    /// Whether `secret` is `whsec_` + base64 of at least 24 bytes (192 bits).
    public static func isValidSecret(_ secret: String) -> Bool {
        (key(of: secret)?.bitCount ?? 0) >= 192
    }

    /// One `v1,` signature.
    public static func signature(secret: String, id: String, timestamp: Int, body: some DataProtocol) -> String {
        var hmac = keyed(secret)
        var prefix = id
        prefix += "."
        prefix += String(timestamp)
        prefix += "."
        prefix.withUTF8 { hmac.update(data: UnsafeRawBufferPointer($0)) }
        hmac.update(data: body)
        return "v1," + hmac.finalize().withUnsafeBytes { Data($0) }.base64EncodedString()
    }

    /// HMAC states with the secret's key already mixed in: deriving one (a base64 decode and two
    /// hash blocks) was most of the cost of signing a delivery. Bounded: cleared past 1,024 secrets.
    private static let keyedStates = Mutex<[String: HMAC<SHA256>]>([:])

    private static func keyed(_ secret: String) -> HMAC<SHA256> {
        if let state = keyedStates.withLock({ $0[secret] }) { return state }
        let state = HMAC<SHA256>(key: key(of: secret) ?? SymmetricKey(data: Data(secret.utf8)))
        keyedStates.withLock { states in
            if states.count >= 1024 { states.removeAll() }
            states[secret] = state
        }
        return state
    }

    /// The `webhook-signature` header value: one signature per secret, space-separated.
    public static func header(secrets: [String], id: String, timestamp: Int, body: some DataProtocol) -> String {
        secrets.map { signature(secret: $0, id: id, timestamp: timestamp, body: body) }.joined(separator: " ")
    }
}
