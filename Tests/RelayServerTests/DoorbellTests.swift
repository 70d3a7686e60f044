@testable import RelayServer
import Testing

/// The claimer tells a ring from a timeout by `wait(upTo:)`'s answer: woken by the clock with
/// nothing due, it skips the claim transaction.
@Suite(.timeLimit(.minutes(1))) struct DoorbellTests {
    @Test func aWaitSaysWhetherItWasRung() async {
        let bell = Doorbell()
        #expect(await bell.wait(upTo: .milliseconds(10)) == false)
        bell.ring()  // with nobody waiting: remembered once
        #expect(await bell.wait(upTo: .seconds(30)) == true)
        #expect(await bell.wait(upTo: .milliseconds(10)) == false)
        async let rung = bell.wait(upTo: .seconds(30))
        // Rung until the waiter has taken it (a ring before the wait starts is remembered too).
        bell.ring()
        #expect(await rung == true)
    }

    @Test func aCancelledWaitIsNotARing() async {
        let bell = Doorbell()
        let waiting = Task { await bell.wait(upTo: .seconds(30)) }
        waiting.cancel()
        #expect(await waiting.value == false)
    }
}
