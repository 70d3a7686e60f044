import Foundation
import RelayCore
import Testing

/// The signer keeps keyed HMAC states per secret; signatures must not depend on what was signed
/// before, with which secret.
@Suite struct WebhookSignerTests {
    static let first = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    static let second = "whsec_c2Vjb25kIHNlY3JldCBvZiAzMiBieXRlcyEhIQ=="

    @Test func signaturesMatchTheSpecificationWhateverWasSignedBefore() {
        let body = Array(#"{"test": 2432232314}"#.utf8)
        for secret in [Self.first, Self.second, Self.first, Self.second] {
            for (id, timestamp) in [("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330), ("msg_other", 1_700_000_000)] {
                let expected = DeliveryTests.expectedSignature(secret: secret, id: id, timestamp: String(timestamp),
                                                               body: String(decoding: body, as: UTF8.self))
                #expect(WebhookSigner.signature(secret: secret, id: id, timestamp: timestamp, body: body) == expected)
                #expect(body.withUnsafeBytes { WebhookSigner.signature(secret: secret, id: id, timestamp: timestamp, body: $0) } == expected)
            }
        }
    }

    /// The example of the Standard Webhooks specification.
    @Test func theSpecificationsExample() {
        #expect(WebhookSigner.signature(secret: Self.first, id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330,
                                        body: Array(#"{"test": 2432232314}"#.utf8)) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test func rotationSignsWithBothSecrets() {
        let header = WebhookSigner.header(secrets: [Self.first, Self.second], id: "msg_1", timestamp: 1, body: Array("{}".utf8))
        #expect(header == [Self.first, Self.second].map {
            DeliveryTests.expectedSignature(secret: $0, id: "msg_1", timestamp: "1", body: "{}")
        }.joined(separator: " "))
    }
}
