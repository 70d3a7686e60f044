import Foundation
import RelayCore
import SQLiteNIO

extension SQLiteRelayStore {
    public func commit(_ record: IntakeRecord) async throws -> IntakeOutcome {
        try await commitIntake(record)
    }

    /// The intake records of one group, in a few multi-row statements rather than several per
    /// record: events (dedup by ON CONFLICT, so a retry in the same group is a duplicate too),
    /// the ids of duplicates, then every delivery. Rows keep the records' order, so `seq` is the
    /// order of arrival.
    static func bulkIntake(_ records: [IntakeRecord], on db: SQLiteHandle, sealer: SecretSealer) throws -> [IntakeOutcome] {
        for ticket in records.compactMap(\.ticket) { try upsert(ticket, on: db, sealer: sealer) }
        let events = records.compactMap(\.event)
        guard !events.isEmpty else { return records.map { _ in .ticketOnly } }
        let rows = Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?)", count: events.count).joined(separator: ", ")
        let inserted = Set(try db.query(
            """
            INSERT INTO events (id, type, appid, component_appid, received_at, dedup_key, from_user, data) VALUES \(rows)
            ON CONFLICT (appid, dedup_key) DO NOTHING RETURNING id
            """,
            events.flatMap { event -> [SQLiteData] in
                [.text(event.id), .text(event.type), .text(event.appid), text(event.componentAppid), .integer(millis(event.receivedAt)),
                 .text(event.dedupKey), text(event.fromUser), .text(event.dataJSON)]
            }).compactMap { $0.column("id")?.string })
        var existing: [String: String] = [:]  // "appid dedup_key" -> id of the event stored earlier
        let duplicates = events.filter { !inserted.contains($0.id) }
        if !duplicates.isEmpty {
            let pairs = Array(repeating: "(?, ?)", count: duplicates.count).joined(separator: ", ")
            for row in try db.query("SELECT id, appid, dedup_key FROM events WHERE (appid, dedup_key) IN (VALUES \(pairs))",
                                          duplicates.flatMap { [SQLiteData.text($0.appid), .text($0.dedupKey)] }) {
                existing[(row.column("appid")?.string ?? "") + " " + (row.column("dedup_key")?.string ?? "")] = row.column("id")?.string
            }
        }
        let planned = records.filter { $0.event.map { inserted.contains($0.id) } ?? false }
            .flatMap { record in record.deliveries.map { (record.event!, $0) } }
        if !planned.isEmpty {
            let values = Array(repeating: "(?, ?, ?, ?, ?)", count: planned.count).joined(separator: ", ")
            _ = try db.query(
                """
                INSERT INTO deliveries (id, event_seq, event_id, subscription_id, status, attempts, next_attempt_at, order_key,
                                        created_at, updated_at)
                SELECT v.column1, e.seq, e.id, v.column2, 'pending', 0, v.column3, v.column4, v.column3, v.column3
                FROM (VALUES \(values)) AS v JOIN events e ON e.id = v.column5 WHERE true
                ON CONFLICT (event_id, subscription_id) DO NOTHING
                """,
                planned.flatMap { event, delivery -> [SQLiteData] in
                    [.text(DeliveryID.make(at: event.receivedAt)), .text(delivery.subscriptionId), .integer(millis(event.receivedAt)),
                     text(delivery.orderKey), .text(event.id)]
                })
        }
        return records.map { record in
            guard let event = record.event else { return .ticketOnly }
            if inserted.contains(event.id) { return .stored(eventID: event.id) }
            return .duplicate(eventID: existing[event.appid + " " + event.dedupKey] ?? event.id)
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

    public func purgeEvents(before cutoff: Date, limit: Int) async throws -> Int {
        try await write { db in
            try db.query("""
                DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE received_at < ? ORDER BY received_at LIMIT ?) RETURNING seq
                """, [.integer(Self.millis(cutoff)), .integer(max(1, limit))]).count
        }
    }

    /// Returns how many were created (an existing delivery of the same event and subscription stays).
    @discardableResult
    static func insertDeliveries(_ planned: [PlannedDelivery], for eventId: String, at date: Date, on db: SQLiteHandle) throws -> Int {
        var created = 0
        for delivery in planned {
            created += try db.query(
                """
                INSERT INTO deliveries (id, event_seq, event_id, subscription_id, status, attempts, next_attempt_at, order_key,
                                        created_at, updated_at)
                SELECT ?, seq, id, ?, 'pending', 0, ?, ?, ?, ? FROM events WHERE id = ?
                ON CONFLICT (event_id, subscription_id) DO NOTHING RETURNING id
                """,
                [.text(DeliveryID.make(at: date)), .text(delivery.subscriptionId), .integer(millis(date)), text(delivery.orderKey),
                 .integer(millis(date)), .integer(millis(date)), .text(eventId)]).count
        }
        return created
    }

    private static func upsert(_ ticket: ComponentTicket, on db: SQLiteHandle, sealer: SecretSealer) throws {
        _ = try db.query(
            """
            INSERT INTO component_tickets (component_appid, ticket, create_time, received_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (component_appid) DO UPDATE SET ticket = excluded.ticket, create_time = excluded.create_time,
                received_at = excluded.received_at
            WHERE excluded.create_time >= component_tickets.create_time
            """,
            [.text(ticket.componentAppid), .text(sealer.seal(ticket.ticket)), .integer(Int(ticket.createTime)),
             .integer(millis(ticket.receivedAt))])
    }

    static func event(from row: StoreRow) -> RelayEvent {
        RelayEvent(
            id: row.column("id")?.string ?? "", type: row.column("type")?.string ?? "",
            appid: row.column("appid")?.string ?? "", componentAppid: row.column("component_appid")?.string,
            receivedAt: date(row.column("received_at")), dataJSON: row.column("data")?.string ?? "{}",
            dedupKey: row.column("dedup_key")?.string ?? "", fromUser: row.column("from_user")?.string)
    }
}
