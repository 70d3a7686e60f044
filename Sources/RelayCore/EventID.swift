import Foundation

/// Event ids: `evt_` + a ULID (48-bit millisecond time, 80 random bits, Crockford base32), so ids
/// sort by arrival time and are unique across relay nodes without coordination.
public enum EventID {
    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    /// A new id for an event received at `date`.
    public static func make(at date: Date) -> String {
        var rng = SystemRandomNumberGenerator()
        return make(at: date, using: &rng)
    }

    /// A new id with the given random source (deterministic tests).
    public static func make(at date: Date, using rng: inout some RandomNumberGenerator) -> String {
        let millis = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        let random = (UInt128(rng.next()) << 64 | UInt128(rng.next())) & ((1 << 80) - 1)
        let value = UInt128(millis & ((1 << 48) - 1)) << 80 | random
        var chars = [UInt8](repeating: 0, count: 26)
        for i in 0..<26 {
            chars[25 - i] = alphabet[Int((value >> (5 * UInt128(i))) & 0x1F)]
        }
        return "evt_" + String(decoding: chars, as: UTF8.self)
    }
}
