import Foundation
import RelayTestSupport
import Testing
import WeChatCrypto

/// Random and mutated ciphertexts thrown at the framing: every failure is a `WeChatCryptoError`,
/// and anything that does decrypt respects the declared length.
@Suite struct CryptoFuzzTests {
    @Test func mutatedCiphertextsFailWithSpecificErrors() throws {
        let key = try EncodingAESKey("Kz3vQ8pLm2Nw7Xy4Rt6Ub9Ce1Df5Gh0Jk8Lm3Np7Qr2")
        let cipher = WeChatCipher(key: key, receiverId: "wx3f9a2b7c1d4e5f60")
        let seeds = CryptoVectors.shared.vectors.filter { $0.encoding_aes_key == key.encoded || $0.appid == "wx3f9a2b7c1d4e5f60" }
            .map { Array($0.encrypt.utf8) } + [Array(cipher.encrypt("short").utf8)]
        var mutator = Mutator(seed: fuzzSeed(), seeds: seeds)
        let budget = fuzzBudget()
        let started = ContinuousClock.now
        var runs = 0
        while ContinuousClock.now - started < budget {
            let bytes = mutator.next()
            if let path = ProcessInfo.processInfo.environment["RELAY_FUZZ_TRACE"] { try? Data(bytes).write(to: URL(fileURLWithPath: path + ".crypto")) }
            let input = String(decoding: bytes, as: UTF8.self)
            do {
                let opened = try cipher.open(input)
                #expect(opened.message.count + opened.receiver.count + 20 <= (Data(base64Encoded: input)?.count ?? 0))
            } catch {
                #expect(error.sampleCode < -40000)
            }
            runs += 1
        }
        print("fuzz: \(runs) inputs thrown at the crypto framing in \(budget)")
        #expect(runs > 100)
    }

    @Test func randomBytesUnderValidEncryptionFailCleanly() throws {
        // Well-formed AES blocks with random plaintext: exercises padding and length checks directly.
        let key = try EncodingAESKey("Kz3vQ8pLm2Nw7Xy4Rt6Ub9Ce1Df5Gh0Jk8Lm3Np7Qr2")
        let cipher = WeChatCipher(key: key, receiverId: "wx1")
        var random = SeededRandom(seed: fuzzSeed())
        for _ in 0..<3000 {
            let payload = (0..<Int.random(in: 0...80, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            let sealed = cipher.encrypt(payload)
            var bytes = Array(Data(base64Encoded: sealed)!)
            bytes[Int.random(in: 0..<bytes.count, using: &random)] ^= 0x5A
            do {
                _ = try cipher.open(Data(bytes).base64EncodedString())
            } catch {
                #expect([-40007, -40008].contains(error.sampleCode))
            }
        }
    }
}
