//! `amqps://` against a private node with a TLS listener and a CA the test
//! makes: it works with the CA configured, and a certificate that does not
//! verify, a host name the certificate does not name, or a plain port each
//! end in one clear line and exit code 2, never in a retry loop and never in
//! a fallback to plain text.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn with_ca(mut command: Command, node: &PrivateBroker) -> Command {
    command.env("MONITOR__BROKER__CA_FILE", node.ca_file());
    command
}

#[test]
fn amqps_works_with_the_configured_ca_and_fails_clearly_without_it() {
    let node = PrivateBroker::start_tls();
    let tls_port = node.tls_port.expect("a TLS node");
    let good = format!("amqps://guest:guest@localhost:{tls_port}/%2f");
    let name = unique("tls");

    let mut command = Command::new(monitor_bin());
    command.args(["--headless", "--url", &good, "--id", &unique("mon")]);
    command.args(["--interval", "200ms", "--timeout", "1s"]);
    let mut monitor = Proc::spawn("monitor over TLS", with_ca(command, &node));
    let mut command = Command::new(mock_bin());
    command.args(["--url", &good, "--name", &name, "--instance", "t"]);
    let mut service = Proc::spawn("mock over TLS", with_ca(command, &node));
    monitor.wait_json(
        Duration::from_secs(20),
        "first seen over TLS",
        transition(&name, "up", "first_seen"),
    );
    service.stop_cleanly("INT", Duration::from_secs(5));
    monitor.stop_cleanly("INT", Duration::from_secs(5));

    // The CA file that is set, if any (`Some("")`: the node's own), and
    // what the one line must say.
    let failures = [
        ("no CA configured", good.clone(), None, "set broker.ca_file"),
        (
            // Valid certificates, none of them the node's CA.
            "another CA configured",
            good.clone(),
            Some("/etc/ssl/certs/ca-certificates.crt"),
            "is broker.ca_file the CA that signed",
        ),
        (
            "a host name the certificate does not name",
            format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f"),
            Some(""),
            "use the host name the certificate names",
        ),
        (
            "a port that does not speak TLS",
            format!("amqps://guest:guest@localhost:{}/%2f", node.port),
            Some(""),
            "is this port TLS?",
        ),
    ];
    for (case, url, ca, hint) in failures {
        let mut command = Command::new(monitor_bin());
        command.args(["--headless", "--url", &url]);
        match ca {
            Some("") => command = with_ca(command, &node),
            Some(other) => {
                command.env("MONITOR__BROKER__CA_FILE", other);
            }
            None => {}
        }
        let mut proc = Proc::spawn(case, command);
        let status = proc.wait_exit(Duration::from_secs(20));
        let stderr = proc.stderr();
        assert_eq!(status.code(), Some(2), "{case}: {stderr}");
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("monitor: TLS with the broker"),
            "{case}: {stderr}"
        );
        assert!(last.contains(hint), "{case}: {stderr}");
        assert!(!stderr.contains("retrying"), "{case} was retried: {stderr}");
    }
}
