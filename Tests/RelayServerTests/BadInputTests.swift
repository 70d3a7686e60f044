import Foundation
import HummingbirdTesting
import NIOCore
import RelayCore
import RelayServer
import RelayTestSupport
import Testing
import WeChatCrypto
import WeChatXML

/// Each bad input of the spec gets its 4xx, stores nothing and is counted.
@Suite struct BadInputTests {
    /// Sends `push`, expects `status`, and checks that nothing at all was stored.
    func expectRefused(_ push: ComposedPush, status: Int, reason: String, outcome: String) async throws {
        try await TestRelay.with { relay in
            try await relay.application().test(.router) { client async throws in
                let answer = try await client.send(push)
                #expect(answer.status == status, "\(answer.body)")
                #expect(answer.body.contains(reason), "\(answer.body)")
            }
            #expect(try await relay.store.events(EventQuery()).isEmpty)
            #expect(try await relay.store.ticket(componentAppid: TestCredentials.componentAppid) == nil)
            #expect(relay.metrics.exposition().contains("outcome=\"\(outcome)\"} 1"))
        }
    }

    /// A valid text push built with the relay's current time.
    func validPush(_ mutate: (inout ComposedPush) -> Void = { _ in }) -> ComposedPush {
        let now = Int(Date().timeIntervalSince1970)
        let xml = SamplePushes.text(to: "gh_x", from: "oU", content: "hi", createTime: now, msgId: "77")
        var push = PushComposer.callbackPush(xml: xml, appid: "wx1111111111111111", toUserName: "gh_x",
                                             crypto: TestCredentials.component.crypto, timestamp: now, nonce: "123")
        mutate(&push)
        return push
    }

    @Test func missingSignature() async throws {
        try await expectRefused(validPush { $0.query.msgSignature = nil; $0.query.encryptType = "aes" },
                                status: 400, reason: "missing query parameter msg_signature", outcome: "missing_parameter")
    }

    @Test func wrongSignature() async throws {
        try await expectRefused(validPush { $0.query.msgSignature = String(repeating: "0", count: 40) },
                                status: 401, reason: "signature does not verify", outcome: "bad_signature")
    }

    @Test func tamperedCiphertextFailsTheSignature() async throws {
        try await expectRefused(validPush { $0.body = $0.body.replacingOccurrences(of: "<Encrypt><![CDATA[", with: "<Encrypt><![CDATA[A") },
                                status: 401, reason: "signature does not verify", outcome: "bad_signature")
    }

    @Test func timestampOutsideTheClockSkew() async throws {
        let old = Int(Date().timeIntervalSince1970) - 3600
        let xml = SamplePushes.text(to: "gh_x", from: "oU", content: "hi", createTime: old, msgId: "77")
        let push = PushComposer.callbackPush(xml: xml, appid: "wx1111111111111111", toUserName: "gh_x",
                                             crypto: TestCredentials.component.crypto, timestamp: old, nonce: "1")
        try await expectRefused(push, status: 401, reason: "s behind this server's clock, more than wechat.max_clock_skew (300 s)",
                                outcome: "stale_timestamp")
    }

    /// Signed timestamps no clock is near: refused with the offset (clamped: a whole number of
    /// seconds from 1e300 would trap) or as not a number.
    @Test(arguments: [("1e300", "s ahead of this server's clock"), ("nan", "not a number"), ("-inf", "not a number")])
    func timestampsOutOfAnyRange(timestamp: String, reason: String) async throws {
        let crypto = TestCredentials.component.crypto
        let xml = SamplePushes.text(to: "gh_x", from: "oU", content: "hi", createTime: 0, msgId: "78")
        let sealed = crypto.seal(xml, timestamp: timestamp, nonce: "1")
        let push = validPush {
            $0.query = PushQuery(timestamp: timestamp, nonce: "1", signature: WeChatSignature.compute([crypto.token, timestamp, "1"]),
                                 msgSignature: sealed.msgSignature, encryptType: "aes")
            $0.body = EncryptedEnvelope(encrypt: sealed.encrypt, toUserName: "gh_x").render()
        }
        try await expectRefused(push, status: 401, reason: reason, outcome: "stale_timestamp")
    }

    @Test func bodyThatIsNotXML() async throws {
        try await expectRefused(validPush { $0.body = "{\"json\": true}" }, status: 400, reason: "not the expected XML", outcome: "malformed_body")
    }

    @Test func envelopeWithoutEncrypt() async throws {
        try await expectRefused(validPush { $0.body = "<xml><ToUserName>gh_x</ToUserName></xml>" },
                                status: 400, reason: "no <Encrypt>", outcome: "malformed_body")
    }

    @Test func doctypeIsRefusedBeforeParsing() async throws {
        let evil = """
            <?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>\
            <xml><Encrypt>&lol2;</Encrypt></xml>
            """
        try await expectRefused(validPush { $0.body = evil }, status: 400, reason: "DTDs", outcome: "malformed_body")
    }

    @Test func invalidUTF8InATagNameIsRefusedNotACrash() async throws {
        // These bytes crashed Foundation's XMLParser (found by fuzzing), before any signature check.
        let bytes: [UInt8] = [0x3C, 0x78, 0x6D, 0x6C, 0x3E, 0x3C, 0x61, 0xE4, 0x3E, 0x3C, 0x2F, 0x61, 0x3E, 0x3C, 0x2F, 0x78, 0x6D, 0x6C, 0x3E]
        let push = validPush()
        try await TestRelay.with { relay in
            try await relay.application().test(.router) { client async throws in
                let answer = try await client.execute(uri: push.uri, method: .post, body: ByteBuffer(bytes: bytes)) {
                    (Int($0.status.code), String(buffer: $0.body))
                }
                #expect(answer.0 == 400)
                #expect(answer.1.contains("not valid UTF-8"))
            }
            #expect(try await relay.store.events(EventQuery()).isEmpty)
        }
    }

    @Test func oversizeBody() async throws {
        try await expectRefused(validPush { $0.body = "<xml><Encrypt>" + String(repeating: "A", count: 70_000) + "</Encrypt></xml>" },
                                status: 413, reason: "larger than 65536", outcome: "too_large")
    }

    @Test func encryptedForAnotherReceiver() async throws {
        // Signed with the right token, but sealed for another AppID under the same key.
        let now = Int(Date().timeIntervalSince1970)
        let xml = SamplePushes.text(to: "gh_x", from: "oU", content: "hi", createTime: now, msgId: "77")
        let foreign = MessageCrypto(token: TestCredentials.token, key: try EncodingAESKey(TestCredentials.aesKey), receiverId: "wxSOMEONEELSE00000")
        let push = PushComposer.callbackPush(xml: xml, appid: "wx1111111111111111", toUserName: "gh_x", crypto: foreign, timestamp: now, nonce: "1")
        try await expectRefused(push, status: 400, reason: "different receiver", outcome: "wrong_receiver")
    }

    @Test func decryptedContentThatIsNotXML() async throws {
        let now = Int(Date().timeIntervalSince1970)
        let push = PushComposer.callbackPush(xml: "this is not xml", appid: "wx1111111111111111", toUserName: "gh_x",
                                             crypto: TestCredentials.component.crypto, timestamp: now, nonce: "1")
        try await expectRefused(push, status: 400, reason: "not the expected XML", outcome: "malformed_body")
    }

    @Test func unknownComponentOnThePathURL() async throws {
        try await TestRelay.with { relay in
            var push = relay.ticketPush(ticket: "ticket@@@x")
            push.path = "/wechat/component/wxNOTCONFIGURED0000"
            let sent = push
            try await relay.application().test(.router) { client async throws in
                let answer = try await client.send(sent)
                #expect(answer.status == 404)
                #expect(answer.body.contains("is not configured"))
            }
            #expect(try await relay.store.ticket(componentAppid: TestCredentials.componentAppid) == nil)
        }
    }

    @Test func componentPushSignedWithAnotherComponentsToken() async throws {
        try await TestRelay.with { relay in
            // Claims to be the first component but is sealed by the second: refused, nothing overwritten.
            let xml = SamplePushes.ticket(component: TestCredentials.componentAppid, ticket: "ticket@@@forged", createTime: relay.timestamp)
            var push = PushComposer.componentPush(xml: xml, component: TestCredentials.otherComponent, timestamp: relay.timestamp, nonce: "5")
            push.body = push.body.replacingOccurrences(of: TestCredentials.otherComponentAppid, with: TestCredentials.componentAppid)
            let sent = push
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.send(sent).status == 401)
            }
            #expect(try await relay.store.ticket(componentAppid: TestCredentials.componentAppid) == nil)
        }
    }

    @Test func plaintextPushToAnEncryptedAccountIsRefused() async throws {
        let now = Int(Date().timeIntervalSince1970)
        let xml = SamplePushes.text(to: "gh_x", from: "oU", content: "hi", createTime: now, msgId: "77")
        let push = PushComposer.plaintextPush(xml: xml, appid: TestCredentials.directAppid, token: TestCredentials.directToken,
                                              timestamp: now, nonce: "1")
        try await expectRefused(push, status: 400, reason: "encrypted mode", outcome: "plaintext_not_allowed")
    }

    @Test func plaintextPushForAnUnconfiguredAccount() async throws {
        let now = Int(Date().timeIntervalSince1970)
        let push = PushComposer.plaintextPush(xml: "<xml/>", appid: "wxUNKNOWN", token: "whatever", timestamp: now, nonce: "1")
        try await expectRefused(push, status: 404, reason: "no component or account", outcome: "unknown_account")
    }
}

