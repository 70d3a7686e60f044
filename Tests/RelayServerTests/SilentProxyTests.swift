import Foundation
import RelayTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The partition tests' proxy itself: silent means no bytes and no close, and closing it ends
/// its connections, silent or not, and releases their sockets.
@Suite struct SilentProxyTests {
    @Test func closingEndsEvenASilentConnectionAndReleasesItsSockets() async throws {
        try await TestReceiver.run { _, port in
            let proxy = try SilentProxy(to: port)
            let client = try Self.connect(to: proxy.port)
            let request = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            defer { Glibc.close(client) }
            #expect(Self.exchange(client, request).hasPrefix("HTTP/1.1 204"))
            #expect(proxy.openConnections == 1)

            proxy.setSilent(true)
            #expect(Self.exchange(client, request, timeoutSeconds: 1) == "", "bytes passed while silent")

            proxy.close()
            #expect(proxy.openConnections == 0)
            var byte: UInt8 = 0
            #expect(recv(client, &byte, 1, 0) == 0, "the client's connection did not end")
        }
    }

    static func connect(to port: Int) throws -> Int32 {
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { throw TimeoutError(description: "cannot connect to 127.0.0.1:\(port): errno \(errno)") }
        return client
    }

    /// Sends `request` and returns what arrives within the timeout ("" if nothing does).
    static func exchange(_ socket: Int32, _ request: String, timeoutSeconds: Int = 10) -> String {
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = request.utf8CString.withUnsafeBufferPointer { send(socket, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(socket, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
    }
}
