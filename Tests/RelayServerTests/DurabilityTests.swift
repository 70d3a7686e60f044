import AsyncHTTPClient
import Foundation
import HummingbirdTesting
import NIOCore
import RelayCore
import RelayServer
import RelayTestSupport
import Testing

@Suite struct DurabilityTests {
    @Test func restartOnTheSameFileKeepsEveryAcknowledgedEventAndTheDedup() async throws {
        let directory = makeTemporaryDirectory()
        let acknowledged = try await TestRelay.with(directory: directory) { relay in
            try await relay.application().test(.router) { client async throws in
                var ids: [String] = []
                for i in 0..<25 {
                    let answer = try await client.send(relay.textPush(content: "message \(i)", msgId: "\(1000 + i)"))
                    if answer.body == "success" { ids.append("\(1000 + i)") }
                }
                _ = try await client.send(relay.ticketPush(ticket: "ticket@@@before-restart"))
                return ids
            }
        }
        #expect(acknowledged.count == 25)
        try await TestRelay.with(directory: directory) { relay in
            let stored = try await relay.store.events(EventQuery(limit: 100))
            #expect(Set(stored.compactMap { try? JSONSerialization.jsonObject(with: Data($0.dataJSON.utf8)) as? [String: String] }
                .compactMap { $0["MsgId"] }) == Set(acknowledged))
            #expect(try await relay.store.ticket(componentAppid: TestCredentials.componentAppid)?.ticket == "ticket@@@before-restart")
            // WeChat retrying a push acknowledged before the restart is still a duplicate.
            try await relay.application().test(.router) { client async throws in
                #expect(try await client.send(relay.textPush(content: "message 3", msgId: "1003")).body == "success")
            }
            #expect(try await relay.store.events(EventQuery(limit: 100)).count == 25)
        }
    }

    @Test func concurrentPushesAreAllCommitted() async throws {
        try await TestRelay.with { relay in
            try await relay.application().test(.router) { client async throws in
                try await withThrowingTaskGroup(of: String.self) { group in
                    for i in 0..<200 {
                        group.addTask { try await client.send(relay.textPush(content: "c\(i)", msgId: "\(50_000 + i)")).body }
                    }
                    for try await body in group { #expect(body == "success") }
                }
            }
            #expect(try await relay.store.events(EventQuery(limit: 500)).count == 200)
        }
    }

    @Test func realSocketPushAndAnswer() async throws {
        try await TestRelay.with { relay in
            try await relay.application().test(.live) { client async throws in
                let port = try #require(client.port)
                let push = relay.textPush(content: "over a socket")
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(push.uri)")
                request.method = .POST
                request.body = .bytes(ByteBuffer(string: push.body))
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                #expect(response.status == .ok)
                #expect(String(buffer: try await response.body.collect(upTo: 1024)) == "success")
            }
            #expect(try await relay.store.events(EventQuery()).first?.type == "message.text")
        }
    }
}
