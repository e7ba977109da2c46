//! Running the monitor as a service: what `--version` says, `monitor
//! check-config`, and readiness and watchdog through sd_notify.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::*;

fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_remove("CLOUDAMQP_URL")
        .env_remove("AMQP_URL")
        .env("NO_COLOR", "1");
    // The runner's MONITOR__ settings must not decide a check.
    for (name, _) in std::env::vars() {
        if name.starts_with("MONITOR__") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The commit this checkout is at, as `--version` names it; `None` outside a checkout.
fn head_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_owned())
}

#[test]
fn version_names_the_package_version_and_the_commit() {
    let commit = head_commit().unwrap_or_else(|| "unknown".to_owned());
    for bin in [monitor_bin(), mock_bin()] {
        let out = run(&bin, &["--version"], &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let name = bin.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            text(&out.stdout).trim(),
            format!("{name} {} (commit {commit})", env!("CARGO_PKG_VERSION"))
        );
    }
}

/// A source archive has no .git: `git archive` writes the commit into
/// packaging/commit, where the build script reads it.
#[test]
fn a_source_archive_carries_its_commit() {
    let Some(commit) = head_commit() else {
        eprintln!("skipped: not a git checkout");
        return;
    };
    let out = Command::new("sh")
        .args(["-c", "git archive HEAD packaging/commit | tar -xOf -"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let content = text(&out.stdout);
    assert!(content.starts_with(&commit), "{content:?}");
}

fn write_config(name: &str, body: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}-{name}.toml", unique("check")));
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn check_config_accepts_a_valid_file_and_the_shipped_example() {
    let good = write_config(
        "good",
        "interval = \"500ms\"\ntimeout = \"2s\"\nexpect = [\"orders\"]\n",
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml");
    for file in [good.as_path(), example.as_path()] {
        let out = run(
            &monitor_bin(),
            &["check-config", "--config", file.to_str().unwrap()],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{}: ok\n", file.display()));
        assert_eq!(text(&out.stderr), "");
    }
    // Without a file: the defaults and the environment.
    let out = run(&monitor_bin(), &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let _ = std::fs::remove_file(good);
}

#[test]
fn check_config_refuses_a_bad_file_with_one_line_and_exit_code_2() {
    let missing = std::env::temp_dir().join(unique("no-such-file"));
    // A file, the environment beside it, and what the one line must name.
    type Case = (
        std::path::PathBuf,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            write_config("short", "interval = \"2s\"\ntimeout = \"1s\"\n"),
            &[],
            "timeout",
        ),
        (
            write_config("unknown", "intervall = \"2s\"\n"),
            &[],
            "intervall",
        ),
        (write_config("syntax", "interval = \n"), &[], "config"),
        (
            write_config("url", "[broker]\nurl = \"amqp://user:hunter2@[broken\"\n"),
            &[],
            "URL",
        ),
        (missing, &[], "does not exist"),
        // The environment is checked with the file, as the monitor would load it.
        (
            write_config("env", "interval = \"1s\"\n"),
            &[("MONITOR__TIMEOUT", "10ms")],
            "timeout",
        ),
    ];
    for (file, env, fragment) in cases {
        let out = run(
            &monitor_bin(),
            &["check-config", "--config", file.to_str().unwrap()],
            env,
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file:?}: {stderr}");
        assert_eq!(text(&out.stdout), "", "{file:?}");
        assert_eq!(stderr.lines().count(), 1, "{file:?}: {stderr}");
        assert!(stderr.starts_with("monitor: "), "{stderr}");
        assert!(stderr.contains(fragment), "{file:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let _ = std::fs::remove_file(file);
    }
}

/// The supervisor's end of `NOTIFY_SOCKET`, as systemd holds it.
struct Supervisor {
    socket: std::os::unix::net::UnixDatagram,
    /// What `NOTIFY_SOCKET` is set to.
    name: String,
    path: Option<std::path::PathBuf>,
    /// Every message received, in order, each its lines.
    heard: Vec<Vec<String>>,
}

impl Supervisor {
    fn at_path() -> Self {
        let path = std::env::temp_dir().join(format!("{}.sock", unique("notify")));
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        Self::new(socket, path.display().to_string(), Some(path))
    }

    /// In the abstract namespace: `NOTIFY_SOCKET=@name`.
    fn abstract_name() -> Self {
        use std::os::linux::net::SocketAddrExt;
        let name = unique("notify");
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = std::os::unix::net::UnixDatagram::bind_addr(&address).unwrap();
        Self::new(socket, format!("@{name}"), None)
    }

    fn new(
        socket: std::os::unix::net::UnixDatagram,
        name: String,
        path: Option<std::path::PathBuf>,
    ) -> Self {
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        Self {
            socket,
            name,
            path,
            heard: Vec::new(),
        }
    }

    /// Read until a message has a line `wanted` accepts; that line.
    fn wait_line(
        &mut self,
        within: std::time::Duration,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let lines: Vec<String> = text(&buf[..n]).lines().map(str::to_owned).collect();
                let found = lines.iter().find(|line| wanted(line)).cloned();
                self.heard.push(lines);
                if let Some(line) = found {
                    return line;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not within {within:?}: {what}; heard {:?}",
                self.heard
            );
        }
    }

    fn heard_line(&self, line: &str) -> bool {
        self.heard.iter().flatten().any(|l| l == line)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn tells_the_supervisor_ready_once_it_can_judge_then_keeps_the_watchdog_fed() {
    use std::time::Duration;
    let mut supervisor = Supervisor::at_path();
    let service = unique("notified");
    let _svc = mock(BROKER, &service, "a", &[]);
    let mut monitor = monitor_with_env(
        BROKER,
        &[],
        &[
            ("NOTIFY_SOCKET", supervisor.name.as_str()),
            // systemd sets both; keep-alives every 200 ms.
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    supervisor.wait_line(Duration::from_secs(15), "READY=1", |l| l == "READY=1");
    // Often in the same datagram as READY=1.
    let ok = |l: &str| l.starts_with("STATUS=ok: ") && l.ends_with("instances tracked");
    if !supervisor.heard.iter().flatten().any(|l| ok(l)) {
        supervisor.wait_line(Duration::from_secs(5), "status ok", ok);
    }
    // The loop runs on time: keep-alives keep coming, READY never again.
    for _ in 0..5 {
        supervisor.wait_line(Duration::from_secs(3), "a keep-alive", |l| {
            l == "WATCHDOG=1"
        });
    }
    let readies = supervisor
        .heard
        .iter()
        .flatten()
        .filter(|l| *l == "READY=1")
        .count();
    assert_eq!(readies, 1, "{:?}", supervisor.heard);
    monitor.wait_json(Duration::from_secs(10), "the service UP", |v| {
        v["service"] == service.as_str() && v["to"] == "up"
    });
    monitor.stop_cleanly("TERM", Duration::from_secs(10));
    supervisor.wait_line(Duration::from_secs(3), "STOPPING=1", |l| l == "STOPPING=1");
}

#[test]
fn without_its_broker_the_monitor_is_alive_but_never_ready() {
    use std::time::Duration;
    let mut supervisor = Supervisor::abstract_name();
    // Nothing listens there: the link keeps reconnecting.
    let nowhere = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let mut monitor = monitor_with_env(
        &nowhere,
        &[],
        &[
            ("NOTIFY_SOCKET", supervisor.name.as_str()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    let status = supervisor.wait_line(Duration::from_secs(10), "a status about the link", |l| {
        l.starts_with("STATUS=broker link reconnecting")
    });
    assert!(!status.contains("guest:guest"), "{status}");
    // Its own loop runs: the watchdog is fed (a restart would not bring
    // the broker back), and readiness is never said.
    for _ in 0..5 {
        supervisor.wait_line(Duration::from_secs(3), "a keep-alive", |l| {
            l == "WATCHDOG=1"
        });
    }
    assert!(!supervisor.heard_line("READY=1"), "{:?}", supervisor.heard);
    monitor.stop_cleanly("TERM", Duration::from_secs(10));
}

#[test]
fn a_bad_watchdog_setting_is_one_line_and_exit_code_2() {
    let supervisor = Supervisor::at_path();
    let out = run(
        &monitor_bin(),
        &["--headless", "--url", BROKER],
        &[
            ("NOTIFY_SOCKET", supervisor.name.as_str()),
            ("WATCHDOG_USEC", "soon"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("WATCHDOG_USEC"), "{stderr}");
}

#[test]
fn status_healthz_is_the_monitors_own_health_not_its_services() {
    let healthz = |base: &str| run(&monitor_bin(), &["status", "--healthz", "--url", base], &[]);
    let (_up, base) = http_monitor(BROKER, &[]);
    let out = wait_for(std::time::Duration::from_secs(15), "healthz ok", || {
        let out = healthz(&base);
        (out.status.code() == Some(0)).then_some(out)
    });
    assert_eq!(text(&out.stdout), "HEARTBEAT OK - ok\n");
    // Cut off from its broker, the monitor cannot judge: critical, and why.
    let nowhere = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let (_down, base) = http_monitor(&nowhere, &[]);
    let out = healthz(&base);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).starts_with("HEARTBEAT CRITICAL - broker link"),
        "{}",
        text(&out.stdout)
    );
    // Nobody there: unknown.
    let out = healthz(&format!("http://127.0.0.1:{}", free_port()));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
}
