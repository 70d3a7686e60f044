import Hummingbird
import NIOCore

/// The context of every route: Hummingbird's basic one and the peer's address, which the
/// per-client budgets (onboarding clicks, dashboard sign-ins) need.
public struct RelayRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection's peer: the client itself, or the proxy in front of the relay.
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}
