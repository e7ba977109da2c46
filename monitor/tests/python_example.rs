//! The Python service of docs/PROTOCOL.md, run for real (python3 and pika,
//! which scripts/test.sh installs) on a test-owned RabbitMQ node: it signs, answers
//! a signed monitor, survives garbage and a forced close, and is UP throughout.

mod support;

use std::process::Command;
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use orchestrator_lib::Keys;
use orchestrator_lib::signing::MAC_HEADER;
use support::*;

const KEY: &str = "python-example-key-0123456789";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python/service.py");
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

fn python(url: &str, service: &str, instance: &str) -> Proc {
    let probe = Command::new("python3")
        .args(["-c", "import pika"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "python3 cannot import pika: `pip install pika` (scripts/test.sh does)"
    );
    let mut command = Command::new("python3");
    command
        .args(["-u", EXAMPLE, service, instance])
        .env("AMQP_URL", url)
        .env("HEARTBEAT_KEY", KEY);
    Proc::spawn(&format!("python {service}/{instance}"), command)
}

#[test]
fn the_python_example_signs_survives_garbage_and_a_forced_close() {
    let node = PrivateBroker::start();
    // Its own user, so the test can close its connections and no others.
    node.ctl(&["add_user", "py", "pw"]);
    node.ctl(&["set_permissions", "-p", "/", "py", ".*", ".*", ".*"]);
    let py_url = node.url().replace("guest:guest", "py:pw");
    let mut monitor = monitor_with_env(&node.url(), &[], &[("HEARTBEAT_KEY", KEY)]);
    let service = unique("py");
    let mut py = python(&py_url, &service, "py-1");
    py.wait_stderr(Duration::from_secs(15), "connected, signed");
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
        for body in bodies.iter().copied().chain([deep.as_bytes()]) {
            let mac = keys.sign(body);
            publish(body.to_vec(), Some(mac), Some(monitor_queue.clone())).await;
            publish(body.to_vec(), None, Some(monitor_queue.clone())).await;
        }
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
    py.wait_stderr(Duration::from_secs(5), "bad or unsigned messages so far");
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
    monitor.stop_cleanly("INT", Duration::from_secs(3));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
