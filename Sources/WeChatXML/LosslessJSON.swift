extension XMLNode {
    /// The element as the lossless JSON of a push's `data`: leaves are their text exactly as
    /// received, nested elements become objects, a repeated name becomes an array at the position
    /// of its first occurrence. Attributes (WeChat sends none) are kept as `@name` members, and
    /// text beside child elements as `#text`, so nothing is dropped.
    public var losslessJSON: JSONValue {
        if children.isEmpty && attributes.isEmpty { return .string(text) }
        var members: [(String, JSONValue)] = attributes.sorted { $0.key < $1.key }.map { ("@" + $0.key, .string($0.value)) }
        var positions: [String: Int] = [:]
        for child in children {
            let value = child.losslessJSON
            if let index = positions[child.name] {
                // An element's own value is never an array, so an array here holds earlier repeats.
                if case .array(var items) = members[index].1 {
                    items.append(value)
                    members[index].1 = .array(items)
                } else {
                    members[index].1 = .array([members[index].1, value])
                }
            } else {
                positions[child.name] = members.count
                members.append((child.name, value))
            }
        }
        if children.isEmpty {
            members.append(("#text", .string(text)))
        } else if text.contains(where: { !$0.isWhitespace }) {
            members.append(("#text", .string(text)))
        }
        return .object(members)
    }
}
