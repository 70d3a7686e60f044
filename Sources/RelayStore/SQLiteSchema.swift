/// The SQLite schema, as numbered migrations applied in order, each in its own transaction.
/// A migration is never edited once released; changes come as new entries.
enum SQLiteSchema {
    static let migrations: [[String]] = [
        // 1: events with per-AppID dedup, and tickets per component.
        [
            """
            CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                appid TEXT NOT NULL,
                component_appid TEXT,
                received_at INTEGER NOT NULL,
                dedup_key TEXT NOT NULL,
                from_user TEXT,
                data TEXT NOT NULL,
                UNIQUE (appid, dedup_key)
            )
            """,
            "CREATE INDEX events_received_at ON events (received_at)",
            "CREATE INDEX events_appid_type ON events (appid, type)",
            """
            CREATE TABLE component_tickets (
                component_appid TEXT PRIMARY KEY,
                ticket TEXT NOT NULL,
                create_time INTEGER NOT NULL,
                received_at INTEGER NOT NULL
            )
            """,
        ]
    ]
}
