import Foundation
import Logging
import RelayCore
import WeChatCrypto
import WeChatXML

/// Answers a push to `/wechat/{appid}/callback` after it is stored: the release test's built-in
/// answers, or the AppID's reply endpoint called within `reply.deadline` (counted from the push's
/// arrival), its JSON turned into reply XML, sealed for the account and signed. Anything else —
/// no endpoint, 204, empty body, non-2xx, bad JSON, an unknown `MsgType`, the deadline — answers
/// `success`, so WeChat never shows its error banner because of the relay.
struct ReplyService: Sendable {
    let registry: SubscriptionRegistry
    let sender: WebhookSender
    let deadline: Duration
    let releaseTest: ReleaseTest
    let worker: ReleaseTestWorker
    let clock: any RelayClock
    let metrics: RelayMetrics
    let logger: Logger
    /// A bot that is down fails every push: one line a second for each cause.
    let throttle: LogThrottle

    /// What to answer WeChat: the body and its content type.
    struct Answer: Sendable {
        let body: String
        let contentType: String
        static let success = Answer(body: "success", contentType: "text/plain; charset=utf-8")
    }

    func answer(_ push: VerifiedPush, event: RelayEvent, arrivedAt: ContinuousClock.Instant) async -> Answer {
        let root = push.root
        let user = root.childText("FromUserName") ?? ""
        let account = root.childText("ToUserName") ?? ""
        if let action = releaseTest.action(appid: event.appid, toUserName: account, msgType: root.childText("MsgType"),
                                           content: root.childText("Content"), event: root.childText("Event")) {
            metrics.reply(outcome: "release_test", duration: ContinuousClock.now - arrivedAt)
            switch action {
            case .replyText(let text):
                return seal(PassiveReply.text(text, user: user, account: account, createTime: now), for: push)
            case .queryAuthCode(let code):
                if let component = push.componentAppid { worker.submit(.init(code: code, user: user, componentAppid: component)) }
                return Answer(body: "", contentType: "text/plain; charset=utf-8")
            }
        }
        guard let endpoint = registry.all.first(where: {
            $0.reply && $0.status == .enabled && $0.matches(type: event.type, appid: event.appid)
        }) else { return .success }
        let remaining = deadline - (ContinuousClock.now - arrivedAt)
        guard remaining > .milliseconds(10) else { return noReply("deadline", arrivedAt, event) }
        let result = await sender.send(url: endpoint.url, eventId: event.id, body: event.envelopeJSON,
                                       secrets: endpoint.signingSecrets(at: clock.now()), at: clock.now(),
                                       timeout: remaining, readLimit: 256 * 1024)
        guard let status = result.statusCode else {
            return noReply(result.error?.contains("timed out") == true ? "deadline" : "unreachable", arrivedAt, event, detail: result.error)
        }
        guard (200..<300).contains(status) else { return noReply("http_\(status / 100)xx", arrivedAt, event) }
        guard status != 204, !result.responseBody.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) else {
            return noReply("no_reply", arrivedAt, event)
        }
        do {
            let reply = try PassiveReply.xml(fromJSON: result.responseBody, user: user, account: account, createTime: now,
                                             inReplyToEvent: root.childText("MsgType") == "event")
            if let warning = reply.warning {
                logger.warning("reply may be refused by WeChat", metadata: ["event_id": .string(event.id), "reason": .string(warning)])
            }
            metrics.reply(outcome: "replied", duration: ContinuousClock.now - arrivedAt)
            return seal(reply.xml, for: push)
        } catch {
            return noReply(error.cause, arrivedAt, event, detail: error.description)
        }
    }

    private var now: Int { Int(clock.now().timeIntervalSince1970) }

    /// Encrypted accounts always get encrypted replies; plaintext-mode accounts get plain XML.
    private func seal(_ xml: String, for push: VerifiedPush) -> Answer {
        guard let crypto = push.replyCrypto else { return Answer(body: xml, contentType: "application/xml; charset=utf-8") }
        let sealed = crypto.seal(xml, timestamp: String(now), nonce: PushComposer.nonce())
        let envelope = ReplyEnvelope(encrypt: sealed.encrypt, msgSignature: sealed.msgSignature, timestamp: sealed.timestamp,
                                     nonce: sealed.nonce)
        return Answer(body: envelope.render(), contentType: "application/xml; charset=utf-8")
    }

    private func noReply(_ cause: String, _ arrivedAt: ContinuousClock.Instant, _ event: RelayEvent, detail: String? = nil) -> Answer {
        metrics.reply(outcome: cause, duration: ContinuousClock.now - arrivedAt)
        let metadata: Logger.Metadata = ["event_id": .string(event.id), "cause": .string(cause), "detail": .string(detail ?? "-")]
        if cause == "no_reply" {
            // The bot chose not to reply (204 or an empty body): nothing is wrong.
            logger.debug("no passive reply; answered success", metadata: metadata)
        } else {
            throttle.log("no passive reply \(cause)", .notice, "no passive reply; answered success", metadata, to: logger)
        }
        return .success
    }
}
