@testable import RelayServer
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct SingleFlightTests {
    /// How many runs of the operation started, each announced.
    final class Runs: Sendable {
        let count = Mutex(0)
        let (started, startedContinuation) = AsyncStream.makeStream(of: Int.self)
    }

    /// A caller that shares the first caller's operation gets its own answer when the first caller
    /// gives up: the cancelled operation's CancellationError was handed to every waiter (the token
    /// request of an internal service failed because a push's follow-up ran out of time).
    @Test func aWaiterIsNotFailedByTheFirstCallersCancellation() async throws {
        let flight = SingleFlight<String>()
        let runs = Runs()
        let operation: @Sendable () async throws -> String = {
            let run = runs.count.withLock { $0 += 1; return $0 }
            runs.startedContinuation.yield(run)
            if run == 1 { try await Task.sleep(for: .seconds(3600)) }  // ends only by cancellation
            return "token \(run)"
        }
        var started = runs.started.makeAsyncIterator()
        let first = Task { try await flight.run("component", operation) }
        #expect(await started.next() == 1)
        async let second = flight.run("component", operation)
        while await flight.waiting("component") == 0 { await Task.yield() }  // the second caller waits for the first's run
        first.cancel()
        await #expect(throws: CancellationError.self) { try await first.value }
        #expect(try await second == "token 2")
    }
}
