import Foundation

/// A seeded random source (SplitMix64), so a fuzz run is reproducible from its seed.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Mutates inputs the way a coverage-less fuzzer does: byte flips, interesting tokens, truncation,
/// duplication and splicing of seeds.
public struct Mutator {
    public var random: SeededRandom
    let seeds: [[UInt8]]
    static let tokens: [[UInt8]] = [
        "<", ">", "</", "/>", "<![CDATA[", "]]>", "<!--", "-->", "<!DOCTYPE x [", "<!ENTITY e \"v\">", "&", "&amp;", "&#0;", "&#x10FFFF;",
        "&lol;", "<?xml version=\"1.0\"?>", "\0", "\u{FFFF}", "<xml>", "</xml>", "<Encrypt>", "</Encrypt>", "<a b=\"c\">", "=", "\"",
        String(repeating: "<a>", count: 40), "😀", "\r\n", "%", "+", "/",
    ].map { Array($0.utf8) }

    public init(seed: UInt64, seeds: [[UInt8]]) {
        random = SeededRandom(seed: seed)
        self.seeds = seeds
    }

    public mutating func next() -> [UInt8] {
        var input = seeds.isEmpty ? [] : seeds[Int.random(in: 0..<seeds.count, using: &random)]
        for _ in 0..<Int.random(in: 1...4, using: &random) { mutate(&input) }
        return input
    }

    mutating func mutate(_ input: inout [UInt8]) {
        let position = input.isEmpty ? 0 : Int.random(in: 0...input.count, using: &random)
        switch Int.random(in: 0..<7, using: &random) {
        case 0 where !input.isEmpty:
            input[min(position, input.count - 1)] ^= UInt8(1 << Int.random(in: 0..<8, using: &random))
        case 1:
            input.insert(contentsOf: Self.tokens[Int.random(in: 0..<Self.tokens.count, using: &random)], at: position)
        case 2:
            input = Array(input.prefix(position))
        case 3 where !input.isEmpty:
            let end = min(input.count, position + Int.random(in: 1...32, using: &random))
            input.removeSubrange(min(position, end)..<end)
        case 4:
            let index = Int.random(in: 0..<max(1, seeds.count), using: &random)
            let other = seeds.isEmpty ? [] : seeds[index]
            let keep = Int.random(in: 0...other.count, using: &random)
            input.append(contentsOf: Array(other[(other.count - keep)...]))
        case 5 where !input.isEmpty:
            input[min(position, input.count - 1)] = UInt8.random(in: 0...255, using: &random)
        default:
            let head = Array(input.prefix(16))
            input.insert(contentsOf: head, at: position)
        }
    }
}

/// How long a fuzz test runs: `RELAY_FUZZ_SECONDS` (for a long run by hand), else a short pass for CI.
public func fuzzBudget(default seconds: Double = 1.5) -> Duration {
    .milliseconds(Int64((Double(ProcessInfo.processInfo.environment["RELAY_FUZZ_SECONDS"] ?? "") ?? seconds) * 1000))
}

/// The seed of this run: `RELAY_FUZZ_SEED`, else fixed (reproducible).
public func fuzzSeed() -> UInt64 {
    UInt64(ProcessInfo.processInfo.environment["RELAY_FUZZ_SEED"] ?? "") ?? 20261122
}
