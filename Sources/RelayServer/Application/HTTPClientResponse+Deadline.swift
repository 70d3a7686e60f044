import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// An answer read whole by a deadline: AsyncHTTPClient's own deadline covers the request and the
/// answer's head only, so a peer that sent its head and then trickled (or stalled) its body held
/// the caller — a delivery, a passive reply, a token refresh under its lock — as long as it liked.
struct AnswerTimedOut: Error, CustomStringConvertible {
    var description: String { "the answer's body did not arrive in time" }
}

extension HTTPClientResponse {
    enum PastLimit {
        /// Read the rest and drop it, so the connection can be reused (a subscriber's long answer).
        case drop
        /// Fail with `NIOTooManyBytesError`, as `collect(upTo:)` does.
        case fail
    }

    /// The body's first `limit` bytes, the whole body read by `deadline`, else `AnswerTimedOut`
    /// (reading stops: the request is cancelled, its connection closed). An answer without a body
    /// (204, 304, `Content-Length: 0`: most webhook answers) has nothing to wait for, and no
    /// second task is started for it.
    func body(upTo limit: Int, pastLimit: PastLimit, by deadline: ContinuousClock.Instant) async throws -> ByteBuffer {
        if status == .noContent || status == .notModified || headers.first(name: "Content-Length") == "0" {
            for try await _ in body {}
            return ByteBuffer()
        }
        let body = self.body
        return try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask {
                var kept = ByteBuffer()
                for try await var chunk in body {
                    let room = limit - kept.readableBytes
                    if chunk.readableBytes > room, case .fail = pastLimit { throw NIOTooManyBytesError(maxBytes: limit) }
                    if let start = chunk.readSlice(length: min(room, chunk.readableBytes)) { kept.writeImmutableBuffer(start) }
                }
                return kept
            }
            group.addTask {
                try await Task.sleep(until: deadline)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let kept = first else { throw AnswerTimedOut() }
            return kept
        }
    }
}
