import Foundation
import Hummingbird
import HTTPTypes
import RelayCore

/// Who a request comes from, for the budgets each client gets (onboarding clicks, dashboard
/// sign-ins): the connection's peer; or, when the peer is one of `server.trusted_proxies`, the
/// address the proxies forwarded — `X-Forwarded-For` read from its right end, past the trusted
/// ones. From anybody else the header is ignored: a client can write any address into it.
struct ClientAddress: Sendable {
    let trustedProxies: [AddressRange]

    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!

    func of(_ request: Request, context: RelayRequestContext) -> String {
        guard let peer = context.remoteAddress?.ipAddress else { return "unknown" }
        return of(peer: peer, forwardedFor: request.headers[values: Self.forwardedFor])
    }

    func of(peer: String, forwardedFor: [String]) -> String {
        guard isTrusted(peer) else { return peer }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        // Each proxy appends the address it was reached from: the first from the right that is
        // not a trusted proxy is the client; everything left of it the client may have written.
        return hops.last { !isTrusted($0) } ?? hops.first ?? peer
    }

    private func isTrusted(_ address: String) -> Bool {
        trustedProxies.contains { $0.contains(address) }
    }
}
