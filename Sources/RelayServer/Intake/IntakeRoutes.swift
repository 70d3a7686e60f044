import Foundation
import Hummingbird
import Logging
import NIOCore
import RelayCore

/// The WeChat-facing URLs: the authorization-event URL, the message-and-event URL and the
/// `echostr` URL checks. Each push is verified, committed, then acknowledged — never the reverse.
struct IntakeRoutes: Sendable {
    let verifier: PushVerifier
    let intake: PushIntake
    let metrics: RelayMetrics
    let maxBodyBytes: Int
    /// Passive replies for the message URL (the event is always stored first).
    let replies: ReplyService
    /// Refused and unstored pushes come at the sender's rate: one line a second for each reason.
    let throttle: LogThrottle

    func register(on router: Router<RelayRequestContext>) {
        router.post("/wechat/component") { request, context in
            await handle(request, context, endpoint: "component") { query, body throws(IntakeRejection) in
                try verifier.verifyComponentPush(query: query, body: body, componentAppid: nil)
            }
        }
        router.post("/wechat/component/{component_appid}") { request, context in
            let appid = context.parameters.get("component_appid")
            return await handle(request, context, endpoint: "component") { query, body throws(IntakeRejection) in
                try verifier.verifyComponentPush(query: query, body: body, componentAppid: appid)
            }
        }
        router.post("/wechat/{appid}/callback") { request, context in
            let appid = context.parameters.get("appid") ?? ""
            return await handle(request, context, endpoint: "callback") { query, body throws(IntakeRejection) in
                try verifier.verifyCallbackPush(appid: appid, query: query, body: body)
            }
        }
        router.get("/wechat/{appid}/callback") { request, context in
            echo(request, context, appid: context.parameters.get("appid"))
        }
        router.get("/wechat/component") { request, context in
            echo(request, context, appid: nil)
        }
    }

    private func handle(
        _ request: Request, _ context: RelayRequestContext, endpoint: String,
        verify: (PushQuery, [UInt8]) throws(IntakeRejection) -> VerifiedPush
    ) async -> Response {
        let started = ContinuousClock.now
        // Metadata goes with each message, not onto the logger: setting it on the logger costs
        // StreamLogHandler a re-render on every request, even when nothing is logged.
        let logger = context.logger
        do {
            let body = try await collectBody(request)
            let push = try verify(PushQuery(rawQuery: request.uri.query), body)
            let (outcome, event) = try await intake.accept(push)
            metrics.push(endpoint: endpoint, outcome: outcome.metricLabel)
            metrics.pushLatency(endpoint: endpoint, ContinuousClock.now - started)
            guard let event else {
                logger.debug("ticket kept", metadata: ["endpoint": .string(endpoint), "component_appid": .string(push.componentAppid ?? "")])
                return PlainText.response(.ok, "success")
            }
            // Debug, as a delivered attempt is: the store keeps every push (`/v1/events`) and the
            // metrics count them, and a line per push at info cost `relay serve` a tenth to a
            // quarter of its CPU per push (StreamLogHandler's formatting and write).
            logger.debug("push accepted", metadata: [
                "endpoint": .string(endpoint), "outcome": .string(outcome.metricLabel), "event_id": .string(event.id), "type": .string(event.type),
                "appid": .string(event.appid),
            ])
            guard push.endpoint == .callback else { return PlainText.response(.ok, "success") }
            // A retry of a stored push is answered for the stored event (same id for the bot).
            let stored = if case .duplicate(let id) = outcome { event.with(id: id) } else { event }
            let answer = await replies.answer(push, event: stored, arrivedAt: started)
            return Response(status: .ok, headers: [.contentType: answer.contentType], body: .init(byteBuffer: ByteBuffer(string: answer.body)))
        } catch let rejection as IntakeRejection {
            metrics.push(endpoint: endpoint, outcome: rejection.metricLabel)
            throttle.log("push refused \(endpoint) \(rejection.metricLabel)", .notice, "push refused",
                         ["endpoint": .string(endpoint), "reason": .string(rejection.description)], to: logger)
            return PlainText.response(.init(code: rejection.status.rawValue), rejection.description)
        } catch {
            // The store failed: nothing was acknowledged, so WeChat's retry will bring it again.
            metrics.push(endpoint: endpoint, outcome: "store_error")
            throttle.log("push not stored \(endpoint)", .error, "push not stored",
                         ["endpoint": .string(endpoint), "error": .string("\(error)")], to: logger)
            return PlainText.response(.serviceUnavailable, "temporarily unable to store the push; retry")
        }
    }

    private func echo(_ request: Request, _ context: RelayRequestContext, appid: String?) -> Response {
        do {
            let answer = try verifier.verifyEcho(appid: appid, query: PushQuery(rawQuery: request.uri.query))
            metrics.push(endpoint: "echo", outcome: "verified")
            return PlainText.response(.ok, answer)
        } catch {
            metrics.push(endpoint: "echo", outcome: error.metricLabel)
            throttle.log("URL check refused \(error.metricLabel)", .notice, "URL check refused", ["reason": .string(error.description)],
                         to: context.logger)
            return PlainText.response(.init(code: error.status.rawValue), error.description)
        }
    }

    /// `collect(upTo:)` stops at the limit whatever the body claims to be, so a declared
    /// Content-Length needs no separate check (looking the header up cost 1.6 µs a push).
    private func collectBody(_ request: Request) async throws(IntakeRejection) -> [UInt8] {
        do {
            let buffer = try await request.body.collect(upTo: maxBodyBytes)
            return Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw .tooLarge(limit: maxBodyBytes)
        } catch {
            throw .malformedBody("the body could not be read")
        }
    }
}
