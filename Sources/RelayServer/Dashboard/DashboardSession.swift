import Crypto
import Foundation
import WeChatCrypto

/// The dashboard's sign-in cookie: its expiry and an HMAC of it keyed by the admin token. Nothing
/// is kept on the server, so a session survives restarts and works on every node, and changing
/// `admin.token` ends every session at once.
struct DashboardSession: Sendable {
    static let cookieName = "relay_session"
    static let lifetime: TimeInterval = 12 * 3600

    let adminToken: String
    /// `Secure` on the cookie when the relay is reached over https.
    let secure: Bool

    /// A cookie value valid until `now + lifetime`.
    func issue(now: Date) -> String {
        let expiry = String(Int(now.timeIntervalSince1970 + Self.lifetime))
        return expiry + "." + mac(expiry)
    }

    func isValid(_ value: String, now: Date) -> Bool {
        let parts = value.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let expiry = Int(parts[0]), Double(expiry) > now.timeIntervalSince1970 else { return false }
        return constantTimeEquals(Array(mac(String(parts[0])).utf8), Array(parts[1].utf8))
    }

    func setCookie(_ value: String) -> String {
        "\(Self.cookieName)=\(value); Path=/dashboard; Max-Age=\(Int(Self.lifetime)); HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    var clearCookie: String {
        "\(Self.cookieName)=; Path=/dashboard; Max-Age=0; HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    /// The session cookie's value in a `Cookie` header, if there is one.
    static func value(inCookieHeader header: String?) -> String? {
        guard let header else { return nil }
        for pair in header.split(separator: ";") {
            let trimmed = pair.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix(cookieName + "=") { return String(trimmed.dropFirst(cookieName.count + 1)) }
        }
        return nil
    }

    private func mac(_ expiry: String) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array(("dashboard-session:" + expiry).utf8), using: SymmetricKey(data: Array(adminToken.utf8)))
        return Hex.encode(code)
    }
}
