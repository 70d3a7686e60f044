import Foundation
import Logging
import RelayCore
import Synchronization

/// At most one log line per key per interval; the next one logged says how many were left out.
///
/// Why: refused pushes and URL checks, pushes a failing store could not take, and sign-ins
/// refused while paused all come at the sender's rate (WeChat's, or a stranger's), and each was
/// a line: a 90 s HTTP fuzz run against `relay serve` logged 15,459 lines — 7,156 refused
/// pushes, 6,209 refused URL checks, 1,912 paused sign-ins. The metrics still count every one.
final class LogThrottle: Sendable {
    private struct Window {
        var loggedAt: Date
        var suppressed: Int
    }

    let interval: TimeInterval
    let clock: any RelayClock
    /// One per application, shared by its routes: keys name the line and its reason, from short
    /// fixed lists; the bound is a backstop.
    static let maxKeys = 1024
    private let windows = Mutex<[String: Window]>([:])

    init(interval: TimeInterval = 1, clock: any RelayClock) {
        self.interval = interval
        self.clock = clock
    }

    /// `metadata` with `suppressed=N` when lines were left out before this one.
    static func counted(_ suppressed: Int, _ metadata: Logger.Metadata) -> Logger.Metadata {
        guard suppressed > 0 else { return metadata }
        return metadata.merging(["suppressed": "\(suppressed)"]) { $1 }
    }

    /// Logs the line unless one of `key` was logged within the interval; the next one logged says
    /// how many were left out.
    func log(_ key: String, _ level: Logger.Level, _ message: Logger.Message, _ metadata: @autoclosure () -> Logger.Metadata = [:],
             to logger: Logger) {
        guard let suppressed = admit(key) else { return }
        logger.log(level: level, message, metadata: Self.counted(suppressed, metadata()))
    }

    /// Nil when the line is to be left out; otherwise how many of `key` were left out since the
    /// last one logged.
    func admit(_ key: String) -> Int? {
        let now = clock.now()
        return windows.withLock { windows in
            if let window = windows[key], now.timeIntervalSince(window.loggedAt) < interval {
                windows[key]?.suppressed += 1
                return nil
            }
            if windows.count >= Self.maxKeys { windows.removeAll() }
            let suppressed = windows[key]?.suppressed ?? 0
            windows[key] = Window(loggedAt: now, suppressed: 0)
            return suppressed
        }
    }
}
