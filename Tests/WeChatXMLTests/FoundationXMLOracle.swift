import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

import WeChatXML

/// The relay's previous parser, on Foundation's `XMLParser` (libxml2), kept as the oracle of a
/// differential fuzz test: the hand-written `XMLTreeParser` must accept and refuse what it does
/// and build the same trees.
enum FoundationXMLOracle {
    /// Parses `bytes` and returns the root element.
    static func parse(_ bytes: some Collection<UInt8>, limits: XMLLimits = .default) throws(WeChatXMLError) -> WeChatXML.XMLNode {
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= limits.maxBytes else { throw .tooLarge(limit: limits.maxBytes) }
        // Foundation's parser on Linux crashes on invalid UTF-8 in an element name (found by
        // fuzzing), and the envelope is parsed before its signature is checked: validate first.
        guard String(validating: bytes, as: UTF8.self) != nil else { throw .malformed("not valid UTF-8") }
        let data = Data(bytes)
        try rejectDeclarations(data)

        let builder = OracleTreeBuilder(limits: limits)
        let parser = XMLParser(data: data)
        parser.delegate = builder
        parser.shouldResolveExternalEntities = false
        parser.shouldProcessNamespaces = false
        let ok = parser.parse()
        if let failure = builder.failure { throw failure }
        // On Linux, parse() can return true after reporting an error (e.g. content after the
        // root element), so the reported error is what decides.
        guard ok, parser.parserError == nil, let root = builder.root else {
            let reason = parser.parserError.map { "\(($0 as NSError).code)" } ?? "no root element"
            throw .malformed("parser error \(reason)")
        }
        return root
    }

    /// Refuses `<!DOCTYPE`, `<!ENTITY` and every other `<!` construct except comments and CDATA,
    /// skipping over the contents of those two so that user text mentioning `<!DOCTYPE` is fine.
    static func rejectDeclarations(_ data: Data) throws(WeChatXMLError) {
        let bytes = [UInt8](data)
        let cdataOpen = Array("<![CDATA[".utf8), cdataClose = Array("]]>".utf8)
        let commentOpen = Array("<!--".utf8), commentClose = Array("-->".utf8)
        var i = 0
        while i + 1 < bytes.count {
            guard bytes[i] == UInt8(ascii: "<"), bytes[i + 1] == UInt8(ascii: "!") else {
                i += 1
                continue
            }
            if hasPrefix(bytes, cdataOpen, at: i) {
                i = try skip(bytes, past: cdataClose, from: i + cdataOpen.count)
            } else if hasPrefix(bytes, commentOpen, at: i) {
                i = try skip(bytes, past: commentClose, from: i + commentOpen.count)
            } else {
                throw .forbiddenDeclaration
            }
        }
    }

    private static func hasPrefix(_ bytes: [UInt8], _ prefix: [UInt8], at index: Int) -> Bool {
        guard index + prefix.count <= bytes.count else { return false }
        for j in prefix.indices where bytes[index + j] != prefix[j] { return false }
        return true
    }

    private static func skip(_ bytes: [UInt8], past terminator: [UInt8], from start: Int) throws(WeChatXMLError) -> Int {
        var i = start
        while i + terminator.count <= bytes.count {
            if hasPrefix(bytes, terminator, at: i) { return i + terminator.count }
            i += 1
        }
        throw .malformed("unterminated CDATA section or comment")
    }
}

/// SAX delegate that builds the tree and enforces the limits as elements open.
private final class OracleTreeBuilder: NSObject, XMLParserDelegate {
    let limits: XMLLimits
    var stack: [WeChatXML.XMLNode] = []
    var root: WeChatXML.XMLNode?
    var elementCount = 0
    var failure: WeChatXMLError?

    init(limits: XMLLimits) { self.limits = limits }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        elementCount += 1
        if elementCount > limits.maxElements { return fail(parser, .tooManyElements(limit: limits.maxElements)) }
        if stack.count + 1 > limits.maxDepth { return fail(parser, .tooDeep(limit: limits.maxDepth)) }
        if root != nil, stack.isEmpty { return fail(parser, .malformed("more than one root element")) }
        stack.append(WeChatXML.XMLNode(name: elementName, attributes: attributeDict))
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let node = stack.popLast() else { return }
        if stack.isEmpty { root = node } else { stack[stack.count - 1].children.append(node) }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self)
    }

    func parser(_ parser: XMLParser, foundInternalEntityDeclarationWithName name: String, value: String?) {
        fail(parser, .forbiddenDeclaration)
    }

    func parser(_ parser: XMLParser, foundExternalEntityDeclarationWithName name: String, publicID: String?, systemID: String?) {
        fail(parser, .forbiddenDeclaration)
    }

    private func fail(_ parser: XMLParser, _ error: WeChatXMLError) {
        if failure == nil { failure = error }
        parser.abortParsing()
    }
}
