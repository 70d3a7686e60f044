import Foundation
import WeChatXML

/// A bot's answer (JSON with WeChat's reply field names, no addressing) turned into the passive
/// reply XML WeChat expects, addressed back to the user: To/From swapped, `CreateTime` now.
public enum PassiveReply {
    public enum Problem: Error, Equatable, CustomStringConvertible {
        case notJSON
        case unknownType(String)
        case missing(String)

        /// The `cause` label of `relay_replies_total`.
        public var cause: String {
            switch self {
            case .notJSON: "invalid_json"
            case .unknownType: "unknown_msgtype"
            case .missing: "incomplete"
            }
        }

        public var description: String {
            switch self {
            case .notJSON: "the answer is not a JSON object"
            case .unknownType(let type): "unknown MsgType \(type.prefix(40))"
            case .missing(let field): "the answer has no \(field)"
            }
        }
    }

    /// The reply XML, and a warning when WeChat will likely refuse it (too many articles).
    public static func xml(fromJSON body: [UInt8], user: String, account: String, createTime: Int,
                           inReplyToEvent: Bool) throws(Problem) -> (xml: String, warning: String?) {
        guard let parsed = try? JSONSerialization.jsonObject(with: Data(body)), let answer = parsed as? [String: Any] else {
            throw .notJSON
        }
        guard let type = answer["MsgType"] as? String, !type.isEmpty else { throw .missing("MsgType") }
        var warning: String?
        var writer = XMLWriter()
        var failure: Problem?
        writer.element("xml") { x in
            x.text("ToUserName", user)
            x.text("FromUserName", account)
            x.number("CreateTime", createTime)
            x.text("MsgType", type)
            do throws(Problem) {
                switch type {
                case "text":
                    x.text("Content", try string(answer, "Content"))
                case "image", "voice":
                    let key = type == "image" ? "Image" : "Voice"
                    guard let media = try object(answer, key)["MediaId"] as? String, !media.isEmpty else { throw .missing("\(key).MediaId") }
                    x.element(key) { $0.text("MediaId", media) }
                case "video":
                    let video = try object(answer, "Video")
                    guard let media = video["MediaId"] as? String, !media.isEmpty else { throw .missing("Video.MediaId") }
                    x.element("Video") { v in
                        v.text("MediaId", media)
                        for field in ["Title", "Description"] { if let value = video[field] as? String { v.text(field, value) } }
                    }
                case "music":
                    let music = try object(answer, "Music")
                    guard let thumb = music["ThumbMediaId"] as? String, !thumb.isEmpty else { throw .missing("Music.ThumbMediaId") }
                    x.element("Music") { m in
                        for field in ["Title", "Description", "MusicUrl", "HQMusicUrl"] { if let value = music[field] as? String { m.text(field, value) } }
                        m.text("ThumbMediaId", thumb)
                    }
                case "news":
                    guard let articles = answer["Articles"] as? [[String: Any]], !articles.isEmpty else { throw .missing("Articles") }
                    let limit = inReplyToEvent ? 8 : 1
                    if articles.count > limit {
                        warning = "\(articles.count) articles; WeChat allows \(limit) in a reply to \(inReplyToEvent ? "an event" : "a user message")"
                    }
                    x.number("ArticleCount", articles.count)
                    x.element("Articles") { list in
                        for article in articles {
                            list.element("item") { item in
                                for field in ["Title", "Description", "PicUrl", "Url"] { item.text(field, article[field] as? String ?? "") }
                            }
                        }
                    }
                case "transfer_customer_service":
                    if let account = (answer["TransInfo"] as? [String: Any])?["KfAccount"] as? String {
                        x.element("TransInfo") { $0.text("KfAccount", account) }
                    }
                default:
                    throw .unknownType(type)
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return (writer.output, warning)
    }

    /// A text reply (the release test's answers).
    public static func text(_ content: String, user: String, account: String, createTime: Int) -> String {
        var writer = XMLWriter()
        writer.element("xml") { x in
            x.text("ToUserName", user)
            x.text("FromUserName", account)
            x.number("CreateTime", createTime)
            x.text("MsgType", "text")
            x.text("Content", content)
        }
        return writer.output
    }

    private static func string(_ answer: [String: Any], _ key: String) throws(Problem) -> String {
        guard let value = answer[key] as? String else { throw .missing(key) }
        return value
    }

    private static func object(_ answer: [String: Any], _ key: String) throws(Problem) -> [String: Any] {
        guard let value = answer[key] as? [String: Any] else { throw .missing(key) }
        return value
    }
}
