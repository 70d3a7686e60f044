import Foundation
import Logging
import HummingbirdTesting
import RelayCore
import RelayServer
import RelayTestSupport
import Testing

/// A subscription created through one node is unknown to the others for up to 10 s; events they
/// store meanwhile get their delivery to it afterwards.
@Suite struct SubscriptionBackfillTests {
    @Test(arguments: StoreBackend.available)
    func eventsAnotherNodeStoredBeforeItKnewANewSubscriptionAreDeliveredToIt(_ backend: StoreBackend) async throws {
        try await backend.withStorageURL { url in
            try await TestReceiver.run { receiver, port in
                try await TestRelay.with(extraYAML: AdminAPITests.yaml(), storageURL: url) { relay in
                    try await relay.application().test(.router) { client async throws in
                        let created = try await AdminAPITests.call(client, .post, "/v1/subscriptions",
                                                                   json: #"{"id": "late", "url": "http://127.0.0.1:\#(port)/hook"}"#)
                        #expect(created.status == 201)
                        // What a node still on the old list writes: the event, no delivery to "late".
                        let now = relay.clock.now()
                        let event = RelayEvent(id: EventID.make(at: now), type: "message.text", appid: "wx1", componentAppid: nil,
                                               receivedAt: now, dataJSON: #"{"Content":"missed"}"#, dedupKey: "missed", fromUser: nil)
                        _ = try await relay.store.commit(IntakeRecord(event: event, ticket: nil))
                        // One stored before the subscription existed stays out of it.
                        let before = RelayEvent(id: EventID.make(at: now - 60), type: "message.text", appid: "wx1", componentAppid: nil,
                                                receivedAt: now - 60, dataJSON: "{}", dedupKey: "before", fromUser: nil)
                        _ = try await relay.store.commit(IntakeRecord(event: before, ticket: nil))
                        relay.clock.advance(by: 16)
                        let delivered = try await receiver.next()
                        #expect(delivered.headers["webhook-id"] == event.id)
                        #expect(try await relay.store.deliveries(eventId: before.id).isEmpty)
                        #expect(try await relay.store.deliveries(eventId: event.id).map(\.subscriptionId) == ["late"])
                    }
                }
            }
        }
    }

    @Test(arguments: StoreBackend.available)
    func deliveriesAnotherNodeCreatedForADisabledSubscriptionAreCancelled(_ backend: StoreBackend) async throws {
        try await backend.withStorageURL { url in
            try await TestRelay.with(extraYAML: AdminAPITests.yaml(subscriptions: "  - id: crm\n    url: http://127.0.0.1:9/hook"),
                                     storageURL: url) { relay in
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }).test(.router) { client async throws in
                    _ = try await AdminAPITests.call(client, .post, "/v1/subscriptions", json: #"{"id": "gone", "url": "http://127.0.0.1:9/x"}"#)
                    #expect(try await AdminAPITests.call(client, .patch, "/v1/subscriptions/gone", json: #"{"status": "disabled"}"#).status == 200)
                    // A node still on the old list stores an event with a delivery to it.
                    let now = relay.clock.now()
                    let event = RelayEvent(id: EventID.make(at: now), type: "message.text", appid: "wx1", componentAppid: nil,
                                           receivedAt: now, dataJSON: "{}", dedupKey: "stale", fromUser: nil)
                    _ = try await relay.store.commit(IntakeRecord(event: event, ticket: nil,
                                                                  deliveries: [PlannedDelivery(subscriptionId: "gone", orderKey: nil)]))
                    relay.clock.advance(by: 16)
                    // The dispatcher settles on its next wake-up (a second at most), and says so once done.
                    let settled = try await logs.line(containing: "cancelled deliveries another node created")
                    #expect(settled.contains("count=1 subscription=gone"), "\(settled)")
                    #expect(try await relay.store.deliveries(eventId: event.id).first?.status == .cancelled)
                }
            }
        }
    }
}
