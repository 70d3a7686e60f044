import Logging
import Synchronization

/// Log lines as `level message key=value…` (keys sorted), for tests of what an operator reads.
public final class CapturedLogs: Sendable {
    private let captured = Mutex<[String]>([])

    public init() {}

    public var lines: [String] { captured.withLock { $0 } }

    func append(_ line: String) { captured.withLock { $0.append(line) } }

    /// A handler for `Logger(label:factory:)`, at `info` unless told.
    public func handler(level: Logger.Level = .info) -> some LogHandler { Handler(logs: self, logLevel: level) }

    private struct Handler: LogHandler {
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            logs.append("\(event.level) \(event.message) \(fields)")
        }
    }
}
