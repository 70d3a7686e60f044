import Crypto
import Foundation

/// Seals secrets at rest with AES-GCM when `storage.encryption_key` is set, so a copy of the
/// database alone yields no ticket, token or signing secret. Without a key it passes values
/// through, and it still opens values sealed earlier only if given the key.
public struct SecretSealer: Sendable {
    private static let prefix = "sealed:v1:"
    private let key: SymmetricKey?

    /// `base64Key` must decode to 32 bytes; nil or empty disables sealing.
    public init(base64Key: String?) throws {
        guard let base64Key, !base64Key.isEmpty else {
            key = nil
            return
        }
        guard let data = Data(base64Encoded: base64Key), data.count == 32 else {
            throw SealError.badKey
        }
        key = SymmetricKey(data: data)
    }

    public static let disabled = try! SecretSealer(base64Key: nil)

    public func seal(_ value: String) -> String {
        guard let key else { return value }
        // AES-GCM with a fresh random nonce cannot fail for a 32-byte key.
        let box = try! AES.GCM.seal(Data(value.utf8), using: key)
        return Self.prefix + box.combined!.base64EncodedString()
    }

    public func open(_ stored: String) throws -> String {
        guard stored.hasPrefix(Self.prefix) else { return stored }
        guard let key else { throw SealError.keyMissing }
        guard let data = Data(base64Encoded: String(stored.dropFirst(Self.prefix.count))),
            let box = try? AES.GCM.SealedBox(combined: data),
            let plain = try? AES.GCM.open(box, using: key)
        else { throw SealError.cannotOpen }
        return String(decoding: plain, as: UTF8.self)
    }

    public enum SealError: Error, CustomStringConvertible {
        case badKey, keyMissing, cannotOpen
        public var description: String {
            switch self {
            case .badKey: "storage.encryption_key must be base64 of exactly 32 bytes"
            case .keyMissing: "a stored secret is sealed but storage.encryption_key is not set"
            case .cannotOpen: "a stored secret cannot be opened with storage.encryption_key (wrong key?)"
            }
        }
    }
}
