//! The library's examples (`orchestrator-lib/examples/`), built as a user
//! would build them and run against the real broker with no URL set: each
//! service comes UP on a real monitor, and Ctrl+C makes it LEFT with exit 0.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::*;

/// Build every example, with the same features as the workspace's tests so
/// nothing is rebuilt, and return their directory.
fn built_examples() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--workspace", "--examples", "--quiet"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the examples do not build");
    monitor_bin()
        .parent()
        .expect("the monitor sits in the target directory")
        .join("examples")
}

/// An example run as its doc comment says: no broker variable set, so it
/// uses the local default.
fn example(dir: &std::path::Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut command = Command::new(dir.join(name));
    command
        .args(args)
        .env_remove("CLOUDAMQP_URL")
        .env_remove("AMQP_URL")
        .env_remove("HEARTBEAT_KEY")
        .envs(env.iter().copied());
    Proc::spawn(name, command)
}

#[test]
fn the_readme_shows_the_service_example_exactly() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example =
        std::fs::read_to_string(format!("{root}/orchestrator-lib/examples/service.rs")).unwrap();
    // The example is its doc comment, then the code the README shows.
    let code = &example[example.find("\nuse ").unwrap() + 1..];
    assert!(
        readme.contains(&format!("```rust\n{code}```")),
        "README's Rust snippet and orchestrator-lib/examples/service.rs differ"
    );
}

/// The README's service says what it does: a name outside the rule is
/// refused at once with the rule, and an unreachable broker is a retry line,
/// not silence (issue 24).
#[test]
fn the_service_example_refuses_a_bad_name_and_says_when_it_retries() {
    let dir = built_examples();
    let mut named = example(&dir, "service", &["Order Service", "o-1"], &[]);
    let status = named.wait_exit(Duration::from_secs(5));
    let stderr = named.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "service: invalid service name \"Order Service\": use 1 to 100 letters, digits, '-', '_' or '.'"
    );

    let nowhere = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let mut retrying = example(
        &dir,
        "service",
        &[&unique("orders"), "o-1"],
        &[("CLOUDAMQP_URL", &nowhere)],
    );
    retrying.wait_stderr(Duration::from_secs(10), "retrying in");
    assert!(
        !retrying.stderr().contains("guest:guest"),
        "{}",
        retrying.stderr()
    );
    retrying.signal("INT");
    assert!(retrying.wait_exit(Duration::from_secs(5)).success());
}

#[test]
fn every_example_comes_up_on_a_monitor_and_says_goodbye() {
    let dir = built_examples();
    let mut monitor = monitor(BROKER, &[]);

    // The README's example, whole.
    let orders = unique("orders");
    let mut service = example(&dir, "service", &[&orders, "orders-1"], &[]);
    monitor.wait_json(
        Duration::from_secs(10),
        "the service example up",
        transition(&orders, "up", "first_seen"),
    );
    service.signal("INT");
    monitor.wait_json(
        Duration::from_secs(2),
        "the service example left",
        transition(&orders, "left", "left"),
    );
    assert!(service.wait_exit(Duration::from_secs(5)).success());

    let shop = unique("shop");
    let mut fleet = example(&dir, "fleet", &[&shop, "2"], &[]);
    for member in [format!("{shop}-0"), format!("{shop}-1")] {
        monitor.wait_json(
            Duration::from_secs(10),
            "a fleet member up",
            transition(&member, "up", "first_seen"),
        );
    }
    fleet.signal("INT");
    for member in [format!("{shop}-0"), format!("{shop}-1")] {
        monitor.wait_json(
            Duration::from_secs(2),
            "a fleet member left",
            transition(&member, "left", "left"),
        );
    }
    assert!(fleet.wait_exit(Duration::from_secs(5)).success());

    // Signed: a monitor with the same key hears it.
    let key = [(
        "HEARTBEAT_KEY",
        "an-example-key-of-enough-length-0123456789",
    )];
    let mut signed_monitor = monitor_with_env(BROKER, &[], &key);
    let payments = unique("payments");
    let mut signed = example(&dir, "signed", &[&payments, "p-1"], &key);
    signed_monitor.wait_json(
        Duration::from_secs(10),
        "the signed example up",
        transition(&payments, "up", "first_seen"),
    );
    signed.signal("INT");
    // Its goodbye is signed too, or the monitor would refuse it.
    signed_monitor.wait_json(
        Duration::from_secs(2),
        "the signed example left",
        transition(&payments, "left", "left"),
    );
    assert!(signed.wait_exit(Duration::from_secs(5)).success());
    // Without a key it says what is missing, and fails.
    let mut unkeyed = example(&dir, "signed", &[&payments, "p-2"], &[]);
    assert!(!unkeyed.wait_exit(Duration::from_secs(5)).success());
    assert!(unkeyed.stderr().contains("set HEARTBEAT_KEY"));
}
