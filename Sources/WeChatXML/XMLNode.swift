/// One element of a parsed document: its name, attributes, text and child elements, in order.
public struct XMLNode: Sendable, Equatable {
    public var name: String
    public var attributes: [String: String]
    /// All character data and CDATA directly inside this element, concatenated as received.
    public var text: String
    public var children: [XMLNode]

    public init(name: String, attributes: [String: String] = [:], text: String = "", children: [XMLNode] = []) {
        self.name = name
        self.attributes = attributes
        self.text = text
        self.children = children
    }

    /// The first child named `name`.
    public func child(_ name: String) -> XMLNode? {
        children.first { $0.name == name }
    }

    /// The text of the first child named `name`.
    public func childText(_ name: String) -> String? {
        child(name)?.text
    }
}
