import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on 127.0.0.1 to a local port that can go silent: it stops passing bytes either
/// way but keeps every connection open — a network partition or a frozen server, as a client
/// sees it (no reset, no close, just no answer). Blocking sockets on threads of its own: it is
/// small, and nothing in it runs on the tests' executors.
public final class SilentProxy: Sendable {
    public let port: Int
    private let listener: Int32
    private let silent = Atomic<Bool>(false)
    private let sockets = Mutex<Set<Int32>>([])
    /// Pumps finished per connection (keyed by the client's socket): the second one to finish
    /// closes both sockets, as nothing reads them any more.
    private let finishedPumps = Mutex<[Int32: Int]>([:])
    /// Every running pump, so that `close()` returns once all sockets are closed.
    private let pumps = DispatchGroup()
    /// Sockets of connections whose bytes are dropped, as a NAT that forgot them would.
    private let dropped = Mutex<Set<Int32>>([])
    /// Callers of `connected()` waiting for a first connection.
    private let waiters = Mutex<[CheckedContinuation<Void, Never>]>([])

    public init(to targetPort: Int) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(listener, address, length) == 0 && listen(listener, 64) == 0 && getsockname(listener, address, &length) == 0
            }
        }
        guard bound else {
            Glibc.close(listener)
            throw ProxyError("cannot listen on 127.0.0.1: errno \(errno)")
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in accept(forwardingTo: targetPort) }
        thread.start()
    }

    /// Connections whose sockets are still open (both ends close once both directions ended).
    public var openConnections: Int { sockets.withLock { $0.count / 2 } }

    /// Returns once a connection is open (at once if one is).
    public func connected() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // The socket set is read under the waiters' lock, as `accept` fills it before taking that lock.
            let open = waiters.withLock { waiters in
                guard openConnections == 0 else { return true }
                waiters.append(continuation)
                return false
            }
            if open { continuation.resume() }
        }
    }

    /// Stops (true) or resumes (false) passing bytes.
    public func setSilent(_ isSilent: Bool) { silent.store(isSilent, ordering: .sequentiallyConsistent) }

    /// From now on drops whatever the connections open now send either way, for good, while new
    /// connections work: what a NAT or firewall that dropped idle connections does. Neither end
    /// is told; a client finds out only by getting no answer.
    public func dropOpenConnections() {
        let open = sockets.withLock { $0 }
        dropped.withLock { $0.formUnion(open) }
    }

    /// Closes the listener and every connection, and returns once their pumps have ended.
    public func close() {
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
        sockets.withLock { sockets in
            for socket in sockets { shutdown(socket, Int32(SHUT_RDWR)) }
        }
        // Only now: a pump held by the silence must find its sockets ended, not pass what it holds.
        setSilent(false)
        _ = pumps.wait(timeout: .now() + 10)
    }

    private func accept(forwardingTo targetPort: Int) {
        while true {
            let client = Glibc.accept(listener, nil, nil)
            guard client >= 0 else { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: targetPort)
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            guard connected else {
                Glibc.close(client)
                Glibc.close(upstream)
                continue
            }
            sockets.withLock { $0.formUnion([client, upstream]) }
            for waiter in waiters.withLock({ waiters in defer { waiters = [] }; return waiters }) { waiter.resume() }
            for (source, destination) in [(client, upstream), (upstream, client)] {
                pumps.enter()
                Thread { [self] in
                    pump(from: source, to: destination)
                    finished(client: client, upstream: upstream)
                    pumps.leave()
                }.start()
            }
        }
    }

    private func pump(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(source, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            while silent.load(ordering: .sequentiallyConsistent) { usleep(10_000) }
            // After the silence: bytes held by it are dropped too if their connection was meanwhile.
            if dropped.withLock({ $0.contains(source) }) { continue }
            var sent = 0
            while sent < count {
                let written = buffer[sent..<count].withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard written > 0 else { break }
                sent += written
            }
        }
        shutdown(destination, Int32(SHUT_RDWR))
    }

    private func finished(client: Int32, upstream: Int32) {
        let last = finishedPumps.withLock { finished in
            finished[client, default: 0] += 1
            guard finished[client] == 2 else { return false }
            finished[client] = nil
            return true
        }
        guard last else { return }
        // Under the lock that `close()` shuts sockets down under, so it never reaches a number
        // that was closed here and reused meanwhile.
        sockets.withLock { sockets in
            sockets.subtract([client, upstream])
            dropped.withLock { $0.subtract([client, upstream]) }  // the numbers will be reused
            Glibc.close(client)
            Glibc.close(upstream)
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    struct ProxyError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
