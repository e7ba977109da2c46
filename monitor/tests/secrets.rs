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

/// One run of [`a_url_given_to_any_flag_or_variable_never_shows_its_password`]:
/// what it tries, the binary, its arguments and its environment.
type Case = (String, PathBuf, Vec<String>, Vec<(String, String)>);

/// The broker URL, password and all, given to the wrong door: every flag
/// and every variable of both binaries (issue 24: `--listen "$URL"`,
/// `--config "$URL"`, `MONITOR__HTTP__LISTEN` printed it whole, `--id`,
/// `--expect`, `--name` and others its first 40 characters). Whatever each
/// says, in whatever it writes within a few seconds, the password is not
/// there. No broker is needed: where the value is accepted, the run goes on
/// against a closed port, and is killed.
#[test]
fn a_url_given_to_any_flag_or_variable_never_shows_its_password() {
    let wrong_door = format!("amqp://hb:{PASSWORD}@127.0.0.1:1/%2f");
    // No password here: only the wrong door's may warn.
    let closed = "amqp://127.0.0.1:1/%2f";
    let dir = std::env::temp_dir().join(unique("doors"));
    std::fs::create_dir_all(&dir).unwrap();

    let mut cases: Vec<Case> = Vec::new();
    let monitor_base =
        || -> Vec<String> { ["--headless", "--url", closed].map(String::from).to_vec() };
    for flag in [
        "--url",
        "--config",
        "--interval",
        "--timeout",
        "--mode",
        "--id",
        "--log-file",
        "--expect",
        "--listen",
    ] {
        let mut args = monitor_base();
        if flag == "--url" {
            args.truncate(1);
        }
        args.extend([flag.to_string(), wrong_door.clone()]);
        cases.push((format!("monitor {flag}"), monitor_bin(), args, vec![]));
    }
    for flag in ["--url", "--service", "--timeout"] {
        let args = vec!["status".into(), flag.into(), wrong_door.clone()];
        cases.push((
            format!("monitor status {flag}"),
            monitor_bin(),
            args,
            vec![],
        ));
    }
    cases.push((
        "monitor check-config --config".into(),
        monitor_bin(),
        vec!["check-config".into(), "--config".into(), wrong_door.clone()],
        vec![],
    ));
    for flag in [
        "--name",
        "--instance",
        "--count",
        "--url",
        "--config",
        "--latency",
        "--jitter",
        "--drop-rate",
        "--hang-after",
    ] {
        let mut args: Vec<String> = ["--url", closed, "--name", "door"]
            .map(String::from)
            .to_vec();
        if flag == "--url" {
            args.drain(..2);
        }
        args.extend([flag.to_string(), wrong_door.clone()]);
        cases.push((format!("mock-service {flag}"), mock_bin(), args, vec![]));
    }

    // Every setting as a variable: the keys of the embedded defaults, and
    // the per-service tables' keys under a made-up service.
    let defaults = include_str!("../../config/default.toml");
    let mut variables = vec![
        "CLOUDAMQP_URL".to_string(),
        "AMQP_URL".into(),
        "HEARTBEAT_KEY".into(),
        "RUST_LOG".into(),
        "MONITOR__TIMEOUTS__ORDERS".into(),
    ];
    let mut section = String::new();
    for line in defaults.lines() {
        let line = line.trim_start_matches("# ").trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = if name.starts_with('[') {
                String::new()
            } else {
                name.to_uppercase()
            };
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        let key = key.to_uppercase();
        variables.push(match section.as_str() {
            "" => format!("MONITOR__{key}"),
            "SERVICES" => format!("MONITOR__SERVICES__ORDERS__{key}"),
            section => format!("MONITOR__{section}__{key}"),
        });
    }
    variables.sort();
    variables.dedup();
    assert!(variables.len() > 25, "{variables:?}");
    for variable in &variables {
        let env = vec![(variable.clone(), wrong_door.clone())];
        let mut args = monitor_base();
        if variable.ends_with("URL") && !variable.contains("HISTORY") {
            args.truncate(1); // the variable is the URL
        }
        cases.push((
            format!("monitor {variable}"),
            monitor_bin(),
            args,
            env.clone(),
        ));
        let mut args: Vec<String> = ["--url", closed, "--name", "door"]
            .map(String::from)
            .to_vec();
        if variable.ends_with("URL") && !variable.contains("HISTORY") {
            args.drain(..2);
        }
        cases.push((format!("mock-service {variable}"), mock_bin(), args, env));
    }

    // A few at a time: the machine is shared. Each ends, or says it is
    // retrying the closed port (its value was taken), and is then killed.
    let mut leaks = Vec::new();
    for batch in cases.chunks(8) {
        let mut running: Vec<(String, Logged)> = batch
            .iter()
            .enumerate()
            .map(|(n, (what, bin, args, env))| {
                let mut command = bare(bin.clone());
                command
                    .args(args)
                    .env("XDG_STATE_HOME", &dir)
                    .current_dir(&dir)
                    .envs(env.iter().map(|(k, v)| (k, v)));
                (
                    what.clone(),
                    Logged::start(&dir, &format!("door-{n}"), command),
                )
            })
            .collect();
        for (what, logged) in &mut running {
            wait_for(Duration::from_secs(20), what, || {
                let ended = logged.child.try_wait().unwrap().is_some();
                (ended || logged.output().contains("retrying in")).then_some(())
            });
        }
        for (what, logged) in running {
            let text = logged.finish(Some("KILL")).1;
            if text.contains(PASSWORD) {
                leaks.push(format!("{what}: {}", text.trim()));
            }
            // The password where `ps` shows it: one warning, naming the
            // safer variables; from a variable, none.
            let warnings = text
                .matches("set CLOUDAMQP_URL or AMQP_URL instead")
                .count();
            let expected = usize::from(what.ends_with(" --url") && !what.contains("status"));
            if warnings != expected {
                leaks.push(format!("{what}: {warnings} password warnings:\n{text}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    std::fs::remove_dir_all(&dir).ok();
}
