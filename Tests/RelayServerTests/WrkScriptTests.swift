import Foundation
import HummingbirdTesting
import RelayCore
import RelayServer
import RelayTestSupport
import Testing

/// `relay push wrk-script`: the script's pushes, read back exactly as wrk will send them, are
/// accepted by a relay over HTTP.
@Suite struct WrkScriptTests {
    @Test func aLongStringIsNeverClosedByWhatItHolds() {
        #expect(WrkScript.longString("<xml>a</xml>") == "[[<xml>a</xml>]]")
        #expect(WrkScript.longString("<![CDATA[x]]>") == "[=[<![CDATA[x]]>]=]")
        #expect(WrkScript.longString("]]]=]") == "[==[]]]=]]==]")
    }

    @Test func theScriptsPushesAreAcceptedOnceThenAsDuplicates() async throws {
        try await TestRelay.with { relay in
            let sent = (0..<3).map { relay.textPush(content: "load \($0)", msgId: String(9_000_000_000 + $0)) }
            // Parts of two, so the list spans two of the functions that keep LuaJIT under its limit of constants.
            let script = WrkScript.render(sent, comment: "three pushes\nfor the test", partSize: 2)
            #expect(script.hasPrefix("-- three pushes\n-- for the test\nlocal parts = {}\nparts[#parts + 1] = function() return {\n"))
            #expect(script.components(separatedBy: "parts[#parts + 1] = function() return {").count == 3)
            #expect(script.contains("function request()"))
            let read = WrkScript.pushes(in: script)
            #expect(read.map(\.uri) == sent.map(\.uri))
            #expect(read.map(\.body) == sent.map(\.body))
            try await relay.application().test(.live) { client async throws in
                for push in read + read.prefix(1) {
                    let answer = try await client.post(push.uri, body: push.body)
                    #expect(answer.status == 200 && answer.body == "success", "\(answer)")
                }
            }
            #expect(try await relay.store.events(EventQuery()).count == 3)
        }
    }
}
