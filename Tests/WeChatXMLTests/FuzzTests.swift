import Foundation
import RelayTestSupport
import Testing
import WeChatXML

/// Random and mutated inputs thrown at the XML parser, the envelope reader and the lossless JSON:
/// they may refuse an input, but never crash, hang, or produce JSON that does not parse.
@Suite struct XMLFuzzTests {
    static var seeds: [[UInt8]] {
        let vectors = CryptoVectors.shared.vectors
        var seeds = vectors.map { Array($0.plaintext.utf8) } + vectors.compactMap { $0.inbound_body.map { Array($0.utf8) } }
            + vectors.compactMap { $0.reply_body.map { Array($0.utf8) } }
        seeds.append(Array("<xml><A k=\"v\">t<B><![CDATA[x]]></B><!-- c --><B>y</B></A></xml>".utf8))
        return seeds + corpus
    }

    /// Inputs kept from earlier runs (found interesting or once wrong), replayed every time.
    static var corpus: [[UInt8]] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus")
        let files = (try? FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)) ?? []
        return files.sorted { $0.path < $1.path }.compactMap { try? Data(contentsOf: $0) }.map(Array.init)
    }

    static func check(_ input: [UInt8]) {
        if let root = try? XMLTreeParser.parse(input) {
            let json = root.losslessJSON.serialized
            #expect((try? JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed])) != nil, "invalid JSON for \(input)")
        }
        _ = try? EncryptedEnvelope.parse(input)
        _ = try? ReplyEnvelope.parse(input)
    }

    @Test func corpusReplays() {
        #expect(!Self.corpus.isEmpty)
        for input in Self.corpus { Self.check(input) }
    }

    @Test func mutatedInputsNeverCrash() {
        var mutator = Mutator(seed: fuzzSeed(), seeds: Self.seeds)
        let budget = fuzzBudget()
        let started = ContinuousClock.now
        var runs = 0
        while ContinuousClock.now - started < budget {
            let input = mutator.next()
            if let path = ProcessInfo.processInfo.environment["RELAY_FUZZ_TRACE"] { try? Data(input).write(to: URL(fileURLWithPath: path)) }
            Self.check(input)
            runs += 1
        }
        #expect(runs > 100)
    }

    @Test func writerOutputAlwaysParsesBack() {
        var random = SeededRandom(seed: fuzzSeed())
        for _ in 0..<2000 {
            let scalars = (0..<Int.random(in: 0...40, using: &random)).compactMap { _ in
                Unicode.Scalar(UInt32.random(in: 0...0x2FFF, using: &random))
            }
            let text = String(String.UnicodeScalarView(scalars)) + (Bool.random(using: &random) ? "]]>" : "")
            var writer = XMLWriter()
            writer.element("xml") { $0.text("Content", text) }
            let parsed: XMLNode?
            do { parsed = try XMLTreeParser.parse(Array(writer.output.utf8)) } catch {
                parsed = nil
                Issue.record("\(error) for \(writer.output.unicodeScalars.map { String($0.value, radix: 16) })")
            }
            let expected = String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 || [0x9, 0xA, 0xD].contains($0.value) }))
            #expect(parsed.map { Array($0.childText("Content")!.unicodeScalars) } == Array(expected.unicodeScalars))
        }
    }
}
