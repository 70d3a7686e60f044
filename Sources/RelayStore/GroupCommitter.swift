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
final class GroupCommitter<Item: Sendable, Output: Sendable>: Sendable {
    typealias Flush = @Sendable ([Item]) async throws -> [Result<Output, any Error>]

    private enum Signal {
        case done(Result<Output, any Error>)
        case lead
    }

    private enum Entry {
        case lead, queued(endsLinger: Bool), overloaded
    }

    private struct Waiter {
        let item: Item
        let continuation: CheckedContinuation<Signal, Never>
    }

    /// A lock rather than an actor: a caller queues itself and is resumed once, instead of
    /// hopping onto an actor and off it again around every write.
    private struct State {
        var queue: [Waiter] = []
        var head = 0
        var leading = false

        var pending: Int { queue.count - head }

        mutating func dequeue(upTo count: Int) -> [Waiter] {
            let end = min(queue.count, head + count)
            let taken = Array(queue[head..<end])
            head = end
            if head == queue.count {
                queue.removeAll(keepingCapacity: true)
                head = 0
            }
            return taken
        }
    }

    private let flush: Flush
    private let maxBatch: Int
    private let maxPending: Int
    private let mayWait: @Sendable (Item) -> Bool
    private let linger: TimeAmount
    private let lingering = LingerBell()
    private let state = Mutex(State())
    /// Whether a leader is lingering now (for tests).
    var isLingering: Bool { lingering.isWaiting }
    /// Writers queued behind the group being committed (for tests).
    var pending: Int { state.withLock { $0.pending } }

    /// Starts a timer that calls its closure after the delay (an event-loop timer, no task; tests
    /// fire them by hand).
    typealias Timer = @Sendable (TimeAmount, @escaping @Sendable () -> Void) -> Void
    private let startTimer: Timer

    static var eventLoopTimer: Timer {
        { delay, fire in MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: delay, fire) }
    }

    init(maxBatch: Int = 256, maxPending: Int = 4096, linger: TimeAmount = .zero,
         mayWait: @escaping @Sendable (Item) -> Bool = { _ in false }, timer: @escaping Timer = eventLoopTimer,
         flush: @escaping Flush) {
        self.flush = flush
        self.maxBatch = maxBatch
        self.maxPending = maxPending
        self.linger = linger
        self.mayWait = mayWait
        self.startTimer = timer
    }

    /// Commits `item` (in a group with others) and returns its output.
    func submit(_ item: Item) async throws -> Output {
        let signal = await withCheckedContinuation { continuation in
            let entry = state.withLock { state -> Entry in
                guard state.leading else {
                    state.leading = true
                    return .lead
                }
                guard state.pending < maxPending else { return .overloaded }
                state.queue.append(Waiter(item: item, continuation: continuation))
                return .queued(endsLinger: !mayWait(item) || state.pending >= maxBatch - 1)
            }
            switch entry {
            case .lead: continuation.resume(returning: .lead)
            case .queued(let endsLinger): if endsLinger { lingering.ring() }
            case .overloaded:
                continuation.resume(returning: .done(.failure(StoreError(.overloaded, "too many writes waiting for the store"))))
            }
        }
        if case .done(let result) = signal { return try result.get() }
        // The leader: commit this item with whatever queued up meanwhile.
        if linger > .zero, mayWait(item) {
            await withCheckedContinuation { continuation in
                // Decided and armed under the queue's lock, so a writer that queues meanwhile
                // either is seen here or finds the bell armed and rings it.
                let armed = state.withLock { state -> UInt64? in
                    guard state.pending < maxBatch - 1, state.queue[state.head...].allSatisfy({ mayWait($0.item) }) else { return nil }
                    return lingering.arm(continuation)
                }
                if let armed {
                    startTimer(linger) { [lingering] in lingering.ring(ifArmedAs: armed) }
                } else {
                    continuation.resume()
                }
            }
        }
        let followers = state.withLock { $0.dequeue(upTo: maxBatch - 1) }
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
        let next = state.withLock { state -> Waiter? in
            if let next = state.dequeue(upTo: 1).first { return next }
            state.leading = false
            return nil
        }
        next?.continuation.resume(returning: .lead)
        return try outcome.get()[0].get()
    }
}

/// Ends a leader's lingering: rung by a writer that may not wait, a full batch, or the linger's
/// timer. Each arming has its own number, and a timer rings only the arming it was started for:
/// a timer left from an earlier linger (ended early by a writer) must not cut a later one short.
private final class LingerBell: Sendable {
    private struct State {
        var waiter: CheckedContinuation<Void, Never>?
        var armings: UInt64 = 0
    }

    private let state = Mutex(State())

    var isWaiting: Bool { state.withLock { $0.waiter != nil } }

    /// Makes `continuation` the one the next ring resumes; returns this arming's number.
    func arm(_ continuation: CheckedContinuation<Void, Never>) -> UInt64 {
        state.withLock { state in
            state.armings += 1
            state.waiter = continuation
            return state.armings
        }
    }

    /// Ends the current linger, whichever arming it is.
    func ring() {
        take(where: { _ in true })?.resume()
    }

    /// Ends the linger only if it is still arming number `arming`.
    func ring(ifArmedAs arming: UInt64) {
        take(where: { $0 == arming })?.resume()
    }

    private func take(where matches: (UInt64) -> Bool) -> CheckedContinuation<Void, Never>? {
        state.withLock { state in
            guard matches(state.armings) else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
    }
}
