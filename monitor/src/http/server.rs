//! The HTTP endpoint's own accept loop, so that no client can hurt
//! detection (issue 24): `axum::serve` has no bound on connections and no
//! deadline on a request's headers, so 25,000 half-open connections took
//! every descriptor the process had, the broker link's reconnect among them.
//!
//! - At most `max_connections` connections are served at once. Beyond it the
//!   loop stops accepting: new ones wait in the kernel's backlog, holding no
//!   descriptor and no memory of ours, and are counted once each time the
//!   cap is reached.
//! - A request's headers must arrive within [`HEADER_DEADLINE`], and a
//!   connection's buffer is bounded ([`MAX_BUFFER`]): a slow or silent
//!   client costs one slot for seconds, never memory that grows.
//! - The cap leaves descriptors for the broker link, the history store and
//!   the alert targets: it is lowered to fit the process's limit (raised
//!   to its hard limit at start, `raise_descriptor_limit`).
//!
//! Every connection is a task in one `JoinSet`, ended on `shutdown` and
//! joined.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::limited::{Limited, warn_limited};
use crate::metrics::HttpStats;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a client has to send a request's headers.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// The most a connection buffers (headers and a body being read).
const MAX_BUFFER: usize = 64 * 1024;
/// Descriptors kept for everything but the HTTP endpoint: the broker
/// links, the history store, alert targets, the log file, the runtime.
const RESERVED_DESCRIPTORS: u64 = 256;
/// How long open connections get to finish when the monitor stops.
const DRAIN: Duration = Duration::from_secs(2);

/// Raise the soft limit on open descriptors to the hard one (as most
/// daemons do: the default soft limit of 1,024 is a relic), and return it.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The cap that fits `wanted` into `descriptors`, keeping the reserve.
pub fn fitted_cap(wanted: usize, descriptors: u64) -> usize {
    let room = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(8);
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// Serve `router` on `listener` until `shutdown`, at most `cap` at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cap: usize,
    stats: Arc<HttpStats>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    stats.max.store(cap as u64, Ordering::Relaxed);
    let slots = Arc::new(Semaphore::new(cap));
    let mut connections = JoinSet::new();
    let mut accept_log = Limited::new("http accept".into());
    loop {
        while connections.try_join_next().is_some() {}
        if slots.available_permits() == 0 {
            stats.at_cap.fetch_add(1, Ordering::Relaxed);
        }
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    // Out of descriptors or a connection reset before it
                    // was taken: try again shortly, never spin.
                    warn_limited!(
                        accept_log,
                        "the HTTP endpoint cannot accept a connection ({error}); trying again"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let service = TowerToHyperService::new(router.clone());
        let stats = stats.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .max_buf_size(MAX_BUFFER)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::time::timeout(DRAIN, connection.as_mut())
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if ended.is_err_and(|error| error.is_timeout()) {
                stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_broker_link() {
        assert_eq!(fitted_cap(256, 1_048_576), 256);
        assert_eq!(fitted_cap(256, 1024), 256);
        assert_eq!(fitted_cap(1000, 1024), 768);
        assert_eq!(fitted_cap(256, 100), 8);
    }
}
