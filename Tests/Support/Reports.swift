import Foundation
import RelayServer

/// Delivery attempts as they happen, to await in tests.
public final class Reports: Sendable {
    private let stream: AsyncStream<DeliveryReport>
    private let continuation: AsyncStream<DeliveryReport>.Continuation

    public init() {
        (stream, continuation) = AsyncStream.makeStream(of: DeliveryReport.self)
    }

    /// Pass this as `onDeliveryAttempt`.
    public var hook: @Sendable (DeliveryReport) -> Void {
        { [continuation] in continuation.yield($0) }
    }

    /// The next `count` reports, moving `clock` forward by `step` after each: on the standing test
    /// clock, a retry the last attempt scheduled comes due only so.
    public func next(_ count: Int, advancing clock: TestClock, by step: TimeInterval) async throws -> [DeliveryReport] {
        var reports: [DeliveryReport] = []
        for _ in 0..<count {
            reports += try await next(1)
            clock.advance(by: step)
        }
        return reports
    }

    /// The next `count` reports; fails after `timeout`.
    public func next(_ count: Int = 1, timeout: Duration = .seconds(15)) async throws -> [DeliveryReport] {
        let stream = self.stream
        return try await withThrowingTaskGroup(of: [DeliveryReport]?.self) { group in
            group.addTask {
                var result: [DeliveryReport] = []
                for await report in stream {
                    result.append(report)
                    if result.count == count { break }
                }
                return result
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let reports = first, reports.count == count else {
                throw TimeoutError(description: "fewer than \(count) delivery attempts within \(timeout)")
            }
            return reports
        }
    }
}
