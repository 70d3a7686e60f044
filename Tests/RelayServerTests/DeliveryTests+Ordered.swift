import Foundation
import HummingbirdTesting
import RelayTestSupport
import Testing

extension DeliveryTests {
    /// A bot's ordered backlog, parked behind a first event that failed with its retry an hour
    /// away, goes out at once when `ordered` is turned off through the admin API (the test's
    /// clock stands still: nothing waits for that retry). Before, it stayed parked and in order.
    @Test func turningOrderedOffThroughTheAPIDeliversTheWaitingBacklog() async throws {
        let failed = FirstTime()
        try await TestReceiver.run(respond: { request, _ in
            request.body.contains(#""Content":"m1""#) && failed.first() ? .init(status: 500) : .init(status: 204)
        }) { receiver, port in
            try await TestRelay.with(extraYAML: AdminAPITests.yaml(schedule: "[1h]")) { relay in
                let reports = Reports()
                try await relay.application(onDeliveryAttempt: reports.hook).test(.router) { client async throws in
                    let created = try await AdminAPITests.call(client, .post, "/v1/subscriptions",
                                                               json: #"{"id": "bot", "url": "http://127.0.0.1:\#(port)/", "ordered": true}"#)
                    #expect(created.status == 201)
                    func push(_ i: Int) async throws {
                        _ = try await client.send(relay.textPush(content: "m\(i)", msgId: "\(i)", from: "oSameUser"))
                    }
                    try await push(1)
                    #expect(try await reports.next(1).first?.statusCode == 500)
                    for i in 2...40 { try await push(i) }  // more than enough to be parked
                    let patched = try await AdminAPITests.call(client, .patch, "/v1/subscriptions/bot", json: #"{"ordered": false}"#)
                    #expect(patched.status == 200 && patched.body["ordered"] as? Bool == false)
                    let delivered = try await reports.next(39)
                    #expect(delivered.allSatisfy { $0.verdict == .succeeded })
                }
                #expect(receiver.requests.count == 40)
            }
        }
    }
}
