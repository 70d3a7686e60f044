/// Parses a document into an `XMLNode` tree, within `XMLLimits`.
///
/// WeChat's XML is a small subset of XML 1.0 — elements, text, CDATA, the five predefined entities
/// and character references — and this parser accepts exactly well-formed documents of that
/// subset, in UTF-8. A DTD or any other `<!…>` declaration is refused, so no entity can ever be
/// declared, let alone expanded. Comments and processing instructions are skipped.
///
/// It replaced Foundation's `XMLParser`, which cost two thirds of verifying a push (a delegate
/// object, bridged strings and a thread-dictionary lookup per callback) and crashed on invalid
/// UTF-8 in an element name. A differential fuzz test keeps the two in agreement.
public enum XMLTreeParser {
    /// Parses `bytes` and returns the root element.
    public static func parse(_ bytes: some Collection<UInt8>, limits: XMLLimits = .default) throws(WeChatXMLError) -> XMLNode {
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= limits.maxBytes else { throw .tooLarge(limit: limits.maxBytes) }
        let input = Array(bytes)
        guard String(validating: input, as: UTF8.self) != nil else { throw .malformed("not valid UTF-8") }
        var parser = TreeParser(input: input, limits: limits)
        return try parser.document()
    }
}

/// The state of one parse. Markup other than elements and byte scanning are in
/// XMLTreeParser+Markup.swift.
struct TreeParser {
    let input: [UInt8]
    let limits: XMLLimits
    var position = 0
    var elementCount = 0

    init(input: [UInt8], limits: XMLLimits) {
        self.input = input
        self.limits = limits
    }

    /// An element being read: what the tree gets when it closes. Its name, and its text while
    /// that is one run of the input (nearly always), are ranges of the input, not copies.
    struct Open {
        let name: Range<Int>
        let attributes: [String: String]
        var textRun: Range<Int>? = nil
        var text: [UInt8]? = nil
        var children: [XMLNode] = []
    }

    /// Adds `run` of the input to the element's text.
    func appendText(_ run: Range<Int>, to open: inout Open) {
        if open.text != nil {
            open.text! += input[run]
        } else if let first = open.textRun {
            open.text = Array(input[first]) + input[run]
            open.textRun = nil
        } else {
            open.textRun = run
        }
    }

    /// Adds decoded bytes (a reference, normalised line ends) to the element's text.
    func appendText(_ bytes: [UInt8], to open: inout Open) {
        if let first = open.textRun {
            open.text = Array(input[first])
            open.textRun = nil
        }
        if open.text == nil { open.text = [] }
        open.text! += bytes
    }

    mutating func document() throws(WeChatXMLError) -> XMLNode {
        try rejectForbiddenCharacters()
        if starts(with: [0xEF, 0xBB, 0xBF]) { position += 3 }
        if starts(with: "<?xml"), position + 5 < input.count, isSpace(input[position + 5]) { try xmlDeclaration() }
        try misc()
        guard starts(with: "<"), position + 1 < input.count, isNameStart(input[position + 1]) else {
            throw .malformed(position >= input.count ? "no root element" : "text or markup before the root element")
        }
        let root = try element()
        try misc()
        guard position == input.count else { throw .malformed("content after the root element") }
        return root
    }

    /// Whitespace, comments and processing instructions, outside the root element.
    mutating func misc() throws(WeChatXMLError) {
        while position < input.count {
            if isSpace(input[position]) {
                position += 1
            } else if starts(with: "<!--") {
                try comment()
            } else if starts(with: "<?") {
                try processingInstruction()
            } else if starts(with: "<!") {
                throw .forbiddenDeclaration
            } else {
                return
            }
        }
    }

    /// Reads an element starting at `<`; iterative, so depth costs no stack.
    mutating func element() throws(WeChatXMLError) -> XMLNode {
        var stack: [Open] = [try startTag()]
        if consumeEmptyTagEnd() { return node(stack.removeLast()) }
        while true {
            guard position < input.count else { throw .malformed("unclosed element <\(String(decoding: input[stack[stack.count - 1].name], as: UTF8.self))>") }
            let byte = input[position]
            if byte == UInt8(ascii: "<") {
                if starts(with: "</") {
                    let closed = stack.removeLast()
                    try endTag(closed.name)
                    let done = node(closed)
                    if stack.isEmpty { return done }
                    stack[stack.count - 1].children.append(done)
                } else if starts(with: "<![CDATA[") {
                    position += 9
                    let end = try find("]]>", what: "CDATA section")
                    appendText(position..<end, to: &stack[stack.count - 1])
                    position = end + 3
                } else if starts(with: "<!--") {
                    try comment()
                } else if starts(with: "<?") {
                    try processingInstruction()
                } else if starts(with: "<!") {
                    throw .forbiddenDeclaration
                } else {
                    guard stack.count < limits.maxDepth else { throw .tooDeep(limit: limits.maxDepth) }
                    let child = try startTag()
                    if consumeEmptyTagEnd() {
                        stack[stack.count - 1].children.append(node(child))
                    } else {
                        stack.append(child)
                    }
                }
            } else if byte == UInt8(ascii: "&") {
                var decoded: [UInt8] = []
                try reference(into: &decoded)
                appendText(decoded, to: &stack[stack.count - 1])
            } else {
                let start = position
                var carriageReturn = false
                while position < input.count, input[position] != UInt8(ascii: "<"), input[position] != UInt8(ascii: "&") {
                    if input[position] == UInt8(ascii: ">"), position >= start + 2,
                       input[position - 1] == UInt8(ascii: "]"), input[position - 2] == UInt8(ascii: "]") {
                        throw .malformed("']]>' in text")
                    }
                    carriageReturn = carriageReturn || input[position] == 0x0D
                    position += 1
                }
                if carriageReturn {
                    appendText(Self.normalizingLineEnds(input[start..<position]), to: &stack[stack.count - 1])
                } else {
                    appendText(start..<position, to: &stack[stack.count - 1])
                }
            }
        }
    }

    func node(_ open: Open) -> XMLNode {
        let text = if let run = open.textRun { String(decoding: input[run], as: UTF8.self) }
            else { String(decoding: open.text ?? [], as: UTF8.self) }
        return XMLNode(name: String(decoding: input[open.name], as: UTF8.self), attributes: open.attributes, text: text, children: open.children)
    }

    /// `<name attr="value" …` up to (not including) `>` or `/>`.
    mutating func startTag() throws(WeChatXMLError) -> Open {
        elementCount += 1
        guard elementCount <= limits.maxElements else { throw .tooManyElements(limit: limits.maxElements) }
        position += 1
        let name = try self.name()
        var attributes: [String: String] = [:]
        while true {
            let hadSpace = skipSpaces()
            guard position < input.count else { throw .malformed("unterminated start tag") }
            if input[position] == UInt8(ascii: ">") || starts(with: "/>") { return Open(name: name, attributes: attributes) }
            guard hadSpace else { throw .malformed("attributes must be separated by whitespace") }
            let key = String(decoding: input[try self.name()], as: UTF8.self)
            let quote = try openingQuote(else: "attribute \(key) needs a quoted value")
            var value: [UInt8] = []
            while true {
                guard position < input.count else { throw .malformed("unterminated attribute \(key)") }
                let byte = input[position]
                if byte == quote { break }
                if byte == UInt8(ascii: "<") { throw .malformed("'<' in attribute \(key)") }
                if byte == UInt8(ascii: "&") {
                    try reference(into: &value)
                } else {
                    // Attribute-value normalisation: literal tab, line end (CR LF counts as one)
                    // and LF read as a space.
                    if byte == 0x0D, position + 1 < input.count, input[position + 1] == 0x0A { position += 1 }
                    value.append(byte == 0x09 || byte == 0x0A || byte == 0x0D ? 0x20 : byte)
                    position += 1
                }
            }
            position += 1
            guard attributes.updateValue(String(decoding: value, as: UTF8.self), forKey: key) == nil else {
                throw .malformed("attribute \(key) appears twice")
            }
        }
    }

    /// Text outside CDATA reads CR LF and a lone CR as LF, as XML 1.0 (§2.11) and libxml2 do.
    static func normalizingLineEnds(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var index = text.startIndex
        while index < text.endIndex {
            if text[index] == 0x0D {
                out.append(0x0A)
                if index + 1 < text.endIndex, text[index + 1] == 0x0A { index += 1 }
            } else {
                out.append(text[index])
            }
            index += 1
        }
        return out
    }

    /// After a start tag: `/>` (consumed, true) or `>` (consumed, false).
    mutating func consumeEmptyTagEnd() -> Bool {
        if input[position] == UInt8(ascii: ">") {
            position += 1
            return false
        }
        position += 2
        return true
    }

    /// `</name>` closing the element named `expected`.
    mutating func endTag(_ expected: Range<Int>) throws(WeChatXMLError) {
        position += 2
        let name = try self.name()
        skipSpaces()
        guard input[name].elementsEqual(input[expected]) else {
            throw .malformed("</\(String(decoding: input[name], as: UTF8.self))> closes <\(String(decoding: input[expected], as: UTF8.self))>")
        }
        guard position < input.count, input[position] == UInt8(ascii: ">") else { throw .malformed("unterminated end tag") }
        position += 1
    }

    /// A name, as its range in the input.
    mutating func name() throws(WeChatXMLError) -> Range<Int> {
        let start = position
        guard position < input.count, isNameStart(input[position]) else { throw .malformed("a name was expected") }
        position += 1
        while position < input.count, isNameStart(input[position]) || isNameRest(input[position]) { position += 1 }
        return start..<position
    }

    /// `&lt;` `&gt;` `&amp;` `&apos;` `&quot;` `&#N;` `&#xH;`, appended to `out` as UTF-8.
    mutating func reference(into out: inout [UInt8]) throws(WeChatXMLError) {
        let end = try find(";", what: "entity reference")
        let body = input[(position + 1)..<end]
        position = end + 1
        switch String(decoding: body, as: UTF8.self) {
        case "lt": out.append(UInt8(ascii: "<"))
        case "gt": out.append(UInt8(ascii: ">"))
        case "amp": out.append(UInt8(ascii: "&"))
        case "apos": out.append(UInt8(ascii: "'"))
        case "quot": out.append(UInt8(ascii: "\""))
        case let reference where reference.hasPrefix("#"):
            let hex = reference.hasPrefix("#x")
            let digits = reference.dropFirst(hex ? 2 : 1)
            let isDigit: (UInt8) -> Bool = { hex ? ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) : $0 >= 0x30 && $0 <= 0x39 }
            guard !digits.isEmpty, digits.count <= 8, digits.utf8.allSatisfy(isDigit), let value = UInt32(digits, radix: hex ? 16 : 10),
                  let scalar = Unicode.Scalar(value), isXMLChar(value) else {
                throw .malformed("invalid character reference &\(reference);")
            }
            out += Array(String(Character(scalar)).utf8)
        case let other:
            throw .malformed("undefined entity &\(other.prefix(32));")
        }
    }
}
