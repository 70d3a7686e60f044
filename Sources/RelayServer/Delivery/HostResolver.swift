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

/// One lookup's answer, awaited by every caller that wanted it meanwhile: each waits on a
/// doorbell of its own, which the answer rings.
private final class SharedLookup: Sendable {
    private struct State {
        var answer: [String]?
        var waiting: [Doorbell] = []
    }

    private let state = Mutex(State())

    func finish(_ addresses: [String]) {
        let waiting = state.withLock { state in
            state.answer = addresses
            defer { state.waiting = [] }
            return state.waiting
        }
        for bell in waiting { bell.ring() }
    }

    func result(by deadline: ContinuousClock.Instant) async -> [String]? {
        let bell = Doorbell()
        let answer = state.withLock { state -> [String]? in
            if state.answer == nil { state.waiting.append(bell) }
            return state.answer
        }
        if let answer { return answer }
        await bell.wait(upTo: deadline - .now)
        return state.withLock { $0.answer }
    }
}
