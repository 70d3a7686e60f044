import AsyncHTTPClient
import Foundation
import RelayCore
@testable import RelayServer
import RelayTestSupport
import Testing

@Suite(.timeLimit(.minutes(1))) struct DispatcherTests {
    /// The intake rings the subscriptions a push is for; a ring for one without a loop on this
    /// node (deleted, disabled, not started yet) keeps nothing. Each subscription ever rung used
    /// to leave a doorbell behind for the life of the process.
    @Test func ringsForSubscriptionsWithoutALoopKeepNothing() async throws {
        try await TestRelay.with { relay in
            let dispatcher = Dispatcher(
                store: relay.store, registry: SubscriptionRegistry([]),
                sender: WebhookSender(client: .shared, timeout: .seconds(1), egress: EgressGuard(allowPrivateNetworks: true)),
                policy: RetryPolicy(schedule: [.seconds(1)]), clock: relay.clock, metrics: relay.metrics, logger: relay.logger,
                maxInFlightPerSubscription: 4, onFinished: { _ in })
            dispatcher.notify(subscriptionIds: (0..<1000).map { "deleted-\($0)" })
            #expect(dispatcher.subscriptionsTracked == 0)
        }
    }
}
