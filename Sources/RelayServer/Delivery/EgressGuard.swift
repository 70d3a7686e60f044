import Foundation
import RelayCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Keeps subscriber requests on the public internet: checked when a URL is registered and again
/// before every attempt, after DNS resolution, so a DNS change cannot point a webhook inside.
///
/// An http request then goes to the address that was checked, with the name in `Host`: were the
/// client to resolve the name again, a DNS answer changed in between (rebinding) could still send
/// it inside. An https request keeps the name, which its certificate must match: a rebound name
/// leads to a server that cannot prove it is that name, so the connection fails.
struct EgressGuard: Sendable {
    let allowPrivateNetworks: Bool
    /// Looks host names up (see `HostResolver`).
    let resolver: HostResolver
    /// Which addresses count as public; tests widen it to reach their loopback receivers.
    let isPublic: @Sendable (String) -> Bool
    /// What the resolver answered, kept for a while (see `ResolvedHosts`).
    let resolved = ResolvedHosts(ttl: .seconds(30))

    /// `resolve` turns a host name into addresses (`getaddrinfo`); tests give names of their own.
    init(allowPrivateNetworks: Bool, resolve: @escaping @Sendable (String) -> [String] = EgressGuard.resolve,
         isPublic: @escaping @Sendable (String) -> Bool = AddressClassifier.isPublic) {
        self.allowPrivateNetworks = allowPrivateNetworks
        self.resolver = HostResolver(lookup: resolve)
        self.isPublic = isPublic
    }

    /// Where one request goes: the URL to connect to, and the `Host` header when that URL names
    /// an address instead of the subscriber's host.
    struct Destination: Sendable, Equatable {
        let url: String
        let hostHeader: String?
    }

    enum Refusal: Error, CustomStringConvertible {
        case malformed
        case scheme(String)
        case noHost
        case unresolvable(String)
        case lookupTimedOut(String)
        case nonPublic(host: String, address: String)

        var description: String {
            switch self {
            case .malformed: "not a valid URL (such as https://crm.example.com/hooks/wechat)"
            case .scheme(let scheme): "only http and https URLs are allowed, not \(scheme)"
            case .noHost: "the URL has no host"
            case .unresolvable(let host): "\(host) does not resolve"
            case .lookupTimedOut(let host): "\(host) did not resolve in time (its DNS servers do not answer)"
            case .nonPublic(let host, let address):
                "\(host) resolves to \(address), which is not a public address (delivery.allow_private_networks is off)"
            }
        }
    }

    /// Checks a URL's form: http(s) with a host. Literal addresses are classified at once.
    func checkURL(_ text: String) throws(Refusal) -> (host: String, url: URL) {
        guard let url = URL(string: text) else { throw .malformed }
        guard let scheme = url.scheme?.lowercased() else { throw .scheme("a URL without one") }
        guard scheme == "http" || scheme == "https" else { throw .scheme(scheme) }
        guard let host = url.host, !host.isEmpty else { throw .noHost }
        let bare = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        if !allowPrivateNetworks, isLiteralAddress(bare), !AddressClassifier.isPublic(bare) {
            throw .nonPublic(host: host, address: bare)
        }
        return (bare, url)
    }

    /// Resolves the host (waiting for its lookup until `deadline`), refuses if any address it has
    /// is not public, and says where the request goes (see the type's comment).
    @discardableResult
    func destination(_ text: String, by deadline: ContinuousClock.Instant = .now + .seconds(10)) async throws(Refusal) -> Destination {
        // The URL's form was checked when it was registered; with private networks allowed
        // there is nothing left to check (and parsing it was a cost on every attempt).
        guard !allowPrivateNetworks else { return Destination(url: text, hostHeader: nil) }
        let (host, url) = try checkURL(text)
        guard !isLiteralAddress(host) else { return Destination(url: text, hostHeader: nil) }
        let addresses: [String]
        if let known = resolved.addresses(of: host) {
            addresses = known
        } else {
            guard let answer = await resolver.addresses(of: host, by: deadline) else { throw .lookupTimedOut(host) }
            addresses = answer
            resolved.remember(addresses, for: host)
        }
        guard let first = addresses.first else { throw .unresolvable(host) }
        if let inside = addresses.first(where: { !isPublic($0) }) {
            throw .nonPublic(host: host, address: inside)
        }
        guard url.scheme?.lowercased() == "http", let components = URLComponents(string: text), let range = components.rangeOfHost
        else { return Destination(url: text, hostHeader: nil) }
        let address = first.contains(":") ? "[\(first)]" : first
        return Destination(url: text.replacingCharacters(in: range, with: address),
                           hostHeader: url.port.map { "\(host):\($0)" } ?? host)
    }

    private func isLiteralAddress(_ host: String) -> Bool {
        AddressClassifier.parseIPv4(host) != nil || AddressClassifier.parseIPv6(host) != nil
    }

    /// Every address `getaddrinfo` gives for `host`, as text.
    static func resolve(_ host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                addresses.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            cursor = info.pointee.ai_next
        }
        return addresses
    }
}

/// Host names' addresses as `getaddrinfo` gave them, for `ttl`. Every attempt is checked, and a
/// lookup per attempt — a hop to the thread pool and, without a caching resolver on the machine,
/// a DNS query on the network — meant thousands of queries a second under load. The check itself
/// is still made on every attempt, on these addresses; an http request goes to the address that
/// was checked, so a name rebound meanwhile changes nothing. Failed lookups are not kept (a name
/// that starts resolving is used at the next attempt). At most `capacity` names.
final class ResolvedHosts: Sendable {
    let ttl: Duration
    let capacity: Int
    private let entries = Mutex<[String: (addresses: [String], until: ContinuousClock.Instant)]>([:])

    init(ttl: Duration, capacity: Int = 1024) {
        self.ttl = ttl
        self.capacity = capacity
    }

    func addresses(of host: String, now: ContinuousClock.Instant = .now) -> [String]? {
        entries.withLock { entries in
            guard let entry = entries[host] else { return nil }
            guard entry.until > now else {
                entries[host] = nil
                return nil
            }
            return entry.addresses
        }
    }

    func remember(_ addresses: [String], for host: String, now: ContinuousClock.Instant = .now) {
        guard !addresses.isEmpty, ttl > .zero else { return }
        entries.withLock { entries in
            if entries.count >= capacity {
                entries = entries.filter { $0.value.until > now }
                // Still full of live names: start again rather than track which is oldest.
                if entries.count >= capacity { entries = [:] }
            }
            entries[host] = (addresses, now + ttl)
        }
    }
}
