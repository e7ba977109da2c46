//! The HTTP surface cannot hurt detection (issue 24), end to end: 25,000
//! half-open connections to the monitor's endpoint (two flooding processes,
//! each under this machine's descriptor limit), and every broker connection
//! closed from the broker's side during them. The monitor lives, keeps its
//! descriptors and memory bounded, reconnects, judges a kill on time, and
//! `/healthz` answers again within seconds of the flood's end; `/metrics`
//! counts the cap reached. A private node: the test closes connections.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// Opens N non-blocking connections (the handshake is left to the kernel:
/// the ones past the server's backlog stay half-open), says how many, and
/// holds them until its stdin closes.
const FLOOD: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = []
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect_ex((host, port))
    except OSError:
        break
    held.append(s)
print(len(held), flush=True)
sys.stdin.read()
"#;

struct Flood(Child);

impl Flood {
    fn start(port: u16, connections: usize) -> (Self, usize) {
        let mut child = Command::new("python3")
            .args(["-c", FLOOD, "127.0.0.1", &port.to_string()])
            .arg(connections.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let opened = line.trim().parse().unwrap_or(0);
        (Self(child), opened)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn false_alarm(v: &serde_json::Value, service: &str) -> bool {
    v["kind"] == "transition"
        && v["service"] == service
        && (v["to"] == "down" || v["to"] == "suspect")
}

#[test]
fn a_flood_of_half_open_http_connections_never_blinds_the_monitor() {
    let node = PrivateBroker::start();
    let url = node.url();
    let mut monitor = monitor(&url, &["--listen", "127.0.0.1:0"]);
    let base = monitor.listen_base();
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let (steady, doomed) = (unique("steady"), unique("doomed"));
    let _steady = mock(&url, &steady, "s-1", &[]);
    let mut doomed_svc = mock(&url, &doomed, "d-1", &[]);
    for service in [&steady, &doomed] {
        monitor.wait_json(
            Duration::from_secs(15),
            "up",
            transition(service, "up", "first_seen"),
        );
    }
    let rss_before = monitor.rss_kib();

    let floods: Vec<(Flood, usize)> = (0..2).map(|_| Flood::start(port, 12_500)).collect();
    let opened: usize = floods.iter().map(|(_, n)| n).sum();
    assert!(
        opened >= 20_000,
        "the flood opened only {opened} connections"
    );

    // During the flood: every broker connection closed from the broker's
    // side. The monitor reconnects (its descriptors were not all taken)...
    node.close_all_connections();
    monitor.wait_json(Duration::from_secs(15), "judging again", |v| {
        v["kind"] == "link" && v["status"] == "connected" && v["judging"] == true
    });
    // ... and judges on time: a kill is DOWN within the usual bound.
    doomed_svc.kill();
    let down = monitor.wait_json(
        Duration::from_secs(10),
        "the killed service DOWN during the flood",
        transition(&doomed, "down", "timed_out"),
    );
    assert_eq!(down["service"], doomed.as_str());
    let held = open_descriptors(monitor.pid());
    assert!(
        held < 1_000,
        "the monitor holds {held} descriptors during a flood of {opened}"
    );
    let rss = monitor.rss_kib();
    assert!(
        rss < rss_before + 64 * 1024,
        "memory grew from {rss_before} to {rss} KiB during the flood"
    );

    // The flood ends: /healthz answers again within seconds.
    drop(floods);
    let healthy = wait_for(Duration::from_secs(10), "/healthz after the flood", || {
        http_get(&format!("{base}/healthz")).filter(|(status, _)| *status == 200)
    });
    assert!(healthy.1.starts_with("ok"), "{}", healthy.1);
    let page = http_get(&format!("{base}/metrics")).expect("metrics").1;
    let at_cap = metric_in(&page, "heartbeat_http_connections_at_cap_total").unwrap_or(0.0);
    assert!(at_cap >= 1.0, "the cap was reached and counted: {page}");
    assert_eq!(
        metric_in(&page, "heartbeat_http_connections_max"),
        Some(256.0)
    );
    // The steady service was never judged failing: the reconnect kept it
    // STALE at worst.
    let lines = monitor.collect_json(Duration::from_millis(200));
    assert!(
        !lines.iter().any(|v| false_alarm(v, &steady)),
        "a false alarm for the steady service: {lines:?}"
    );
    monitor.stop_cleanly("TERM", Duration::from_secs(10));
}
