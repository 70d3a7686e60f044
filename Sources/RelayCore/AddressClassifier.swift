import Foundation

/// Decides whether an IP address is on the public internet. Subscriber URLs may only reach
/// public addresses unless `delivery.allow_private_networks` is on, so a webhook cannot be aimed
/// at the relay's own network (cloud metadata, databases, admin ports).
public enum AddressClassifier {
    /// Whether the textual IPv4 or IPv6 address is public. Unparseable text is not.
    public static func isPublic(_ address: String) -> Bool {
        if let v4 = parseIPv4(address) { return isPublicIPv4(v4) }
        if let v6 = parseIPv6(address) { return isPublicIPv6(v6) }
        return false
    }

    static func isPublicIPv4(_ a: [UInt8]) -> Bool {
        let (b0, b1, b2) = (a[0], a[1], a[2])
        switch b0 {
        case 0, 10, 127: return false                        // "this network", private, loopback
        case 100 where (64...127).contains(b1): return false  // shared address space (CGNAT)
        case 169 where b1 == 254: return false                // link-local, cloud metadata
        case 172 where (16...31).contains(b1): return false   // private
        case 192 where b1 == 168: return false                // private
        case 192 where b1 == 0 && (b2 == 0 || b2 == 2): return false  // IETF protocol assignments, TEST-NET-1
        case 198 where b1 == 18 || b1 == 19: return false     // benchmarking
        case 198 where b1 == 51 && b2 == 100: return false    // TEST-NET-2
        case 203 where b1 == 0 && b2 == 113: return false     // TEST-NET-3
        case 224...255: return false                          // multicast, reserved, broadcast
        default: return true
        }
    }

    static func isPublicIPv6(_ a: [UInt8]) -> Bool {
        if a[0..<15].allSatisfy({ $0 == 0 }) { return false }                // :: and ::1
        if a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xFF && a[11] == 0xFF {
            return isPublicIPv4(Array(a[12..<16]))                              // IPv4-mapped
        }
        if a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xFF && a[3] == 0x9B {
            return isPublicIPv4(Array(a[12..<16]))                              // NAT64 64:ff9b::/96
        }
        if a[0] & 0xFE == 0xFC { return false }                                // unique local fc00::/7
        if a[0] == 0xFE && a[1] & 0xC0 == 0x80 { return false }                // link-local fe80::/10
        if a[0] == 0xFE && a[1] & 0xC0 == 0xC0 { return false }                // site-local fec0::/10
        if a[0] == 0xFF { return false }                                       // multicast
        if a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8 { return false }  // documentation
        if a[0] == 0x20 && a[1] == 0x02 { return isPublicIPv4(Array(a[2..<6])) }            // 6to4
        if a[0] == 0x01 && a[1] == 0x00 && a[2..<8].allSatisfy({ $0 == 0 }) { return false } // discard-only
        return true
    }

    public static func parseIPv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), let value = UInt8(part) else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    public static func parseIPv6(_ raw: String) -> [UInt8]? {
        var text = raw
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        if let zone = text.firstIndex(of: "%") { text = String(text[..<zone]) }
        guard text.contains(":") else { return nil }
        var tail: [UInt8] = []
        if let lastColon = text.lastIndex(of: ":"), text[text.index(after: lastColon)...].contains(".") {
            guard let v4 = parseIPv4(String(text[text.index(after: lastColon)...])) else { return nil }
            tail = v4
            text = String(text[...lastColon]) + "0:0"
        }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            for g in s.split(separator: ":", omittingEmptySubsequences: false) {
                guard !g.isEmpty, g.count <= 4, let v = UInt16(g, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let back = groups(halves[1]), head.count + back.count < 8 else { return nil }
            all += Array(repeating: 0, count: 8 - head.count - back.count) + back
        }
        guard all.count == 8 else { return nil }
        var bytes = all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        if !tail.isEmpty { bytes.replaceSubrange(12..<16, with: tail) }
        return bytes
    }
}
