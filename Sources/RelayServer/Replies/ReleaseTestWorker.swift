import Foundation
import Logging
import RelayCore
import ServiceLifecycle
import WeChatXML

/// The release test's `QUERY_AUTH_CODE` case, done after WeChat got its empty answer: exchange the
/// code, then send `<code>_from_api` to the user through the customer-service API with the test
/// authorizer's token, retried a few times. Jobs wait in a bounded buffer.
final class ReleaseTestWorker: Service {
    struct Job: Sendable {
        let code: String
        let user: String
        let componentAppid: String
    }

    let authorization: AuthorizationService
    let logger: Logger
    let onSent: @Sendable (String) -> Void
    private let jobs: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation

    init(authorization: AuthorizationService, logger: Logger, onSent: @escaping @Sendable (String) -> Void = { _ in }) {
        self.authorization = authorization
        self.logger = logger
        self.onSent = onSent
        (jobs, continuation) = AsyncStream.makeStream(of: Job.self, bufferingPolicy: .bufferingOldest(64))
    }

    func submit(_ job: Job) {
        if case .dropped = continuation.yield(job) {
            logger.error("release test: too many QUERY_AUTH_CODE jobs waiting; dropped one")
        }
    }

    func run() async throws {
        for await job in jobs.cancelOnGracefulShutdown() { await process(job) }
    }

    private func process(_ job: Job) async {
        let content = job.code + "_from_api"
        for attempt in 1...4 {
            do {
                let authorizer = try await authorization.complete(code: job.code, componentAppid: job.componentAppid)
                let token = try await authorization.tokens.authorizerToken(authorizer.appid, force: attempt > 1)
                struct Answer: Decodable { let errcode: Int? }
                _ = try await authorization.api.call(
                    "message_custom_send", path: "/cgi-bin/message/custom/send", query: [("access_token", token.token)],
                    body: .object([("touser", .string(job.user)), ("msgtype", .string("text")),
                                   ("text", .object([("content", .string(content))]))]), as: Answer.self)
                logger.info("release test: customer-service answer sent", metadata: ["authorizer_appid": .string(authorizer.appid)])
                onSent(content)
                return
            } catch {
                logger.warning("release test: customer-service answer failed", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(250 * attempt))
            }
        }
    }
}
