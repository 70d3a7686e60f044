import Foundation
import WeChatCrypto
import WeChatXML

/// Turns raw pushes into `VerifiedPush`es: signature first (constant time), then the clock-skew
/// window, then decryption with the receiver check, then parsing of the decrypted XML.
public struct PushVerifier: Sendable {
    public let registry: CredentialRegistry
    public let maxClockSkew: TimeInterval
    public let limits: XMLLimits
    let clock: any RelayClock

    public init(registry: CredentialRegistry, maxClockSkew: TimeInterval, limits: XMLLimits, clock: any RelayClock) {
        self.registry = registry
        self.maxClockSkew = maxClockSkew
        self.limits = limits
        self.clock = clock
    }

    /// A push to the authorization-event URL, routed by the path AppID or the envelope's `AppId`.
    public func verifyComponentPush(
        query: PushQuery, body: [UInt8], componentAppid pathAppid: String?
    ) throws(IntakeRejection) -> VerifiedPush {
        let (timestamp, nonce, msgSignature) = try encryptedParameters(query)
        let envelope = try parseEnvelope(body)
        let candidates: [ComponentCredentials]
        if let appid = pathAppid ?? envelope.appId {
            guard let component = registry.component(appid) else { throw .unknownComponent(appid) }
            candidates = [component]
        } else {
            candidates = registry.components
        }
        guard let component = candidates.first(where: {
            $0.crypto.verifyMessageSignature(msgSignature, timestamp: timestamp, nonce: nonce, encrypted: envelope.encrypt)
        }) else { throw .badSignature }
        try checkSkew(timestamp)
        let plaintext = try decrypt(envelope.encrypt, with: component.crypto)
        return VerifiedPush(endpoint: .component, pathAppid: nil, componentAppid: component.appid,
                            plaintext: plaintext, root: try parsePlaintext(plaintext),
                            receivedAt: clock.now(), replyCrypto: component.crypto)
    }

    /// A push to `/wechat/{appid}/callback`: encrypted under the account's own key or any
    /// component's (whichever token verifies), or plaintext for a plaintext-mode account.
    public func verifyCallbackPush(appid: String, query: PushQuery, body: [UInt8]) throws(IntakeRejection) -> VerifiedPush {
        guard isEncrypted(query) else { return try verifyPlaintextPush(appid: appid, query: query, body: body) }
        let (timestamp, nonce, msgSignature) = try encryptedParameters(query)
        let envelope = try parseEnvelope(body)
        let receivers = receivers(for: appid)
        guard !receivers.isEmpty else { throw .unknownAccount(appid) }
        guard let receiver = receivers.first(where: {
            $0.crypto.verifyMessageSignature(msgSignature, timestamp: timestamp, nonce: nonce, encrypted: envelope.encrypt)
        }) else { throw .badSignature }
        try checkSkew(timestamp)
        let plaintext = try decrypt(envelope.encrypt, with: receiver.crypto)
        return VerifiedPush(endpoint: .callback, pathAppid: appid, componentAppid: receiver.componentAppid,
                            plaintext: plaintext, root: try parsePlaintext(plaintext),
                            receivedAt: clock.now(), replyCrypto: receiver.crypto)
    }

    /// A `GET` URL check: returns the body to answer with (the echo, decrypted when it is encrypted).
    public func verifyEcho(appid: String?, query: PushQuery) throws(IntakeRejection) -> String {
        guard let echostr = query.echostr else { throw .missingParameter("echostr") }
        let timestamp = try required(query.timestamp, "timestamp")
        let nonce = try required(query.nonce, "nonce")
        let receivers = appid.map(receivers(for:)) ?? registry.components.map { Receiver(crypto: $0.crypto, componentAppid: $0.appid) }
        if let msgSignature = query.msgSignature {
            guard let receiver = receivers.first(where: {
                $0.crypto.verifyMessageSignature(msgSignature, timestamp: timestamp, nonce: nonce, encrypted: echostr)
            }) else { throw .badSignature }
            try checkSkew(timestamp)
            return String(decoding: try decrypt(echostr, with: receiver.crypto), as: UTF8.self)
        }
        guard let signature = query.signature else { throw .missingParameter("signature") }
        let tokens = receivers.map(\.crypto.token) + (appid.flatMap { registry.account($0) }.map { [$0.token] } ?? [])
        guard tokens.contains(where: { WeChatSignature.verify(signature, parts: [$0, timestamp, nonce]) }) else {
            throw .badSignature
        }
        try checkSkew(timestamp)
        return echostr
    }

    // MARK: - Steps

    private struct Receiver {
        let crypto: MessageCrypto
        let componentAppid: String?
    }

    /// The account's own crypto first (if configured with a key), then every component's.
    private func receivers(for appid: String) -> [Receiver] {
        var result: [Receiver] = []
        if let crypto = registry.account(appid)?.crypto { result.append(Receiver(crypto: crypto, componentAppid: nil)) }
        result += registry.components.map { Receiver(crypto: $0.crypto, componentAppid: $0.appid) }
        return result
    }

    private func verifyPlaintextPush(appid: String, query: PushQuery, body: [UInt8]) throws(IntakeRejection) -> VerifiedPush {
        let timestamp = try required(query.timestamp, "timestamp")
        let nonce = try required(query.nonce, "nonce")
        let signature = try required(query.signature, "signature")
        guard let account = registry.account(appid) else { throw .unknownAccount(appid) }
        guard WeChatSignature.verify(signature, parts: [account.token, timestamp, nonce]) else { throw .badSignature }
        guard account.crypto == nil else { throw .plaintextNotAllowed }
        try checkSkew(timestamp)
        return VerifiedPush(endpoint: .callback, pathAppid: appid, componentAppid: nil, plaintext: body,
                            root: try parsePlaintext(body), receivedAt: clock.now(), replyCrypto: nil)
    }

    private func isEncrypted(_ query: PushQuery) -> Bool {
        query.msgSignature != nil || query.encryptType?.lowercased() == "aes"
    }

    private func encryptedParameters(_ query: PushQuery) throws(IntakeRejection) -> (String, String, String) {
        (try required(query.timestamp, "timestamp"), try required(query.nonce, "nonce"),
         try required(query.msgSignature, "msg_signature"))
    }

    private func required(_ value: String?, _ name: String) throws(IntakeRejection) -> String {
        guard let value, !value.isEmpty else { throw .missingParameter(name) }
        return value
    }

    private func checkSkew(_ timestamp: String) throws(IntakeRejection) {
        guard let seconds = TimeInterval(timestamp), seconds.isFinite else {
            throw .staleTimestamp(offset: nil, allowed: Int(maxClockSkew))
        }
        let offset = seconds - clock.now().timeIntervalSince1970
        guard abs(offset) <= maxClockSkew else {
            throw .staleTimestamp(offset: Int(min(max(offset, -1e15), 1e15)), allowed: Int(maxClockSkew))
        }
    }

    private func parseEnvelope(_ body: [UInt8]) throws(IntakeRejection) -> EncryptedEnvelope {
        do { return try EncryptedEnvelope.parse(body, limits: limits) } catch { throw .malformedBody(error.description) }
    }

    private func parsePlaintext(_ bytes: [UInt8]) throws(IntakeRejection) -> XMLNode {
        do { return try XMLTreeParser.parse(bytes, limits: limits) } catch { throw .malformedBody(error.description) }
    }

    private func decrypt(_ encrypted: String, with crypto: MessageCrypto) throws(IntakeRejection) -> [UInt8] {
        do {
            return try crypto.decrypt(encrypted)
        } catch .receiverMismatch {
            throw .wrongReceiver
        } catch {
            throw .undecryptable(error.description)
        }
    }
}
