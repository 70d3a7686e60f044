import Synchronization

/// Bounds how many tests use a PostgreSQL database of their own at once. Swift Testing runs every
/// test in parallel, and each PostgreSQL test holds a store's pool, a listener, sometimes two
/// relay nodes: together they took all of a stock server's 100 connections. A test nested in
/// another's slot (two databases in one test) does not take a second one, which could deadlock.
enum PostgresTestSlots {
    static let limit = 6
    @TaskLocal private static var holding = false
    private static let state = Mutex<(free: Int, waiters: [CheckedContinuation<Void, Never>])>((limit, []))

    static func with<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        if holding { return try await body() }
        await acquire()
        defer { release() }
        return try await $holding.withValue(true) { try await body() }
    }

    private static func acquire() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state in
                guard state.free > 0 else {
                    state.waiters.append(continuation)
                    return false
                }
                state.free -= 1
                return true
            }
            if now { continuation.resume() }
        }
    }

    private static func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiters.isEmpty else {
                state.free += 1
                return nil
            }
            return state.waiters.removeFirst()  // the slot passes to it directly
        }
        next?.resume()
    }
}
