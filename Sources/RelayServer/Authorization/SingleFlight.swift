/// At most one operation per key in flight in this process: the first caller runs it in its own
/// task, callers arriving meanwhile wait for and share its result. No task is spawned.
actor SingleFlight<Value: Sendable> {
    private var waiters: [String: [CheckedContinuation<Result<Value, any Error>, Never>]] = [:]

    func run(_ key: String, _ operation: @Sendable () async throws -> Value) async throws -> Value {
        if waiters[key] != nil {
            return try await withCheckedContinuation { waiters[key, default: []].append($0) }.get()
        }
        waiters[key] = []
        let result: Result<Value, any Error>
        do { result = .success(try await operation()) } catch { result = .failure(error) }
        for waiter in waiters.removeValue(forKey: key) ?? [] { waiter.resume(returning: result) }
        return try result.get()
    }
}
