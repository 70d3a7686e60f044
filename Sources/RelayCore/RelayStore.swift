import Foundation

/// Durable state of the relay. Two implementations: SQLite (one node) and PostgreSQL (several
/// nodes). Nothing backend-specific crosses this protocol.
public protocol RelayStore: Sendable {
    /// Creates or upgrades the schema.
    func migrate() async throws
    /// Throws when the store cannot be reached (readiness).
    func ping() async throws
    /// Commits everything one push writes, atomically and durably, and says what happened.
    /// Returning means the data is on disk: only then may WeChat be told `success`.
    func commit(_ record: IntakeRecord) async throws -> IntakeOutcome
    /// One stored event.
    func event(id: String) async throws -> RelayEvent?
    /// Stored events, newest first, filtered and paginated by `query`.
    func events(_ query: EventQuery) async throws -> [RelayEvent]
    /// The newest ticket of a component.
    func ticket(componentAppid: String) async throws -> ComponentTicket?
    /// Deletes events received before `cutoff`; returns how many.
    func purgeEvents(before cutoff: Date) async throws -> Int
    /// Releases connections.
    func close() async throws
}

/// A filter over stored events. `before` is a pagination cursor: an event id.
public struct EventQuery: Sendable, Equatable {
    public var appid: String?
    public var type: String?
    public var before: String?
    public var limit: Int

    public init(appid: String? = nil, type: String? = nil, before: String? = nil, limit: Int = 50) {
        self.appid = appid
        self.type = type
        self.before = before
        self.limit = limit
    }
}

/// A store failure that is not the caller's fault (a 5xx: WeChat should retry).
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case unavailable, overloaded, corrupt }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
