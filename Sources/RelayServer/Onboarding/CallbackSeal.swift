import Crypto
import Foundation
import WeChatCrypto

/// The relay's own `redirect_uri` carries a seal: an expiry and an HMAC of it with the component
/// and the `return_to`, keyed by the component's appsecret (which every node has). The callback
/// checks the seal before it asks WeChat for anything.
///
/// Why: the callback exchanges whatever `auth_code` it is given (`api_query_auth`, under a store
/// lock), so anyone could spend the component's daily API quota with made-up codes — and once it
/// is spent (45009) no merchant can be onboarded until it resets or is cleared. Now only the links
/// this relay made lead to an exchange. A merchant whose seal is refused is still onboarded: WeChat
/// sends the `authorized` push, and the relay exchanges its code.
struct CallbackSeal: Sendable {
    /// A link's pre-auth code lasts 10 minutes; a merchant may take a while on WeChat's pages.
    static let lifetime: TimeInterval = 2 * 3600
    static let parameter = "seal"

    let appsecret: String

    func issue(component: String, returnTo: String?, now: Date) -> String {
        let expiry = String(Int(now.timeIntervalSince1970 + Self.lifetime))
        return expiry + "." + mac(component: component, returnTo: returnTo, expiry: expiry)
    }

    func isValid(_ value: String?, component: String, returnTo: String?, now: Date) -> Bool {
        guard let parts = value?.split(separator: ".", omittingEmptySubsequences: false), parts.count == 2,
              let expiry = Int(parts[0]), Double(expiry) > now.timeIntervalSince1970 else { return false }
        return constantTimeEquals(Array(mac(component: component, returnTo: returnTo, expiry: String(parts[0])).utf8), Array(parts[1].utf8))
    }

    private func mac(component: String, returnTo: String?, expiry: String) -> String {
        let message = "onboarding-callback:\(component)\n\(expiry)\n\(returnTo ?? "")"
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: Array(appsecret.utf8))))
    }
}
