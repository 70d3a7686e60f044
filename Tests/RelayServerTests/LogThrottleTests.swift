import Foundation
import Logging
@testable import RelayServer
import RelayTestSupport
import Testing

@Suite struct LogThrottleTests {
    @Test func oneLineAnIntervalPerKeyAndTheNextCountsTheRest() {
        let clock = TestClock()
        let throttle = LogThrottle(interval: 1, clock: clock)
        #expect(throttle.admit("a") == 0)
        #expect([throttle.admit("a"), throttle.admit("a"), throttle.admit("a")] == [nil, nil, nil])
        #expect(throttle.admit("b") == 0)  // keys are counted apart
        clock.advance(by: 1)
        #expect(throttle.admit("a") == 3)
        #expect(throttle.admit("a") == nil)
        #expect(LogThrottle.counted(3, ["k": "v"]) == ["k": "v", "suppressed": "3"])
        #expect(LogThrottle.counted(0, ["k": "v"]) == ["k": "v"])
    }
}
