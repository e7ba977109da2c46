//! Several brokers that are not one cluster (`broker.nodes = "independent"`):
//! the monitor keeps a link to each, so a service is heard whichever node
//! it connects to. Two private nodes of this test's own; the shared broker
//! is never touched.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn redacted(url: &str) -> String {
    url.replace("guest:guest@", "guest:****@")
}

/// `link.broker` in a monitor's status document.
fn brokers_in_use(base: &str) -> String {
    status_document(base)["link"]["broker"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn false_alarm(line: &serde_json::Value, name: &str) -> bool {
    line["service"] == name && (line["to"] == "down" || line["to"] == "suspect")
}

fn service(urls: &str, name: &str) -> Proc {
    let mut command = Command::new(mock_bin());
    command
        .args(["--url", urls, "--name", name, "--instance", "n-1"])
        .env("MONITOR__BROKER__RECONNECT_MAX", "500ms");
    Proc::spawn("mock", command)
}

/// The case: A dies, everyone moves to B; A comes back and a
/// restarted service connects to A (first in its list) while the monitor
/// was on B. With a link to each node, the monitor hears it there.
#[test]
fn a_service_that_comes_back_on_the_other_node_is_seen_up() {
    let mut a = PrivateBroker::start();
    let b = PrivateBroker::start();
    let urls = format!("{},{}", a.url(), b.url());
    let name = unique("nodes");

    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", &urls, "--id", &unique("mon")])
        .args(["--listen", "127.0.0.1:0"])
        .args(["--interval", "200ms", "--timeout", "2s"])
        .env("MONITOR__BROKER__NODES", "independent")
        .env("MONITOR__BROKER__RECONNECT_MAX", "500ms")
        .env("MONITOR__DETECTION__MODE", "fixed");
    let mut monitor = Proc::spawn("monitor", command);
    let base = monitor.listen_base();
    let mut mock = service(&urls, &name);
    monitor.wait_json(
        Duration::from_secs(15),
        "first seen",
        transition(&name, "up", "first_seen"),
    );
    // Connected to both at once.
    wait_for(Duration::from_secs(10), "both nodes in use", || {
        let in_use = brokers_in_use(&base);
        (in_use.contains(&redacted(&a.url())) && in_use.contains(&redacted(&b.url()))).then_some(())
    });

    // A dies: the service moves to B, where the monitor already is.
    a.kill();
    wait_for(Duration::from_secs(15), "the service on B", || {
        (mock.stderr().matches(" connected").count() >= 2).then_some(())
    });
    monitor.expect_no_json(Duration::from_millis(3000), "a false alarm", |v| {
        false_alarm(v, &name)
    });

    // A is back; the monitor reconnects to it on its own.
    a.spawn();
    wait_for(Duration::from_secs(15), "A in use again", || {
        brokers_in_use(&base)
            .contains(&redacted(&a.url()))
            .then_some(())
    });
    // The service restarts, and connects to A, first in its list.
    mock.stop_cleanly("TERM", Duration::from_secs(5));
    monitor.wait_json(
        Duration::from_secs(5),
        "LEFT",
        transition(&name, "left", "left"),
    );
    let mock = service(&urls, &name);
    wait_for(Duration::from_secs(10), "the service on A", || {
        mock.stderr()
            .contains(&format!("broker={}", redacted(&a.url())))
            .then_some(())
    });
    monitor.wait_json(
        Duration::from_secs(10),
        "UP again, heard on A",
        transition(&name, "up", "rejoined"),
    );
}
