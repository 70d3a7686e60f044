#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's limit on open files. Every push holds a connection, and one to the reply bot
/// while it answers; every delivery in flight holds one to its subscriber. Under systemd the soft
/// limit is 1,024 unless the unit says otherwise, and past it the relay stops accepting
/// connections — WeChat's pushes included — until some close (measured: with a limit of 100,
/// 150 idle connections left `/healthz` unanswered for 5 s). The hard limit is the operator's
/// real bound, and NIO uses `epoll`, not `select`, so raising the soft limit to it is safe.
public enum OpenFileLimit {
    public struct Change: Sendable, Equatable {
        public let before: UInt64
        public let after: UInt64
    }

    /// Raises the soft limit to the hard one; what it was and is now, or nil if it cannot say.
    @discardableResult
    public static func raiseToHardLimit() -> Change? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        let before = UInt64(limit.rlim_cur)
        guard limit.rlim_cur < limit.rlim_max else { return Change(before: before, after: before) }
        limit.rlim_cur = limit.rlim_max
        guard setrlimit(resource, &limit) == 0 else { return Change(before: before, after: before) }
        return Change(before: before, after: UInt64(limit.rlim_cur))
    }

    /// A limit under which a busy relay runs out of connections.
    public static let recommendedMinimum: UInt64 = 8_192

    #if canImport(Glibc)
    static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    static let resource = RLIMIT_NOFILE
    #endif
}
