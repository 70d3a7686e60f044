import Foundation
import RelayCore
import Testing
import WeChatXML

@Suite struct PassiveReplyTests {
    func reply(_ json: String, event: Bool = false) throws -> (XMLNode, String?) {
        let result = try PassiveReply.xml(fromJSON: Array(json.utf8), user: "oU", account: "gh_a", createTime: 1_700_000_000, inReplyToEvent: event)
        return (try XMLTreeParser.parse(Array(result.xml.utf8)), result.warning)
    }

    @Test func voiceVideoMusicAndTransfer() throws {
        #expect(try reply(#"{"MsgType": "voice", "Voice": {"MediaId": "v1"}}"#).0.child("Voice")?.childText("MediaId") == "v1")
        let video = try reply(#"{"MsgType": "video", "Video": {"MediaId": "m", "Title": "t"}}"#).0.child("Video")
        #expect(video?.childText("MediaId") == "m" && video?.childText("Title") == "t" && video?.child("Description") == nil)
        let music = try reply(#"{"MsgType": "music", "Music": {"Title": "song", "MusicUrl": "https://m", "ThumbMediaId": "th"}}"#).0.child("Music")
        #expect(music?.childText("ThumbMediaId") == "th" && music?.childText("MusicUrl") == "https://m")
        let transfer = try reply(#"{"MsgType": "transfer_customer_service", "TransInfo": {"KfAccount": "kf@test"}}"#).0
        #expect(transfer.childText("MsgType") == "transfer_customer_service")
        #expect(transfer.child("TransInfo")?.childText("KfAccount") == "kf@test")
        #expect(try reply(#"{"MsgType": "transfer_customer_service"}"#).0.child("TransInfo") == nil)
        let text = try reply(#"{"MsgType": "text", "Content": "x"}"#).0
        #expect(text.children.map(\.name) == ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content"])
        #expect(text.childText("CreateTime") == "1700000000")
    }

    @Test func articleLimitsWarn() throws {
        let two = #"{"MsgType": "news", "Articles": [{"Title": "a"}, {"Title": "b"}]}"#
        #expect(try reply(two).1?.contains("allows 1") == true)
        #expect(try reply(two, event: true).1 == nil)
        let nine = #"{"MsgType": "news", "Articles": [\#(Array(repeating: #"{"Title": "x"}"#, count: 9).joined(separator: ","))]}"#
        #expect(try reply(nine, event: true).1?.contains("allows 8") == true)
    }

    @Test func incompleteAnswersAreSpecific() {
        #expect(throws: PassiveReply.Problem.missing("Image.MediaId")) { try reply(#"{"MsgType": "image", "Image": {}}"#) }
        #expect(throws: PassiveReply.Problem.missing("Music.ThumbMediaId")) { try reply(#"{"MsgType": "music", "Music": {}}"#) }
        #expect(throws: PassiveReply.Problem.missing("Articles")) { try reply(#"{"MsgType": "news", "Articles": []}"#) }
        #expect(throws: PassiveReply.Problem.notJSON) { try reply("[1, 2]") }
        #expect(throws: PassiveReply.Problem.unknownType("file")) { try reply(#"{"MsgType": "file"}"#) }
    }
}
