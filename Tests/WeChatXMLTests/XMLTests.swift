import Foundation
import RelayTestSupport
import Testing
import WeChatXML

@Suite struct LosslessJSONTests {
    /// The event's `data` text; the direct writer and the `JSONValue` tree must agree on it.
    func json(_ xml: String) throws -> String {
        let root = try XMLTreeParser.parse(Array(xml.utf8))
        #expect(root.losslessJSONText == root.losslessJSON.serialized)
        return root.losslessJSONText
    }

    @Test func leavesAreStringsExactlyAsReceived() throws {
        let xml = "<xml><MsgId>24680135792468013579</MsgId><Content><![CDATA[  two  spaces ]]></Content><Empty/><E2></E2></xml>"
        #expect(try json(xml) == #"{"MsgId":"24680135792468013579","Content":"  two  spaces ","Empty":"","E2":""}"#)
    }

    @Test func nestedElementsBecomeObjectsAndRepeatsArrays() throws {
        let xml = """
            <xml><SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>a</PicMd5Sum></item>\
            <item><PicMd5Sum>b</PicMd5Sum></item></PicList></SendPicsInfo><Single><item><X>1</X></item></Single></xml>
            """
        #expect(try json(xml) == #"{"SendPicsInfo":{"Count":"2","PicList":{"item":[{"PicMd5Sum":"a"},{"PicMd5Sum":"b"}]}},"Single":{"item":{"X":"1"}}}"#)
    }

    @Test func threeRepeatsStayOneArrayInFirstPosition() throws {
        #expect(try json("<xml><a>1</a><b>x</b><a>2</a><a>3</a></xml>") == #"{"a":["1","2","3"],"b":"x"}"#)
    }

    @Test func attributesAndMixedTextAreKept() throws {
        #expect(try json(#"<xml><A k="v">t</A><B>text<C>c</C></B></xml>"#) == ##"{"A":{"@k":"v","#text":"t"},"B":{"C":"c","#text":"text"}}"##)
    }

    @Test func entitiesAndNewlinesAreDecoded() throws {
        #expect(try json("<xml><T>a &amp; b &lt;c&gt; &#20320;\nline</T></xml>") == #"{"T":"a & b <c> 你\nline"}"#)
    }

    @Test func jsonEscapesControlCharacters() {
        #expect(JSONValue.string("q\"\\\u{01}\u{2028}").serialized == #""q\"\\\u0001\u2028""#)
        #expect(JSONValue.string("\u{1F}\u{00}\t\u{2029}é\u{08}\u{0C}\r").serialized == #""\u001f\u0000\t\u2029é\b\f\r""#)
    }

    /// Any string comes back unchanged through a standard JSON parser (the byte-run writer must
    /// not split a scalar or miss an escape).
    @Test func anyStringRoundTripsThroughAJSONParser() throws {
        var random = SeededRandom(seed: 2028)
        let pool: [Unicode.Scalar] = ["\"", "\\", "\n", "\r", "\t", "\u{08}", "\u{0C}", "\u{00}", "\u{1F}", "\u{7F}", "\u{2027}", "\u{2028}",
                                      "\u{2029}", "\u{202A}", "é", "你", "😀", "a", "/", "<"]
        for _ in 0..<2000 {
            let scalars = (0..<Int.random(in: 0...24, using: &random)).map { _ in pool[Int.random(in: 0..<pool.count, using: &random)] }
            let text = String(String.UnicodeScalarView(scalars))
            let json = JSONValue.array([.string(text)]).serialized
            let parsed = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String]
            #expect(parsed == [text], "\(json)")
            #expect(!json.unicodeScalars.contains { $0.value < 0x20 || $0 == "\u{2028}" || $0 == "\u{2029}" })
        }
    }
}

@Suite struct XMLSafetyTests {
    @Test func doctypeAndEntitiesAreRefused() {
        for evil in [
            #"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><A>&e;</A></xml>"#,
            #"<?xml version="1.0"?><!DOCTYPE xml><xml/>"#,
            #"<xml><!ENTITY x "y"></xml>"#,
        ] {
            #expect(throws: WeChatXMLError.forbiddenDeclaration) { try XMLTreeParser.parse(Array(evil.utf8)) }
        }
    }

    @Test func declarationsInsideCDATAOrCommentsAreText() throws {
        let xml = "<xml><!-- <!DOCTYPE in a comment --><Content><![CDATA[user typed <!DOCTYPE x>]]></Content></xml>"
        #expect(try XMLTreeParser.parse(Array(xml.utf8)).childText("Content") == "user typed <!DOCTYPE x>")
    }

    @Test func undefinedEntityIsMalformed() {
        #expect(throws: WeChatXMLError.self) { try XMLTreeParser.parse(Array("<xml><A>&nope;</A></xml>".utf8)) }
    }

    @Test func limitsAreEnforced() {
        let deep = String(repeating: "<a>", count: 20) + String(repeating: "</a>", count: 20)
        #expect(throws: WeChatXMLError.tooDeep(limit: 16)) { try XMLTreeParser.parse(Array(deep.utf8)) }
        let wide = "<xml>" + String(repeating: "<a/>", count: 30) + "</xml>"
        #expect(throws: WeChatXMLError.tooManyElements(limit: 10)) {
            try XMLTreeParser.parse(Array(wide.utf8), limits: XMLLimits(maxElements: 10))
        }
        #expect(throws: WeChatXMLError.tooLarge(limit: 8)) { try XMLTreeParser.parse(Array("<xml>123456</xml>".utf8), limits: XMLLimits(maxBytes: 8)) }
        #expect(throws: WeChatXMLError.empty) { try XMLTreeParser.parse([UInt8]()) }
    }

    /// Foundation's `XMLParser` on Linux crashed (NULL passed to strlen) on a processing
    /// instruction without data — reachable before the signature check, through the envelope.
    @Test func processingInstructionWithoutDataIsSkipped() throws {
        let root = try XMLTreeParser.parse(Array("<xml><?pi?><A>1</A><?pi   ?></xml>".utf8))
        #expect(root.childText("A") == "1")
    }

    @Test func malformedInputsThrowAndNeverCrash() {
        for bad in ["<xml>", "<xml></other>", "plain text", "<xml><![CDATA[unterminated</xml>", "<a/><b/>", "\u{0}\u{1}"] {
            #expect(throws: WeChatXMLError.self) { try XMLTreeParser.parse(Array(bad.utf8)) }
        }
    }
}

@Suite struct EnvelopeTests {
    @Test func inboundEnvelopeRoundTrips() throws {
        let envelope = EncryptedEnvelope(encrypt: "abc+/=", toUserName: "gh_1")
        #expect(try EncryptedEnvelope.parse(Array(envelope.render().utf8)) == envelope)
        #expect(throws: WeChatXMLError.missingElement("Encrypt")) { try EncryptedEnvelope.parse(Array("<xml><A>1</A></xml>".utf8)) }
    }

    @Test func replyEnvelopeMatchesTheSDKLayout() throws {
        let reply = ReplyEnvelope(encrypt: "E", msgSignature: "S", timestamp: "1700000789", nonce: "1122334455")
        #expect(reply.render() == "<xml><Encrypt><![CDATA[E]]></Encrypt><MsgSignature><![CDATA[S]]></MsgSignature><TimeStamp>1700000789</TimeStamp><Nonce><![CDATA[1122334455]]></Nonce></xml>")
        #expect(try ReplyEnvelope.parse(Array(reply.render().utf8)) == reply)
    }

    @Test func closingSequenceAfterAPrependedMarkIsStillSplit() throws {
        // U+0604 joins the following "]" into one grapheme; the split must work on scalars.
        var writer = XMLWriter()
        writer.element("xml") { $0.text("Content", "\u{0604}]]>") }
        #expect(try XMLTreeParser.parse(Array(writer.output.utf8)).childText("Content") == "\u{0604}]]>")
    }

    @Test func writerKeepsAnyTextValid() throws {
        var writer = XMLWriter()
        writer.element("xml") { $0.text("Content", "a]]>b\u{01}c\u{0B}d\te") }
        let parsed = try XMLTreeParser.parse(Array(writer.output.utf8))
        #expect(parsed.childText("Content") == "a]]>bcd\te")
    }
}
