//! A private Prometheus Alertmanager (Debian's `prometheus-alertmanager`)
//! on its own port, config and data directory, forwarding every
//! notification to a webhook the test listens on. Killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::{Proc, unique};

pub const BINARY: &str = "prometheus-alertmanager";

pub struct Alertmanager {
    pub url: String,
    dir: PathBuf,
    process: Proc,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A GET on loopback: the status code and the body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

impl Alertmanager {
    /// Start it and wait until it is ready. `webhook` gets every
    /// notification, resolved ones too, grouped per alert, at once.
    pub fn start(webhook: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("alertmanager"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "route:\n  receiver: test\n  group_by: ['alertname', 'service', 'instance']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
        );
        std::fs::write(dir.join("alertmanager.yml"), config).unwrap();
        let port = free_port();
        let mut command = Command::new(BINARY);
        command
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: this one is alone, and must not find the others.
            .arg("--cluster.listen-address=");
        let process = Proc::spawn("alertmanager", command);
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(port, "/-/ready").is_none_or(|(status, _)| status != 200) {
            assert!(
                Instant::now() < deadline,
                "Alertmanager not ready within 20s (is {BINARY} installed? scripts/test.sh installs it):\n{}",
                process.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
        Self {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            process,
        }
    }

    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
