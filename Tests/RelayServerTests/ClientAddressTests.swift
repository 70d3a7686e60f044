import Foundation
import RelayCore
@testable import RelayServer
import Testing

/// Who a request comes from, for the budgets each client gets.
@Suite struct ClientAddressTests {
    @Test func rangesHoldTheirAddressesOnly() throws {
        let ten = try #require(AddressRange("10.0.0.0/8"))
        #expect(ten.contains("10.200.3.4") && !ten.contains("11.0.0.1") && !ten.contains("::1"))
        #expect(ten.contains("::ffff:10.1.2.3"), "an IPv4 peer on a dual-stack socket")
        let one = try #require(AddressRange("192.0.2.7"))
        #expect(one.contains("192.0.2.7") && !one.contains("192.0.2.8"))
        let v6 = try #require(AddressRange("2001:db8::/32"))
        #expect(v6.contains("2001:db8:ffff::1") && !v6.contains("2001:db9::1"))
        #expect(try #require(AddressRange("10.1.2.3/23")).contains("10.1.3.255") && !AddressRange("10.1.2.3/23")!.contains("10.1.4.0"))
        #expect(AddressRange("0.0.0.0/0")?.contains("203.0.113.9") == true)
        for bad in ["10.0.0.0/33", "10.0.0/8", "lb.internal", "10.0.0.0/", "::1/129", "10.0.0.0/+8"] {
            #expect(AddressRange(bad) == nil, "\(bad)")
        }
    }

    @Test func forwardedAddressesAreBelievedFromTrustedProxiesOnly() {
        let clients = ClientAddress(trustedProxies: [AddressRange("10.0.0.0/8")!, AddressRange("127.0.0.1")!])
        // Anybody else's header is ignored: a client can write any address into it.
        #expect(clients.of(peer: "203.0.113.9", forwardedFor: ["198.51.100.1"]) == "203.0.113.9")
        // Through the load balancer: the address it was reached from.
        #expect(clients.of(peer: "10.0.0.2", forwardedFor: ["198.51.100.1"]) == "198.51.100.1")
        // What the client wrote itself comes first, left of what the proxies appended: not believed.
        #expect(clients.of(peer: "10.0.0.2", forwardedFor: ["1.2.3.4, 198.51.100.1, 10.0.0.7"]) == "198.51.100.1")
        #expect(clients.of(peer: "10.0.0.2", forwardedFor: ["1.2.3.4", "198.51.100.1"]) == "198.51.100.1", "several header lines")
        // A trusted peer without the header, or with only proxies in it.
        #expect(clients.of(peer: "127.0.0.1", forwardedFor: []) == "127.0.0.1")
        #expect(clients.of(peer: "10.0.0.2", forwardedFor: ["10.0.0.9, 10.0.0.7"]) == "10.0.0.9")
        #expect(ClientAddress(trustedProxies: []).of(peer: "10.0.0.2", forwardedFor: ["198.51.100.1"]) == "10.0.0.2")
    }

    /// One client's share runs out before the node's; another client still has its own, and the
    /// node's caps them all.
    @Test func aClientsShareRunsOutBeforeTheNodes() {
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let budget = Budget(node: TokenBucket(burst: 4, interval: 15), perClient: ClientBuckets(burst: 2, interval: 30))
        #expect(budget.take(client: "a", at: start) == nil && budget.take(client: "a", at: start) == nil)
        #expect(budget.take(client: "a", at: start) == Budget.Refusal(retryAfter: 30, clientsShare: true))
        #expect(budget.take(client: "b", at: start) == nil && budget.take(client: "b", at: start) == nil)
        #expect(budget.take(client: "c", at: start) == Budget.Refusal(retryAfter: 15, clientsShare: false))
        #expect(budget.take(client: "c", at: start + 15) == nil)
        #expect(budget.take(client: "a", at: start + 30) == nil)
    }

    /// Clients come and go: the buckets kept stay bounded, forgetting refilled ones first.
    @Test func clientBucketsStayBounded() {
        let start = Date(timeIntervalSince1970: 1_790_000_000)
        let buckets = ClientBuckets(burst: 1, interval: 60)
        for index in 0..<(ClientBuckets.remembered + 10) { _ = buckets.bucket("client \(index)", at: start) }
        #expect(buckets.count <= ClientBuckets.remembered)
        let spent = buckets.bucket("spender", at: start)
        spent.spend(at: start)
        for index in 0..<ClientBuckets.remembered { _ = buckets.bucket("later \(index)", at: start + 1) }
        #expect(buckets.count <= ClientBuckets.remembered)
    }
}
