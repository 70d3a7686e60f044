import Foundation
import RelayCore
import Synchronization

/// A clock that runs with real time from a chosen start, and that a test can move forward.
public final class TestClock: RelayClock {
    private let offset: Mutex<TimeInterval>

    public init(_ start: Date = Date()) {
        offset = Mutex(start.timeIntervalSinceNow)
    }

    public func now() -> Date { Date().addingTimeInterval(offset.withLock { $0 }) }

    public func advance(by seconds: TimeInterval) {
        offset.withLock { $0 += seconds }
    }
}
