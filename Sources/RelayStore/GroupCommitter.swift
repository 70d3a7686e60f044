import NIOCore
import NIOPosix
import RelayCore
import Synchronization

/// Commits concurrent writes in small groups, one transaction (one fsync) per group.
/// `flush` returns one result per item, so one failing item does not fail its neighbours.
///
/// The first caller becomes the leader and commits its item together with whatever queued up
/// while the previous group was being written; on finishing it resumes its followers with their
/// results and hands leadership to the next queued caller. No background task is involved, the
/// queue is bounded (`maxPending`; past it callers get `overloaded` at once), and a caller returns
/// only after the transaction holding its item has committed.
///
/// Items that nobody is waiting on in a hurry (`mayWait`: delivery attempt records) let a leader
/// linger up to `linger` for more before committing, so their groups are a few times larger and
/// the pages each commit writes are shared by more records. Any other item, or a full batch,
/// ends the lingering at once.
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
    private let mayWait: @Sendable (Item) -> Bool
    private let linger: TimeAmount
    private let lingering = LingerBell()
    /// Whether a leader is lingering now (for tests).
    nonisolated var isLingering: Bool { lingering.isWaiting }
    private var queue: [Waiter] = []
    private var queueHead = 0
    private var leading = false

    init(maxBatch: Int = 256, maxPending: Int = 4096, linger: TimeAmount = .zero,
         mayWait: @escaping @Sendable (Item) -> Bool = { _ in false }, flush: @escaping Flush) {
        self.flush = flush
        self.maxBatch = maxBatch
        self.maxPending = maxPending
        self.linger = linger
        self.mayWait = mayWait
    }

    /// Commits `item` (in a group with others) and returns its output.
    func submit(_ item: Item) async throws -> Output {
        if leading {
            guard queue.count - queueHead < maxPending else {
                throw StoreError(.overloaded, "too many writes waiting for the store")
            }
            let signal = await withCheckedContinuation { continuation in
                queue.append(Waiter(item: item, continuation: continuation))
                if !mayWait(item) || queue.count - queueHead >= maxBatch - 1 { lingering.ring() }
            }
            if case .done(let result) = signal { return try result.get() }
            // Promoted to leader: `leading` is still true, carry on below.
        } else {
            leading = true
        }
        if linger > .zero, mayWait(item), queue[queueHead...].allSatisfy({ mayWait($0.item) }) {
            await lingering.wait(upTo: linger)
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

/// Ends a leader's lingering when rung or after a timeout (an event-loop timer: no task).
private final class LingerBell: Sendable {
    private let waiter = Mutex<CheckedContinuation<Void, Never>?>(nil)

    var isWaiting: Bool { waiter.withLock { $0 != nil } }

    func wait(upTo timeout: TimeAmount) async {
        await withCheckedContinuation { continuation in
            waiter.withLock { $0 = continuation }
            MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: timeout) { self.ring() }
        }
    }

    func ring() {
        waiter.withLock { waiter in
            defer { waiter = nil }
            return waiter
        }?.resume()
    }
}
