import RelayCore

/// Commits concurrent writes in small groups, one transaction (one fsync) per group.
/// `flush` returns one result per item, so one failing item does not fail its neighbours.
///
/// The first caller becomes the leader and commits its item together with whatever queued up
/// while the previous group was being written; on finishing it resumes its followers with their
/// results and hands leadership to the next queued caller. No background task is involved, the
/// queue is bounded (`maxPending`; past it callers get `overloaded` at once), and a caller returns
/// only after the transaction holding its item has committed.
actor GroupCommitter<Item: Sendable, Output: Sendable> {
    typealias Flush = @Sendable ([Item]) async throws -> [Result<Output, any Error>]

    private enum Signal {
        case done(Result<Output, any Error>)
        case lead
    }

    private struct Waiter {
        let item: Item
        let continuation: CheckedContinuation<Signal, Never>
    }

    private let flush: Flush
    private let maxBatch: Int
    private let maxPending: Int
    private var queue: [Waiter] = []
    private var queueHead = 0
    private var leading = false

    init(maxBatch: Int = 256, maxPending: Int = 4096, flush: @escaping Flush) {
        self.flush = flush
        self.maxBatch = maxBatch
        self.maxPending = maxPending
    }

    /// Commits `item` (in a group with others) and returns its output.
    func submit(_ item: Item) async throws -> Output {
        if leading {
            guard queue.count - queueHead < maxPending else {
                throw StoreError(.overloaded, "too many writes waiting for the store")
            }
            let signal = await withCheckedContinuation { queue.append(Waiter(item: item, continuation: $0)) }
            if case .done(let result) = signal { return try result.get() }
            // Promoted to leader: `leading` is still true, carry on below.
        } else {
            leading = true
        }
        let followers = dequeue(upTo: maxBatch - 1)
        let outcome: Result<[Result<Output, any Error>], any Error>
        do {
            let outputs = try await flush([item] + followers.map(\.item))
            precondition(outputs.count == followers.count + 1, "flush returns one output per item")
            outcome = .success(outputs)
        } catch {
            outcome = .failure(error)
        }
        for (index, follower) in followers.enumerated() {
            follower.continuation.resume(returning: .done(outcome.flatMap { $0[index + 1] }))
        }
        if let next = dequeue(upTo: 1).first {
            next.continuation.resume(returning: .lead)
        } else {
            leading = false
        }
        return try outcome.get()[0].get()
    }

    private func dequeue(upTo count: Int) -> [Waiter] {
        let end = min(queue.count, queueHead + count)
        let taken = Array(queue[queueHead..<end])
        queueHead = end
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
        }
        return taken
    }
}
