/// At most one operation per key in flight in this process: the first caller runs it in its own
/// task, callers arriving meanwhile wait for and share its result. No task is spawned.
actor SingleFlight<Value: Sendable> {
    private var waiters: [String: [CheckedContinuation<Result<Value, any Error>, Never>]] = [:]

    func run(_ key: String, _ operation: @Sendable () async throws -> Value) async throws -> Value {
        while waiters[key] != nil {
            let result = await withCheckedContinuation { waiters[key, default: []].append($0) }
            // The first caller was cancelled (it gave up, or the relay is stopping), and its operation
            // with it: that is no answer for a caller that was not. Run it again, first if nobody else does.
            if case .failure(let error) = result, error is CancellationError, !Task.isCancelled { continue }
            return try result.get()
        }
        waiters[key] = []
        let result: Result<Value, any Error>
        do { result = .success(try await operation()) } catch { result = .failure(error) }
        for waiter in waiters.removeValue(forKey: key) ?? [] { waiter.resume(returning: result) }
        return try result.get()
    }

    /// How many callers wait for `key`'s operation (for tests).
    func waiting(_ key: String) -> Int { waiters[key]?.count ?? 0 }
}
