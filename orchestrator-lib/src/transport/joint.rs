//! A link to each of several brokers that are not one cluster
//! ([`super::connect_each`]): one AMQP link per node behind one [`Link`]
//! handle. Each node's link reconnects to its own node only; this task
//! copies what is published to every node that is up, and says the joint
//! is connected while any node is. What the nodes receive goes straight to
//! the one inbox (they share its sender), and they count into one
//! [`LinkStats`]. Knows nothing of lapin: each node is an `amqp::run` task.
//!
//! [`Link`]: super::Link
//! [`LinkStats`]: super::LinkStats

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{
    BAD_MESSAGE_LOG_PERIOD, LinkOptions, LinkStats, LinkStatus, LogLimiter, Outgoing, Plumbing,
    amqp,
};
use crate::{BrokerUrls, Endpoint, Error};

struct Node {
    /// Redacted, for the log.
    url: String,
    out: mpsc::Sender<Outgoing>,
    status: watch::Receiver<LinkStatus>,
    token: CancellationToken,
    task: JoinHandle<()>,
}

pub(super) async fn run(
    urls: BrokerUrls,
    endpoint: Endpoint,
    options: LinkOptions,
    mut p: Plumbing,
) {
    let (changed_tx, mut changed) = mpsc::channel::<()>(16);
    let mut nodes = Vec::with_capacity(urls.len());
    for url in urls.as_slice() {
        let (out, out_rx) = mpsc::channel(options.outgoing_capacity.max(1));
        let (status_tx, status) = watch::channel(LinkStatus::Connecting);
        // Not a child of the joint's token: on a close, what is queued is
        // handed to the nodes first, and only then are they closed.
        let token = CancellationToken::new();
        let plumbing = Plumbing {
            out_rx,
            inbox_tx: p.inbox_tx.clone(),
            status_tx,
            stats: p.stats.clone(),
            token: token.clone(),
            max_body: p.max_body,
            keys: p.keys.clone(),
            bad_message_log: LogLimiter::new(BAD_MESSAGE_LOG_PERIOD),
        };
        let task = tokio::spawn(amqp::run(
            BrokerUrls::from(url),
            vec![endpoint.clone()],
            options.clone(),
            plumbing,
        ));
        let mut watching = status.clone();
        let tell = changed_tx.clone();
        tokio::spawn(async move {
            while watching.changed().await.is_ok() {
                if tell.send(()).await.is_err() {
                    break;
                }
            }
        });
        nodes.push(Node {
            url: url.redacted().to_owned(),
            out,
            status,
            token,
            task,
        });
    }
    drop(changed_tx);
    loop {
        tokio::select! {
            biased;
            _ = p.token.cancelled() => break,
            Some(()) = changed.recv() => {
                let status = combined(&nodes);
                if let LinkStatus::Failed(error) = &status {
                    if let Error::AlreadyRunning { .. } = error
                        && let Some(node) = nodes.iter().find(|n| matches!(*n.status.borrow(), LinkStatus::Failed(_)))
                    {
                        warn!(broker = %node.url, "if these brokers are nodes of one cluster, the same queue cannot be held on two of them: connect to the cluster, not to each node");
                    }
                    p.status_tx.send_replace(status);
                    for node in nodes {
                        node.token.cancel();
                        let _ = node.task.await;
                    }
                    return;
                }
                p.status_tx.send_if_modified(|now| {
                    let changed = *now != status;
                    *now = status;
                    changed
                });
            }
            Some(outgoing) = p.out_rx.recv() => forward(&nodes, outgoing, &p.stats),
        }
    }
    // Closing: what was queued (a goodbye) goes to the nodes before they close.
    while let Ok(outgoing) = p.out_rx.try_recv() {
        forward(&nodes, outgoing, &p.stats);
    }
    for node in nodes {
        node.token.cancel();
        let _ = node.task.await;
    }
    p.status_tx.send_replace(LinkStatus::Closed);
}

/// To every node that is up; dropped and counted once when none is.
fn forward(nodes: &[Node], outgoing: Outgoing, stats: &LinkStats) {
    let mut sent = false;
    for node in nodes {
        if *node.status.borrow() == LinkStatus::Connected {
            match node.out.try_send(outgoing.clone()) {
                Ok(()) => sent = true,
                Err(_) => LinkStats::count(&stats.dropped),
            }
        }
    }
    if !sent {
        LinkStats::count(&stats.dropped);
    }
}

/// The joint's status from its nodes': a failure no retry fixes on any node
/// stops it (the configuration is wrong); otherwise connected while any
/// node is, blocked while every node up is blocked, else the first node's
/// retry.
fn combined(nodes: &[Node]) -> LinkStatus {
    let statuses: Vec<LinkStatus> = nodes.iter().map(|n| n.status.borrow().clone()).collect();
    if let Some(failed) = statuses.iter().find(|s| matches!(s, LinkStatus::Failed(_))) {
        return failed.clone();
    }
    if statuses.contains(&LinkStatus::Connected) {
        return LinkStatus::Connected;
    }
    if let Some(blocked) = statuses
        .iter()
        .find(|s| matches!(s, LinkStatus::Blocked { .. }))
    {
        return blocked.clone();
    }
    statuses
        .into_iter()
        .find(|s| matches!(s, LinkStatus::Reconnecting { .. }))
        .unwrap_or(LinkStatus::Connecting)
}
