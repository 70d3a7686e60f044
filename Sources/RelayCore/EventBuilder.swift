import Crypto
import Foundation
import WeChatCrypto
import WeChatXML

/// Turns a verified push into what intake commits: the event (type, appid, lossless data, dedup
/// key) and, for `component_verify_ticket`, the ticket.
public enum EventBuilder {
    /// Builds the intake record. `storeTicketEvent` says whether any subscription asked for
    /// `component.verify_ticket` explicitly; otherwise a ticket push stores only the ticket.
    public static func record(for push: VerifiedPush, id: String, storeTicketEvent: Bool) -> IntakeRecord {
        let root = push.root
        let type = eventType(of: root)
        let appid = eventAppid(of: root, push: push)
        let event = RelayEvent(
            id: id, type: type, appid: appid, componentAppid: push.componentAppid, receivedAt: push.receivedAt,
            dataJSON: root.losslessJSONText, dedupKey: dedupKey(root: root, plaintext: push.plaintext),
            fromUser: root.childText("FromUserName"))
        guard type == EventType.verifyTicket else { return IntakeRecord(event: event, ticket: nil) }
        let ticket = root.childText("ComponentVerifyTicket").flatMap { value -> ComponentTicket? in
            guard let component = push.componentAppid, !value.isEmpty else { return nil }
            return ComponentTicket(componentAppid: component, ticket: value,
                                   createTime: Int64(root.childText("CreateTime") ?? "") ?? 0, receivedAt: push.receivedAt)
        }
        return IntakeRecord(event: storeTicketEvent ? event : nil, ticket: ticket)
    }

    /// `message.<MsgType>`, `event.<Event>`, `authorizer.<InfoType>` or `component.verify_ticket`,
    /// lower-cased so subscription globs match however WeChat capitalised the name.
    public static func eventType(of root: XMLNode) -> String {
        if let infoType = nonEmpty(root.childText("InfoType")) {
            return infoType == "component_verify_ticket" ? EventType.verifyTicket : "authorizer." + infoType.lowercased()
        }
        guard let msgType = nonEmpty(root.childText("MsgType"))?.lowercased() else { return "message.unknown" }
        if msgType == "event" {
            return "event." + (nonEmpty(root.childText("Event"))?.lowercased() ?? "unknown")
        }
        return "message." + msgType
    }

    /// The account the event is about: the callback path's AppID; for authorization events the
    /// authorizer's AppID where there is one, else the component's.
    static func eventAppid(of root: XMLNode, push: VerifiedPush) -> String {
        if let path = push.pathAppid { return path }
        return nonEmpty(root.childText("AuthorizerAppid")) ?? nonEmpty(root.childText("appid"))
            ?? push.componentAppid ?? nonEmpty(root.childText("AppId")) ?? "unknown"
    }

    /// WeChat's `MsgId` when the push has one; otherwise a hash of the whole decrypted XML, which
    /// a retry repeats exactly while two distinct events in the same second do not.
    public static func dedupKey(root: XMLNode, plaintext: [UInt8]) -> String {
        if let msgId = nonEmpty(root.childText("MsgId")) { return "msg:" + msgId }
        // One grant is one event, whether it arrives as WeChat's push or from the onboarding callback.
        if ["authorized", "updateauthorized"].contains(root.childText("InfoType") ?? ""),
           let code = nonEmpty(root.childText("AuthorizationCode")) {
            return grantKey(code: code)
        }
        let digest = SHA256.hash(data: plaintext)
        return "sha256:" + Hex.encode(digest)
    }

    /// The dedup key of the `authorizer.authorized` event of one authorization code.
    public static func grantKey(code: String) -> String { "grant:" + code }

    private static func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }
}

/// Event type names the relay itself relies on.
public enum EventType {
    public static let verifyTicket = "component.verify_ticket"
    public static let ping = "relay.ping"
}
