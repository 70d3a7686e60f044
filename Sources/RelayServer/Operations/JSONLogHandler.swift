import Foundation
import Logging
import RelayCore

/// Log lines as JSON objects, one per line on standard error (`relay serve --log-format json`),
/// for log shippers that index fields: `time` (UTC, milliseconds), `level`, `label` and
/// `message` first, then the metadata's keys in order, nested metadata as objects and arrays.
/// A metadata key named like one of the four is dropped rather than written twice.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    static let fixedKeys: Set<String> = ["time", "level", "label", "message"]

    /// A handler that gives each line (newline included) to `write`.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.write = write
    }

    public static func standardError(label: String, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) -> JSONLogHandler {
        // One write per line, so lines from different threads stay whole; a closed stderr is an
        // error ignored, not a crash (`FileHandle.write(_:)` traps on one).
        JSONLogHandler(label: label, metadataProvider: metadataProvider) { line in
            try? FileHandle.standardError.write(contentsOf: Data(line.utf8))
        }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = self.metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let explicit = event.metadata { fields.merge(explicit) { $1 } }
        write(Self.line(time: Date(), level: event.level, label: label, message: "\(event.message)", metadata: fields))
    }

    static func line(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var out = "{\"time\":\"\(Timestamp.iso8601Millis(time))\",\"level\":\"\(level.rawValue)\",\"label\":\(json(label)),\"message\":\(json(message))"
        for key in metadata.keys.sorted() where !fixedKeys.contains(key) {
            out += ",\(json(key)):\(json(metadata[key]!))"
        }
        return out + "}\n"
    }

    private static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): json(text)
        case .stringConvertible(let convertible): json(convertible.description)
        case .array(let values): "[" + values.map(json).joined(separator: ",") + "]"
        case .dictionary(let fields): "{" + fields.keys.sorted().map { "\(json($0)):\(json(fields[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    private static func json(_ text: String) -> String {
        // JSONSerialization escapes quotes, backslashes and control characters; a line stays one line.
        let data = (try? JSONSerialization.data(withJSONObject: text, options: [.fragmentsAllowed, .withoutEscapingSlashes])) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
