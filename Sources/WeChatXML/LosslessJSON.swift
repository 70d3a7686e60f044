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

    /// `losslessJSON.serialized`, written straight from the tree: building the `JSONValue` first
    /// cost a third of making an event. An element that repeats a child's name (an array in the
    /// JSON) goes through `losslessJSON`, so both always give the same text (a fuzz test checks).
    public var losslessJSONText: String {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        writeLosslessJSON(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    func writeLosslessJSON(to out: inout [UInt8]) {
        if children.isEmpty && attributes.isEmpty {
            JSONValue.writeString(text, to: &out)
            return
        }
        guard attributes.isEmpty, !repeatsAChildName else {
            losslessJSON.write(to: &out)
            return
        }
        out.append(UInt8(ascii: "{"))
        for (index, child) in children.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSONValue.writeString(child.name, to: &out)
            out.append(UInt8(ascii: ":"))
            child.writeLosslessJSON(to: &out)
        }
        if children.isEmpty || text.contains(where: { !$0.isWhitespace }) {
            if !children.isEmpty { out.append(UInt8(ascii: ",")) }
            out += "\"#text\":".utf8
            JSONValue.writeString(text, to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// Whether two children share a name. Pairwise for the few children a push has; a set past that.
    private var repeatsAChildName: Bool {
        if children.count <= 16 {
            for i in children.indices.dropFirst() where children[..<i].contains(where: { $0.name == children[i].name }) { return true }
            return false
        }
        var seen = Set<String>()
        return children.contains { !seen.insert($0.name).inserted }
    }
}
