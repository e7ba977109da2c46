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
    (
        5,
        // Service changes and minutes say whose they are too, as
        // transitions do since 3: a monitor reads back only its own fleet's
        // records, and members of a group that share a store each keep
        // their own minutes (read back as at most a minute each).
        // A primary key cannot be altered in SQLite: minutes are copied.
        "ALTER TABLE service_changes ADD COLUMN fleet TEXT NOT NULL DEFAULT '';
    ALTER TABLE service_changes ADD COLUMN monitor TEXT NOT NULL DEFAULT '';
    CREATE INDEX service_changes_by_fleet ON service_changes (fleet, service, at_ms);
    CREATE TABLE minutes_v5 (
        minute_ms BIGINT NOT NULL,
        fleet TEXT NOT NULL,
        monitor TEXT NOT NULL,
        service TEXT NOT NULL,
        instance TEXT NOT NULL,
        echoes BIGINT NOT NULL,
        misses BIGINT NOT NULL,
        rtt_p50_ms DOUBLE PRECISION,
        rtt_p99_ms DOUBLE PRECISION,
        up_ms BIGINT NOT NULL,
        observed_ms BIGINT NOT NULL,
        PRIMARY KEY (fleet, monitor, service, instance, minute_ms)
    );
    INSERT INTO minutes_v5 (minute_ms, fleet, monitor, service, instance, echoes, misses, rtt_p50_ms, rtt_p99_ms, up_ms, observed_ms)
        SELECT minute_ms, '', '', service, instance, echoes, misses, rtt_p50_ms, rtt_p99_ms, up_ms, observed_ms FROM minutes;
    DROP TABLE minutes;
    ALTER TABLE minutes_v5 RENAME TO minutes;
    CREATE INDEX minutes_by_fleet ON minutes (fleet, minute_ms);",
    ),
    (
        6,
        // Alerts a webhook, command, Slack or email target has not been told yet, so a
        // restart does not lose them: per monitor and target (the target's
        // delivery identity, never its secret), the event's JSON body.
        "CREATE TABLE notify_pending (
        id TEXT PRIMARY KEY,
        monitor TEXT NOT NULL,
        target TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX notify_pending_by_monitor ON notify_pending (monitor, created_at_ms);",
    ),
];

/// Records written before version 3 (transitions) or 5 (service changes,
/// minutes) say no fleet: they are read back with every fleet's, so that an
/// upgrade loses no history.
pub fn ours(fleet_parameter: &str) -> String {
    format!("(fleet = {fleet_parameter} OR fleet = '')")
}

/// A silence saved twice (expired early) keeps its id and takes the new end.
pub const UPSERT_SILENCE_TAIL: &str =
    "ON CONFLICT (id) DO UPDATE SET ends_at_ms = excluded.ends_at_ms, reason = excluded.reason";

/// A minute written twice (a restart within it) adds up.
pub const UPSERT_MINUTE_TAIL: &str =
    "ON CONFLICT (fleet, monitor, service, instance, minute_ms) DO UPDATE SET
    echoes = minutes.echoes + excluded.echoes,
    misses = minutes.misses + excluded.misses,
    rtt_p50_ms = COALESCE(excluded.rtt_p50_ms, minutes.rtt_p50_ms),
    rtt_p99_ms = COALESCE(excluded.rtt_p99_ms, minutes.rtt_p99_ms),
    up_ms = minutes.up_ms + excluded.up_ms,
    observed_ms = minutes.observed_ms + excluded.observed_ms";

/// Per instance, its up and judged milliseconds over the minutes from
/// `since` in `fleet`. Monitors one after the other (a restart, with a new
/// id, within a minute) judged different parts of a minute: their figures
/// add up. Monitors side by side (a group sharing the store) judged the
/// same part: a minute never counts for more than a minute, so where the
/// sum exceeds it, both figures are scaled down to it, which keeps the
/// ratio of the members' views put together.
pub fn uptime_query(since: &str, fleet: &str) -> String {
    format!(
        "SELECT service, instance, SUM(up_ms), SUM(observed_ms) FROM (
            SELECT service, instance, minute_ms,
                CASE WHEN SUM(observed_ms) > 60000
                    THEN SUM(up_ms) * 60000 / SUM(observed_ms) ELSE SUM(up_ms) END AS up_ms,
                CASE WHEN SUM(observed_ms) > 60000
                    THEN 60000 ELSE SUM(observed_ms) END AS observed_ms
            FROM minutes WHERE {} AND minute_ms >= {since}
            GROUP BY service, instance, minute_ms
         ) per_minute GROUP BY service, instance",
        ours(fleet)
    )
}
