import Foundation
import Synchronization

/// What the public may make the relay do: the node's budget, and beside it one per client
/// (`ClientAddress`), smaller, so that one client spending all of its own leaves the rest of the
/// node's to everybody else. Either may be absent (no limit).
struct Budget: Sendable {
    let node: TokenBucket?
    let perClient: ClientBuckets?

    /// Why something was refused: the seconds until it would not be (for `Retry-After`), and
    /// whether only the client's own share was spent.
    struct Refusal: Equatable {
        let retryAfter: Int
        let clientsShare: Bool
    }

    /// Spends one of each when both have one left; else spends nothing and says why.
    func take(client: String, at now: Date) -> Refusal? {
        let own = perClient?.bucket(client, at: now)
        guard allows(own, at: now) else {
            return Refusal(retryAfter: secondsUntilAllowed(own, at: now), clientsShare: node?.allows(at: now) ?? true)
        }
        own?.spend(at: now)
        node?.spend(at: now)
        return nil
    }

    /// Whether both have one left (spends nothing: a failure is counted after the fact by `spend`).
    func allows(client: String, at now: Date) -> Bool {
        allows(perClient?.bucket(client, at: now), at: now)
    }

    func spend(client: String, at now: Date) {
        perClient?.bucket(client, at: now).spend(at: now)
        node?.spend(at: now)
    }

    func secondsUntilAllowed(client: String, at now: Date) -> Int {
        secondsUntilAllowed(perClient?.bucket(client, at: now), at: now)
    }

    private func allows(_ own: TokenBucket?, at now: Date) -> Bool {
        (own?.allows(at: now) ?? true) && (node?.allows(at: now) ?? true)
    }

    private func secondsUntilAllowed(_ own: TokenBucket?, at now: Date) -> Int {
        max(own?.secondsUntilAllowed(at: now) ?? 0, node?.secondsUntilAllowed(at: now) ?? 0)
    }
}

/// One bucket per client, for as many clients as `remembered`; a client whose bucket has
/// refilled is forgotten first when room is needed (it holds nothing a new bucket would not).
final class ClientBuckets: Sendable {
    let burst: Int
    let interval: TimeInterval
    static let remembered = 4096
    private let buckets = Mutex<[String: TokenBucket]>([:])

    init(burst: Int, interval: TimeInterval) {
        self.burst = burst
        self.interval = interval
    }

    var count: Int { buckets.withLock { $0.count } }

    func bucket(_ client: String, at now: Date) -> TokenBucket {
        buckets.withLock { buckets in
            if let bucket = buckets[client] { return bucket }
            if buckets.count >= Self.remembered {
                buckets = buckets.filter { !$0.value.isFull(at: now) }
                // Still full: that many clients at once are an attack the node's budget caps anyway.
                if buckets.count >= Self.remembered { buckets.removeAll(keepingCapacity: true) }
            }
            let bucket = TokenBucket(burst: burst, interval: interval)
            buckets[client] = bucket
            return bucket
        }
    }
}
