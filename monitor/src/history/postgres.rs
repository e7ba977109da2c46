//! The shared store: PostgreSQL, for a team. The same schema and queries as
//! SQLite; the synchronous client runs on a blocking thread like SQLite does.

use std::time::Duration;

use postgres::{Client, NoTls};

use super::schema::{CREATE_VERSIONS, MIGRATIONS, UPSERT_MINUTE_TAIL};
use super::{Batch, HistoryError, Store, StoredServiceChange, StoredTransition, Uptime, Who};

pub struct Postgres {
    client: Client,
}

/// The client's own Display says only "db error"; the cause is in its source.
fn err(e: postgres::Error) -> HistoryError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    HistoryError::Store(format!("PostgreSQL: {}", text.replace('\n', " ")))
}

impl Postgres {
    pub fn connect(url: &str) -> Result<Self, HistoryError> {
        // The URL holds a password: errors never repeat it.
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| HistoryError::Store(format!("PostgreSQL: invalid history.url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let client = config.connect(NoTls).map_err(err)?;
        let mut store = Self { client };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), HistoryError> {
        self.client.batch_execute(CREATE_VERSIONS).map_err(err)?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.client.transaction().map_err(err)?;
            // Two monitors starting at once on one database take turns here.
            tx.batch_execute("LOCK TABLE heartbeat_schema IN EXCLUSIVE MODE")
                .map_err(err)?;
            let done = tx
                .query_opt(
                    "SELECT 1 FROM heartbeat_schema WHERE version = $1",
                    &[version],
                )
                .map_err(err)?
                .is_some();
            if !done {
                tx.batch_execute(sql).map_err(err)?;
                tx.execute(
                    "INSERT INTO heartbeat_schema (version, applied_at_ms) VALUES ($1, $2)",
                    &[version, &chrono::Utc::now().timestamp_millis()],
                )
                .map_err(err)?;
            }
            tx.commit().map_err(err)?;
        }
        Ok(())
    }
}

fn to_transition(row: &postgres::Row) -> StoredTransition {
    StoredTransition {
        at_ms: row.get(0),
        service: row.get(1),
        instance: row.get(2),
        from: row.get(3),
        to: row.get(4),
        reason: row.get(5),
        rtt_ms: row.get(6),
        silent_ms: row.get(7),
    }
}

const SELECT_TRANSITIONS: &str = "SELECT at_ms, service, instance, from_state, to_state, reason, rtt_ms, silent_ms FROM transitions";

impl Store for Postgres {
    fn write(&mut self, batch: &Batch) -> Result<(), HistoryError> {
        let mut tx = self.client.transaction().map_err(err)?;
        let insert = tx
            .prepare(
                "INSERT INTO transitions (at_ms, service, instance, from_state, to_state, reason, rtt_ms, silent_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .map_err(err)?;
        for t in &batch.transitions {
            tx.execute(
                &insert,
                &[
                    &t.at_ms,
                    &t.service,
                    &t.instance,
                    &t.from,
                    &t.to,
                    &t.reason,
                    &t.rtt_ms,
                    &t.silent_ms,
                ],
            )
            .map_err(err)?;
        }
        let change = tx
            .prepare(
                "INSERT INTO service_changes (at_ms, service, from_state, to_state, up, expected)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .map_err(err)?;
        for c in &batch.services {
            tx.execute(
                &change,
                &[&c.at_ms, &c.service, &c.from, &c.to, &c.up, &c.expected],
            )
            .map_err(err)?;
        }
        let upsert = tx
            .prepare(&format!(
                "INSERT INTO minutes (minute_ms, service, instance, echoes, misses, rtt_p50_ms, rtt_p99_ms, up_ms, observed_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) {UPSERT_MINUTE_TAIL}"
            ))
            .map_err(err)?;
        for m in &batch.minutes {
            tx.execute(
                &upsert,
                &[
                    &m.minute_ms,
                    &m.service,
                    &m.instance,
                    &m.echoes,
                    &m.misses,
                    &m.rtt_p50_ms,
                    &m.rtt_p99_ms,
                    &m.up_ms,
                    &m.observed_ms,
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn transitions(
        &mut self,
        who: Who<'_>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredTransition>, HistoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (filter, names): (&str, Vec<&str>) = match who {
            Who::Everyone => ("", vec![]),
            Who::Service(service) => ("service = $3 AND", vec![service]),
            Who::Instance(service, instance) => (
                "service = $3 AND instance = $4 AND",
                vec![service, instance],
            ),
        };
        let mut values: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&since_ms, &limit];
        values.extend(
            names
                .iter()
                .map(|n| n as &(dyn postgres::types::ToSql + Sync)),
        );
        let rows = self
            .client
            .query(
                &format!(
                    "{SELECT_TRANSITIONS} WHERE {filter} at_ms >= $1 ORDER BY at_ms DESC LIMIT $2"
                ),
                &values,
            )
            .map_err(err)?;
        Ok(rows.iter().map(to_transition).collect())
    }

    fn service_changes(
        &mut self,
        service: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredServiceChange>, HistoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT at_ms, service, from_state, to_state, up, expected FROM service_changes
                 WHERE service = $1 AND at_ms >= $2 ORDER BY at_ms DESC LIMIT $3",
                &[&service, &since_ms, &limit],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|row| StoredServiceChange {
                at_ms: row.get(0),
                service: row.get(1),
                from: row.get(2),
                to: row.get(3),
                up: row.get(4),
                expected: row.get(5),
            })
            .collect())
    }

    fn uptime(&mut self, since_ms: i64) -> Result<Vec<Uptime>, HistoryError> {
        let rows = self
            .client
            .query(
                "SELECT service, instance, SUM(up_ms)::BIGINT, SUM(observed_ms)::BIGINT FROM minutes
                 WHERE minute_ms >= $1 GROUP BY service, instance",
                &[&since_ms],
            )
            .map_err(err)?;
        Ok(rows
            .iter()
            .map(|row| Uptime {
                service: row.get(0),
                instance: row.get(1),
                up_ms: row.get(2),
                observed_ms: row.get(3),
            })
            .collect())
    }

    fn prune(&mut self, before_ms: i64) -> Result<u64, HistoryError> {
        let a = self
            .client
            .execute("DELETE FROM transitions WHERE at_ms < $1", &[&before_ms])
            .map_err(err)?;
        let b = self
            .client
            .execute("DELETE FROM minutes WHERE minute_ms < $1", &[&before_ms])
            .map_err(err)?;
        let c = self
            .client
            .execute(
                "DELETE FROM service_changes WHERE at_ms < $1",
                &[&before_ms],
            )
            .map_err(err)?;
        Ok(a + b + c)
    }
}
