//! The broker password and the heartbeat key never appear in anything the
//! binaries write, at any log level a user can set: every byte of stdout and
//! stderr is checked, through a normal (signed) run, a refused login, a config
//! file with a syntax error on the URL's line, a URL typed without `--url`,
//! and keys that are refused. A private node holds
//! a user with a known password, so the shared broker is not reconfigured.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const PASSWORD: &str = "Pw-5ecr3t-Zq9x";
const WRONG_PASSWORD: &str = "Pw-wr0ng-Kd7y";
/// Every run gets it in `HEARTBEAT_KEY`, so every run is signed.
const KEY: &str = "Hk-s1gn1ng-k3y-Wq4v";
const SHORT_KEY: &str = "Hk-sh0rt-Q2";

/// How lapin's TRACE log once printed it: the login frame as a byte list.
fn as_byte_list(secret: &str) -> String {
    secret
        .bytes()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASSWORD, WRONG_PASSWORD, KEY, SHORT_KEY] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        assert!(
            !text.contains(&as_byte_list(secret)),
            "{what} shows a secret's bytes:\n{text}"
        );
    }
}

/// A command with no broker URL from this process's environment.
fn bare(bin: PathBuf) -> Command {
    let mut command = Command::new(bin);
    command.env_remove("CLOUDAMQP_URL").env_remove("AMQP_URL");
    command
}

/// A process whose stdout and stderr go to files, read whole at the end.
struct Logged {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Logged {
    fn start(dir: &Path, name: &str, mut command: Command) -> Self {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        if !command.get_envs().any(|(name, _)| name == "HEARTBEAT_KEY") {
            command.env("HEARTBEAT_KEY", KEY);
        }
        command
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let child = command.spawn().expect("the binary starts");
        Self { child, out, err }
    }

    fn output(&self) -> String {
        let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        format!("{}{}", read(&self.out), read(&self.err))
    }

    /// Wait for a JSON line on stdout holding every one of `texts`.
    fn wait_for(&self, within: Duration, texts: &[&str]) {
        let deadline = Instant::now() + within;
        let found = || {
            std::fs::read_to_string(&self.out)
                .unwrap_or_default()
                .lines()
                .any(|line| texts.iter().all(|text| line.contains(text)))
        };
        while !found() {
            assert!(
                Instant::now() < deadline,
                "no line with {texts:?} within {within:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Signal, wait for the exit, and return everything written.
    fn finish(mut self, signal: Option<&str>) -> (Option<i32>, String) {
        if let Some(signal) = signal {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &self.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        (status.code(), self.output())
    }
}

impl Drop for Logged {
    /// A failed assertion must not leave a process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn no_output_at_any_log_level_shows_the_password() {
    let node = PrivateBroker::start();
    node.ctl(&["add_user", "hb", PASSWORD]);
    node.ctl(&["set_permissions", "-p", "/", "hb", ".*", ".*", ".*"]);
    let url = |password: &str| format!("amqp://hb:{password}@127.0.0.1:{}/%2f", node.port);
    let dir = std::env::temp_dir().join(unique("secrets"));
    std::fs::create_dir_all(&dir).unwrap();
    let name = unique("quiet");

    // A normal run, the URL from the environment as the README recommends,
    // and a mock given it on the command line.
    let mut command = bare(monitor_bin());
    command
        .args([
            "--headless",
            "--id",
            &unique("mon"),
            "--interval",
            "200ms",
            "--timeout",
            "1s",
        ])
        .env("AMQP_URL", url(PASSWORD));
    let monitor = Logged::start(&dir, "monitor", command);
    let mut command = bare(mock_bin());
    command.args(["--url", &url(PASSWORD), "--name", &name, "--instance", "i"]);
    let service = Logged::start(&dir, "mock", command);
    let service_field = format!("\"service\":\"{name}\"");
    monitor.wait_for(Duration::from_secs(20), &[&service_field, "first_seen"]);
    let (code, text) = service.finish(Some("INT"));
    assert_eq!(code, Some(0), "{text}");
    assert_no_secret("mock-service at trace", &text);
    monitor.wait_for(Duration::from_secs(5), &[&service_field, "\"left\""]);
    let (code, text) = monitor.finish(Some("INT"));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "not at trace:\n{text}"
    );
    assert!(text.contains("signed=true"), "not signed:\n{text}");
    assert_no_secret("monitor at trace", &text);

    // A refused login, on both binaries.
    for (bin, args) in [
        (
            monitor_bin(),
            vec![
                "--headless".to_string(),
                "--url".into(),
                url(WRONG_PASSWORD),
            ],
        ),
        (
            mock_bin(),
            vec![
                "--name".into(),
                name.clone(),
                "--url".into(),
                url(WRONG_PASSWORD),
            ],
        ),
    ] {
        let mut command = bare(bin);
        command.args(&args);
        let (code, text) = Logged::start(&dir, "refused", command).finish(None);
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains("refused the login"), "{text}");
        assert_no_secret("a refused login", &text);
    }

    // A config file whose URL line has a syntax error.
    let config = dir.join("broken.toml");
    std::fs::write(&config, format!("[broker]\nurl = \"{}\n", url(PASSWORD))).unwrap();
    let mut command = bare(monitor_bin());
    command.args(["--headless", "--config", &config.to_string_lossy()]);
    let (code, text) = Logged::start(&dir, "config", command).finish(None);
    assert_eq!(code, Some(2), "{text}");
    assert_no_secret("a config syntax error", &text);

    // A URL typed without --url, which the argument parser quotes.
    for bin in [monitor_bin(), mock_bin()] {
        let mut command = bare(bin);
        command.arg(url(PASSWORD));
        let (code, text) = Logged::start(&dir, "stray", command).finish(None);
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("hb:****@"), "{text}");
        assert_no_secret("a stray URL argument", &text);
    }

    // Keys that are refused: too short, and one too many.
    for bin in [monitor_bin(), mock_bin()] {
        for bad in [SHORT_KEY.to_string(), format!("{KEY},{KEY},{KEY}")] {
            let mut command = bare(bin.clone());
            command
                .args(["--url", &url(PASSWORD)])
                .env("HEARTBEAT_KEY", &bad);
            if bin == monitor_bin() {
                command.arg("--headless");
            } else {
                command.args(["--name", &name]);
            }
            let (code, text) = Logged::start(&dir, "bad-key", command).finish(None);
            assert_eq!(code, Some(2), "{text}");
            assert!(text.contains("HEARTBEAT_KEY"), "{text}");
            assert_no_secret("a refused key", &text);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
