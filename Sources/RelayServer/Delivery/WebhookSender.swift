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
        let destination: EgressGuard.Destination
        do {
            destination = try await egress.destination(url)
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
        // One deadline for the whole attempt, DNS included: AsyncHTTPClient's covers the request
        // and the answer's head only, so an answer whose body never ends held its delivery (or a
        // passive reply, past WeChat's 5 s) for as long as the subscriber liked.
        let deadline = started + timeout
        do {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw HTTPClientError.deadlineExceeded }
            let response = try await client.execute(request, timeout: .nanoseconds(left.nanoseconds))
            let kept = try await Self.read(response, keeping: readLimit, until: deadline)
            let excerpt = kept.prefix(Self.excerptLimit)
            return SendResult(statusCode: Int(response.status.code), duration: ContinuousClock.now - started,
                              responseExcerpt: excerpt.isEmpty ? nil : Self.readable(excerpt),
                              retryAfter: response.headers.first(name: "Retry-After"), responseBody: kept)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return SendResult(error: "timed out after \(timeout)", duration: ContinuousClock.now - started)
        } catch is AnswerTimedOut {
            return SendResult(error: "timed out after \(timeout)", duration: ContinuousClock.now - started)
        } catch {
            return SendResult(error: "\(error)", duration: ContinuousClock.now - started)
        }
    }
}

extension WebhookSender {
    private struct AnswerTimedOut: Error {}

    /// The answer's body, whole so the connection can be reused, keeping its first `limit` bytes,
    /// unless `deadline` comes first: then reading stops (the request is cancelled, its connection
    /// closed). An answer without a body (204, `Content-Length: 0`: most webhook answers) has
    /// nothing to wait for, and no second task is started for it.
    fileprivate static func read(_ response: HTTPClientResponse, keeping limit: Int,
                                 until deadline: ContinuousClock.Instant) async throws -> [UInt8] {
        if response.status == .noContent || response.status == .notModified || response.headers.first(name: "Content-Length") == "0" {
            for try await _ in response.body {}
            return []
        }
        return try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            group.addTask {
                var kept: [UInt8] = []
                for try await chunk in response.body where kept.count < limit {
                    kept += chunk.readableBytesView.prefix(limit - kept.count)
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

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
    var milliseconds: Int { Int(nanoseconds / 1_000_000) }
}
