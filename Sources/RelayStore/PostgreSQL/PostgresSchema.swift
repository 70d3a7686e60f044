/// The PostgreSQL schema, as numbered migrations applied in order, each in its own transaction.
/// A migration is never edited once released; changes come as new entries.
///
/// Times are milliseconds since 1970 in BIGINT columns, as in the SQLite schema: both stores
/// convert the same way, and comparisons with the caller's clock are plain integer ones.
enum PostgresSchema {
    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE events (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                appid TEXT NOT NULL,
                component_appid TEXT,
                received_at BIGINT NOT NULL,
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
                create_time BIGINT NOT NULL,
                received_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE subscriptions (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                appids TEXT[] NOT NULL,
                events TEXT[] NOT NULL,
                reply BOOLEAN NOT NULL,
                ordered BOOLEAN NOT NULL,
                status TEXT NOT NULL,
                source TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                secret TEXT NOT NULL,
                previous_secret TEXT,
                previous_secret_expires_at BIGINT
            )
            """,
            // A claim writes only the lease; the status moves when the attempt is recorded
            // (a leased pending or failed delivery reads as in flight).
            """
            CREATE TABLE deliveries (
                id TEXT PRIMARY KEY,
                event_seq BIGINT NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
                event_id TEXT NOT NULL,
                subscription_id TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt_at BIGINT,
                order_key TEXT,
                lease_owner TEXT,
                lease_expires_at BIGINT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                UNIQUE (event_id, subscription_id)
            )
            """,
            // The queue's indexes hold unfinished deliveries only, so they stay the size of the
            // backlog rather than of the history.
            "CREATE INDEX deliveries_due ON deliveries (subscription_id, next_attempt_at, event_seq) WHERE \(unfinished)",
            "CREATE INDEX deliveries_order ON deliveries (subscription_id, order_key, event_seq) WHERE order_key IS NOT NULL AND \(unfinished)",
            "CREATE INDEX deliveries_unfinished ON deliveries (created_at) WHERE \(unfinished)",
            // Listings by status: the few deliveries that did not simply succeed, by id.
            "CREATE INDEX deliveries_trouble ON deliveries (id) WHERE status IN ('failed', 'dead', 'cancelled')",
            "CREATE INDEX deliveries_event_seq ON deliveries (event_seq)",
            "CREATE INDEX deliveries_event ON deliveries (event_id)",
            """
            CREATE TABLE attempts (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
                at BIGINT NOT NULL,
                status_code INTEGER,
                error TEXT,
                duration_ms BIGINT NOT NULL,
                response TEXT
            )
            """,
            "CREATE INDEX attempts_delivery ON attempts (delivery_id, seq)",
            """
            CREATE TABLE component_tokens (
                component_appid TEXT PRIMARY KEY,
                access_token TEXT NOT NULL,
                expires_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE authorizers (
                appid TEXT PRIMARY KEY,
                component_appid TEXT NOT NULL,
                name TEXT,
                type TEXT,
                user_name TEXT,
                status TEXT NOT NULL,
                permissions BIGINT[] NOT NULL,
                refresh_token TEXT,
                access_token TEXT,
                access_token_expires_at BIGINT,
                authorized_at BIGINT NOT NULL,
                version BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE exchanged_codes (
                code TEXT PRIMARY KEY,
                authorizer_appid TEXT NOT NULL,
                exchanged_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE locks (
                name TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                expires_at BIGINT NOT NULL
            )
            """,
        ],
        // 2: a claim writes only the lease, which no index holds: with room left in each page
        // PostgreSQL keeps the new row version beside the old (a HOT update) instead of adding it
        // to every index of the table; pages filled to the brim made every claim write seven
        // index entries per delivery. And lookups by event id read the unique (event_id,
        // subscription_id) index, so the index on event_id alone was one more write per push.
        [
            "ALTER TABLE deliveries SET (fillfactor = 70)",
            "DROP INDEX deliveries_event",
        ],
    ]

    /// The condition of the partial queue indexes; queries repeat it so the planner may use them.
    static let unfinished = "status IN ('pending', 'failed')"
}
