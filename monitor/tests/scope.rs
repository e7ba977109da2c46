//! Environments on one vhost (issue 23): monitors and services of a scope
//! meet under their own names, so a staging monitor pings and hears only
//! staging's services and production's only production's, on the same
//! vhost of the real broker, while the default scope keeps the names every
//! existing service uses. The same service and instance names run in all
//! three scopes at once (their queues are distinct), with mock-service
//! (`--scope`, and `MONITOR__SCOPE` through the shared settings) and the
//! Python and Node.js examples (`HEARTBEAT_SCOPE_NAME`).

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python/service.py");
const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/node");
const UP_WITHIN: Duration = Duration::from_secs(15);

/// A scope name no other run uses, within the 32 bytes a scope may have.
fn scope_name(prefix: &str) -> String {
    let name = unique(prefix);
    assert!(name.len() <= 32, "{name}");
    name
}

fn python(scope: &str, service: &str, instance: &str) -> Proc {
    let mut command = Command::new("python3");
    command
        .args(["-u", PYTHON, service, instance])
        .env("AMQP_URL", BROKER)
        .env("HEARTBEAT_SCOPE_NAME", scope)
        .env_remove("HEARTBEAT_KEY");
    Proc::spawn(&format!("python {service}/{instance}"), command)
}

fn node(scope: &str, service: &str, instance: &str) -> Proc {
    assert!(
        std::path::Path::new(NODE_DIR)
            .join("node_modules/amqplib")
            .exists(),
        "amqplib is not installed: `npm ci` in examples/node (scripts/test.sh does)"
    );
    let mut command = Command::new("node");
    command
        .current_dir(NODE_DIR)
        .args(["service.js", service, instance])
        .env("AMQP_URL", BROKER)
        .env("HEARTBEAT_SCOPE_NAME", scope)
        .env_remove("HEARTBEAT_KEY");
    Proc::spawn(&format!("node {service}/{instance}"), command)
}

/// The (service, instance) pairs a status document lists.
fn listed(document: &Value) -> BTreeSet<(String, String)> {
    document["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["service"].as_str().unwrap().to_owned(),
                e["instance"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(service: &str, instance: &str) -> (String, String) {
    (service.to_owned(), instance.to_owned())
}

#[test]
fn staging_and_production_on_one_vhost_each_see_only_their_own() {
    let staging = scope_name("stg");
    let production = scope_name("prd");
    // Flag for one, the environment for the other.
    let (mut staging_monitor, staging_base) =
        http_monitor_with(BROKER, &["--scope", &staging], &[]);
    let (mut production_monitor, production_base) =
        http_monitor_with(BROKER, &[], &[("MONITOR__SCOPE", &production)]);
    let (mut default_monitor, default_base) = http_monitor(BROKER, &[]);

    // The same service and instance in every scope: three queues, no lock.
    let orders = unique("orders");
    let mut staged = mock(BROKER, &orders, "o-1", &["--scope", &staging]);
    let _produced = mock_with_env(
        BROKER,
        &orders,
        "o-1",
        &[],
        &[("MONITOR__SCOPE", &production)],
    );
    let _unscoped = mock(BROKER, &orders, "o-1", &[]);
    let billing = unique("billing");
    let _py = python(&staging, &billing, "py-1");
    let _js = node(&production, &billing, "node-1");

    for (monitor, members) in [
        (
            &mut staging_monitor,
            [(&orders, "o-1"), (&billing, "py-1")].as_slice(),
        ),
        (
            &mut production_monitor,
            [(&orders, "o-1"), (&billing, "node-1")].as_slice(),
        ),
        (&mut default_monitor, [(&orders, "o-1")].as_slice()),
    ] {
        for (service, instance) in members {
            monitor.wait_json(UP_WITHIN, "a service of its scope up", |v| {
                v["service"] == service.as_str() && v["instance"] == *instance && v["to"] == "up"
            });
        }
    }

    // Each status document lists exactly its scope's services.
    let staged_pairs = BTreeSet::from([pair(&orders, "o-1"), pair(&billing, "py-1")]);
    let produced_pairs = BTreeSet::from([pair(&orders, "o-1"), pair(&billing, "node-1")]);
    let staging_document = wait_for(UP_WITHIN, "staging's document", || {
        let document = status_document(&staging_base);
        (listed(&document) == staged_pairs).then_some(document)
    });
    assert_eq!(staging_document["monitor"]["scope"], staging.as_str());
    let production_document = wait_for(UP_WITHIN, "production's document", || {
        let document = status_document(&production_base);
        (listed(&document) == produced_pairs).then_some(document)
    });
    assert_eq!(production_document["monitor"]["scope"], production.as_str());
    let default_document = status_document(&default_base);
    assert_eq!(default_document["monitor"]["scope"], "default");
    let default_pairs = listed(&default_document);
    assert!(default_pairs.contains(&pair(&orders, "o-1")));
    assert!(
        !default_pairs.iter().any(|(service, _)| *service == billing),
        "the default scope hears nothing of the named ones: {default_pairs:?}"
    );

    // Staging's orders dies: staging's monitor says so; production's and
    // the default's orders, the same names, stay UP there.
    staged.kill();
    staging_monitor.wait_json(
        Duration::from_secs(5),
        "staging's orders down",
        transition(&orders, "down", "timed_out"),
    );
    let quiet = Duration::from_millis(3 * TIMEOUT_MS);
    for monitor in [&mut production_monitor, &mut default_monitor] {
        monitor.expect_no_json(quiet, "another scope's death", |v| {
            v["service"] == orders.as_str() && v["to"] != "up"
        });
    }
    for (base, scope) in [(&production_base, "production"), (&default_base, "default")] {
        let document = status_document(base);
        let entry = document["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["service"] == orders.as_str())
            .unwrap_or_else(|| panic!("{scope} lists {orders}"));
        assert_eq!(entry["state"], "up", "{scope}: {entry}");
    }

    // Not a line about another scope's services, in any monitor's output.
    let lines = |monitor: &mut Proc| monitor.collect_json(Duration::from_millis(500));
    let mentions = |lines: &[Value], service: &str, instance: &str| {
        lines
            .iter()
            .any(|v| v["service"] == service && v["instance"] == instance)
    };
    let staging_lines = lines(&mut staging_monitor);
    assert!(!mentions(&staging_lines, &billing, "node-1"));
    let production_lines = lines(&mut production_monitor);
    assert!(!mentions(&production_lines, &billing, "py-1"));
    let default_lines = lines(&mut default_monitor);
    assert!(!mentions(&default_lines, &billing, "py-1"));
    assert!(!mentions(&default_lines, &billing, "node-1"));
}

/// A bad scope name is one line and exit code 2, from every door.
#[test]
fn a_bad_scope_name_is_one_line() {
    let rule = "use 1 to 32 letters, digits, '-', '_' or '.', or \"default\"";
    let run = |program: std::path::PathBuf, args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env("MONITOR__HISTORY__PATH", "")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(
        monitor_bin(),
        &["--headless", "--url", BROKER, "--scope", "stag ing"],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("monitor: invalid setting `scope`: \"stag ing\" is not a scope: "),
        "{stderr}"
    );
    assert!(stderr.contains(rule), "{stderr}");

    let (code, stderr) = run(
        monitor_bin(),
        &["--headless", "--url", BROKER],
        &[("MONITOR__SCOPE", "a:b")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("(from the environment: MONITOR__SCOPE)"),
        "{stderr}"
    );

    let long = "x".repeat(33);
    let (code, stderr) = run(
        mock_bin(),
        &["--url", BROKER, "--name", "orders", "--scope", &long],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("mock-service: --scope: invalid scope \"xxx"),
        "{stderr}"
    );
    assert!(stderr.contains(rule), "{stderr}");

    // A password pasted in the wrong place stays hidden.
    let (code, stderr) = run(
        monitor_bin(),
        &["--headless", "--scope", "amqp://u:s3cret@host/v"],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    // The examples refuse it too, in one line, before they connect.
    let out = Command::new("python3")
        .args([PYTHON, "billing", "py-1"])
        .env("HEARTBEAT_SCOPE_NAME", "a:b")
        .env("AMQP_URL", BROKER)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("HEARTBEAT_SCOPE_NAME 'a:b'"), "{stderr}");
}
