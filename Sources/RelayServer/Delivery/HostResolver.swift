import NIOPosix
import Synchronization

/// Host-name lookups with `getaddrinfo`, which blocks its thread until the DNS answers or gives
/// up (seconds, when a name's servers do not answer): on threads of their own, one lookup at a
/// time per name, and every caller waiting only until its own deadline. A name with broken DNS
/// thus holds one thread however many attempts want it, and other names' lookups do not queue
/// behind it. (Lookups ran on NIO's shared pool, a thread per core: the in-flight attempts of
/// one subscriber with broken DNS filled it, and every other subscriber's lookup — a reply
/// bot's included — waited behind them, past its attempt's timeout.)
final class HostResolver: Sendable {
    /// The lookup threads, one set for the process (as NIO's own pools are): a thread held by a
    /// hanging name is one of sixteen.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        return pool
    }()

    private let lookup: @Sendable (String) -> [String]
    private let running = Mutex<[String: SharedLookup]>([:])

    init(lookup: @escaping @Sendable (String) -> [String]) {
        self.lookup = lookup
    }

    /// The addresses of `host` (none when it does not resolve), or nil when `deadline` came first.
    func addresses(of host: String, by deadline: ContinuousClock.Instant) async -> [String]? {
        let (shared, isNew) = running.withLock { running -> (SharedLookup, Bool) in
            if let shared = running[host] { return (shared, false) }
            let shared = SharedLookup()
            running[host] = shared
            return (shared, true)
        }
        if isNew {
            // A work item, not a task: nothing awaits the thread, so a caller gives up at its deadline.
            Self.threads.submit { [lookup] state in
                let addresses = state == .active ? lookup(host) : []
                // Forgotten first: a later caller looks the name up again (a failure is not kept).
                self.running.withLock { _ = $0.removeValue(forKey: host) }
                shared.finish(addresses)
            }
        }
        return await shared.result(by: deadline)
    }
}

/// One lookup's answer, awaited by every caller that wanted it meanwhile.
private final class SharedLookup: Sendable {
    private struct State {
        var answer: [String]?
        var waiters: [Int: CheckedContinuation<[String]?, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    func finish(_ addresses: [String]) {
        let waiters = state.withLock { state in
            state.answer = addresses
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values { waiter.resume(returning: addresses) }
    }

    func result(by deadline: ContinuousClock.Instant) async -> [String]? {
        if let answer = state.withLock({ $0.answer }) { return answer }
        return await withTaskGroup(of: [String]?.self) { group in
            group.addTask { await self.answer() }
            group.addTask {
                try? await Task.sleep(until: deadline)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// The answer, or nil on cancellation.
    private func answer() async -> [String]? {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                enum Now { case answer([String]), cancelled, later }
                let now = state.withLock { state -> Now in
                    if let answer = state.answer { return .answer(answer) }
                    if Task.isCancelled { return .cancelled }
                    state.waiters[id] = continuation
                    return .later
                }
                switch now {
                case .answer(let answer): continuation.resume(returning: answer)
                case .cancelled: continuation.resume(returning: nil)
                case .later: break
                }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: nil)
        }
    }
}
