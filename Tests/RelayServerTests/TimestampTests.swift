import Foundation
import RelayCore
import Testing

/// `Timestamp.iso8601Millis` is written out (for speed, and because Foundation's formatter
/// truncates: a time stored as …40.123 came out as …40.122). Date and time of day must say
/// what Foundation says; the fraction is the stored millisecond.
@Suite struct TimestampTests {
    static func expected(_ millis: Int64) -> String {
        let (seconds, fraction) = millis.quotientAndRemainder(dividingBy: 1000)
        let (wholeSeconds, ms) = fraction < 0 ? (seconds - 1, fraction + 1000) : (seconds, fraction)
        // Whole seconds are exact in binary, so Foundation formats them right.
        let text = Date.ISO8601FormatStyle().format(Date(timeIntervalSince1970: Double(wholeSeconds)))
        let padded = String(ms + 1000).dropFirst()
        return text.dropLast() + "." + padded + "Z"
    }

    static func format(_ millis: Int64) -> String {
        Timestamp.iso8601Millis(Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    @Test(arguments: [
        Int64(0), 1, 999, -1, -86_400_000, 951_782_400_000 /* 2000-02-29 */, 4_107_456_000_000 /* 2100-02-28 */,
        4_107_542_399_999 /* 2100-02-28T23:59:59.999 */, 1_795_000_000_123, 253_402_300_799_999 /* 9999-12-31T23:59:59.999 */,
        -12_212_553_600_000 /* 1583-01-01, the first whole Gregorian year, which Foundation's calendar agrees on */,
    ])
    func edgesMatchFoundation(millis: Int64) {
        #expect(Self.format(millis) == Self.expected(millis))
    }

    @Test func randomTimesMatchFoundation() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let millis = Int64.random(in: -12_212_553_600_000...253_402_300_799_999, using: &generator)
            #expect(Self.format(millis) == Self.expected(millis), "\(millis)")
        }
    }

    @Test func storedMillisecondsArePrintedAsStored() {
        #expect(Self.format(1_795_000_000_123) == "2026-11-18T11:06:40.123Z")
        // Between two milliseconds: the nearest, as the store rounds.
        #expect(Timestamp.iso8601Millis(Date(timeIntervalSince1970: 1.2996)) == "1970-01-01T00:00:01.300Z")
        #expect(Timestamp.iso8601Millis(Date(timeIntervalSince1970: 1.2994)) == "1970-01-01T00:00:01.299Z")
    }
}
