import Foundation
import NIOCore
@testable import RelayServer
import Testing

/// What an operator reads about a failed outbound request.
@Suite struct OutboundErrorTests {
    @Test func socketErrorsReadAsTheSystemNamesThem() {
        #expect(OutboundError.describe(IOError(errnoCode: ECONNREFUSED, reason: "connection reset (error set)"))
            == "Connection refused (errno 111)")
    }

    /// NIOSSL's description of a handshake that failed on an untrusted certificate, as it reads
    /// (seen against a subscriber with a self-signed certificate): the reason is kept, the build's
    /// source path dropped.
    @Test func aFailedTLSHandshakeNamesItsReason() {
        struct Handshake: Error, CustomStringConvertible {
            let description = "handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268435581 error:1000007d:SSL routines:"
                + "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /work/main/.build/checkouts/swift-nio-ssl/Sources/CNIOBoringSSL/ssl/handshake.cc:320]))"
        }
        #expect(OutboundError.describe(Handshake()) == "TLS handshake failed: CERTIFICATE_VERIFY_FAILED (the certificate is not trusted: "
            + "expired, self-signed, for another name, or served without its intermediates)")
        struct Other: Error, CustomStringConvertible { let description = "handshakeFailed(something else)" }
        #expect(OutboundError.describe(Other()) == "handshakeFailed(something else)")
    }
}
