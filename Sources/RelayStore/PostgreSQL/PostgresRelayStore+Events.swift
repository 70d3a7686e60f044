import Foundation
import PostgresNIO
import RelayCore

extension PostgresRelayStore {
    /// False when the event already has a delivery to that subscription (it stays as it is).
    @discardableResult
    static func insertDelivery(_ delivery: PlannedDelivery, eventSeq: Int, eventId: String, at date: Date, on connection: PostgresConnection,
                               logger: Logger) async throws -> Bool {
        !(try await connection.fetch(
            """
            INSERT INTO deliveries (id, event_seq, event_id, subscription_id, status, attempts, next_attempt_at, order_key,
                                    created_at, updated_at)
            VALUES (\(DeliveryID.make(at: date)), \(eventSeq), \(eventId), \(delivery.subscriptionId), 'pending', 0, \(millis(date)),
                    \(delivery.orderKey), \(millis(date)), \(millis(date)))
            ON CONFLICT (event_id, subscription_id) DO NOTHING RETURNING id
            """, logger: logger).isEmpty)
    }

    public func event(id: String) async throws -> RelayEvent? {
        try await fetch("SELECT * FROM events WHERE id = \(id)").first.map(Self.event(from:))
    }

    /// Absent filters are NULL parameters; PostgreSQL plans an unnamed statement with the values
    /// bound, so a NULL filter costs nothing.
    public func events(_ query: EventQuery) async throws -> [RelayEvent] {
        try await fetch(
            """
            SELECT * FROM events
            WHERE (\(query.appid)::text IS NULL OR appid = \(query.appid))
              AND (\(query.type)::text IS NULL OR type = \(query.type))
              AND (\(query.before)::text IS NULL OR seq < (SELECT seq FROM events WHERE id = \(query.before)))
            ORDER BY seq DESC LIMIT \(max(1, min(query.limit, 500)))
            """).map(Self.event(from:))
    }

    public func ticket(componentAppid: String) async throws -> ComponentTicket? {
        guard let row = try await fetch("SELECT * FROM component_tickets WHERE component_appid = \(componentAppid)").first
        else { return nil }
        return ComponentTicket(
            componentAppid: componentAppid, ticket: try sealer.open(try row["ticket"].decode(String.self)),
            createTime: Int64(try row["create_time"].decode(Int.self)), receivedAt: Self.date(try row["received_at"].decode(Int.self)))
    }

    /// Counted in the database; a batch gets a minute rather than the usual seconds (its
    /// cascade reaches every delivery and attempt of its events).
    public func purgeEvents(before cutoff: Date, limit: Int) async throws -> Int {
        try await fetch(
            """
            WITH gone AS (
                DELETE FROM events WHERE seq IN (
                    SELECT seq FROM events WHERE received_at < \(Self.millis(cutoff)) ORDER BY received_at LIMIT \(max(1, limit)))
                RETURNING 1)
            SELECT COUNT(*) AS n FROM gone
            """,
            timeout: .seconds(60)
        ).first?["n"].decode(Int.self) ?? 0
    }

    /// An event's columns, as `event(from:)` reads them, of the table named `table`.
    static func eventColumns(_ table: String) -> String {
        ["id", "type", "appid", "component_appid", "received_at", "dedup_key", "from_user", "data"].map { "\(table).\($0)" }
            .joined(separator: ", ")
    }

    static func event(from row: PostgresRandomAccessRow) throws -> RelayEvent {
        RelayEvent(
            id: try row["id"].decode(String.self), type: try row["type"].decode(String.self), appid: try row["appid"].decode(String.self),
            componentAppid: try row["component_appid"].decode(String?.self), receivedAt: date(try row["received_at"].decode(Int.self)),
            dataJSON: try row["data"].decode(String.self), dedupKey: try row["dedup_key"].decode(String.self),
            fromUser: try row["from_user"].decode(String?.self))
    }
}
