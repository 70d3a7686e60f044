import Foundation
import RelayCore
import SQLiteNIO

extension SQLiteRelayStore {
    public func commit(_ record: IntakeRecord) async throws -> IntakeOutcome {
        // Intake writes cannot fail on their own (dedup is ON CONFLICT), so no savepoint.
        try await write(isolated: false) { [sealer] db in
            if let ticket = record.ticket { try await Self.upsert(ticket, on: db, sealer: sealer) }
            guard let event = record.event else { return IntakeOutcome.ticketOnly }
            let outcome = try await Self.insert(event, on: db)
            if case .stored = outcome, !record.deliveries.isEmpty {
                try await Self.insertDeliveries(record.deliveries, for: event.id, at: event.receivedAt, on: db)
            }
            return outcome
        }
    }

    public func event(id: String) async throws -> RelayEvent? {
        try await reader.query("SELECT * FROM events WHERE id = ?", [.text(id)]).first.map(Self.event(from:))
    }

    public func events(_ query: EventQuery) async throws -> [RelayEvent] {
        var sql = "SELECT * FROM events WHERE 1 = 1"
        var binds: [SQLiteData] = []
        if let appid = query.appid { sql += " AND appid = ?"; binds.append(.text(appid)) }
        if let type = query.type { sql += " AND type = ?"; binds.append(.text(type)) }
        if let before = query.before {
            sql += " AND seq < (SELECT seq FROM events WHERE id = ?)"
            binds.append(.text(before))
        }
        sql += " ORDER BY seq DESC LIMIT ?"
        binds.append(.integer(max(1, min(query.limit, 500))))
        return try await reader.query(sql, binds).map(Self.event(from:))
    }

    public func ticket(componentAppid: String) async throws -> ComponentTicket? {
        guard let row = try await reader.query("SELECT * FROM component_tickets WHERE component_appid = ?",
                                               [.text(componentAppid)]).first else { return nil }
        return ComponentTicket(
            componentAppid: componentAppid, ticket: try sealer.open(row.column("ticket")?.string ?? ""),
            createTime: Int64(row.column("create_time")?.integer ?? 0),
            receivedAt: Self.date(row.column("received_at")))
    }

    public func purgeEvents(before cutoff: Date) async throws -> Int {
        try await write { db in
            try await db.query("DELETE FROM events WHERE received_at < ? RETURNING seq", [.integer(Self.millis(cutoff))]).count
        }
    }

    static func insert(_ event: RelayEvent, on db: SQLiteConnection) async throws -> IntakeOutcome {
        let inserted = try await db.query(
            """
            INSERT INTO events (id, type, appid, component_appid, received_at, dedup_key, from_user, data)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (appid, dedup_key) DO NOTHING RETURNING id
            """,
            [.text(event.id), .text(event.type), .text(event.appid), text(event.componentAppid),
             .integer(millis(event.receivedAt)), .text(event.dedupKey), text(event.fromUser), .text(event.dataJSON)])
        if !inserted.isEmpty { return .stored(eventID: event.id) }
        let existing = try await db.query("SELECT id FROM events WHERE appid = ? AND dedup_key = ?",
                                          [.text(event.appid), .text(event.dedupKey)])
        return .duplicate(eventID: existing.first?.column("id")?.string ?? event.id)
    }

    static func insertDeliveries(_ planned: [PlannedDelivery], for eventId: String, at date: Date, on db: SQLiteConnection) async throws {
        for delivery in planned {
            _ = try await db.query(
                """
                INSERT INTO deliveries (id, event_seq, event_id, subscription_id, status, attempts, next_attempt_at, order_key,
                                        created_at, updated_at)
                SELECT ?, seq, id, ?, 'pending', 0, ?, ?, ?, ? FROM events WHERE id = ?
                ON CONFLICT (event_id, subscription_id) DO NOTHING
                """,
                [.text(DeliveryID.make(at: date)), .text(delivery.subscriptionId), .integer(millis(date)), text(delivery.orderKey),
                 .integer(millis(date)), .integer(millis(date)), .text(eventId)])
        }
    }

    private static func upsert(_ ticket: ComponentTicket, on db: SQLiteConnection, sealer: SecretSealer) async throws {
        _ = try await db.query(
            """
            INSERT INTO component_tickets (component_appid, ticket, create_time, received_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (component_appid) DO UPDATE SET ticket = excluded.ticket, create_time = excluded.create_time,
                received_at = excluded.received_at
            WHERE excluded.create_time >= component_tickets.create_time
            """,
            [.text(ticket.componentAppid), .text(sealer.seal(ticket.ticket)), .integer(Int(ticket.createTime)),
             .integer(millis(ticket.receivedAt))])
    }

    static func event(from row: SQLiteRow) -> RelayEvent {
        RelayEvent(
            id: row.column("id")?.string ?? "", type: row.column("type")?.string ?? "",
            appid: row.column("appid")?.string ?? "", componentAppid: row.column("component_appid")?.string,
            receivedAt: date(row.column("received_at")), dataJSON: row.column("data")?.string ?? "{}",
            dedupKey: row.column("dedup_key")?.string ?? "", fromUser: row.column("from_user")?.string)
    }
}
