//! The services in other languages, run for real on a test-owned RabbitMQ
//! node: the Python one of docs/PROTOCOL.md (python3 and pika) and the Node.js
//! one written from that page alone (node and amqplib, `npm ci` in
//! examples/node); scripts/test.sh installs both. Each signs, answers a
//! signed monitor, survives garbage and a forced close, and is UP throughout;
//! answers no ping over 64 KiB or with `"v": true`; counts what it rejects by
//! reason; takes the URL's `?heartbeat=`; says goodbye; and never holds more
//! than one connection to the broker, a RESOURCE_LOCKED one included.

mod support;

use std::process::Command;
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use orchestrator_lib::Keys;
use orchestrator_lib::signing::MAC_HEADER;
use support::*;

const KEY: &str = "python-example-key-0123456789";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python/service.py");
const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/node");
const PROTOCOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");

#[test]
fn the_protocol_page_shows_the_example_file_exactly() {
    let page = std::fs::read_to_string(PROTOCOL).unwrap();
    let file = std::fs::read_to_string(EXAMPLE).unwrap();
    let shown = page
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("PROTOCOL.md has a python block");
    assert_eq!(
        shown.trim_end(),
        file.trim_end(),
        "docs/PROTOCOL.md and examples/python/service.py differ"
    );
}

#[derive(Clone, Copy, Debug)]
enum Language {
    Python,
    Node,
}

/// The example service in `language`, signed with [`KEY`], on `url`.
fn example(language: Language, url: &str, service: &str, instance: &str) -> Proc {
    let mut command = match language {
        Language::Python => {
            let probe = Command::new("python3")
                .args(["-c", "import pika"])
                .output()
                .expect("python3 runs");
            assert!(
                probe.status.success(),
                "python3 cannot import pika: `pip install pika` (scripts/test.sh does)"
            );
            let mut command = Command::new("python3");
            command.args(["-u", EXAMPLE, service, instance]);
            command
        }
        Language::Node => {
            assert!(
                std::path::Path::new(NODE_DIR)
                    .join("node_modules/amqplib")
                    .exists(),
                "amqplib is not installed: `npm ci` in examples/node (scripts/test.sh does)"
            );
            let mut command = Command::new("node");
            command
                .current_dir(NODE_DIR)
                .args(["service.js", service, instance]);
            command
        }
    };
    command.env("AMQP_URL", url).env("HEARTBEAT_KEY", KEY);
    Proc::spawn(&format!("{language:?} {service}/{instance}"), command)
}

/// The broker's connections of `user`, with the heartbeat each negotiated (s).
fn connections_of(node: &PrivateBroker, user: &str) -> Vec<u32> {
    let listed = node.ctl(&["-q", "list_connections", "user", "timeout"]);
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            (columns.next() == Some(user)).then(|| columns.next()?.parse().ok())?
        })
        .collect()
}

/// Wait until `queue` on `node` holds nothing: the service has taken what
/// was published. A service's queue keeps at most 256 KiB (drop-head,
/// docs/PROTOCOL.md), so bodies over 64 KiB sent back to back would push
/// each other out before the service could count them.
fn drained(node: &PrivateBroker, queue: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = node.ctl(&["-q", "list_queues", "name", "messages"]);
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let waiting = listed.lines().find_map(|line| {
            let (name, count) = line.rsplit_once(char::is_whitespace)?;
            (name.trim() == queue).then(|| count.trim().parse::<u64>().ok())?
        });
        if waiting == Some(0) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{queue} not drained: {listed}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node with a user of the Python service's own, so the test can count and
/// close its connections and no others.
fn broker_with_example_user() -> (PrivateBroker, String) {
    let node = PrivateBroker::start();
    node.ctl(&["add_user", "py", "pw"]);
    node.ctl(&["set_permissions", "-p", "/", "py", ".*", ".*", ".*"]);
    let py_url = node.url().replace("guest:guest", "py:pw");
    (node, py_url)
}

#[test]
fn the_python_example_signs_survives_garbage_and_a_forced_close() {
    signs_survives_garbage_and_a_forced_close(Language::Python);
}

#[test]
fn the_node_example_signs_survives_garbage_and_a_forced_close() {
    signs_survives_garbage_and_a_forced_close(Language::Node);
}

fn signs_survives_garbage_and_a_forced_close(language: Language) {
    let (node, py_url) = broker_with_example_user();
    let mut monitor = monitor_with_env(&node.url(), &[], &[("HEARTBEAT_KEY", KEY)]);
    let service = unique("py");
    // The URL's heartbeat wins over the example's default of 10 s.
    let mut py = example(language, &format!("{py_url}?heartbeat=7"), &service, "py-1");
    py.wait_stderr(Duration::from_secs(15), "connected, signed");
    assert_eq!(
        connections_of(&node, "py"),
        [7],
        "one connection, heartbeat 7 s"
    );
    monitor.wait_json(
        Duration::from_secs(15),
        "the python service UP",
        transition(&service, "up", "first_seen"),
    );

    // Garbage through the ping exchange: some signed with the real key, so
    // that they get past the MAC and test the parsing (a ping without `seq`
    // crashed the old example with a KeyError).
    let keys = Keys::parse(KEY).unwrap();
    let monitor_queue = format!(
        "heartbeat.monitor.{}",
        monitor.name.strip_prefix("monitor ").unwrap()
    );
    let bodies: Vec<&[u8]> = vec![
        br#"{"v":1,"type":"ping","monitor":"m"}"#,
        br#"{"v":1,"type":"ping","monitor":"m","seq":"x"}"#,
        br#"{"v":1,"type":"ping","monitor":"m","seq":-1}"#,
        br#"{"v":1,"type":"ping","monitor":"m","seq":true}"#,
        br#"[1,2,3]"#,
        b"",
        b"\xff\xfe\x00",
        b"{not json",
        br#"{"v":2,"type":"ping","seq":1}"#,
    ];
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    runtime().block_on(async {
        let connection = Connection::connect(&node.url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let publish = |body: Vec<u8>, mac: Option<String>, reply_to: Option<String>| {
            let channel = channel.clone();
            async move {
                let mut properties = BasicProperties::default();
                if let Some(mac) = mac {
                    let mut headers = FieldTable::default();
                    headers.insert(MAC_HEADER.into(), AMQPValue::LongString(mac.into()));
                    properties = properties.with_headers(headers);
                }
                if let Some(reply_to) = reply_to {
                    properties = properties.with_reply_to(reply_to.as_str().into());
                }
                channel
                    .basic_publish(
                        "heartbeat.ping".into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await
                    .unwrap();
            }
        };
        let service_queue = format!("heartbeat.service.{service}/py-1");
        for body in bodies.iter().copied().chain([deep.as_bytes()]) {
            let mac = keys.sign(body);
            publish(body.to_vec(), Some(mac), Some(monitor_queue.clone())).await;
            if body.len() > 64 * 1024 {
                drained(&node, &service_queue);
            }
            publish(body.to_vec(), None, Some(monitor_queue.clone())).await;
        }
        // A ping over 64 KiB (signed, and unsigned: the size is checked
        // first) and one with `"v": true` are rejected, not answered; the
        // well-formed ping after them is. A queue of the test's own hears,
        // named for the monitor the probes name (a ping is answered only on
        // its own monitor's queue).
        let probe_id = unique("probe");
        let probe = format!("heartbeat.monitor.{probe_id}");
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        channel
            .queue_declare(probe.as_str().into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        let padded = format!(
            r#"{{"v":1,"type":"ping","monitor":"{probe_id}","seq":7,"pad":"{}"}}"#,
            "x".repeat(70_000)
        );
        let probe_ping = |seq: u64, boot: &str| {
            format!(r#"{{"v":1,"type":"ping","monitor":"{probe_id}","seq":{seq}{boot}}}"#)
                .into_bytes()
        };
        let truthy =
            format!(r#"{{"v":true,"type":"ping","monitor":"{probe_id}","seq":8}}"#).into_bytes();
        let boot = r#","boot":1795000000000"#;
        let fine = probe_ping(9, boot);
        let padded = padded.into_bytes();
        drained(&node, &service_queue);
        publish(
            padded.clone(),
            Some(keys.sign(&padded)),
            Some(probe.clone()),
        )
        .await;
        drained(&node, &service_queue);
        publish(padded, None, Some(probe.clone())).await;
        publish(
            truthy.clone(),
            Some(keys.sign(&truthy)),
            Some(probe.clone()),
        )
        .await;
        publish(fine.clone(), Some(keys.sign(&fine)), Some(probe.clone())).await;
        // Fresh pings (docs/PROTOCOL.md): the same signed ping played back,
        // an older one, one of an earlier run and one without a run are not
        // answered; another monitor's ping readdressed to this queue is
        // not either; a later one is.
        let stale = [
            fine.clone(),
            probe_ping(8, boot),
            probe_ping(50, r#","boot":1794000000000"#),
            probe_ping(51, ""),
        ];
        for body in stale {
            publish(body.clone(), Some(keys.sign(&body)), Some(probe.clone())).await;
        }
        let readdressed = br#"{"v":1,"type":"ping","monitor":"elsewhere","seq":99}"#.to_vec();
        publish(
            readdressed.clone(),
            Some(keys.sign(&readdressed)),
            Some(probe.clone()),
        )
        .await;
        let later = probe_ping(10, boot);
        publish(later.clone(), Some(keys.sign(&later)), Some(probe.clone())).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut answered = Vec::new();
        while !answered.contains(&10) {
            assert!(
                std::time::Instant::now() < deadline,
                "no echo of the good ping: {answered:?}"
            );
            match channel
                .basic_get(probe.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                Some(got) => {
                    let echo: serde_json::Value =
                        serde_json::from_slice(&got.delivery.data).unwrap();
                    answered.push(echo["seq"].as_u64().unwrap());
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        // Answered in order: had it answered 7 or 8, a stale or a
        // readdressed ping, they would be here.
        assert_eq!(
            answered,
            [9, 10],
            "answered a ping over 64 KiB, with v: true, stale or readdressed"
        );

        // Well formed but unsigned, badly signed, or without a monitor's reply_to.
        let good = br#"{"v":1,"type":"ping","monitor":"m","seq":1}"#.to_vec();
        publish(good.clone(), None, Some(monitor_queue.clone())).await;
        publish(
            good.clone(),
            Some("00".repeat(32)),
            Some(monitor_queue.clone()),
        )
        .await;
        publish(good.clone(), Some(keys.sign(&good)), None).await;
        publish(
            good.clone(),
            Some(keys.sign(&good)),
            Some("amq.somewhere".into()),
        )
        .await;
        connection.close(200, "done".into()).await.unwrap();
    });
    py.wait_stderr(Duration::from_secs(5), "rejected ");
    monitor.expect_no_json(
        Duration::from_secs(2),
        "the python service leaving UP after garbage",
        |v| v["service"] == service.as_str(),
    );

    // Forced close from the broker's side: it reconnects by itself, and is
    // UP again (a silent service would be DOWN within the 1 s timeout).
    node.ctl(&["close_all_user_connections", "py", "closed by the test"]);
    py.wait_stderr(Duration::from_secs(5), "lost the broker");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while py.stderr().matches("connected, signed").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no reconnect:\n{}",
            py.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The old connection is gone: one at a time, still with the URL's heartbeat.
    assert_eq!(connections_of(&node, "py"), [7]);
    // A slow reconnect on a loaded machine may cost one timeout; either
    // way the service must be UP at the end, on signed echoes.
    let lines = monitor.collect_json(Duration::from_millis(3 * TIMEOUT_MS));
    // No line at all: it never left UP.
    if let Some(last) = lines.iter().rfind(|v| v["service"] == service.as_str()) {
        assert_eq!(last["to"], "up", "{lines:#?}\n{}", py.stderr());
    }
    assert!(!py.stderr().contains("Traceback"), "{}", py.stderr());

    // Ctrl+C: a signed goodbye, DOWN (left) at once, exit 0.
    py.signal("INT");
    monitor.wait_json(
        Duration::from_secs(2),
        "left",
        transition(&service, "left", "left"),
    );
    assert!(
        py.wait_exit(Duration::from_secs(3)).success(),
        "{}",
        py.stderr()
    );
    // Every rejection, counted by reason: the garbage above, signed and
    // not (the deeply nested body is over 64 KiB: too large either way);
    // the two pings over 64 KiB; the `"v": true` one; the well-formed ones
    // unsigned or badly signed (the two without a monitor's reply_to are
    // ignored, not rejected).
    assert!(
        py.stderr().contains(
            "stopping; rejected bad_shape=6 bad_signature=1 not_json=3 too_large=4 \
             unsigned=10 unsupported_version=1"
        ),
        "{}",
        py.stderr()
    );
    monitor.stop_cleanly("INT", Duration::from_secs(3));
}

#[test]
fn the_python_example_waits_out_a_restart_race_then_refuses_a_duplicate_on_one_connection() {
    waits_out_a_restart_race_then_refuses_a_duplicate(Language::Python);
}

#[test]
fn the_node_example_waits_out_a_restart_race_then_refuses_a_duplicate_on_one_connection() {
    waits_out_a_restart_race_then_refuses_a_duplicate(Language::Node);
}

fn waits_out_a_restart_race_then_refuses_a_duplicate(language: Language) {
    let (node, py_url) = broker_with_example_user();
    let service = unique("py-locked");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    runtime().block_on(async {
        // Someone else holds instance py-1's queue, as a second process
        // with the same names would.
        let holder = Connection::connect(&node.url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = holder.create_channel().await.unwrap();
        for instance in ["py-1", "py-2"] {
            let queue = format!("heartbeat.service.{service}/{instance}");
            channel
                .queue_declare(queue.as_str().into(), exclusive, FieldTable::default())
                .await
                .unwrap();
        }

        // A duplicate: retried for the grace on one connection at a time, then
        // refused with a line that says why, exit code 2.
        let mut py = example(language, &py_url, &service, "py-1");
        py.wait_stderr(Duration::from_secs(15), "lost the broker (");
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(2500)
            && py.stderr().matches("lost the broker").count() < 4
        {
            let open = connections_of(&node, "py");
            assert!(
                open.len() <= 1,
                "{} connections while retrying:\n{}",
                open.len(),
                py.stderr()
            );
        }
        assert_eq!(
            py.wait_exit(Duration::from_secs(10)).code(),
            Some(2),
            "{}",
            py.stderr()
        );
        assert!(
            py.stderr().contains("is held by another connection"),
            "{}",
            py.stderr()
        );
        assert!(connections_of(&node, "py").is_empty());

        // A restart race: the queue is free again within the grace, and the
        // service takes it and runs, on one connection.
        let mut py = example(language, &py_url, &service, "py-2");
        py.wait_stderr(Duration::from_secs(15), "lost the broker (");
        holder.close(200, "done".into()).await.unwrap();
        py.wait_stderr(Duration::from_secs(10), "connected, signed");
        assert_eq!(connections_of(&node, "py").len(), 1, "{}", py.stderr());
        py.signal("INT");
        assert!(
            py.wait_exit(Duration::from_secs(5)).success(),
            "{}",
            py.stderr()
        );
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
