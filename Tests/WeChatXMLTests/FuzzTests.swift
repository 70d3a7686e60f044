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
            #expect(root.losslessJSONText == json, "the direct writer differs from the tree for \(input)")
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
        print("fuzz: \(runs) inputs thrown at the XML parser, envelopes and JSON in \(budget)")
        #expect(runs > 100)
    }

    /// The hand-written parser against Foundation's (libxml2): same verdict, same tree.
    @Test func parserAgreesWithFoundationsXMLParser() {
        var mutator = Mutator(seed: fuzzSeed() &+ 1, seeds: Self.seeds)
        let budget = fuzzBudget()
        let started = ContinuousClock.now
        var runs = 0
        for input in Self.seeds + Self.differentialCases { Self.compare(input) }
        while ContinuousClock.now - started < budget {
            let input = mutator.next()
            if let path = ProcessInfo.processInfo.environment["RELAY_FUZZ_TRACE"] { try? Data(input).write(to: URL(fileURLWithPath: path + ".diff")) }
            Self.compare(input)
            runs += 1
        }
        print("fuzz: \(runs) inputs compared with Foundation's XMLParser in \(budget)")
        #expect(runs > 100)
    }

    static func compare(_ input: [UInt8]) {
        let ours = Result { () throws(WeChatXMLError) in try XMLTreeParser.parse(input) }
        // Foundation's parser dereferences NULL on a processing instruction without data
        // (`<?pi?>`): the oracle cannot judge those, ours must simply not crash.
        guard !hasEmptyProcessingInstruction(input) else { return }
        let oracle = Result { () throws(WeChatXMLError) in try FoundationXMLOracle.parse(input) }
        switch (ours, oracle) {
        case (.success(let a), .success(let b)):
            #expect(a == b, "different trees for \(String(decoding: input, as: UTF8.self).debugDescription)")
        case (.failure, .failure):
            break
        case (.success, .failure(let error)):
            Issue.record("accepted what libxml2 refuses (\(error)): \(String(decoding: input, as: UTF8.self).debugDescription)")
        case (.failure(let error), .success):
            Issue.record("refused (\(error)) what libxml2 accepts: \(String(decoding: input, as: UTF8.self).debugDescription)")
        }
    }

    static func hasEmptyProcessingInstruction(_ input: [UInt8]) -> Bool {
        var index = 0
        while index + 1 < input.count {
            if input[index] == UInt8(ascii: "<"), input[index + 1] == UInt8(ascii: "?") {
                var end = index + 2
                while end < input.count, ![0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: "?")].contains(input[end]) { end += 1 }
                var data = end
                while data < input.count, [0x20, 0x09, 0x0A, 0x0D].contains(input[data]) { data += 1 }
                if data + 1 < input.count, input[data] == UInt8(ascii: "?"), input[data + 1] == UInt8(ascii: ">") { return true }
            }
            index += 1
        }
        return false
    }

    /// Corners of XML the mutator rarely builds.
    static let differentialCases: [[UInt8]] = [
        "<xml/>", "<xml><?pi?></xml>", "<?xml v<?xml version=\"1ersion=\"1.0\"?><xml/>", "<?xml version='1.1'?><xml/>", "<?xml version='1.2'?><xml/>", "<?xml version='1.00'?><xml/>", "<?xml version='1.0' standalone='no'?><xml/>", "<?xml version='1.0' standalone='yes'?><xml/>",
        "<?xml version=\"1.0\" encoding='utf-8' standalone=\"yes\" ?><xml/>", "<?xml version=\"2.0\"?><xml/>", "<?xml  version = '1.0'?><xml/>",
        "<?xml version='1.0'encoding='UTF-8'?><xml/>", "<xml><?x<a b='c'>?></xml>", "<xml><?x<?xml version='1.0'?>?></xml>", "<xml><?x-y.z d?></xml>", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><A>1</A></xml>\n", "\u{FEFF}<xml/>", "<xml a='1' b=\"2\"/>",
        "<xml a='1'b='2'/>", "<xml a='1' a='2'/>", "<xml a='x\ty&#10;z'/>", "<xml a='<'/>", "<xml>&#x41;&#65;&#x1F600;&#0;</xml>",
        "<xml>&#xD800;</xml>", "<xml>&#+65;</xml>", "<xml>&#x;</xml>", "<xml>&amp;&lt;&gt;&apos;&quot;</xml>", "<xml>a]]>b</xml>",
        "<xml>a]]b</xml>", "<xml><!-- a - b --></xml>", "<xml><!-- a -- b --></xml>", "<xml><!---></xml>", "<xml><?pi data?></xml>",
        "<xml><?xml version='1.0'?></xml>", "<?pi?><xml/><!-- after --><?pi?>", "<xml/>text", "text<xml/>", "<xml></xml >",
        "<xml></ xml>", "<xml >\r\n<A>\r</A></xml>", "<xml><![CDATA[\r\n]]></xml>", "<a:b xmlns:a='u'><a:c/></a:b>",
        "<xml><名前>値</名前></xml>", "<xml>\u{FFFE}</xml>", "<xml>\u{7F}\u{85}</xml>", "<1xml/>", "<-xml/>", "<x-y.z_1/>",
        "<xml><![CDATA[]]></xml>", "<xml><![CDATA[a]]]]><![CDATA[>b]]></xml>", "<xml>&lt</xml>", "<xml>&;</xml>", "<xml a=1/>",
        "<xml a = \"1\" />", "<![CDATA[x]]><xml/>", "<xml/><![CDATA[x]]>", "  <xml/>  ", "<?xml version='1.0'?><?xml version='1.0'?><xml/>",
    ].map { Array($0.utf8) }

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
