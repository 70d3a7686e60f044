import Foundation
import WeChatXML

/// Decrypted push XML as WeChat writes it, for `relay push`, tests and benchmarks.
public enum SamplePushes {
    /// A user's text message to an account (`ToUserName` is the account's `gh_` id).
    public static func text(to account: String, from user: String, content: String, createTime: Int, msgId: String) -> String {
        var xml = XMLWriter()
        xml.element("xml") { x in
            x.text("ToUserName", account)
            x.text("FromUserName", user)
            x.number("CreateTime", createTime)
            x.text("MsgType", "text")
            x.text("Content", content)
            x.bare("MsgId", msgId)
        }
        return xml.output
    }

    /// An event (`subscribe`, `CLICK`, `LOCATION`, …) with optional `EventKey`.
    public static func event(to account: String, from user: String, event: String, eventKey: String? = nil, createTime: Int) -> String {
        var xml = XMLWriter()
        xml.element("xml") { x in
            x.text("ToUserName", account)
            x.text("FromUserName", user)
            x.number("CreateTime", createTime)
            x.text("MsgType", "event")
            x.text("Event", event)
            if let eventKey { x.text("EventKey", eventKey) }
        }
        return xml.output
    }

    /// A `component_verify_ticket` push to the authorization-event URL.
    public static func ticket(component: String, ticket: String, createTime: Int) -> String {
        var xml = XMLWriter()
        xml.element("xml") { x in
            x.text("AppId", component)
            x.number("CreateTime", createTime)
            x.text("InfoType", "component_verify_ticket")
            x.text("ComponentVerifyTicket", ticket)
        }
        return xml.output
    }

    /// An authorization event (`authorized`, `updateauthorized`, `unauthorized`).
    public static func authorization(component: String, infoType: String, authorizer: String, authorizationCode: String? = nil,
                                     createTime: Int) -> String {
        var xml = XMLWriter()
        xml.element("xml") { x in
            x.text("AppId", component)
            x.number("CreateTime", createTime)
            x.text("InfoType", infoType)
            x.text("AuthorizerAppid", authorizer)
            if let authorizationCode {
                x.text("AuthorizationCode", authorizationCode)
                x.number("AuthorizationCodeExpiredTime", createTime + 3600)
            }
        }
        return xml.output
    }
}
