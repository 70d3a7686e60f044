import Logging
import RelayCore
import ServiceLifecycle
import Synchronization
import WeChatXML

/// Runs what an authorization push leads to (the code exchange, a revocation) in this service's
/// tasks, not in the push's request. The push waits for it up to `budget` and is then answered
/// (WeChat waits 5 s at most), while the exchange goes on. It used to be cancelled at the
/// budget: when WeChat had already consumed the code, its answer — the authorizer's refresh
/// token — was lost, and the merchant's callback, arriving meanwhile for the same code, got
/// WeChat's "code is invalid" instead of the authorizer.
///
/// At most `limit` follow-ups are queued or running; past that (a flood of authorization pushes)
/// one is left to the callback or the next sync, with a warning. A graceful shutdown stops taking
/// new ones and lets those under way finish (each bounded by the WeChat API client's timeout).
final class AuthorizationFollowUps: Service {
    private struct Job: Sendable {
        let event: RelayEvent
        let root: XMLNode
        let done: Doorbell
    }

    let authorization: AuthorizationService
    let logger: Logger
    let budget: Duration
    let limit: Int
    /// Follow-ups taken and not finished.
    private let admitted = Mutex(0)
    private let jobs: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation

    init(authorization: AuthorizationService, logger: Logger, budget: Duration = .seconds(2), limit: Int = 64) {
        self.authorization = authorization
        self.logger = logger
        self.budget = budget
        self.limit = limit
        (jobs, continuation) = AsyncStream.makeStream(of: Job.self, bufferingPolicy: .bufferingOldest(limit))
    }

    /// Hands the follow-up of a stored authorization push over, and returns once it finished or
    /// `budget` passed, whichever comes first.
    func follow(_ event: RelayEvent, root: XMLNode) async {
        let taken = admitted.withLock { count in
            guard count < limit else { return false }
            count += 1
            return true
        }
        let done = Doorbell()
        guard taken, case .enqueued = continuation.yield(Job(event: event, root: root, done: done)) else {
            if taken { admitted.withLock { $0 -= 1 } }
            logger.warning(
                "authorization push stored but not followed (too many under way, or the relay is stopping); the callback or the next sync completes it",
                metadata: ["event_id": .string(event.id)])
            return
        }
        await done.wait(upTo: budget)
    }

    func run() async throws {
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                // Ends when the stream is finished, after the jobs handed over before that.
                for await job in jobs {
                    group.addTask {
                        await self.authorization.handle(pushed: job.event, root: job.root)
                        self.admitted.withLock { $0 -= 1 }
                        job.done.ring()
                    }
                }
            } onGracefulShutdown: {
                self.continuation.finish()
            }
        }
    }
}
