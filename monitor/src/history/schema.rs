//! Versioned schema migrations, shared by both stores: plain SQL that
//! SQLite and PostgreSQL both take. A version is applied once, in order,
//! and recorded in `heartbeat_schema`; never edit one that has shipped, add
//! the next.

pub const CREATE_VERSIONS: &str = "CREATE TABLE IF NOT EXISTS heartbeat_schema (
    version BIGINT PRIMARY KEY,
    applied_at_ms BIGINT NOT NULL
)";

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE transitions (
        at_ms BIGINT NOT NULL,
        service TEXT NOT NULL,
        instance TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL,
        rtt_ms DOUBLE PRECISION,
        silent_ms BIGINT
    );
    CREATE INDEX transitions_by_service ON transitions (service, at_ms);
    CREATE INDEX transitions_by_time ON transitions (at_ms);
    CREATE TABLE minutes (
        minute_ms BIGINT NOT NULL,
        service TEXT NOT NULL,
        instance TEXT NOT NULL,
        echoes BIGINT NOT NULL,
        misses BIGINT NOT NULL,
        rtt_p50_ms DOUBLE PRECISION,
        rtt_p99_ms DOUBLE PRECISION,
        up_ms BIGINT NOT NULL,
        observed_ms BIGINT NOT NULL,
        PRIMARY KEY (service, instance, minute_ms)
    );
    CREATE INDEX minutes_by_time ON minutes (minute_ms);",
    ),
    (
        2,
        "CREATE TABLE service_changes (
        at_ms BIGINT NOT NULL,
        service TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        up BIGINT NOT NULL,
        expected BIGINT NOT NULL
    );
    CREATE INDEX service_changes_by_service ON service_changes (service, at_ms);
    CREATE INDEX service_changes_by_time ON service_changes (at_ms);",
    ),
    (
        3,
        // Which fleet (broker and vhost) a transition is about, and which
        // monitor saw it: monitors that share a store restore only their
        // own fleet after a restart. Rows from before are nobody's ('').
        "ALTER TABLE transitions ADD COLUMN fleet TEXT NOT NULL DEFAULT '';
    ALTER TABLE transitions ADD COLUMN monitor TEXT NOT NULL DEFAULT '';
    CREATE INDEX transitions_by_fleet ON transitions (fleet, service, instance, at_ms);",
    ),
    (
        4,
        "CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        instance TEXT,
        starts_at_ms BIGINT NOT NULL,
        ends_at_ms BIGINT NOT NULL,
        reason TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    );
    CREATE INDEX silences_by_end ON silences (ends_at_ms);",
    ),
];

/// A silence saved twice (expired early) keeps its id and takes the new end.
pub const UPSERT_SILENCE_TAIL: &str =
    "ON CONFLICT (id) DO UPDATE SET ends_at_ms = excluded.ends_at_ms, reason = excluded.reason";

/// A minute written twice (a restart within it) adds up.
pub const UPSERT_MINUTE_TAIL: &str = "ON CONFLICT (service, instance, minute_ms) DO UPDATE SET
    echoes = minutes.echoes + excluded.echoes,
    misses = minutes.misses + excluded.misses,
    rtt_p50_ms = COALESCE(excluded.rtt_p50_ms, minutes.rtt_p50_ms),
    rtt_p99_ms = COALESCE(excluded.rtt_p99_ms, minutes.rtt_p99_ms),
    up_ms = minutes.up_ms + excluded.up_ms,
    observed_ms = minutes.observed_ms + excluded.observed_ms";
