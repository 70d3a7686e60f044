#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The parser's prolog and markup other than elements (comments, the XML declaration,
/// processing instructions), the check for forbidden characters, and byte scanning.
extension TreeParser {
    mutating func comment() throws(WeChatXMLError) {
        position += 4
        let end = try find("--", what: "comment")
        guard end + 2 < input.count, input[end + 2] == UInt8(ascii: ">") else { throw .malformed("'--' inside a comment") }
        position = end + 3
    }

    /// `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`, the last two optional. Only
    /// UTF-8 is read, so another encoding is refused rather than misread.
    mutating func xmlDeclaration() throws(WeChatXMLError) {
        position += 5
        skipSpaces()
        let version = try pseudoAttribute("version")
        // XML 1.1 is refused, as libxml2 does; WeChat writes no declaration at all.
        guard version == Array("1.0".utf8) else { throw .malformed("unsupported XML version") }
        var hadSpace = skipSpaces()
        if hadSpace, starts(with: "encoding") {
            let encoding = String(decoding: try pseudoAttribute("encoding"), as: UTF8.self).lowercased()
            guard encoding == "utf-8" || encoding == "utf8" else { throw .malformed("only UTF-8 is accepted, not \(encoding.prefix(32))") }
            hadSpace = skipSpaces()
        }
        if hadSpace, starts(with: "standalone") {
            let standalone = try pseudoAttribute("standalone")
            guard standalone == Array("yes".utf8) || standalone == Array("no".utf8) else { throw .malformed("standalone must be yes or no") }
            skipSpaces()
        }
        guard starts(with: "?>") else { throw .malformed("malformed XML declaration") }
        position += 2
    }

    /// `name = "value"` inside the XML declaration; returns the value.
    mutating func pseudoAttribute(_ name: StaticString) throws(WeChatXMLError) -> [UInt8] {
        guard starts(with: name) else { throw .malformed("malformed XML declaration") }
        position += name.utf8CodeUnitCount
        let quote = try openingQuote(else: "malformed XML declaration")
        let start = position
        while position < input.count, input[position] != quote {
            guard isNameStart(input[position]) || isNameRest(input[position]), input[position] < 0x80 else {
                throw .malformed("malformed XML declaration")
            }
            position += 1
        }
        guard position < input.count else { throw .malformed("malformed XML declaration") }
        position += 1
        return Array(input[start..<(position - 1)])
    }

    /// `= "` or `= '` after a name (spaces allowed around `=`): consumes it, returns the quote.
    mutating func openingQuote(else problem: String) throws(WeChatXMLError) -> UInt8 {
        skipSpaces()
        guard position < input.count, input[position] == UInt8(ascii: "=") else { throw .malformed(problem) }
        position += 1
        skipSpaces()
        guard position < input.count, input[position] == UInt8(ascii: "\"") || input[position] == UInt8(ascii: "'") else {
            throw .malformed(problem)
        }
        position += 1
        return input[position - 1]
    }

    /// `<?target …?>`: a name, then `?>` or whitespace and anything up to `?>`. An XML
    /// declaration is only allowed at the very start.
    mutating func processingInstruction() throws(WeChatXMLError) {
        position += 2
        let target = try name()
        guard String(decoding: input[target], as: UTF8.self).lowercased() != "xml" else {
            throw .malformed("an XML declaration is only allowed at the start")
        }
        if starts(with: "?>") {
            position += 2
            return
        }
        guard position < input.count, isSpace(input[position]) else {
            throw .malformed("a processing instruction's target must be followed by whitespace or '?>'")
        }
        try skipPast("?>", what: "processing instruction")
    }

    /// XML forbids most control characters and U+FFFE/U+FFFF anywhere, even as text.
    func rejectForbiddenCharacters() throws(WeChatXMLError) {
        // Over the raw buffer: this reads every byte of every push, and the array's bounds checks
        // were most of its cost. Only the rare candidate bytes take the slow path.
        let found: (index: Int, byte: UInt8)? = input.withUnsafeBufferPointer { bytes in
            for index in 0..<bytes.count {
                let byte = bytes[index]
                guard byte < 0x20 || byte == 0xEF else { continue }
                if byte < 0x20 && byte != 0x09 && byte != 0x0A && byte != 0x0D { return (index, byte) }
                if byte == 0xEF, index + 2 < bytes.count, bytes[index + 1] == 0xBF, bytes[index + 2] >= 0xBE { return (index, byte) }
            }
            return nil
        }
        guard let (index, byte) = found else { return }
        if byte == 0xEF { throw .malformed("non-character U+FFF\(input[index + 2] == 0xBE ? "E" : "F") at byte \(index)") }
        throw .malformed("control character 0x\(String(byte, radix: 16)) at byte \(index)")
    }

    // MARK: Scanning

    func starts(with prefix: StaticString) -> Bool {
        starts(with: UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
    }

    func starts(with prefix: some Collection<UInt8>) -> Bool {
        guard position + prefix.count <= input.count else { return false }
        var index = position
        for byte in prefix {
            if input[index] != byte { return false }
            index += 1
        }
        return true
    }

    /// The index of the next `terminator` at or after `position`.
    func find(_ terminator: StaticString, what: String) throws(WeChatXMLError) -> Int {
        let pattern = UnsafeBufferPointer(start: terminator.utf8Start, count: terminator.utf8CodeUnitCount)
        let first = pattern[0]
        // Over the raw buffer (a push's CDATA is most of its bytes), the first byte by `memchr`.
        let found: Int? = input.withUnsafeBufferPointer { bytes in
            guard let base = bytes.baseAddress else { return nil }
            var index = position
            while index + pattern.count <= bytes.count {
                guard let hit = memchr(base + index, Int32(first), bytes.count - index) else { return nil }
                index = UnsafePointer(hit.assumingMemoryBound(to: UInt8.self)) - base
                guard index + pattern.count <= bytes.count else { return nil }
                if (1..<pattern.count).allSatisfy({ bytes[index + $0] == pattern[$0] }) { return index }
                index += 1
            }
            return nil
        }
        guard let found else { throw .malformed("unterminated \(what)") }
        return found
    }

    mutating func skipPast(_ terminator: StaticString, what: String) throws(WeChatXMLError) {
        position = try find(terminator, what: what) + terminator.utf8CodeUnitCount
    }

    @discardableResult
    mutating func skipSpaces() -> Bool {
        let start = position
        while position < input.count, isSpace(input[position]) { position += 1 }
        return position > start
    }

    func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }

    /// Letters, `_`, `:` and anything non-ASCII (names in other scripts).
    func isNameStart(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F || byte == 0x3A || byte >= 0x80
    }

    func isNameRest(_ byte: UInt8) -> Bool { (byte >= 0x30 && byte <= 0x39) || byte == 0x2D || byte == 0x2E }

    func isXMLChar(_ value: UInt32) -> Bool {
        value == 0x9 || value == 0xA || value == 0xD || (0x20...0xD7FF).contains(value) || (0xE000...0xFFFD).contains(value)
            || (0x10000...0x10FFFF).contains(value)
    }
}
