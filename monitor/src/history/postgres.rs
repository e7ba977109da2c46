//! The shared store: PostgreSQL, for a team. The same schema and queries as
//! SQLite, called from a blocking thread like SQLite's.
//!
//! The async client on a small runtime of its own, rather than the
//! synchronous `postgres` crate, so that every call has a deadline: the
//! synchronous client bounds only the TCP connect, and a server that
//! accepts connections and never answers held the writer, the history API
//! and the monitor's stop forever. A call past its deadline is dropped with
//! its connection, and the next one connects afresh.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, Socket};
use tracing::debug;

use super::schema::{
    CREATE_VERSIONS, MIGRATIONS, UPSERT_MINUTE_TAIL, UPSERT_SILENCE_TAIL, ours, uptime_query,
};
use super::{
    Batch, HistoryError, Store, StoredPending, StoredServiceChange, StoredSilence,
    StoredTransition, Uptime, Who,
};

pub struct Postgres {
    runtime: tokio::runtime::Runtime,
    client: Client,
    connection: Connection<Socket, NoTlsStream>,
    deadline: Duration,
}

/// The client's own Display says only "db error"; the cause is in its source.
fn err(e: tokio_postgres::Error) -> HistoryError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    HistoryError::Store(format!("PostgreSQL: {}", text.replace('\n', " ")))
}

fn no_answer(deadline: Duration) -> HistoryError {
    HistoryError::Store(format!(
        "PostgreSQL did not answer within {} (history.timeout)",
        humantime::format_duration(deadline)
    ))
}

/// Drive the connection (its socket) until it ends; what the server says
/// on the side (a NOTICE such as "relation ... already exists, skipping")
/// is no news for the operator's log.
async fn drive(connection: &mut Connection<Socket, NoTlsStream>) -> HistoryError {
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notice(notice))) => {
                debug!(target: "monitor::history", "PostgreSQL says: {}", notice.message());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return err(e),
            None => return HistoryError::Store("PostgreSQL closed the connection".into()),
        }
    }
}

impl Postgres {
    /// Connect and migrate, within `deadline` for the connection and within
    /// it again for each statement.
    pub fn connect(url: &str, deadline: Duration) -> Result<Self, HistoryError> {
        // The URL holds a password: errors never repeat it.
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| HistoryError::Store(format!("PostgreSQL: invalid history.url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(deadline);
        }
        // A peer that stops acknowledging what we send is given up too.
        config.tcp_user_timeout(deadline);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HistoryError::Store(format!("PostgreSQL: cannot start a runtime: {e}")))?;
        let (client, connection) = runtime
            .block_on(async { tokio::time::timeout(deadline, config.connect(NoTls)).await })
            .map_err(|_| no_answer(deadline))?
            .map_err(err)?;
        let mut store = Self {
            runtime,
            client,
            connection,
            deadline,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Run one call on the client, driving the connection meanwhile, within the deadline.
    fn call<'a, T, Fut>(&'a mut self, op: impl FnOnce(&'a Client) -> Fut) -> Result<T, HistoryError>
    where
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + 'a,
    {
        let Self {
            runtime,
            client,
            connection,
            deadline,
        } = self;
        let deadline = *deadline;
        let call = op(client);
        runtime.block_on(async move {
            let both = async {
                tokio::select! {
                    outcome = call => outcome.map_err(err),
                    ended = drive(connection) => Err(ended),
                }
            };
            tokio::time::timeout(deadline, both)
                .await
                .unwrap_or_else(|_| Err(no_answer(deadline)))
        })
    }

    fn migrate(&mut self) -> Result<(), HistoryError> {
        self.call(|c| c.batch_execute(CREATE_VERSIONS))?;
        for (version, sql) in MIGRATIONS {
            self.call(|c| async move {
                c.batch_execute("BEGIN").await?;
                // Two monitors starting at once on one database take turns here.
                c.batch_execute("LOCK TABLE heartbeat_schema IN EXCLUSIVE MODE")
                    .await?;
                let done = c
                    .query_opt(
                        "SELECT 1 FROM heartbeat_schema WHERE version = $1",
                        &[version],
                    )
                    .await?
                    .is_some();
                if !done {
                    c.batch_execute(sql).await?;
                    c.execute(
                        "INSERT INTO heartbeat_schema (version, applied_at_ms) VALUES ($1, $2)",
                        &[version, &chrono::Utc::now().timestamp_millis()],
                    )
                    .await?;
                }
                c.batch_execute("COMMIT").await
            })?;
        }
        Ok(())
    }
}

fn to_transition(row: &tokio_postgres::Row) -> StoredTransition {
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
    fn check(&mut self) -> Result<(), HistoryError> {
        self.call(|c| c.batch_execute("SELECT 1"))
    }

    fn write(&mut self, batch: &Batch) -> Result<(), HistoryError> {
        self.call(|c| async move {
            c.batch_execute("BEGIN").await?;
            let insert = c
                .prepare(
                    "INSERT INTO transitions (at_ms, service, instance, from_state, to_state, reason, rtt_ms, silent_ms, fleet, monitor)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .await?;
            for t in &batch.transitions {
                c.execute(
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
                        &batch.by.fleet,
                        &batch.by.monitor,
                    ],
                )
                .await?;
            }
            let change = c
                .prepare(
                    "INSERT INTO service_changes (at_ms, service, from_state, to_state, up, expected, fleet, monitor)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .await?;
            for s in &batch.services {
                c.execute(
                    &change,
                    &[
                        &s.at_ms,
                        &s.service,
                        &s.from,
                        &s.to,
                        &s.up,
                        &s.expected,
                        &batch.by.fleet,
                        &batch.by.monitor,
                    ],
                )
                .await?;
            }
            let upsert = c
                .prepare(&format!(
                    "INSERT INTO minutes (minute_ms, service, instance, echoes, misses, rtt_p50_ms, rtt_p99_ms, up_ms, observed_ms, fleet, monitor)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) {UPSERT_MINUTE_TAIL}"
                ))
                .await?;
            for m in &batch.minutes {
                c.execute(
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
                        &batch.by.fleet,
                        &batch.by.monitor,
                    ],
                )
                .await?;
            }
            c.batch_execute("COMMIT").await
        })
    }

    fn transitions(
        &mut self,
        fleet: &str,
        who: Who<'_>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredTransition>, HistoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (filter, names): (&str, Vec<&str>) = match who {
            Who::Everyone => ("", vec![]),
            Who::Service(service) => ("service = $4 AND", vec![service]),
            Who::Instance(service, instance) => (
                "service = $4 AND instance = $5 AND",
                vec![service, instance],
            ),
        };
        let sql = format!(
            "{SELECT_TRANSITIONS} WHERE {filter} {} AND at_ms >= $1 ORDER BY at_ms DESC LIMIT $2",
            ours("$3")
        );
        let rows = self.call(|c| async move {
            let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                vec![&since_ms, &limit, &fleet];
            values.extend(
                names
                    .iter()
                    .map(|n| n as &(dyn tokio_postgres::types::ToSql + Sync)),
            );
            c.query(&sql, &values).await
        })?;
        Ok(rows.iter().map(to_transition).collect())
    }

    fn last_transitions(&mut self, fleet: &str) -> Result<Vec<StoredTransition>, HistoryError> {
        let rows = self.call(|c| async move {
            c.query("SELECT t.at_ms, t.service, t.instance, t.from_state, t.to_state, t.reason, t.rtt_ms, t.silent_ms
     FROM transitions t JOIN (
         SELECT service, instance, MAX(at_ms) AS last_ms FROM transitions
         WHERE fleet = $1 GROUP BY service, instance
     ) latest ON t.service = latest.service AND t.instance = latest.instance
         AND t.at_ms = latest.last_ms AND t.fleet = $1", &[&fleet])
                .await
        })?;
        Ok(rows.iter().map(to_transition).collect())
    }

    fn service_changes(
        &mut self,
        fleet: &str,
        service: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredServiceChange>, HistoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT at_ms, service, from_state, to_state, up, expected FROM service_changes
             WHERE service = $1 AND {} AND at_ms >= $2 ORDER BY at_ms DESC LIMIT $3",
            ours("$4")
        );
        let rows = self
            .call(|c| async move { c.query(&sql, &[&service, &since_ms, &limit, &fleet]).await })?;
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

    fn uptime(&mut self, fleet: &str, since_ms: i64) -> Result<Vec<Uptime>, HistoryError> {
        // PostgreSQL sums BIGINTs into NUMERIC: cast back.
        let sql = uptime_query("$1", "$2")
            .replace("SUM(up_ms)", "SUM(up_ms)::BIGINT")
            .replace("SUM(observed_ms)", "SUM(observed_ms)::BIGINT");
        let rows = self.call(|c| async move { c.query(&sql, &[&since_ms, &fleet]).await })?;
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
        self.call(|c| async move {
            let mut gone = 0;
            for table in ["transitions", "service_changes"] {
                gone += c
                    .execute(
                        &format!("DELETE FROM {table} WHERE at_ms < $1"),
                        &[&before_ms],
                    )
                    .await?;
            }
            gone += c
                .execute("DELETE FROM minutes WHERE minute_ms < $1", &[&before_ms])
                .await?;
            Ok(gone)
        })
    }

    fn save_silence(&mut self, s: &StoredSilence) -> Result<(), HistoryError> {
        let s = s.clone();
        self.call(|c| async move {
            c.execute(
                &format!(
                    "INSERT INTO silences (id, service, instance, starts_at_ms, ends_at_ms, reason, created_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) {UPSERT_SILENCE_TAIL}"
                ),
                &[&s.id, &s.service, &s.instance, &s.starts_at_ms, &s.ends_at_ms, &s.reason, &s.created_at_ms],
            )
            .await
        })?;
        Ok(())
    }

    fn silences(&mut self, after_ms: i64) -> Result<Vec<StoredSilence>, HistoryError> {
        let rows = self.call(|c| async move {
            c.query(
                "SELECT id, service, instance, starts_at_ms, ends_at_ms, reason, created_at_ms
                 FROM silences WHERE ends_at_ms > $1 ORDER BY ends_at_ms, id",
                &[&after_ms],
            )
            .await
        })?;
        Ok(rows
            .iter()
            .map(|row| StoredSilence {
                id: row.get(0),
                service: row.get(1),
                instance: row.get(2),
                starts_at_ms: row.get(3),
                ends_at_ms: row.get(4),
                reason: row.get(5),
                created_at_ms: row.get(6),
            })
            .collect())
    }

    fn save_pending(&mut self, alerts: &[StoredPending]) -> Result<(), HistoryError> {
        let alerts = alerts.to_vec();
        self.call(|c| async move {
            for a in &alerts {
                c.execute(
                    "INSERT INTO notify_pending (id, monitor, target, created_at_ms, body)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    &[&a.id, &a.monitor, &a.target, &a.created_at_ms, &a.body],
                )
                .await?;
            }
            Ok(())
        })
    }

    fn delete_pending(&mut self, ids: &[String]) -> Result<(), HistoryError> {
        let ids = ids.to_vec();
        self.call(|c| async move {
            c.execute("DELETE FROM notify_pending WHERE id = ANY($1)", &[&ids])
                .await
        })?;
        Ok(())
    }

    fn pending(&mut self, monitor: &str) -> Result<Vec<StoredPending>, HistoryError> {
        let monitor = monitor.to_owned();
        let rows = self.call(|c| async move {
            c.query(
                "SELECT id, monitor, target, created_at_ms, body FROM notify_pending
                 WHERE monitor = $1 ORDER BY created_at_ms, id",
                &[&monitor],
            )
            .await
        })?;
        Ok(rows
            .iter()
            .map(|row| StoredPending {
                id: row.get(0),
                monitor: row.get(1),
                target: row.get(2),
                created_at_ms: row.get(3),
                body: row.get(4),
            })
            .collect())
    }
}
