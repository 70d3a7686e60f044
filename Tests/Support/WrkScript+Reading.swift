import RelayServer

/// Reads back what `WrkScript.render` wrote — its own line layout, not Lua in general: for tests.
extension WrkScript {
    /// The (URI, body) pairs of the script, in order.
    public static func pushes(in script: String) -> [(uri: String, body: String)] {
        script.split(separator: "\n").compactMap { line -> (uri: String, body: String)? in
            guard line.hasPrefix("  {["), line.hasSuffix("},") else { return nil }
            var rest = Substring(line.dropFirst(3).dropLast(2))
            guard let uri = readLongString(&rest), rest.hasPrefix(", ") else { return nil }
            rest = rest.dropFirst(2)
            guard let body = readLongString(&rest), rest.isEmpty else { return nil }
            return (uri, body)
        }
    }

    private static func readLongString(_ input: inout Substring) -> String? {
        guard input.hasPrefix("[") else { return nil }
        let equals = input.dropFirst().prefix { $0 == "=" }
        let open = "[" + equals + "[", close = "]" + equals + "]"
        guard input.hasPrefix(open) else { return nil }
        let content = input.dropFirst(open.count)
        guard let end = content.range(of: close) else { return nil }
        input = content[end.upperBound...]
        return String(content[..<end.lowerBound])
    }
}
