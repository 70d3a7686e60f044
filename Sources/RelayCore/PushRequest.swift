import Foundation

/// Which WeChat-facing URL a push arrived on.
public enum PushEndpoint: String, Sendable {
    /// The authorization-event URL (`/wechat/component`).
    case component
    /// The message-and-event URL (`/wechat/{appid}/callback`).
    case callback
}

/// The query parameters WeChat sends with pushes and URL checks. Values are percent-decoded
/// without turning `+` into a space: `echostr` is base64 and `+` is one of its characters.
public struct PushQuery: Sendable, Equatable {
    public var timestamp: String?
    public var nonce: String?
    public var signature: String?
    public var msgSignature: String?
    public var encryptType: String?
    public var echostr: String?

    public init(timestamp: String? = nil, nonce: String? = nil, signature: String? = nil,
                msgSignature: String? = nil, encryptType: String? = nil, echostr: String? = nil) {
        self.timestamp = timestamp
        self.nonce = nonce
        self.signature = signature
        self.msgSignature = msgSignature
        self.encryptType = encryptType
        self.echostr = echostr
    }

    /// Parses a raw query string (`a=1&b=2`).
    public init(rawQuery: String?) {
        self.init()
        guard var rawQuery else { return }
        // On the contiguous bytes: splitting Characters (grapheme breaking), and even UTF8View
        // slicing, made this parse a noticeable share of the intake handler's time.
        rawQuery.withUTF8 { bytes in
            var start = 0
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.count
                let equals = bytes[start..<end].firstIndex(of: UInt8(ascii: "=")) ?? end
                let name = UnsafeBufferPointer(rebasing: bytes[start..<equals])
                func value() -> String {
                    let raw = equals < end ? String(decoding: bytes[(equals + 1)..<end], as: UTF8.self) : ""
                    // Foundation's decoding is slow and WeChat's values are almost always plain.
                    return raw.utf8.contains(UInt8(ascii: "%")) ? raw.removingPercentEncoding ?? raw : raw
                }
                switch name {
                case _ where name.elementsEqual("timestamp".utf8): timestamp = value()
                case _ where name.elementsEqual("nonce".utf8): nonce = value()
                case _ where name.elementsEqual("signature".utf8): signature = value()
                case _ where name.elementsEqual("msg_signature".utf8): msgSignature = value()
                case _ where name.elementsEqual("encrypt_type".utf8): encryptType = value()
                case _ where name.elementsEqual("echostr".utf8): echostr = value()
                default: break
                }
                start = end + 1
            }
        }
    }

    /// The query string form (used when composing pushes).
    public var rawQuery: String {
        var parts: [String] = []
        func add(_ name: String, _ value: String?) {
            guard let value else { return }
            let encoded = value.addingPercentEncoding(withAllowedCharacters: .wechatQueryValue) ?? value
            parts.append("\(name)=\(encoded)")
        }
        add("signature", signature)
        add("timestamp", timestamp)
        add("nonce", nonce)
        add("encrypt_type", encryptType)
        add("msg_signature", msgSignature)
        add("echostr", echostr)
        return parts.joined(separator: "&")
    }
}

extension CharacterSet {
    /// Unreserved characters only, so base64's `+`, `/` and `=` are always percent-encoded.
    static let wechatQueryValue = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
}
