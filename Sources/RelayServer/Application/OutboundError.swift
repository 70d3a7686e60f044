import Foundation
import NIOCore

/// How a failed outbound request (to a subscriber, a reply bot or WeChat) is described in
/// attempts, logs and errors: what an operator reads in the dashboard to fix the other end.
public enum OutboundError {
    public static func describe(_ error: any Error) -> String {
        // A socket error as the system names it (`Connection refused (errno 111)`): NIO's own
        // description read "connection reset (error set): Connection refused) (errno: 111)".
        if let io = error as? IOError {
            return "\(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))"
        }
        let text = "\(error)"
        // NIOSSL describes a failed handshake with BoringSSL's error queue, each entry ending in
        // the path and line of the BoringSSL source file that raised it (this build's checkout).
        if text.hasPrefix("handshakeFailed("), let reason = text.firstMatch(of: /OPENSSL_internal:([A-Z0-9_]+)/)?.1 {
            let hint = reason == "CERTIFICATE_VERIFY_FAILED"
                ? " (the certificate is not trusted: expired, self-signed, for another name, or served without its intermediates)" : ""
            return "TLS handshake failed: \(reason)\(hint)"
        }
        return text
    }
}
