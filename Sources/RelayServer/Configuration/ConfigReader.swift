import Foundation
import Yams

/// Reads one YAML mapping of `relay.yml`, tracking the key path for errors, interpolating
/// `${ENV}` / `${ENV:-default}` in every scalar, and refusing keys nobody asked for.
final class ConfigMapping {
    let path: String
    private let pairs: [(String, Node)]
    private let environment: [String: String]
    private var consumed: Set<String> = []

    init(_ node: Node?, path: String, environment: [String: String]) throws(ConfigError) {
        self.path = path
        self.environment = environment
        switch node {
        case nil:
            pairs = []
        case .scalar(let scalar) where Self.isNull(scalar):
            pairs = []
        case .mapping(let mapping):
            var pairs: [(String, Node)] = []
            for (key, value) in mapping {
                guard let name = key.scalar?.string else { throw ConfigError(path, "keys must be plain strings") }
                pairs.append((name, value))
            }
            self.pairs = pairs
        default:
            throw ConfigError(path, "expected a mapping of keys to values")
        }
    }

    /// YAML's null: an empty plain value, `~` or `null`.
    private static func isNull(_ scalar: Node.Scalar) -> Bool {
        scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func node(_ key: String) -> Node? {
        consumed.insert(key)
        guard let node = pairs.first(where: { $0.0 == key })?.1 else { return nil }
        if case .scalar(let scalar) = node, Self.isNull(scalar) { return nil }
        return node
    }

    /// A scalar string after interpolation, or nil when the key is absent.
    func optionalString(_ key: String) throws(ConfigError) -> String? {
        guard let node = node(key) else { return nil }
        guard case .scalar(let scalar) = node else { throw ConfigError(child(key), "expected a single value") }
        return try interpolate(scalar.string, at: child(key))
    }

    func string(_ key: String, default value: String) throws(ConfigError) -> String {
        try optionalString(key) ?? value
    }

    func requiredString(_ key: String) throws(ConfigError) -> String {
        guard let value = try optionalString(key), !value.isEmpty else { throw ConfigError(child(key), "is required") }
        return value
    }

    func int(_ key: String, default value: Int, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let text = try optionalString(key) else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw ConfigError(child(key), "expected a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
        }
        return number
    }

    func bool(_ key: String, default value: Bool) throws(ConfigError) -> Bool {
        guard let text = try optionalString(key) else { return value }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ConfigError(child(key), "expected true or false, got \"\(text)\"")
        }
    }

    func duration(_ key: String, default value: Duration) throws(ConfigError) -> Duration {
        guard let text = try optionalString(key) else { return value }
        return try ConfigDuration.parse(text, at: child(key))
    }

    func durations(_ key: String, default value: [Duration]) throws(ConfigError) -> [Duration] {
        guard let items = try sequence(key) else { return value }
        var result: [Duration] = []
        for (index, item) in items.enumerated() {
            let at = "\(child(key))[\(index)]"
            guard case .scalar(let scalar) = item else { throw ConfigError(at, "expected a duration like 30s") }
            result.append(try ConfigDuration.parse(try interpolate(scalar.string, at: at), at: at))
        }
        return result
    }

    func strings(_ key: String, default value: [String]) throws(ConfigError) -> [String] {
        guard let items = try sequence(key) else { return value }
        var result: [String] = []
        for (index, item) in items.enumerated() {
            let at = "\(child(key))[\(index)]"
            guard case .scalar(let scalar) = item else { throw ConfigError(at, "expected a string") }
            result.append(try interpolate(scalar.string, at: at))
        }
        return result
    }

    func sequence(_ key: String) throws(ConfigError) -> [Node]? {
        guard let node = node(key) else { return nil }
        guard case .sequence(let sequence) = node else { throw ConfigError(child(key), "expected a list") }
        return Array(sequence)
    }

    func mapping(_ key: String) throws(ConfigError) -> ConfigMapping {
        try ConfigMapping(node(key), path: child(key), environment: environment)
    }

    func mappings(_ key: String) throws(ConfigError) -> [ConfigMapping] {
        var result: [ConfigMapping] = []
        for (index, item) in (try sequence(key) ?? []).enumerated() {
            result.append(try ConfigMapping(item, path: "\(child(key))[\(index)]", environment: environment))
        }
        return result
    }

    /// Throws for the first key that no reader asked for: a typo must not be silently ignored.
    func finish() throws(ConfigError) {
        if let unknown = pairs.first(where: { !consumed.contains($0.0) }) {
            throw ConfigError(child(unknown.0), "unknown key")
        }
    }

    /// Replaces `${NAME}` and `${NAME:-default}` with values from the environment.
    func interpolate(_ text: String, at path: String) throws(ConfigError) -> String {
        guard text.contains("${") else { return text }
        var result = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            result += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw ConfigError(path, "unterminated ${ in \"\(text)\"")
            }
            let expression = rest[start.upperBound..<end]
            let (name, fallback): (Substring, Substring?) =
                if let range = expression.range(of: ":-") {
                    (expression[..<range.lowerBound], expression[range.upperBound...])
                } else {
                    (expression, nil)
                }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw ConfigError(path, "\"${\(expression)}\" is not a valid environment reference")
            }
            if let value = environment[String(name)], !(value.isEmpty && fallback != nil) {
                result += value
            } else if let fallback {
                result += fallback
            } else {
                throw ConfigError(path, "environment variable \(name) is not set (write ${\(name):-default} to give a default)")
            }
            rest = rest[rest.index(after: end)...]
        }
        return result + rest
    }
}

/// Durations in `relay.yml`: a number followed by `ms`, `s`, `m`, `h` or `d`.
enum ConfigDuration {
    static func parse(_ text: String, at path: String) throws(ConfigError) -> Duration {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        for (suffix, seconds) in units where trimmed.hasSuffix(suffix) {
            let number = trimmed.dropLast(suffix.count)
            // "5ms" also ends in "s": only accept when what is left is a number.
            if let value = Double(number), value >= 0, value.isFinite {
                // A bound well past any sane setting keeps the value inside Duration's and the
                // server's nanosecond arithmetic (`1e30s` trapped converting to Int64).
                guard value * seconds <= 3650 * 86_400 else { throw ConfigError(path, "must be at most 3650d, got \"\(text)\"") }
                return .milliseconds(Int64((value * seconds * 1000).rounded()))
            }
        }
        throw ConfigError(path, "expected a duration such as 500ms, 30s, 5m, 1h or 30d, got \"\(text)\"")
    }

    /// `duration` as `relay.yml` writes it, in the largest unit that holds it whole (`30d`, `90s`, `1500ms`).
    static func text(_ duration: Duration) -> String {
        let millis = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        for (suffix, unit) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] where millis >= unit && millis % unit == 0 {
            return "\(millis / unit)\(suffix)"
        }
        return "\(millis)ms"
    }
}
