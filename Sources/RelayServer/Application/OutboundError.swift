import Foundation
import NIOCore

/// How a failed outbound request (to a subscriber, a reply bot or WeChat) is described in
/// attempts, logs and errors.
enum OutboundError {
    /// A socket error as the system names it (`Connection refused (errno 111)`): NIO's own
    /// description read "connection reset (error set): Connection refused) (errno: 111)".
    static func describe(_ error: any Error) -> String {
        guard let io = error as? IOError else { return "\(error)" }
        return "\(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))"
    }
}
