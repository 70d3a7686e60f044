/// Writes WeChat-style XML: every string in CDATA, numbers bare, no whitespace between elements.
///
/// Text is made safe first: characters XML 1.0 forbids (most C0 controls, U+FFFE, U+FFFF) are
/// dropped, and `]]>` inside a value is split across two CDATA sections.
public struct XMLWriter: Sendable {
    public private(set) var output = ""

    public init() {}

    /// Opens `<name>`.
    public mutating func open(_ name: String) { output += "<\(name)>" }

    /// Closes `</name>`.
    public mutating func close(_ name: String) { output += "</\(name)>" }

    /// `<name><![CDATA[value]]></name>`.
    public mutating func text(_ name: String, _ value: String) {
        output += "<\(name)><![CDATA["
        output += Self.cdataSafe(value)
        output += "]]></\(name)>"
    }

    /// `<name>digits</name>`, for WeChat's bare numeric fields (`CreateTime`, `ArticleCount`).
    public mutating func number(_ name: String, _ value: some BinaryInteger) {
        output += "<\(name)>\(value)</\(name)>"
    }

    /// `<name>value</name>` without CDATA when `value` is all ASCII digits, as WeChat writes
    /// numbers it received as strings; anything else falls back to CDATA.
    public mutating func bare(_ name: String, _ value: String) {
        guard !value.isEmpty, value.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return text(name, value) }
        output += "<\(name)>\(value)</\(name)>"
    }

    /// Writes `body` between `<name>` and `</name>`.
    public mutating func element(_ name: String, _ body: (inout XMLWriter) -> Void) {
        open(name)
        body(&self)
        close(name)
    }

    /// `value` without XML-forbidden characters and with `]]>` split so it can sit in CDATA.
    public static func cdataSafe(_ value: String) -> String {
        // Scalar by scalar: Character comparison would miss a `]]>` whose `]` forms one grapheme
        // with a preceding combining or prepended mark (found by fuzzing with U+0604).
        var out = String.UnicodeScalarView()
        var closingBrackets = 0
        for scalar in value.unicodeScalars where isXMLChar(scalar) {
            if scalar == ">" && closingBrackets >= 2 {
                out.append(contentsOf: "]]><![CDATA[>".unicodeScalars)
            } else {
                out.append(scalar)
            }
            closingBrackets = scalar == "]" ? closingBrackets + 1 : 0
        }
        return String(out)
    }

    private static func isXMLChar(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x9, 0xA, 0xD: true
        case 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: true
        default: false
        }
    }
}
