import AsyncHTTPClient
import Foundation
import RelayCore
@testable import RelayServer
import RelayTestSupport
import Synchronization
import Testing

/// Requests go where the egress check looked: an http request to the address that was checked
/// (the name in `Host`), so a DNS answer changed after the check cannot send it inside.
@Suite struct EgressGuardTests {
    static func guardResolving(_ table: [String: [String]], allowPrivate: Bool = false,
                               isPublic: @escaping @Sendable (String) -> Bool = { _ in true }) -> EgressGuard {
        EgressGuard(allowPrivateNetworks: allowPrivate, resolve: { table[$0] ?? [] }, isPublic: isPublic)
    }

    @Test func anHTTPRequestGoesToTheCheckedAddressWithTheNameInHost() async throws {
        let egress = Self.guardResolving(["hooks.example.com": ["93.184.216.34", "93.184.216.35"], "v6.example.com": ["2606:2800:220:1::1"]])
        #expect(try await egress.destination("http://hooks.example.com:8080/in/hook?x=1")
            == .init(url: "http://93.184.216.34:8080/in/hook?x=1", hostHeader: "hooks.example.com:8080"))
        #expect(try await egress.destination("http://hooks.example.com/hook")
            == .init(url: "http://93.184.216.34/hook", hostHeader: "hooks.example.com"))
        #expect(try await egress.destination("http://v6.example.com/hook")
            == .init(url: "http://[2606:2800:220:1::1]/hook", hostHeader: "v6.example.com"))
        // https keeps the name: the certificate must match it, which a rebound address cannot.
        #expect(try await egress.destination("https://hooks.example.com/hook") == .init(url: "https://hooks.example.com/hook", hostHeader: nil))
        #expect(try await egress.destination("http://93.184.216.34/hook") == .init(url: "http://93.184.216.34/hook", hostHeader: nil))
    }

    @Test func oneAddressInsideRefusesTheWholeName() async throws {
        let egress = Self.guardResolving(["mixed.example.com": ["93.184.216.34", "10.0.0.7"]], isPublic: AddressClassifier.isPublic)
        await #expect(throws: EgressGuard.Refusal.self) { try await egress.destination("http://mixed.example.com/hook") }
        await #expect(throws: EgressGuard.Refusal.self) { try await egress.destination("http://unknown.example.com/hook") }
        // Allowed private networks: nothing is resolved, the URL is used as it is.
        let open = Self.guardResolving([:], allowPrivate: true)
        #expect(try await open.destination("http://unknown.example.com/hook") == .init(url: "http://unknown.example.com/hook", hostHeader: nil))
    }

    /// Every attempt is checked, but DNS is not asked for every attempt: under load that was
    /// thousands of lookups a second. A failed lookup is not kept.
    @Test func aNameIsResolvedOnceForManyAttemptsAndAFailureIsNotKept() async throws {
        let lookups = Mutex<[String]>([])
        let answers = Mutex<[String: [String]]>(["hooks.example.com": ["93.184.216.34"]])
        let egress = EgressGuard(allowPrivateNetworks: false, resolve: { host in
            lookups.withLock { $0.append(host) }
            return answers.withLock { $0[host] ?? [] }
        }, isPublic: AddressClassifier.isPublic)
        for _ in 0..<5 {
            #expect(try await egress.destination("http://hooks.example.com/hook").url == "http://93.184.216.34/hook")
        }
        await #expect(throws: EgressGuard.Refusal.self) { try await egress.destination("http://late.example.com/hook") }
        answers.withLock { $0["late.example.com"] = ["93.184.216.35"] }
        #expect(try await egress.destination("http://late.example.com/hook").url == "http://93.184.216.35/hook")
        #expect(lookups.withLock { $0 } == ["hooks.example.com", "late.example.com", "late.example.com"])
    }

    @Test func resolvedNamesExpireAndStayWithinTheirCapacity() {
        let hosts = ResolvedHosts(ttl: .seconds(30), capacity: 2)
        let start = ContinuousClock.now
        hosts.remember(["93.184.216.34"], for: "a.example.com", now: start)
        #expect(hosts.addresses(of: "a.example.com", now: start + .seconds(29)) == ["93.184.216.34"])
        #expect(hosts.addresses(of: "a.example.com", now: start + .seconds(30)) == nil)
        hosts.remember(["93.184.216.34"], for: "a.example.com", now: start)
        hosts.remember(["93.184.216.35"], for: "b.example.com", now: start)
        hosts.remember(["93.184.216.36"], for: "c.example.com", now: start + .seconds(1))  // full of live names: starts again
        #expect(hosts.addresses(of: "a.example.com", now: start + .seconds(2)) == nil)
        #expect(hosts.addresses(of: "c.example.com", now: start + .seconds(2)) == ["93.184.216.36"])
        let off = ResolvedHosts(ttl: .zero)
        off.remember(["93.184.216.34"], for: "a.example.com")
        #expect(off.addresses(of: "a.example.com") == nil)
    }

    /// `.invalid` never resolves: the request arriving at all shows the client did not resolve
    /// the name again but went to the checked address.
    @Test func theSenderConnectsToTheCheckedAddressAndNamesTheHost() async throws {
        try await TestReceiver.run { receiver, port in
            let sender = WebhookSender(client: HTTPClient.shared, timeout: .seconds(5),
                                       egress: Self.guardResolving(["hooks.invalid": ["127.0.0.1"]]))
            let result = await sender.send(url: "http://hooks.invalid:\(port)/hook", eventId: "evt_1", body: "{}", secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                                           at: Date())
            #expect(result.statusCode == 204, "\(result)")
            let request = try await receiver.next()
            #expect(request.headers["host"] == "hooks.invalid:\(port)")
            #expect(request.headers["webhook-id"] == "evt_1")
        }
    }

    /// A name whose DNS servers do not answer (`getaddrinfo` blocks its thread for seconds) holds
    /// up neither other names nor its own attempts past their timeout, and its attempts share one
    /// lookup. Lookups ran on NIO's shared pool, a thread per core: one subscriber's in-flight
    /// attempts filled it with hanging lookups, and every other subscriber's waited behind them.
    @Test(.timeLimit(.minutes(1))) func aHangingLookupHoldsUpNeitherOtherNamesNorItsAttemptsPastTheirTimeout() async throws {
        let gate = DispatchSemaphore(value: 0)
        defer { for _ in 0..<32 { gate.signal() } }  // the hanging lookups' threads go back to their pool
        let lookups = Mutex<[String]>([])
        let (hanging, hangs) = AsyncStream.makeStream(of: Void.self)
        let egress = EgressGuard(allowPrivateNetworks: false, resolve: { host in
            lookups.withLock { $0.append(host) }
            if host == "hanging.invalid" {
                hangs.yield()
                gate.wait()
            }
            return ["127.0.0.1"]
        }, isPublic: { _ in true })
        try await TestReceiver.run { receiver, port in
            let sender = WebhookSender(client: HTTPClient.shared, timeout: .milliseconds(500), egress: egress)
            let secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
            try await withThrowingTaskGroup(of: SendResult.self) { group in
                for i in 0..<32 {  // a subscriber's in-flight attempts
                    group.addTask { await sender.send(url: "http://hanging.invalid:\(port)/hook", eventId: "evt_h\(i)", body: "{}", secrets: secrets, at: Date()) }
                }
                var started = hanging.makeAsyncIterator()
                _ = await started.next()  // the hanging lookup holds its thread
                let other = await WebhookSender(client: HTTPClient.shared, timeout: .seconds(5), egress: egress)
                    .send(url: "http://hooks.invalid:\(port)/hook", eventId: "evt_1", body: "{}", secrets: secrets, at: Date())
                #expect(other.statusCode == 204, "\(other)")
                for try await result in group {
                    #expect(result.statusCode == nil && result.error == "timed out after 0.5 seconds resolving hanging.invalid", "\(result)")
                }
            }
            #expect(receiver.requests.map(\.path) == ["/hook"])
            #expect(lookups.withLock { $0 } == ["hanging.invalid", "hooks.invalid"])
        }
    }
}
