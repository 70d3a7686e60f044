/// An address or a CIDR range: `10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1`. An IPv4 address
/// written as IPv6 (`::ffff:10.1.2.3`, as a dual-stack socket reports IPv4 peers) counts as IPv4.
public struct AddressRange: Sendable, Equatable, CustomStringConvertible {
    let bytes: [UInt8]
    let prefix: Int
    public let description: String

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = Self.bytes(of: String(parts[0])) else { return nil }
        let width = bytes.count * 8
        var prefix = width
        if parts.count == 2 {
            guard parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let given = Int(parts[1]), (0...width).contains(given) else { return nil }
            prefix = given
        }
        self.bytes = bytes
        self.prefix = prefix
        description = text
    }

    /// Whether `address` (textual IPv4 or IPv6) is in the range; unparseable text is not.
    public func contains(_ address: String) -> Bool {
        guard let other = Self.bytes(of: address), other.count == bytes.count else { return false }
        var left = prefix
        for (a, b) in zip(bytes, other) where left > 0 {
            let bits = min(8, left)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if a & mask != b & mask { return false }
            left -= bits
        }
        return true
    }

    static func bytes(of text: String) -> [UInt8]? {
        if let v4 = AddressClassifier.parseIPv4(text) { return v4 }
        guard let v6 = AddressClassifier.parseIPv6(text) else { return nil }
        if v6[0..<10].allSatisfy({ $0 == 0 }) && v6[10] == 0xFF && v6[11] == 0xFF { return Array(v6[12..<16]) }
        return v6
    }
}
