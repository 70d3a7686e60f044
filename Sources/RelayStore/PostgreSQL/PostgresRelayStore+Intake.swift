import Foundation
import Logging
import PostgresNIO
import RelayCore

extension PostgresRelayStore {
    /// Stores a push. Pushes arriving together are committed as a group by one statement — one
    /// round trip and one commit for all of them: a transaction of four statements per push
    /// took four round trips, and the relay's CPU per push on PostgreSQL was three times
    /// SQLite's. Each push is deduplicated per AppID by the unique index, so a retry reaching
    /// another node at the same moment is a duplicate too. A push carrying a ticket takes a
    /// transaction of its own (tickets come once every ten minutes).
    public func commit(_ record: IntakeRecord) async throws -> IntakeOutcome {
        guard record.ticket == nil else { return try await commitWithTicket(record) }
        guard record.event != nil else { return .ticketOnly }
        return try await intakeGroups.submit(record)
    }

    /// The pushes arriving together (`intakeGroups`), one statement for them all.
    static func commitGroup(_ records: [IntakeRecord], access: Access) async -> [Result<IntakeOutcome, any Error>] {
        await writeGroup(records, access: access, what: "pushes") { records, connection in
            try await insert(records, on: connection, logger: access.logger)
        }
    }

    /// Inserts the records' events and, for those that were new, their deliveries; then looks up
    /// the events that duplicates match (another statement, only when there are some).
    private static func insert(_ records: [IntakeRecord], on connection: PostgresConnection, logger: Logger) async throws -> [IntakeOutcome] {
        let inserted = Set(try await connection.fetch(IntakeStatement(records: records), logger: logger).map { try $0["id"].decode(String.self) })
        let duplicates = records.compactMap(\.event).filter { !inserted.contains($0.id) }
        var existing: [String: String] = [:]  // "appid dedup_key" -> the stored event's id
        if !duplicates.isEmpty {
            let rows = try await connection.fetch(
                """
                SELECT e.id, e.appid, e.dedup_key FROM events e
                JOIN unnest(\(duplicates.map(\.appid))::text[], \(duplicates.map(\.dedupKey))::text[]) AS d (appid, dedup_key)
                  ON e.appid = d.appid AND e.dedup_key = d.dedup_key
                """, logger: logger)
            for row in rows {
                existing[try row["appid"].decode(String.self) + " " + row["dedup_key"].decode(String.self)] = try row["id"].decode(String.self)
            }
        }
        return records.map { record in
            guard let event = record.event else { return .ticketOnly }
            if inserted.contains(event.id) { return .stored(eventID: event.id) }
            return .duplicate(eventID: existing[event.appid + " " + event.dedupKey] ?? event.id)
        }
    }

    /// The events, then the deliveries of those that were inserted (a data-modifying `WITH`
    /// sees which through `RETURNING`), in arrival order, so `seq` is the order of arrival.
    /// Columns go as arrays, one parameter each, so the statement is the same for any group:
    /// postgres-nio cannot send a NULL inside an array, so nullable columns have a mask beside them.
    static func intakeQuery(_ records: [IntakeRecord]) -> PostgresQuery {
        let events = records.compactMap(\.event)
        let deliveries = records.flatMap { record in record.event.map { event in record.deliveries.map { (event, $0) } } ?? [] }
        return """
            WITH v AS (
                SELECT * FROM unnest(\(events.map(\.id))::text[], \(events.map(\.type))::text[], \(events.map(\.appid))::text[],
                                     \(events.map { $0.componentAppid ?? "" })::text[], \(events.map { $0.componentAppid != nil })::bool[],
                                     \(events.map { millis($0.receivedAt) })::bigint[], \(events.map(\.dedupKey))::text[],
                                     \(events.map { $0.fromUser ?? "" })::text[], \(events.map { $0.fromUser != nil })::bool[],
                                     \(events.map(\.dataJSON))::text[])
                    WITH ORDINALITY AS v (id, type, appid, component_appid, has_component_appid, received_at, dedup_key,
                                          from_user, has_from_user, data, n)
            ), e AS (
                INSERT INTO events (id, type, appid, component_appid, received_at, dedup_key, from_user, data)
                SELECT id, type, appid, CASE WHEN has_component_appid THEN component_appid END, received_at, dedup_key,
                       CASE WHEN has_from_user THEN from_user END, data
                FROM v ORDER BY n
                ON CONFLICT (appid, dedup_key) DO NOTHING
                RETURNING seq, id, received_at
            ), d AS (
                INSERT INTO deliveries (id, event_seq, event_id, subscription_id, status, attempts, next_attempt_at, order_key,
                                        created_at, updated_at)
                SELECT p.id, e.seq, e.id, p.subscription_id, 'pending', 0, e.received_at,
                       CASE WHEN p.has_order_key THEN p.order_key END, e.received_at, e.received_at
                FROM unnest(\(deliveries.map { DeliveryID.make(at: $0.0.receivedAt) })::text[], \(deliveries.map(\.0.id))::text[],
                            \(deliveries.map(\.1.subscriptionId))::text[], \(deliveries.map { $0.1.orderKey ?? "" })::text[],
                            \(deliveries.map { $0.1.orderKey != nil })::bool[])
                    AS p (id, event_id, subscription_id, order_key, has_order_key)
                JOIN e ON e.id = p.event_id
                ON CONFLICT (event_id, subscription_id) DO NOTHING
            )
            SELECT id FROM e
            """
    }

    private func commitWithTicket(_ record: IntakeRecord) async throws -> IntakeOutcome {
        try await transaction { connection in
            if let ticket = record.ticket { try await self.upsert(ticket, on: connection) }
            guard record.event != nil else { return .ticketOnly }
            return try await Self.insert([record], on: connection, logger: self.logger)[0]
        }
    }

    /// A newer ticket replaces an older one; a late retry of an older push does not.
    private func upsert(_ ticket: ComponentTicket, on connection: PostgresConnection) async throws {
        try await connection.run(
            """
            INSERT INTO component_tickets (component_appid, ticket, create_time, received_at)
            VALUES (\(ticket.componentAppid), \(sealer.seal(ticket.ticket)), \(Int(ticket.createTime)), \(Self.millis(ticket.receivedAt)))
            ON CONFLICT (component_appid) DO UPDATE SET ticket = excluded.ticket, create_time = excluded.create_time,
                received_at = excluded.received_at
            WHERE excluded.create_time >= component_tickets.create_time
            """, logger: logger)
    }
}
