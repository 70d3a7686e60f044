import WeChatXML

/// The report as a plain-text table.
public enum BenchTable {
    public static func render(_ report: JSONValue) -> String {
        guard case .object(let sections) = report else { return report.serialized }
        var lines = ["scenario      figure                value"]
        for (name, value) in sections {
            guard case .object(let figures) = value else {
                lines.append(pad(name, 14) + pad("", 22) + text(value))
                continue
            }
            for (index, (figure, number)) in figures.enumerated() {
                lines.append(pad(index == 0 ? name : "", 14) + pad(figure, 22) + text(number))
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(1, width - s.count)) }

    private static func text(_ value: JSONValue) -> String {
        if case .string(let s) = value { return s }
        return value.serialized
    }
}
