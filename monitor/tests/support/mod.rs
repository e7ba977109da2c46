//! Helpers for end-to-end tests: run the real binaries against a real
//! RabbitMQ and wait for what they print, each wait with a deadline.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod alertmanager;
mod broker_node;
pub mod browser;
mod database;
mod receiver;
pub mod smtp;
pub use broker_node::{PrivateBroker, make_certificates};
pub use database::{Database, POSTGRES};
pub use receiver::{Hook, Received, hook_event};

/// The shared broker every machine of this project runs.
pub const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The fleet a monitor on [`BROKER`] records its history under (its host and vhost).
#[allow(dead_code)]
pub const FLEET: &str = "127.0.0.1:5672/%2f";

/// Fast enough for tests, slow enough for a loaded two-core CI machine.
pub const INTERVAL_MS: u64 = 200;
pub const TIMEOUT_MS: u64 = 1000;

pub fn monitor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_monitor"))
}

/// `cargo test` builds only the binaries of the package under test, so the
/// first test that needs `mock-service` builds it into the same target
/// directory (a no-op when it is already fresh).
pub fn mock_bin() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_mock_service)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build_mock_service() -> Result<PathBuf, String> {
    let monitor = monitor_bin();
    let profile_dir = monitor.parent().ok_or("monitor binary has no directory")?;
    let target_dir = profile_dir
        .parent()
        .ok_or("profile directory has no parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "mock-service",
            "--bin",
            "mock-service",
        ])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo to build mock-service: {e}"))?;
    if !status.success() {
        return Err(format!("building mock-service failed: {status}"));
    }
    let path = monitor.with_file_name(format!("mock-service{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is missing after building it", path.display()))
    }
}

/// A name no other test, or other run sharing the broker, uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A child process whose stdout lines and stderr text are collected.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    /// Lines read but not yet matched by a wait.
    pending: Vec<String>,
    stderr: Arc<Mutex<String>>,
    /// Disconnected once the child's stderr is closed and read to the end.
    stderr_read: Receiver<()>,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1");
        // The runner's broker variables never leak in; a test's own do.
        for name in ["CLOUDAMQP_URL", "AMQP_URL"] {
            if !command.get_envs().any(|(set, _)| set == name) {
                command.env_remove(name);
            }
        }
        // History is on by default (heartbeat.db in the working directory);
        // a test that wants it names its own store.
        let names_a_store = command.get_envs().any(|(name, _)| {
            name.to_str()
                .is_some_and(|n| n.starts_with("MONITOR__HISTORY__"))
        });
        if !names_a_store {
            command.env("MONITOR__HISTORY__PATH", "");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let (stderr_done, stderr_read) = channel::<()>();
        thread::spawn(move || {
            // Dropped when the pipe ends: the receiver then sees a disconnect.
            let _done = stderr_done;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
            pending: Vec::new(),
            stderr,
            stderr_read,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The base URL (`http://127.0.0.1:PORT`) of a monitor started with
    /// `--listen 127.0.0.1:0`, from the line it logs once it serves.
    pub fn listen_base(&self) -> String {
        let marker = "status API and page on http://";
        self.wait_stderr(Duration::from_secs(10), marker);
        let stderr = self.stderr();
        let rest = &stderr[stderr.find(marker).unwrap() + marker.len()..];
        format!("http://{}", rest.split('/').next().unwrap())
    }

    /// The next stdout line, within `within`, that is JSON and satisfies
    /// `wanted`. Every line must be JSON: headless output is for machines.
    pub fn wait_json(
        &mut self,
        within: Duration,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        let parse = |line: &str| -> Value {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
        };
        if let Some(i) = self.pending.iter().position(|l| wanted(&parse(l))) {
            return parse(&self.pending.remove(i));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let value = parse(&line);
                    if wanted(&value) {
                        return value;
                    }
                    self.pending.push(line);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "{}: no line with {what} within {within:?}.\nunmatched lines: {:#?}\nstderr:\n{}",
                    self.name,
                    self.pending,
                    self.stderr()
                ),
            }
        }
    }

    /// Watch stdout for `within` and fail on any line matching `unwanted`.
    /// Absence can only be shown over a window; keep it as short as the claim allows.
    pub fn expect_no_json(
        &mut self,
        within: Duration,
        what: &str,
        unwanted: impl Fn(&Value) -> bool,
    ) {
        for line in &self.pending {
            let value: Value = serde_json::from_str(line).unwrap();
            assert!(
                !unwanted(&value),
                "{}: unexpected {what}: {line}",
                self.name
            );
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let value: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                    assert!(
                        !unwanted(&value),
                        "{}: unexpected {what}: {line}\nstderr:\n{}",
                        self.name,
                        self.stderr()
                    );
                    self.pending.push(line);
                }
                Err(_) => return,
            }
        }
    }

    /// Every stdout line for `within` (also kept for later waits), for a
    /// claim about the whole window, such as which transition came last.
    pub fn collect_json(&mut self, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.pending.push(line),
                Err(_) => break,
            }
        }
        self.pending
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Wait for stderr to contain `text`.
    pub fn wait_stderr(&self, within: Duration, text: &str) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{}: stderr never said {text:?} within {within:?}:\n{}",
                self.name,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Send `signal` and expect a clean exit (code 0) within `within`.
    pub fn stop_cleanly(&mut self, signal: &str, within: Duration) {
        self.signal(signal);
        let status = self.wait_exit(within);
        assert!(
            status.success(),
            "{}: {status}\n{}",
            self.name,
            self.stderr()
        );
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for the process to exit, failing the test after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The exit can be seen before the reader thread has read the
                // last of stderr: wait for the pipe's end, so the caller reads
                // everything the process wrote.
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = self
                    .stderr_read
                    .recv_timeout(left.max(Duration::from_secs(1)));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "{} still running after {within:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless monitor with test timings and a unique id, in fixed mode
/// (the timings these tests assert are the timeout's); `--mode phi` in
/// `extra` overrides it.
pub fn monitor(url: &str, extra: &[&str]) -> Proc {
    monitor_with_env(url, extra, &[])
}

/// [`monitor`], with environment variables (`HEARTBEAT_KEY`, `RUST_LOG`).
pub fn monitor_with_env(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Proc {
    let id = unique("mon");
    let mut command = Command::new(monitor_bin());
    command.env("MONITOR__DETECTION__MODE", "fixed");
    // Signed only when the test says so, whatever the runner's environment holds.
    command
        .env_remove("HEARTBEAT_KEY")
        .envs(env.iter().copied())
        .args(["--headless", "--url", url, "--id", &id])
        .args([
            "--interval",
            &format!("{INTERVAL_MS}ms"),
            "--timeout",
            &format!("{TIMEOUT_MS}ms"),
        ])
        .args(extra);
    Proc::spawn(&format!("monitor {id}"), command)
}

pub fn mock(url: &str, name: &str, instance: &str, extra: &[&str]) -> Proc {
    mock_with_env(url, name, instance, extra, &[])
}

/// [`mock`], with environment variables.
pub fn mock_with_env(
    url: &str,
    name: &str,
    instance: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let mut command = Command::new(mock_bin());
    // Signed only when the test says so, whatever the runner's environment holds.
    command
        .env_remove("HEARTBEAT_KEY")
        .envs(env.iter().copied())
        .args(["--url", url, "--name", name, "--instance", instance])
        .args(extra);
    Proc::spawn(&format!("mock {name}/{instance}"), command)
}

/// A private directory under the system's temporary one, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A predicate on a transition line.
pub fn transition<'a>(
    service: &'a str,
    to: &'a str,
    reason: &'a str,
) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["service"] == service && v["to"] == to && v["reason"] == reason
}

/// Checks the fields every transition line must carry.
pub fn assert_well_formed(line: &Value) {
    for field in ["at", "service", "instance", "from", "to", "reason"] {
        assert!(
            line.get(field).is_some_and(|v| v.is_string()),
            "missing {field}: {line}"
        );
    }
    let at = line["at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(at).is_ok_and(|t| t.offset().local_minus_utc() == 0),
        "at is not RFC 3339 UTC: {at}"
    );
}

/// Wait until `probe` returns something, failing the test after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A headless monitor serving HTTP on a port of the system's choosing, and
/// its base URL (`http://127.0.0.1:PORT`), read from the line it logs.
pub fn http_monitor(url: &str, env: &[(&str, &str)]) -> (Proc, String) {
    http_monitor_with(url, &[], env)
}

/// [`http_monitor`], with more flags (`--scope NAME`).
pub fn http_monitor_with(url: &str, extra: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    let id = unique("mon");
    let mut command = Command::new(monitor_bin());
    // Fixed mode, as `monitor`: these tests' timings are the timeout's.
    command.env("MONITOR__DETECTION__MODE", "fixed");
    command
        .args([
            "--headless",
            "--url",
            url,
            "--id",
            &id,
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--interval",
            &format!("{INTERVAL_MS}ms"),
            "--timeout",
            &format!("{TIMEOUT_MS}ms"),
        ])
        .args(extra)
        .envs(env.iter().copied());
    let monitor = Proc::spawn(&format!("monitor {id}"), command);
    let base = monitor.listen_base();
    (monitor, base)
}

/// GET a URL: the status code and the body; `None` when nothing answers.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// The status document of a monitor, from its status API.
pub fn status_document(base: &str) -> Value {
    let (status, body) = http_get(&format!("{base}/api/v1/status")).expect("status API answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// One instance's entry in a status document.
pub fn status_entry<'a>(document: &'a Value, service: &str) -> Option<&'a Value> {
    document["services"]
        .as_array()?
        .iter()
        .find(|e| e["service"] == service)
}
impl Proc {
    /// Every stdout line that arrives within `within`, parsed, the ones
    /// already read but unmatched first, none kept: for a long run, where
    /// keeping every line would grow without bound.
    pub fn drain_json(&mut self, within: Duration) -> Vec<Value> {
        let mut lines: Vec<String> = std::mem::take(&mut self.pending);
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Resident memory, in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|kib| kib.trim().trim_end_matches(" kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

/// The lines of the file at `path` that mention `needle`, once there are at
/// least `n` (a command notifier's log, say: every test's services reach it).
pub fn wait_lines(path: &std::path::Path, needle: &str, n: usize, within: Duration) -> Vec<String> {
    wait_for(
        within,
        &format!("{n} lines about {needle} in {}", path.display()),
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text
                .lines()
                .filter(|line| line.contains(needle))
                .map(str::to_owned)
                .collect();
            (lines.len() >= n).then_some(lines)
        },
    )
}

/// Bodies published as anyone on the broker could: no checks, no signing.
/// Each is `(exchange, routing_key, body)`; `reply_to`, when given, goes on
/// every one. Returns once the broker has taken them all and the connection
/// is closed.
pub fn publish_raw<'a>(
    url: &str,
    messages: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
    reply_to: Option<&str>,
) {
    use lapin::{BasicProperties, Connection, ConnectionProperties, options::BasicPublishOptions};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let mut properties = BasicProperties::default();
        if let Some(queue) = reply_to {
            properties = properties.with_reply_to(queue.into());
        }
        for (exchange, routing_key, body) in messages {
            channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    body,
                    properties.clone(),
                )
                .await
                .unwrap();
        }
        connection.close(200, "done".into()).await.unwrap();
    });
}

/// The value of one series (`name{labels}`, exactly as exposed) in a
/// Prometheus text page; `None` when the page has no such series.
pub fn metric_in(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The value of one series on a monitor's `/metrics`.
pub fn metric(base: &str, series: &str) -> Option<f64> {
    let (_, page) = http_get(&format!("{base}/metrics")).expect("metrics answer");
    metric_in(&page, series)
}
