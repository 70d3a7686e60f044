/// Bounds applied to every XML document before and while it is parsed.
public struct XMLLimits: Sendable {
    /// Largest document accepted, in bytes.
    public var maxBytes: Int
    /// Deepest element nesting accepted (`<xml>` is depth 1).
    public var maxDepth: Int
    /// Most elements accepted in one document.
    public var maxElements: Int

    public init(maxBytes: Int = 1 << 20, maxDepth: Int = 16, maxElements: Int = 10_000) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
        self.maxElements = maxElements
    }

    public static let `default` = XMLLimits()
}

/// Why a document was refused.
public enum WeChatXMLError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case tooLarge(limit: Int)
    case tooDeep(limit: Int)
    case tooManyElements(limit: Int)
    /// A DTD, entity declaration or other markup declaration: never processed.
    case forbiddenDeclaration
    case malformed(String)
    case missingElement(String)

    public var description: String {
        switch self {
        case .empty: "the body is empty"
        case .tooLarge(let limit): "the XML is larger than \(limit) bytes"
        case .tooDeep(let limit): "the XML nests deeper than \(limit) levels"
        case .tooManyElements(let limit): "the XML has more than \(limit) elements"
        case .forbiddenDeclaration: "DTDs and entity declarations are not accepted"
        case .malformed(let reason): "the body is not well-formed XML (\(reason))"
        case .missingElement(let name): "the XML has no <\(name)> element"
        }
    }
}
