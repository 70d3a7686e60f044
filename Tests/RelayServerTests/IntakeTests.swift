import Foundation
import HummingbirdTesting
import Logging
import RelayCore
import RelayServer
import RelayTestSupport
import Testing
import WeChatXML

@Suite struct IntakeTests {
    @Test func encryptedTextMessageIsStoredWithTheSpecShape() async throws {
        try await TestRelay.with() { relay in
            let sent = relay.timestamp
            let push = relay.textPush(appid: "wx1111111111111111", content: "你好", msgId: "24681357924681357", createTime: sent)
            try await relay.application().test(.router) { client async throws in
                let answer = try await client.send(push)
                #expect(answer.status == 200)
                #expect(answer.body == "success")
            }
            let events = try await relay.store.events(EventQuery())
            let event = try #require(events.first)
            #expect(events.count == 1)
            #expect(event.type == "message.text")
            #expect(event.appid == "wx1111111111111111")
            #expect(event.componentAppid == TestCredentials.componentAppid)
            #expect(event.id.hasPrefix("evt_") && event.id.count == 30)
            let envelope = try JSONSerialization.jsonObject(with: Data(event.envelopeJSON.utf8)) as? [String: Any]
            #expect(envelope?["id"] as? String == event.id)
            #expect(envelope?["type"] as? String == "message.text")
            #expect((envelope?["timestamp"] as? String)?.hasSuffix("Z") == true)
            let data = try #require(envelope?["data"] as? [String: String])
            #expect(data == ["ToUserName": "gh_abcdef123456", "FromUserName": "oUser123", "CreateTime": String(sent),
                             "MsgType": "text", "Content": "你好", "MsgId": "24681357924681357"])
            #expect(event.dataJSON.hasPrefix("{\"ToUserName\":"))
        }
    }

    /// At the default level a stored push logs nothing (the store and the metrics have it; a line
    /// per push cost a tenth to a quarter of the CPU per push); a refused one says why. Debug
    /// shows the stored ones too.
    @Test func storedPushesLogAtDebugAndRefusedOnesAtNotice() async throws {
        try await TestRelay.with() { relay in
            for level in [Logger.Level.info, .debug] {
                let logs = CapturedLogs()
                try await relay.application(logger: Logger(label: "relay") { _ in logs.handler(level: level) }).test(.router) { client async throws in
                    #expect(try await client.send(relay.textPush(msgId: "\(level)")).body == "success")
                    var refused = relay.textPush(msgId: "refused-\(level)")
                    refused.query.msgSignature = String(repeating: "0", count: 40)
                    #expect(try await client.send(refused).status == 401)
                }
                let pushLines = logs.lines.filter { $0.contains("push ") }
                #expect(pushLines.filter { $0.hasPrefix("notice push refused") && $0.contains("reason=signature does not verify") }.count == 1,
                        "\(pushLines)")
                #expect(pushLines.filter { $0.hasPrefix("debug push accepted") }.count == (level == .debug ? 1 : 0), "\(pushLines)")
                #expect(pushLines.count == (level == .debug ? 2 : 1), "\(pushLines)")
            }
        }
    }

    /// Refused pushes and URL checks come at the sender's rate: one line a second per reason,
    /// the next saying how many were left out; the metrics count every one.
    @Test func refusedPushesAreLoggedOnceASecondPerReason() async throws {
        try await TestRelay.with() { relay in
            let logs = CapturedLogs()
            // The interval is long, and the test clock is moved past it by hand.
            try await relay.application(logger: Logger(label: "relay") { _ in logs.handler() }, logThrottleInterval: 600)
                .test(.router) { client async throws in
                for i in 0..<5 {
                    var refused = relay.textPush(msgId: "refused-\(i)")
                    refused.query.msgSignature = String(repeating: "0", count: 40)
                    #expect(try await client.send(refused).status == 401)
                }
                var unsigned = relay.textPush(msgId: "unsigned")
                unsigned.query.msgSignature = nil
                #expect(try await client.send(unsigned).status != 200)  // another reason: its own line
                for _ in 0..<3 {  // WeChat's URL check, failing: at its sender's rate too
                    #expect(try await client.get("/wechat/component?timestamp=1&nonce=2&signature=bad&echostr=x").status != 200)
                }
                relay.clock.advance(by: 600)
                var refused = relay.textPush(msgId: "refused-last")
                refused.query.msgSignature = String(repeating: "0", count: 40)
                #expect(try await client.send(refused).status == 401)
            }
            let refusals = logs.lines.filter { $0.hasPrefix("notice push refused") }
            #expect(logs.lines.filter { $0.contains("URL check refused") }.count == 1, "\(logs.lines)")
            #expect(refusals.count == 3, "\(refusals)")
            #expect(refusals.filter { $0.contains("signature does not verify") }.map { $0.contains("suppressed=4") } == [false, true], "\(refusals)")
            #expect(relay.metrics.exposition().contains(#"relay_pushes_total{endpoint="callback",outcome="bad_signature"} 6"#))
        }
    }

    @Test func eventTypesFollowTheSpec() async throws {
        try await TestRelay.with() { relay in
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.send(relay.eventPush(event: "subscribe", eventKey: "qrscene_7")).status == 200)
                #expect(try await client.send(relay.eventPush(event: "CLICK", eventKey: "menu_1")).status == 200)
                let authorized = SamplePushes.authorization(component: TestCredentials.componentAppid, infoType: "authorized",
                                                            authorizer: "wx8d7c6b5a49382716", authorizationCode: "queryauthcode@@@x",
                                                            createTime: relay.timestamp)
                let push = PushComposer.componentPush(xml: authorized, component: TestCredentials.component,
                                                      timestamp: relay.timestamp, nonce: "1")
                #expect(try await client.send(push).status == 200)
            }
            let events = try await relay.store.events(EventQuery()).reversed().map { ($0.type, $0.appid) }
            #expect(events.map(\.0) == ["event.subscribe", "event.click", "authorizer.authorized"])
            #expect(events.last?.1 == "wx8d7c6b5a49382716")
        }
    }

    @Test func ticketIsKeptPerComponentAndNotStoredAsAnEvent() async throws {
        try await TestRelay.with() { relay in
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@first", createTime: relay.timestamp - 10)).body == "success")
                #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@second")).body == "success")
                // An older ticket arriving late (a retry) does not overwrite the newer one.
                #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@stale", createTime: relay.timestamp - 20)).body == "success")
                // The other component's ticket, through the path-addressed URL.
                var other = relay.ticketPush(ticket: "ticket@@@other", component: TestCredentials.otherComponent)
                other.path = "/wechat/component/\(TestCredentials.otherComponentAppid)"
                #expect(try await client.send(other).body == "success")
            }
            #expect(try await relay.store.ticket(componentAppid: TestCredentials.componentAppid)?.ticket == "ticket@@@second")
            #expect(try await relay.store.ticket(componentAppid: TestCredentials.otherComponentAppid)?.ticket == "ticket@@@other")
            #expect(try await relay.store.events(EventQuery()).isEmpty)
        }
    }

    @Test func ticketEventIsStoredWhenASubscriptionNamesIt() async throws {
        try await TestRelay.with(extraYAML: """
            subscriptions:
              - id: tickets
                url: http://127.0.0.1:9/hook
                events: ["component.verify_ticket"]
            """) { relay in
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.send(relay.ticketPush(ticket: "ticket@@@x")).body == "success")
            }
            #expect(try await relay.store.events(EventQuery()).map(\.type) == ["component.verify_ticket"])
            #expect(try await relay.store.ticket(componentAppid: TestCredentials.componentAppid)?.ticket == "ticket@@@x")
        }
    }

    @Test func sameMessageThreeTimesWithDifferentNoncesIsOneEvent() async throws {
        try await TestRelay.with() { relay in
            // A retry repeats WeChat's content exactly; only the request's nonce differs.
            let createTime = relay.timestamp
            try await relay.application().test(.router) { client async throws in
                for nonce in ["111", "222", "333"] {
                    #expect(try await client.send(relay.textPush(msgId: "9001", nonce: nonce)).body == "success")
                    #expect(try await client.send(relay.eventPush(event: "LOCATION", createTime: createTime, nonce: nonce)).body == "success")
                }
            }
            #expect(try await relay.store.events(EventQuery()).count == 2)
            #expect(relay.metrics.exposition().contains(#"relay_pushes_total{endpoint="callback",outcome="duplicate"} 4"#))
        }
    }

    @Test func twoDistinctEventsInTheSameSecondAreTwo() async throws {
        try await TestRelay.with() { relay in
            let second = relay.timestamp
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.send(relay.eventPush(event: "CLICK", eventKey: "a", createTime: second)).body == "success")
                #expect(try await client.send(relay.eventPush(event: "CLICK", eventKey: "b", createTime: second)).body == "success")
            }
            #expect(try await relay.store.events(EventQuery()).count == 2)
        }
    }

    @Test func pushesForUnseenAppidsAreAcceptedAndKeyedByPath() async throws {
        try await TestRelay.with() { relay in
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.send(relay.textPush(appid: "wxaaaaaaaaaaaaaaaa", msgId: "1")).body == "success")
                // The same MsgId under another AppID is a different event.
                #expect(try await client.send(relay.textPush(appid: "wxbbbbbbbbbbbbbbbb", msgId: "1")).body == "success")
            }
            #expect(Set(try await relay.store.events(EventQuery()).map(\.appid)) == ["wxaaaaaaaaaaaaaaaa", "wxbbbbbbbbbbbbbbbb"])
        }
    }

    @Test func directlyConfiguredAccountsInBothModes() async throws {
        try await TestRelay.with() { relay in
            let encryptedXML = SamplePushes.text(to: "gh_direct", from: "oU", content: "direct", createTime: relay.timestamp, msgId: "5")
            let encrypted = PushComposer.callbackPush(xml: encryptedXML, appid: TestCredentials.directAppid, toUserName: "gh_direct",
                                                      crypto: TestCredentials.directCrypto, timestamp: relay.timestamp, nonce: "9")
            let plainXML = SamplePushes.text(to: "gh_plain", from: "oU", content: "plain", createTime: relay.timestamp, msgId: "6")
            let plain = PushComposer.plaintextPush(xml: plainXML, appid: TestCredentials.plainAppid, token: TestCredentials.plainToken,
                                                   timestamp: relay.timestamp, nonce: "9")
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.send(encrypted).body == "success")
                #expect(try await client.send(plain).body == "success")
            }
            let events = try await relay.store.events(EventQuery())
            #expect(Set(events.map(\.appid)) == [TestCredentials.directAppid, TestCredentials.plainAppid])
            #expect(events.allSatisfy { $0.componentAppid == nil })
        }
    }

    @Test func sharedVectorsAreAcceptedOverHTTP() async throws {
        for name in ["gen_text_message_chinese_binary_prefix", "gen_full_padding_block", "gen_component_verify_ticket_push"] {
            let v = CryptoVectors.shared.vector(name)
            try await TestRelay.with(now: Date(timeIntervalSince1970: Double(v.timestamp)!)) { relay in
                let path = v.inbound_body!.contains("<AppId>") ? "/wechat/component" : "/wechat/wx8d7c6b5a49382716/callback"
                try await relay.application().test(.router) { client async throws in
                    let answer = try await client.post("\(path)?\(v.inbound_query!)", body: v.inbound_body!)
                    #expect(answer.status == 200, "\(name): \(answer.body)")
                }
                if name == "gen_component_verify_ticket_push" {
                    #expect(try await relay.store.ticket(componentAppid: v.appid) != nil)
                } else {
                    let event = try #require(try await relay.store.events(EventQuery()).first)
                    let data = try #require(try JSONSerialization.jsonObject(with: Data(event.dataJSON.utf8)) as? [String: String])
                    let expected = try XMLTreeParser.parse(Array(v.plaintext.utf8)).children.map { ($0.name, $0.text) }
                    #expect(data.count == expected.count)
                    for (key, value) in expected { #expect(data[key] == value) }
                }
            }
        }
    }
}

@Suite struct PushQueryTests {
    @Test func valuesArePercentDecodedOnlyWhenEncoded() {
        let query = PushQuery(rawQuery: "timestamp=1700000000&nonce=a%2Bb&msg_signature=abc&encrypt_type=aes&echostr=x%3Dy%20z&other=%ZZ")
        #expect(query == PushQuery(timestamp: "1700000000", nonce: "a+b", msgSignature: "abc", encryptType: "aes", echostr: "x=y z"))
        // A malformed escape is kept as sent rather than dropped.
        #expect(PushQuery(rawQuery: "nonce=50%").nonce == "50%")
        #expect(PushQuery(rawQuery: "signature=&nonce").signature == "")
        #expect(PushQuery(rawQuery: "signature=&nonce").nonce == "")
    }

    @Test func oddShapesAreReadByteByByte() {
        #expect(PushQuery(rawQuery: "") == PushQuery())
        #expect(PushQuery(rawQuery: "&&=x&nonce=2&") == PushQuery(nonce: "2"))
        #expect(PushQuery(rawQuery: "nonce=ä€&timestamp=1=2") == PushQuery(timestamp: "1=2", nonce: "ä€"))
        #expect(PushQuery(rawQuery: "noncex=1&xnonce=2&NONCE=3") == PushQuery())
    }
}
