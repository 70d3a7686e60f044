import Foundation
import HummingbirdTesting
import Logging
import RelayCore
import RelayServer
import RelayTestSupport
import Testing
import WeChatCrypto
import WeChatXML

/// Passive replies over HTTP, acting as WeChat.
@Suite(.timeLimit(.minutes(1))) struct ReplyTests {
    static func yaml(bot: Int, deadline: String = "4s", normal: Int? = nil) -> String {
        """
        delivery:
          allow_private_networks: true
        reply:
          deadline: \(deadline)
        subscriptions:
          - id: bot
            url: http://127.0.0.1:\(bot)/reply
            reply: true
        \(normal.map { "  - id: crm\n    url: http://127.0.0.1:\($0)/hook" } ?? "")
        """
    }

    /// Checks the envelope's signature and decrypts it, as WeChat does; returns the reply XML.
    static func open(_ body: String) throws -> XMLNode {
        let envelope = try ReplyEnvelope.parse(Array(body.utf8))
        #expect(WeChatSignature.compute([TestCredentials.token, envelope.timestamp, envelope.nonce, envelope.encrypt]) == envelope.msgSignature)
        #expect(abs((Int(envelope.timestamp) ?? 0) - Int(Date().timeIntervalSince1970)) < 60)
        let cipher = WeChatCipher(key: try EncodingAESKey(TestCredentials.aesKey), receiverId: TestCredentials.componentAppid)
        return try XMLTreeParser.parse(try cipher.decrypt(envelope.encrypt))
    }

    static func withBot(_ respond: @escaping @Sendable (TestReceiver.Received, Int) async -> TestReceiver.Answer,
                        deadline: String = "4s",
                        _ body: @Sendable (TestRelay, any TestClientProtocol) async throws -> Void) async throws {
        try await TestReceiver.run(respond: respond) { _, port in
            try await TestRelay.with(extraYAML: Self.yaml(bot: port, deadline: deadline)) { relay in
                try await relay.application().test(.router) { client async throws in try await body(relay, client) }
            }
        }
    }

    static func json(_ text: String) -> TestReceiver.Answer {
        .init(status: 200, headers: ["Content-Type": "application/json"], body: text)
    }

    @Test func textReplyIsEncryptedSignedAndAddressedBack() async throws {
        try await Self.withBot({ request, _ in
            #expect(request.headers["webhook-signature"]?.hasPrefix("v1,") == true)
            return Self.json(#"{"MsgType": "text", "Content": "你好 ]]> <b>&\u0001"}"#)
        }) { relay, client in
            let answer = try await client.send(relay.textPush(content: "hi"))
            let xml = try Self.open(answer.body)
            #expect(xml.childText("ToUserName") == "oUser123")
            #expect(xml.childText("FromUserName") == "gh_abcdef123456")
            #expect(xml.childText("MsgType") == "text")
            #expect(xml.childText("Content") == "你好 ]]> <b>&")
            #expect(abs((Int(xml.childText("CreateTime") ?? "") ?? 0) - Int(Date().timeIntervalSince1970)) < 60)
        }
    }

    @Test func newsWithTwoArticlesAndImage() async throws {
        try await Self.withBot({ request, _ in
            request.body.contains("\"Content\":\"news\"")
                ? Self.json(#"{"MsgType": "news", "Articles": [{"Title": "t1", "Description": "d1", "PicUrl": "https://p/1", "Url": "https://u/1"}, {"Title": "t2", "Description": "d2", "PicUrl": "https://p/2", "Url": "https://u/2"}]}"#)
                : Self.json(#"{"MsgType": "image", "Image": {"MediaId": "media-42"}}"#)
        }) { relay, client in
            let news = try Self.open(try await client.send(relay.textPush(content: "news", msgId: "1")).body)
            #expect(news.childText("MsgType") == "news")
            #expect(news.childText("ArticleCount") == "2")
            let items = try #require(news.child("Articles")).children
            #expect(items.map { $0.childText("Title") } == ["t1", "t2"])
            #expect(items.map { $0.childText("Url") } == ["https://u/1", "https://u/2"])
            let image = try Self.open(try await client.send(relay.textPush(content: "image", msgId: "2")).body)
            #expect(image.childText("MsgType") == "image")
            #expect(image.child("Image")?.childText("MediaId") == "media-42")
        }
    }

    @Test(arguments: [
        ("204", TestReceiver.Answer(status: 204)),
        ("empty body", TestReceiver.Answer(status: 200)),
        ("500", TestReceiver.Answer(status: 500, body: #"{"MsgType": "text", "Content": "x"}"#)),
        ("invalid JSON", ReplyTests.json("{not json")),
        ("unknown MsgType", ReplyTests.json(#"{"MsgType": "hologram"}"#)),
        ("incomplete", ReplyTests.json(#"{"MsgType": "text"}"#)),
        ("no MsgType", ReplyTests.json(#"{"Content": "x"}"#)),
    ])
    func everyFailureCauseAnswersSuccess(cause: String, answer: TestReceiver.Answer) async throws {
        try await Self.withBot({ _, _ in answer }) { relay, client in
            let reply = try await client.send(relay.textPush())
            #expect(reply.status == 200 && reply.body == "success", "\(cause)")
            #expect(try await relay.store.events(EventQuery()).count == 1)
        }
    }

    /// A bot that refuses connections: every push is answered `success` at once (a refused
    /// connection is no longer retried until the deadline), counted, and logged once a second
    /// with the cause, not once per push.
    @Test func anUnreachableBotAnswersSuccess() async throws {
        let closed = try await TestReceiver.run { _, port in port }
        try await TestRelay.with(extraYAML: Self.yaml(bot: closed, deadline: "1s")) { relay in
            let logs = CapturedLogs()
            try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }, logThrottleInterval: 600)
                .test(.router) { client async throws in
                for i in 0..<3 { #expect(try await client.send(relay.textPush(msgId: "\(40 + i)")).body == "success") }
            }
            #expect(relay.metrics.exposition().contains("relay_replies_total{outcome=\"unreachable\"} 3"))
            let lines = logs.lines.filter { $0.contains("no passive reply") }
            #expect(lines.count == 1 && lines[0].contains("detail=Connection refused (errno 111)"), "\(lines)")
        }
    }

    /// A bot answering 204 chooses not to reply: nothing is wrong, so nothing is logged at info.
    @Test func aBotThatChoosesNotToReplyLogsNothingAtInfo() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 204) }) { _, port in
            try await TestRelay.with(extraYAML: Self.yaml(bot: port)) { relay in
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }).test(.router) { client async throws in
                    #expect(try await client.send(relay.textPush()).body == "success")
                }
                #expect(relay.metrics.exposition().contains("relay_replies_total{outcome=\"no_reply\"} 1"))
                #expect(!logs.lines.contains { $0.contains("no passive reply") }, "\(logs.lines)")
            }
        }
    }

    @Test func aBotPastTheDeadlineGetsSuccessInTimeAndTheEventIsStillDelivered() async throws {
        try await TestReceiver.run(respond: { _, _ in .init(status: 200, delay: .seconds(3)) }) { _, botPort in
            try await TestReceiver.run { normal, normalPort in
                try await TestRelay.with(extraYAML: Self.yaml(bot: botPort, deadline: "500ms", normal: normalPort)) { relay in
                    try await relay.application().test(.router) { client async throws in
                        let started = ContinuousClock.now
                        let answer = try await client.send(relay.textPush())
                        let elapsed = ContinuousClock.now - started
                        #expect(answer.body == "success")
                        #expect(elapsed < .milliseconds(500) + .milliseconds(1500), "answered after \(elapsed)")
                        let delivered = try await normal.next()
                        #expect(delivered.body.contains("\"type\":\"message.text\""))
                    }
                    #expect(relay.metrics.exposition().contains("relay_replies_total{outcome=\"deadline\"} 1"))
                }
            }
        }
    }

    /// A bot that answers its head at once but never ends its body is cut at the deadline too
    /// (AsyncHTTPClient's own deadline stops at the head): WeChat still gets `success` in time.
    @Test func aBotWhoseAnswerNeverEndsGetsSuccessInTime() async throws {
        try await Self.withBot({ _, _ in .init(status: 200, headers: ["Content-Type": "application/json"], body: #"{"MsgType":"#, trickles: true) },
                               deadline: "500ms") { (relay: TestRelay, client: any TestClientProtocol) async throws -> Void in
            let started = ContinuousClock.now
            #expect(try await client.send(relay.textPush()).body == "success")
            let elapsed = ContinuousClock.now - started
            #expect(elapsed < .milliseconds(500) + .milliseconds(1500), "answered after \(elapsed)")
            #expect(relay.metrics.exposition().contains("relay_replies_total{outcome=\"deadline\"} 1"))
        }
    }

    @Test func plaintextAccountsGetPlaintextReplies() async throws {
        try await Self.withBot({ _, _ in Self.json(#"{"MsgType": "text", "Content": "plain answer"}"#) }) { relay, client in
            let xml = SamplePushes.text(to: "gh_plain", from: "oP", content: "hi", createTime: relay.timestamp, msgId: "9")
            let push = PushComposer.plaintextPush(xml: xml, appid: TestCredentials.plainAppid, token: TestCredentials.plainToken,
                                                  timestamp: relay.timestamp, nonce: "3")
            let answer = try await client.send(push)
            let reply = try XMLTreeParser.parse(Array(answer.body.utf8))
            #expect(reply.childText("Content") == "plain answer")
            #expect(reply.childText("ToUserName") == "oP" && reply.childText("FromUserName") == "gh_plain")
            #expect(reply.child("Encrypt") == nil)
        }
    }
}

/// WeChat's full-network release test against the fake WeChat API.
@Suite struct ReleaseTestTests {
    static let testAccount = "wx570bc396a51b8ff8"

    static func push(_ relay: TestRelay, xml: String) -> ComposedPush {
        PushComposer.callbackPush(xml: xml, appid: testAccount, toUserName: "gh_3c884a361561", crypto: TestCredentials.component.crypto,
                                  timestamp: relay.timestamp, nonce: PushComposer.nonce())
    }

    @Test func textAndEventCasesReplyAtOnce() async throws {
        try await TestRelay.with { relay in
            try await relay.application().test(.router) { client async throws in
                let text = try await client.send(Self.push(relay, xml: SamplePushes.text(
                    to: "gh_3c884a361561", from: "oTester", content: "TESTCOMPONENT_MSG_TYPE_TEXT", createTime: relay.timestamp, msgId: "1")))
                let reply = try ReplyTests.open(text.body)
                #expect(reply.childText("Content") == "TESTCOMPONENT_MSG_TYPE_TEXT_callback")
                #expect(reply.childText("ToUserName") == "oTester" && reply.childText("FromUserName") == "gh_3c884a361561")
                let event = try await client.send(Self.push(relay, xml: SamplePushes.event(
                    to: "gh_3c884a361561", from: "oTester", event: "LOCATION", createTime: relay.timestamp)))
                #expect(try ReplyTests.open(event.body).childText("Content") == "LOCATIONfrom_callback")
                // An ordinary account typing the same text is not part of the test.
                #expect(try await client.send(relay.textPush(content: "TESTCOMPONENT_MSG_TYPE_TEXT")).body == "success")
            }
        }
    }

    @Test func queryAuthCodeCaseAnswersEmptyThenSendsThroughTheCustomerServiceAPI() async throws {
        try await FakeWeChat.run { fake, base in
            try await TestRelay.with(apiBase: base) { relay in
                fake.addTicket("ticket@@@valid")
                fake.addAuthCode("queryauthcode@@@release", authorizer: Self.testAccount)
                try await relay.application().test(.router) { client async throws in
                    _ = try await client.send(relay.ticketPush(ticket: "ticket@@@valid"))
                    let answer = try await client.send(Self.push(relay, xml: SamplePushes.text(
                        to: "gh_3c884a361561", from: "oTester", content: "QUERY_AUTH_CODE:queryauthcode@@@release",
                        createTime: relay.timestamp, msgId: "2")))
                    #expect(answer.status == 200 && answer.body == "")
                    let exchange = try await fake.waitForCall(to: "api_query_auth")
                    #expect(exchange.body["authorization_code"] == "queryauthcode@@@release")
                    let sent = try await fake.waitForCall(to: "send")
                    #expect(sent.path == "/cgi-bin/message/custom/send")
                    #expect(sent.body["touser"] == "oTester")
                    #expect(sent.body["text"]?.contains("queryauthcode@@@release_from_api") == true)
                    #expect(sent.query.contains("access_token=atok-\(Self.testAccount)"))
                }
            }
        }
    }
}
