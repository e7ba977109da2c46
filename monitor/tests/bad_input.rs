//! What a new user meets when something is wrong: one clear line, the right
//! exit code, no panic, no password.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn run(bin: std::path::PathBuf, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_remove("CLOUDAMQP_URL")
        .env_remove("AMQP_URL")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Flags, environment, and a fragment the one-line error must contain.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

/// Longer than any name may be, and than an AMQP queue name can hold.
static LONG_NAME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| "x".repeat(240));

#[test]
fn bad_settings_stop_with_one_line_and_exit_code_2() {
    // Looks like PEM, is not: the TLS client would fail on it at every attempt.
    let corrupt_ca = std::env::temp_dir().join(format!("{}.pem", unique("corrupt-ca")));
    std::fs::write(
        &corrupt_ca,
        "-----BEGIN CERTIFICATE-----\nnot!base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let corrupt_ca = corrupt_ca.to_string_lossy().into_owned();
    let cases: &[Case] = &[
        (
            &["--interval", "0s"],
            &[],
            "invalid setting `interval`: must be greater than zero",
        ),
        (
            &["--interval", "2s", "--timeout", "1s"],
            &[],
            "invalid setting `timeout`",
        ),
        (
            &[],
            &[("MONITOR__INTERVALL", "1s")],
            "unknown field `intervall`",
        ),
        (&[], &[("MONITOR__TIMEOUT", "soon")], "key `timeout`"),
        (
            &["--url", "http://user:hunter2@host"],
            &[],
            "amqp:// or amqps://",
        ),
        (
            &[],
            &[("CLOUDAMQP_URL", "not a url:hunter2@")],
            "(from CLOUDAMQP_URL)",
        ),
        (
            &["--config", "/nonexistent/monitor.toml"],
            &[],
            "/nonexistent/monitor.toml",
        ),
        // Mistakes no retry can fix are refused at once, not retried forever.
        (
            &["--url", "amqp://127.0.0.1/%2f?heartbeat=abc"],
            &[],
            "?heartbeat= must be a whole number",
        ),
        (
            &["--url", "amqp://127.0.0.1/%2f?auth_mechanism=bogus"],
            &[],
            "?auth_mechanism=",
        ),
        (
            &[],
            &[("AMQP_URL", "amqp://guest:%FF@127.0.0.1/%2f")],
            "password is not valid percent-encoded UTF-8",
        ),
        (
            &[],
            &[("MONITOR__BROKER__CA_FILE", "/nonexistent/ca.pem")],
            "invalid setting `broker.ca_file`",
        ),
        (
            &[],
            &[("MONITOR__BROKER__CA_FILE", &corrupt_ca)],
            "not a readable PEM certificate",
        ),
        // Names follow the wire's rule wherever they enter.
        (&["--expect", "a b"], &[], "invalid setting `expect`"),
        (&["--id", &LONG_NAME], &[], "invalid setting `id`"),
        (&["--id", "ops/1"], &[], "invalid setting `id`"),
        // The argument parser's own errors are one line too.
        (
            &["--interval", "abc"],
            &[],
            "invalid value 'abc' for '--interval",
        ),
        (
            &["--mode", "bogus"],
            &[],
            "invalid value 'bogus' for '--mode",
        ),
        (
            &["--no-such-flag"],
            &[],
            "unexpected argument '--no-such-flag'",
        ),
    ];
    let outcomes: Vec<_> = cases
        .iter()
        .map(|(args, env, expected)| (args, env, expected, run(monitor_bin(), args, env)))
        .collect();
    let _ = std::fs::remove_file(&corrupt_ca);
    for (args, env, expected, (code, stderr)) in outcomes {
        assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr}"
        );
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn bad_mock_flags_stop_with_one_line_and_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--name", "has space"], "invalid --name"),
        (&["--name", "\x1b[2J"], "invalid --name"),
        (
            &["--name", "ok", "--instance", &LONG_NAME],
            "invalid --instance",
        ),
        (
            &["--name", "ok", "--drop-rate", "1.5"],
            "drop rate must be between 0 and 1",
        ),
        (&["--name", "ok", "--url", "amqp://"], "invalid broker URL"),
        (&[], "required arguments were not provided: --name"),
        (
            &["--name", "ok", "--count", "many"],
            "invalid value 'many' for '--count",
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = run(mock_bin(), args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr}"
        );
    }
}

#[test]
fn wrong_credentials_are_one_line_with_the_url_redacted() {
    let url = "amqp://guest:wrong-password@127.0.0.1:5672/%2f";
    for bin in [monitor_bin(), mock_bin()] {
        let args: &[&str] = if bin == monitor_bin() {
            &["--headless", "--url", url]
        } else {
            &["--name", "x", "--url", url]
        };
        let mut child = Command::new(&bin);
        child.args(args).env("RUST_LOG", "off");
        let mut proc = Proc::spawn("bad login", child);
        let status = proc.wait_exit(Duration::from_secs(15));
        let stderr = proc.stderr();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("refused the login"), "{stderr}");
        assert!(
            stderr.contains("amqp://guest:****@127.0.0.1:5672"),
            "{stderr}"
        );
        assert!(!stderr.contains("wrong-password"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn no_broker_keeps_trying_and_says_so_then_stops_cleanly() {
    // Nothing listens on port 1 of the loopback.
    let mut monitor = monitor("amqp://guest:secret@127.0.0.1:1/%2f", &[]);
    monitor.wait_stderr(Duration::from_secs(10), "unreachable");
    monitor.wait_stderr(Duration::from_secs(10), "attempt 2");
    let stderr = monitor.stderr();
    assert!(
        stderr.contains("amqp://guest:****@127.0.0.1:1/"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret") && !stderr.contains("panicked"),
        "{stderr}"
    );
    monitor.stop_cleanly("INT", Duration::from_secs(3));
}

#[test]
fn plain_amqp_to_the_tls_port_is_told_to_use_amqps() {
    // 5671 is AMQP over TLS (CloudAMQP's port): a TLS listener fails a
    // plain handshake with an error that names neither, and a closed port
    // is refused; either way the hint is what the user needs.
    let mut monitor = monitor("amqp://guest:secret@127.0.0.1:5671/%2f", &[]);
    monitor.wait_stderr(
        Duration::from_secs(10),
        "port 5671 is AMQP over TLS: use amqps://",
    );
    let mut mock = mock(
        "amqp://guest:secret@127.0.0.1:5671/%2f",
        "tlsport",
        "t-1",
        &[],
    );
    mock.wait_stderr(Duration::from_secs(10), "use amqps://");
    monitor.stop_cleanly("INT", Duration::from_secs(3));
    mock.stop_cleanly("INT", Duration::from_secs(3));
}

#[test]
fn a_bad_message_on_the_wire_is_counted_dropped_and_monitoring_goes_on() {
    let id = unique("mon");
    let mut command = Command::new(monitor_bin());
    // The fixed timeout: "never leaves UP" is a claim about the timeout, and
    // phi at a 200 ms interval would suspect a service a loaded CI starves.
    command.env("MONITOR__DETECTION__MODE", "fixed");
    command.args([
        "--headless",
        "--url",
        BROKER,
        "--id",
        &id,
        "--interval",
        "200ms",
        // Three times the suite's usual timeout: the claim is that garbage
        // never stops anyone answering, not that a loaded two-core machine
        // decodes 20 MB of it within one second.
        "--timeout",
        "3s",
    ]);
    let mut monitor = Proc::spawn("monitor", command);
    monitor.wait_stderr(Duration::from_secs(10), "connected");
    let early = unique("through-garbage");
    let early_mock = mock(BROKER, &early, "g-0", &[]);
    monitor.wait_json(
        Duration::from_secs(10),
        "first seen",
        transition(&early, "up", "first_seen"),
    );

    // Every kind of garbage, to the monitor's queue and through the ping
    // exchange to every service, each asking for answers on the monitor's queue.
    let huge_name = "n".repeat(100_000);
    let deep = format!(
        r#"{{"v":1,"pad":{}{}}}"#,
        "[".repeat(30_000),
        "]".repeat(30_000)
    );
    let huge_array = format!(
        r#"{{"v":1,"type":"ping","pad":[{}0]}}"#,
        "0,".repeat(30_000)
    );
    let kinds: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{not json".to_vec(),
        b"\xff\xfe\x00binary".to_vec(),
        br#"{"v":1,"type":"echo","service":5,"instance":[],"seq":"x"}"#.to_vec(),
        br#"{"v":9,"type":"echo"}"#.to_vec(),
        format!(r#"{{"v":1,"type":"ping","monitor":"{huge_name}","seq":1}}"#).into_bytes(),
        format!(
            r#"{{"v":1,"type":"echo","service":"s","instance":"{}","seq":1}}"#,
            &huge_name[..200]
        )
        .into_bytes(),
        deep.into_bytes(),
        huge_array.into_bytes(),
        vec![b'{'; 200_000],
    ];
    let queue = format!("heartbeat.monitor.{id}");
    // A flood to the monitor: it is all counted, but logged at a limited
    // rate. Each kind three times to every service on the broker.
    let to_monitor = kinds
        .iter()
        .cycle()
        .take(300)
        .map(|body| ("", queue.as_str(), body.as_slice()));
    let to_services = kinds
        .iter()
        .cycle()
        .take(3 * kinds.len())
        .map(|body| ("heartbeat.ping", "", body.as_slice()));
    publish_raw(BROKER, to_monitor.chain(to_services), Some(&queue));
    monitor.wait_stderr(Duration::from_secs(5), "dropped a bad message");
    early_mock.wait_stderr(Duration::from_secs(5), "dropped a bad message");

    // Both went on as if nothing happened: the service stays UP, and a
    // newcomer is seen.
    let name = unique("after-garbage");
    let _mock = mock(BROKER, &name, "g-1", &[]);
    monitor.wait_json(
        Duration::from_secs(10),
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    monitor.expect_no_json(
        Duration::from_secs(3),
        "the early service leaving UP",
        |v| v["service"] == early.as_str(),
    );
    for proc in [&monitor, &early_mock] {
        let warnings = proc.stderr().matches("dropped a bad message").count();
        assert!(
            (1..10).contains(&warnings),
            "{}: a flood of bad bodies gave {warnings} warnings:\n{}",
            proc.name,
            proc.stderr()
        );
        assert!(!proc.stderr().contains("panicked"), "{}", proc.stderr());
    }
}

#[test]
fn a_section_that_matches_no_service_is_said_once_not_ignored() {
    // A --count fleet is named fleet-0, fleet-1, ...: `[services.fleet]`
    // judges none of them; `[services.typo]` matches nothing at all.
    let fleet = unique("fleet");
    let typo = unique("typo");
    let dir = std::env::temp_dir().join(unique("sections"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("monitor.toml");
    std::fs::write(
        &file,
        format!(
            "[services.\"{fleet}\"]\ntimeout = \"5s\"\n\n[services.\"{typo}\"]\ntimeout = \"5s\"\n"
        ),
    )
    .unwrap();
    let service = mock(BROKER, &fleet, "f", &["--count", "2"]);
    service.wait_stderr(Duration::from_secs(20), "answering pings");
    let mut monitor = monitor(BROKER, &["--config", file.to_str().unwrap()]);
    monitor.wait_json(Duration::from_secs(20), "the fleet up", |v| {
        v["service"] == format!("{fleet}-1") && v["to"] == "up"
    });
    let begins = format!("[services.{fleet}] matches no service by that name");
    let nothing = format!("[services.{typo}] matches no service heard in the first timeout");
    monitor.wait_stderr(Duration::from_secs(10), &begins);
    monitor.wait_stderr(Duration::from_secs(10), &nothing);
    let stderr = monitor.stderr();
    assert!(
        stderr.contains(&format!("{fleet}-0, {fleet}-1, ..."))
            && stderr.contains(&format!("{typo}-0, {typo}-1, ...")),
        "says how a --count fleet is named:\n{stderr}"
    );
    // Both said once: the fleet's second service, and the first look, say
    // nothing more about a section already named.
    assert_eq!(
        stderr.matches(&format!("[services.{fleet}]")).count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches(&format!("[services.{typo}]")).count(),
        1,
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
