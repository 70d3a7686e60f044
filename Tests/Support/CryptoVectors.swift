import Foundation

/// `shared/vectors/wechat-crypto.json`, read as it is (the repository sits beside `shared/`).
public struct CryptoVectors: Decodable, Sendable {
    public struct Vector: Decodable, Sendable {
        public let name: String
        public let token: String
        public let encoding_aes_key: String
        public let aes_key_hex: String
        public let iv_hex: String
        public let appid: String
        public let timestamp: String
        public let nonce: String
        public let random_prefix_hex: String
        public let plaintext: String
        public let plaintext_utf8_len: Int
        public let padded_len: Int
        public let pad_len: Int
        public let encrypt: String
        public let msg_signature: String
        public let signature: String
        public let inbound_body: String?
        public let inbound_query: String?
        public let reply_body: String?
        public let encoding_aes_key_is_canonical_base64: Bool
    }

    public struct URLVerification: Decodable, Sendable {
        public let name: String
        public let token: String
        public let timestamp: String
        public let nonce: String
        public let echostr: String
        public let signature: String?
        public let msg_signature: String?
        public let encoding_aes_key: String?
        public let receiver_id: String?
        public let random_prefix_hex: String?
        public let expected_response: String
    }

    public let vectors: [Vector]
    public let url_verification_vectors: [URLVerification]

    public static let shared: CryptoVectors = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = root.deletingLastPathComponent().appendingPathComponent("shared/vectors/wechat-crypto.json")
        do {
            return try JSONDecoder().decode(CryptoVectors.self, from: Data(contentsOf: file))
        } catch {
            fatalError("cannot read the crypto vectors at \(file.path): \(error)")
        }
    }()

    public func vector(_ name: String) -> Vector {
        guard let vector = vectors.first(where: { $0.name == name }) else { fatalError("no vector \(name)") }
        return vector
    }
}

extension Array where Element == UInt8 {
    /// Bytes from a hex string.
    public init(hex: String) {
        var bytes: [UInt8] = []
        var iterator = hex.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            bytes.append(UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)!)
        }
        self = bytes
    }
}

/// Query parameters of a vector's `inbound_query`.
public func queryParameters(_ query: String) -> [String: String] {
    var result: [String: String] = [:]
    for pair in query.split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1)
        result[String(parts[0])] = parts.count > 1 ? String(parts[1]).removingPercentEncoding : ""
    }
    return result
}
