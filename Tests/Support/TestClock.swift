import Foundation
import RelayCore
import Synchronization

/// A clock that stands still at a chosen start until a test moves it forward: what a test
/// expects of a time (an age, a `Retry-After`, a retry coming due) does not depend on how fast
/// the machine runs it.
public final class TestClock: RelayClock {
    private let current: Mutex<Date>

    public init(_ start: Date = Date()) {
        current = Mutex(start)
    }

    public func now() -> Date { current.withLock { $0 } }

    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 += seconds }
    }
}
