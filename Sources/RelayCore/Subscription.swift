import Foundation

/// A subscriber: where events go, which ones, and how they are signed.
public struct Subscription: Sendable, Equatable {
    public enum Status: String, Sendable { case enabled, disabled }
    public enum Source: String, Sendable { case config, api }

    public var id: String
    public var url: String
    /// AppIDs, or `*` for all.
    public var appids: [String]
    /// Event-type globs (`*` any run of characters, `?` one character).
    public var events: [String]
    public var reply: Bool
    public var ordered: Bool
    public var status: Status
    public var source: Source
    public var createdAt: Date
    /// `whsec_…`: signs every request.
    public var secret: String
    /// The secret before the last rotation, still signing alongside until `previousSecretExpiresAt`.
    public var previousSecret: String?
    public var previousSecretExpiresAt: Date?

    public init(id: String, url: String, appids: [String] = ["*"], events: [String] = ["*"], reply: Bool = false,
                ordered: Bool = false, status: Status = .enabled, source: Source = .api, createdAt: Date, secret: String,
                previousSecret: String? = nil, previousSecretExpiresAt: Date? = nil) {
        self.id = id
        self.url = url
        self.appids = appids
        self.events = events
        self.reply = reply
        self.ordered = ordered
        self.status = status
        self.source = source
        self.createdAt = createdAt
        self.secret = secret
        self.previousSecret = previousSecret
        self.previousSecretExpiresAt = previousSecretExpiresAt
    }

    /// Whether an event of `type` about `appid` goes to this subscription. The ticket is a
    /// credential: only a subscription that names `component.verify_ticket` exactly receives it.
    public func matches(type: String, appid: String) -> Bool {
        guard appids.contains("*") || appids.contains(appid) else { return false }
        if type == EventType.verifyTicket { return events.contains(EventType.verifyTicket) }
        return events.contains { Glob.matches(pattern: $0, type) }
    }

    /// Whether ordinary fan-out delivers to it (enabled, and not a reply endpoint).
    public var receivesDeliveries: Bool { status == .enabled && !reply }

    /// The secrets that sign a request sent at `now`: the current one, plus the previous one
    /// during the 24 hours after a rotation.
    public func signingSecrets(at now: Date) -> [String] {
        guard let previousSecret, let expiry = previousSecretExpiresAt, expiry > now else { return [secret] }
        return [secret, previousSecret]
    }
}

/// Shell-style globs over event types.
public enum Glob {
    public static func matches(pattern: String, _ text: String) -> Bool {
        matches(Array(pattern.utf8)[...], Array(text.utf8)[...])
    }

    private static func matches(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
        var p = pattern.startIndex, t = text.startIndex
        var starP: Int?, starT = 0
        while t < text.endIndex {
            if p < pattern.endIndex, pattern[p] == UInt8(ascii: "?") || pattern[p] == text[t] {
                p += 1
                t += 1
            } else if p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") {
                starP = p
                starT = t
                p += 1
            } else if let star = starP {
                p = star + 1
                starT += 1
                t = starT
            } else {
                return false
            }
        }
        while p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.endIndex
    }
}

/// What a subscription's AppIDs and event globs may be, checked where they come in (relay.yml and
/// the admin API): a typo such as an empty string or a trailing space would otherwise make a
/// subscription that silently matches nothing.
public enum SubscriptionFilter {
    public struct Problem: Error, Equatable, Sendable {
        /// `appids` or `events`, with the offending item's position unless the list itself is
        /// wrong (empty): `appids[1]`.
        public let path: String
        public let message: String

        init(_ field: String, _ index: Int?, _ message: String) {
            path = field + (index.map { "[\($0)]" } ?? "")
            self.message = message
        }
    }

    /// `*` or AppIDs: letters and digits, at most 32.
    public static func check(appids: [String]) throws(Problem) {
        guard !appids.isEmpty else { throw Problem("appids", nil, "list at least one AppID, or * for all") }
        for (index, appid) in appids.enumerated() where appid != "*" {
            guard InputRules.isAppID(appid) else {
                throw Problem("appids", index, "\(quoted(appid)) is not an AppID (letters and digits, at most 32, such as wx1234567890abcdef) or *")
            }
        }
    }

    /// Event-type globs: 1 to 128 characters, no spaces or control characters.
    public static func check(events: [String]) throws(Problem) {
        guard !events.isEmpty else { throw Problem("events", nil, "list at least one event type or glob, or * for all") }
        for (index, glob) in events.enumerated() {
            guard !glob.isEmpty, glob.count <= 128, !glob.unicodeScalars.contains(where: { $0.properties.isWhitespace || InputRules.isControl($0) }) else {
                throw Problem("events", index, "\(quoted(glob)) is not an event type or glob (such as message.* or event.subscribe; no spaces)")
            }
        }
    }

    private static func quoted(_ text: String) -> String { "\"" + text.unicodeScalars.map { $0.escaped(asASCII: true) }.joined() + "\"" }
}
