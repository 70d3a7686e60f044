import Logging
import Synchronization

/// Log lines as `level message key=value…` (keys sorted), for tests of what an operator reads.
public final class CapturedLogs: Sendable {
    private struct State {
        var lines: [String] = []
        var waiters: [(text: String, continuation: CheckedContinuation<String?, Never>)] = []
    }

    private let captured = Mutex(State())

    public init() {}

    public var lines: [String] { captured.withLock { $0.lines } }

    /// Adds a line logged elsewhere (a child process's, say), waking those waiting for it.
    public func append(_ line: String) {
        let woken = captured.withLock { state in
            state.lines.append(line)
            let woken = state.waiters.filter { line.contains($0.text) }
            state.waiters.removeAll { line.contains($0.text) }
            return woken
        }
        for waiter in woken { waiter.continuation.resume(returning: line) }
    }

    /// The first line containing `text`, logged already or when it is; fails after `timeout`.
    /// For work whose only sign is its log line (a settlement, a claim), so tests wait for it
    /// instead of polling.
    @discardableResult
    public func line(containing text: String, timeout: Duration = .seconds(15)) async throws -> String {
        let found = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
                    let seen: String? = self.captured.withLock { state in
                        if let line = state.lines.first(where: { $0.contains(text) }) { return line }
                        state.waiters.append((text, continuation))
                        return nil
                    }
                    if let seen { continuation.resume(returning: seen) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return nil }
                // Nobody logged it: let the waiters for it go empty-handed.
                let stranded = self.captured.withLock { state in
                    let stranded = state.waiters.filter { $0.text == text }
                    state.waiters.removeAll { $0.text == text }
                    return stranded
                }
                for waiter in stranded { waiter.continuation.resume(returning: nil) }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let found else { throw TimeoutError(description: "no log line containing \"\(text)\" within \(timeout)") }
        return found
    }

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
