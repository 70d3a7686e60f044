import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RelayCore

/// What one HTTP attempt to a subscriber came to.
struct SendResult: Sendable {
    var statusCode: Int?
    var error: String?
    var duration: Duration
    var responseExcerpt: String?
    var retryAfter: String?
    /// The first `readLimit` bytes of the answer.
    var responseBody: [UInt8] = []
}

/// Posts signed events to subscribers: Standard Webhooks headers, the per-attempt timeout, no
/// redirects, the egress guard before every request, at most 1 KiB of the answer kept.
struct WebhookSender: Sendable {
    let client: HTTPClient
    let timeout: Duration
    let egress: EgressGuard

    static let excerptLimit = 1024

    /// The answer's start as text for people (the admin API, the dashboard): invalid UTF-8 and
    /// NUL, which PostgreSQL's text refuses, become U+FFFD. A subscriber answering `ok\0` made
    /// its attempt unrecordable there, and its delivery was sent again and again.
    static func readable(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\u{0}", with: "\u{FFFD}")
    }

    /// Posts one signed event. `timeout` overrides the per-attempt timeout (replies use what is left
    /// of WeChat's window); `readLimit` is how much of the answer is kept.
    func send(url: String, eventId: String, body: String, secrets: [String], at now: Date,
              timeout: Duration? = nil, readLimit: Int = excerptLimit) async -> SendResult {
        let timeout = timeout ?? self.timeout
        let started = ContinuousClock.now
        // One deadline for the whole attempt, DNS and the answer's body included (see
        // `HTTPClientResponse.body(upTo:pastLimit:by:)`).
        let deadline = started + timeout
        let destination: EgressGuard.Destination
        do {
            destination = try await egress.destination(url, by: deadline)
        } catch .lookupTimedOut(let host) {
            return SendResult(error: "timed out after \(timeout) resolving \(host)", duration: ContinuousClock.now - started)
        } catch {
            return SendResult(error: "refused: \(error)", duration: ContinuousClock.now - started)
        }
        let timestamp = Int(now.timeIntervalSince1970)
        let bytes = ByteBuffer(string: body)
        var request = HTTPClientRequest(url: destination.url)
        request.method = .POST
        if let host = destination.hostHeader { request.headers.add(name: "Host", value: host) }
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "wechat-relay")
        request.headers.add(name: "webhook-id", value: eventId)
        request.headers.add(name: "webhook-timestamp", value: String(timestamp))
        request.headers.add(name: "webhook-signature", value: bytes.withUnsafeReadableBytes {
            WebhookSigner.header(secrets: secrets, id: eventId, timestamp: timestamp, body: $0)
        })
        request.body = .bytes(bytes)
        do {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw HTTPClientError.deadlineExceeded }
            let response = try await client.execute(request, timeout: .nanoseconds(left.nanoseconds))
            let kept = Array(try await response.body(upTo: readLimit, pastLimit: .drop, by: deadline).readableBytesView)
            let excerpt = kept.prefix(Self.excerptLimit)
            return SendResult(statusCode: Int(response.status.code), duration: ContinuousClock.now - started,
                              responseExcerpt: excerpt.isEmpty ? nil : Self.readable(excerpt),
                              retryAfter: response.headers.first(name: "Retry-After"), responseBody: kept)
        } catch where error is AnswerTimedOut || [.deadlineExceeded, .readTimeout, .connectTimeout].contains(error as? HTTPClientError) {
            return SendResult(error: "timed out after \(timeout)", duration: ContinuousClock.now - started)
        } catch {
            return SendResult(error: OutboundError.describe(error), duration: ContinuousClock.now - started)
        }
    }
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
    var milliseconds: Int { Int(nanoseconds / 1_000_000) }
}
