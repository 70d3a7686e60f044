import Hummingbird
import NIOCore

/// The context of every route: Hummingbird's basic one and the peer's address, which the
/// per-client budgets (onboarding clicks, dashboard sign-ins) need.
public struct RelayRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection, whose peer only the per-client budgets ask for: reading its address for
    /// every request (a lock and a copy of the address with its host string) is not worth it.
    private let channel: any Channel

    /// The connection's peer: the client itself, or the proxy in front of the relay.
    public var remoteAddress: SocketAddress? { channel.remoteAddress }

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
