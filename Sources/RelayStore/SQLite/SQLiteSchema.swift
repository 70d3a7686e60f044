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
        ],
        // 2: subscriptions and the delivery queue (claims under leases), with every attempt.
        [
            """
            CREATE TABLE subscriptions (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                appids TEXT NOT NULL,
                events TEXT NOT NULL,
                reply INTEGER NOT NULL,
                ordered INTEGER NOT NULL,
                status TEXT NOT NULL,
                source TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                secret TEXT NOT NULL,
                previous_secret TEXT,
                previous_secret_expires_at INTEGER
            )
            """,
            """
            CREATE TABLE deliveries (
                id TEXT PRIMARY KEY,
                event_seq INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
                event_id TEXT NOT NULL,
                subscription_id TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt_at INTEGER,
                order_key TEXT,
                lease_owner TEXT,
                lease_expires_at INTEGER,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                UNIQUE (event_id, subscription_id)
            )
            """,
            "CREATE INDEX deliveries_due ON deliveries (subscription_id, status, next_attempt_at)",
            "CREATE INDEX deliveries_order ON deliveries (subscription_id, order_key, event_seq) WHERE order_key IS NOT NULL",
            "CREATE INDEX deliveries_event_seq ON deliveries (event_seq)",
            "CREATE INDEX deliveries_status ON deliveries (status, created_at)",
            """
            CREATE TABLE attempts (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
                at INTEGER NOT NULL,
                status_code INTEGER,
                error TEXT,
                duration_ms INTEGER NOT NULL,
                response TEXT
            )
            """,
            "CREATE INDEX attempts_delivery ON attempts (delivery_id, seq)",
        ],
        // 3: the authorization flow: component tokens, authorizers, exchanged codes, lease locks.
        [
            """
            CREATE TABLE component_tokens (
                component_appid TEXT PRIMARY KEY,
                access_token TEXT NOT NULL,
                expires_at INTEGER NOT NULL
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
                permissions TEXT NOT NULL,
                refresh_token TEXT,
                access_token TEXT,
                access_token_expires_at INTEGER,
                authorized_at INTEGER NOT NULL,
                version INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE exchanged_codes (
                code TEXT PRIMARY KEY,
                authorizer_appid TEXT NOT NULL,
                exchanged_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE locks (
                name TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                expires_at INTEGER NOT NULL
            )
            """,
        ],
        // 4: the due index ends with event_seq, so a claim reads due deliveries in index order and
        // stops after its limit instead of sorting the whole backlog.
        [
            "DROP INDEX deliveries_due",
            "CREATE INDEX deliveries_due ON deliveries (subscription_id, status, next_attempt_at, event_seq)",
        ],
        // 5: the queue's indexes hold unfinished deliveries only: a finished one leaves them
        // (one removal instead of a move per index), and they stay the size of the backlog rather
        // than of the history. Queries name `SQLiteSchema.unfinished` word for word, which is
        // how SQLite knows it may use them.
        [
            "DROP INDEX deliveries_due",
            "CREATE INDEX deliveries_due ON deliveries (subscription_id, status, next_attempt_at, event_seq) WHERE \(unfinished)",
            "DROP INDEX deliveries_status",
            "CREATE INDEX deliveries_unfinished ON deliveries (status, created_at) WHERE \(unfinished)",
        ],
        // 6: so does the ordering index: a claim for an ordered user looks for an earlier
        // unfinished delivery of that user, and with every finished one still indexed it walked
        // the user's whole history (within retention) on every claim.
        [
            "DROP INDEX deliveries_order",
            "CREATE INDEX deliveries_order ON deliveries (subscription_id, order_key, event_seq) WHERE order_key IS NOT NULL AND \(unfinished)",
        ],
        // 7: listings by status (the dashboard's failing and dead deliveries, the admin API's
        // `?status=`) walked the whole history by id to find a handful. Failed, dead and
        // cancelled deliveries get an index each, which a delivery that succeeds the first time
        // never enters; pending and in-flight ones are read through the unfinished index.
        [
            "CREATE INDEX deliveries_failed ON deliveries (id) WHERE status = 'failed'",
            "CREATE INDEX deliveries_dead ON deliveries (id) WHERE status = 'dead'",
            "CREATE INDEX deliveries_cancelled ON deliveries (id) WHERE status = 'cancelled'",
        ],
        // 8: the attempt that delivers is kept in the delivery's own row, not as a row of
        // `attempts`, which holds the attempts that failed (and successes a replay or retry set
        // aside). Most deliveries succeed at once; their attempt row and its index entry were
        // half the pages every delivery group wrote to the WAL.
        [
            "ALTER TABLE deliveries ADD COLUMN succeeded_at INTEGER",
            "ALTER TABLE deliveries ADD COLUMN succeeded_status_code INTEGER",
            "ALTER TABLE deliveries ADD COLUMN succeeded_duration_ms INTEGER",
            "ALTER TABLE deliveries ADD COLUMN succeeded_response TEXT",
        ],
        // 9: fewer B-trees per delivery — a push inserted into six, a success left three. The
        // event's foreign key moves from `event_seq`, whose cascade needed an index of its own,
        // to `event_id`, which the (event_id, subscription_id) index already serves; the
        // unfinished index folds into the due index, which ends with `created_at` so the queue
        // statistics still read one index. SQLite changes a foreign key only by copying the
        // table (rowids kept: claims work by rowid); `migrate` turns enforcement off meanwhile,
        // as dropping the old table would otherwise cascade to `attempts`.
        [
            """
            CREATE TABLE deliveries_9 (
                id TEXT PRIMARY KEY,
                event_seq INTEGER NOT NULL,
                event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
                subscription_id TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                next_attempt_at INTEGER,
                order_key TEXT,
                lease_owner TEXT,
                lease_expires_at INTEGER,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                succeeded_at INTEGER,
                succeeded_status_code INTEGER,
                succeeded_duration_ms INTEGER,
                succeeded_response TEXT,
                UNIQUE (event_id, subscription_id)
            )
            """,
            """
            INSERT INTO deliveries_9 (rowid, \(deliveryColumns)) SELECT rowid, \(deliveryColumns) FROM deliveries
            """,
            "DROP TABLE deliveries",
            "ALTER TABLE deliveries_9 RENAME TO deliveries",
            "CREATE INDEX deliveries_due ON deliveries (subscription_id, status, next_attempt_at, event_seq, created_at) WHERE \(unfinished)",
            "CREATE INDEX deliveries_order ON deliveries (subscription_id, order_key, event_seq) WHERE order_key IS NOT NULL AND \(unfinished)",
            "CREATE INDEX deliveries_failed ON deliveries (id) WHERE status = 'failed'",
            "CREATE INDEX deliveries_dead ON deliveries (id) WHERE status = 'dead'",
            "CREATE INDEX deliveries_cancelled ON deliveries (id) WHERE status = 'cancelled'",
        ],
    ]

    private static let deliveryColumns = """
        id, event_seq, event_id, subscription_id, status, attempts, next_attempt_at, order_key, lease_owner, lease_expires_at, \
        created_at, updated_at, succeeded_at, succeeded_status_code, succeeded_duration_ms, succeeded_response
        """

    /// The condition of the partial queue indexes (migrations 5 and 6); never change it, add a migration.
    static let unfinished = "status IN ('pending', 'failed', 'in_flight')"
}
