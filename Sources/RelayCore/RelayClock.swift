import Foundation

/// Wall-clock time, injected so tests control it (a protocol because there are two real
/// implementations: the system clock and the test clock).
public protocol RelayClock: Sendable {
    /// The current instant.
    func now() -> Date
}

/// The machine's clock.
public struct SystemClock: RelayClock {
    public init() {}
    public func now() -> Date { Date() }
}
