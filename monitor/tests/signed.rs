//! Signed heartbeats end to end: real binaries with `HEARTBEAT_KEY` against
//! the shared RabbitMQ, and a test that plays the forger on the same broker,
//! publishing unsigned, badly signed and replayed echoes in a service's name.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use orchestrator_lib::Keys;
use orchestrator_lib::signing::MAC_HEADER;
use support::*;

const KEY: &str = "e2e-signed-heartbeats-key-0001";
const OLD_KEY: &str = "e2e-signed-heartbeats-key-0000";
const UP_WITHIN: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn channel() -> (Connection, Channel) {
    let connection = Connection::connect(BROKER, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// Publish `body` to a queue through the default exchange, with `mac` in
/// the heartbeat header when given.
async fn publish(channel: &Channel, queue: &str, body: &[u8], mac: Option<&str>) {
    let mut properties = BasicProperties::default();
    if let Some(mac) = mac {
        let mut headers = FieldTable::default();
        headers.insert(MAC_HEADER.into(), AMQPValue::LongString(mac.into()));
        properties = properties.with_headers(headers);
    }
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap();
}

fn echo(service: &str, instance: &str, monitor: &str, seq: u64) -> Vec<u8> {
    format!(
        r#"{{"v":1,"type":"echo","service":"{service}","instance":"{instance}","monitor":"{monitor}","seq":{seq}}}"#
    )
    .into_bytes()
}

/// The monitor's last line: its rejections, by reason.
fn summary(monitor: &Proc) -> String {
    monitor
        .stderr()
        .lines()
        .find(|line| line.contains("monitor stopping"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no summary:\n{}", monitor.stderr()))
}

fn monitor_queue(monitor: &Proc) -> String {
    let id = monitor.name.strip_prefix("monitor ").unwrap();
    format!("heartbeat.monitor.{id}")
}

#[test]
fn signed_monitor_and_services_are_up_through_a_key_rotation_and_strangers_are_not() {
    let mut monitor = monitor_with_env(
        BROKER,
        &[],
        &[("HEARTBEAT_KEY", &format!("{KEY},{OLD_KEY}"))],
    );
    // Mid-rotation: one service still signs with the old key, one already
    // with the new; each accepts both.
    let (rotating, rotated) = (unique("signed-old-first"), unique("signed-new"));
    let _a = mock_with_env(
        BROKER,
        &rotating,
        "r-1",
        &[],
        &[("HEARTBEAT_KEY", &format!("{OLD_KEY},{KEY}"))],
    );
    let _b = mock_with_env(BROKER, &rotated, "r-2", &[], &[("HEARTBEAT_KEY", KEY)]);
    // Not in on it: one without a key (answers, unsigned), one with another key.
    let (unsigned, stranger) = (unique("unsigned"), unique("other-key"));
    let _c = mock(BROKER, &unsigned, "u-1", &[]);
    let _d = mock_with_env(
        BROKER,
        &stranger,
        "o-1",
        &[],
        &[("HEARTBEAT_KEY", "someone-else's-key-entirely")],
    );

    for service in [&rotating, &rotated] {
        monitor.wait_json(
            UP_WITHIN,
            "signed and up",
            transition(service, "up", "first_seen"),
        );
    }
    // The keyless service's echoes reach the monitor and are refused.
    monitor.wait_stderr(Duration::from_secs(5), "unsigned");
    monitor.expect_no_json(
        Duration::from_secs(2),
        "an unsigned or foreign service UP",
        |v| v["service"] == unsigned.as_str() || v["service"] == stranger.as_str(),
    );
    assert!(!monitor.stderr().contains(KEY) && !monitor.stderr().contains(OLD_KEY));
    monitor.stop_cleanly("INT", Duration::from_secs(3));
    // Keyless echoes were counted; none signed with another key arrived,
    // because the service with another key never answered our pings.
    let stopping = summary(&monitor);
    assert!(stopping.contains("unsigned="), "{stopping}");
    assert!(!stopping.contains("bad_signature="), "{stopping}");
}

#[test]
fn forged_echoes_do_not_keep_a_killed_service_up() {
    let key = [("HEARTBEAT_KEY", KEY)];
    let mut monitor = monitor_with_env(BROKER, &[], &key);
    let service = unique("forged");
    let mut victim = mock_with_env(BROKER, &service, "f-1", &[], &key);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&service, "up", "first_seen"),
    );

    // From now on a forger answers in the victim's name, every 50 ms, with
    // every seq: unsigned, and signed with a key that is not ours.
    let queue = monitor_queue(&monitor);
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let (stop, service, queue) = (stop.clone(), service.clone(), queue.clone());
        let monitor_id = queue.trim_start_matches("heartbeat.monitor.").to_owned();
        std::thread::spawn(move || {
            runtime().block_on(async {
                let (connection, channel) = channel().await;
                let wrong = Keys::parse("not-the-monitor's-key-at-all").unwrap();
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..20 {
                        seq += 1;
                        let body = echo(&service, "f-1", &monitor_id, seq);
                        publish(&channel, &queue, &body, None).await;
                        publish(&channel, &queue, &body, Some(&wrong.sign(&body))).await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                connection.close(200, "done".into()).await.unwrap();
            })
        })
    };
    victim.kill();
    let within = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS) + Duration::from_millis(800);
    monitor.wait_json(
        within,
        "timed out despite forgeries",
        transition(&service, "down", "timed_out"),
    );
    monitor.expect_no_json(Duration::from_secs(1), "the forged service back UP", |v| {
        v["service"] == service.as_str() && v["to"] == "up"
    });
    stop.store(true, Ordering::Relaxed);
    forger.join().unwrap();
    monitor.stop_cleanly("INT", Duration::from_secs(3));
    // Both kinds of forgery were heard, and counted by reason.
    let stopping = summary(&monitor);
    for reason in ["unsigned=", "bad_signature="] {
        assert!(stopping.contains(reason), "{stopping}");
    }
}

#[test]
fn a_replayed_signed_echo_is_refused() {
    let mut monitor = monitor_with_env(
        BROKER,
        &[],
        &[("HEARTBEAT_KEY", KEY), ("RUST_LOG", "info,monitor=debug")],
    );
    monitor.wait_stderr(Duration::from_secs(10), "connected");
    let monitor_id = monitor.name.strip_prefix("monitor ").unwrap().to_owned();
    let queue = monitor_queue(&monitor);
    let (service, instance) = (unique("replayed"), "p-1");
    let keys = Keys::parse(KEY).unwrap();

    runtime().block_on(async {
        let (connection, channel) = channel().await;
        // Play the service once, honestly: hear one of our monitor's pings
        // and answer it, signed. That one echo is what a recorder captures.
        let own = format!("heartbeat.service.{service}/{instance}");
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        channel
            .queue_declare(own.as_str().into(), exclusive, FieldTable::default())
            .await
            .unwrap();
        channel
            .queue_bind(
                own.as_str().into(),
                "heartbeat.ping".into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let seq = loop {
            assert!(Instant::now() < deadline, "no ping from {monitor_id}");
            let got = channel
                .basic_get(own.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            let Some(got) = got else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let ping: serde_json::Value = serde_json::from_slice(&got.delivery.data).unwrap();
            if ping["monitor"] == monitor_id.as_str() {
                break ping["seq"].as_u64().unwrap();
            }
        };
        channel
            .queue_delete(own.as_str().into(), Default::default())
            .await
            .unwrap();
        // Signed, but for another monitor's ping of the same seq: refused.
        let elsewhere = unique("elsewhere");
        let for_another = echo(&elsewhere, instance, "another-monitor", seq);
        publish(
            &channel,
            &queue,
            &for_another,
            Some(&keys.sign(&for_another)),
        )
        .await;
        let recorded = echo(&service, instance, &monitor_id, seq);
        let mac = keys.sign(&recorded);
        publish(&channel, &queue, &recorded, Some(&mac)).await;
        monitor.wait_json(
            UP_WITHIN,
            "up on the honest echo",
            transition(&service, "up", "first_seen"),
        );

        // The recording, played back every 50 ms: it must not keep the
        // silent service UP.
        let within = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS) + Duration::from_millis(800);
        let until = Instant::now() + within;
        while Instant::now() < until {
            publish(&channel, &queue, &recorded, Some(&mac)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        connection.close(200, "done".into()).await.unwrap();
    });
    monitor.wait_json(
        Duration::from_secs(1),
        "timed out despite the replays",
        transition(&service, "down", "timed_out"),
    );
    monitor.wait_stderr(Duration::from_secs(1), "refused a replayed echo");
    monitor.expect_no_json(
        Duration::from_millis(100),
        "the other monitor's echo taken",
        |v| {
            v["service"]
                .as_str()
                .is_some_and(|s| s.starts_with("elsewhere"))
        },
    );
    monitor.stop_cleanly("INT", Duration::from_secs(3));
    // The echo for another monitor is counted as that, not as a replay.
    let stopping = summary(&monitor);
    assert!(stopping.contains("other_monitor=1"), "{stopping}");
    assert!(stopping.contains("replayed="), "{stopping}");
}

#[test]
fn a_signed_goodbye_is_heard_once_fresh_and_refused_when_played_back() {
    let key = [("HEARTBEAT_KEY", KEY)];
    let mut monitor = monitor_with_env(BROKER, &["--listen", "127.0.0.1:0"], &key);
    // Ping 1 goes out after this: it is old once a timeout has passed since.
    let seq_1_old_at = Instant::now() + Duration::from_millis(TIMEOUT_MS + INTERVAL_MS);
    let monitor_id = monitor.name.strip_prefix("monitor ").unwrap().to_owned();
    let queue = monitor_queue(&monitor);
    let (service, instance) = (unique("farewell"), "g-1");
    let mut first = mock_with_env(BROKER, &service, instance, &[], &key);
    monitor.wait_json(
        UP_WITHIN,
        "first seen",
        transition(&service, "up", "first_seen"),
    );
    assert_eq!(
        metric(&monitor.listen_base(), "heartbeat_signed"),
        Some(1.0)
    );
    // The real goodbye, signed and naming our latest ping: LEFT at once.
    first.stop_cleanly("INT", Duration::from_secs(5));
    monitor.wait_json(
        Duration::from_secs(2),
        "left",
        transition(&service, "left", "left"),
    );
    let _again = mock_with_env(BROKER, &service, instance, &[], &key);
    monitor.wait_json(UP_WITHIN, "back", |v| {
        v["service"] == service.as_str() && v["to"] == "up"
    });

    // A recorder's goodbyes, validly signed: one naming a ping long gone
    // (seq 1, many timeouts ago), one naming none. Neither is news.
    let keys = Keys::parse(KEY).unwrap();
    let goodbye = |seq: Option<u64>| {
        let seq = seq.map(|s| format!(r#","monitor":"{monitor_id}","seq":{s}"#));
        format!(
            r#"{{"v":1,"type":"goodbye","service":"{service}","instance":"{instance}"{}}}"#,
            seq.unwrap_or_default()
        )
        .into_bytes()
    };
    // What makes seq 1 old is time itself: wait out its age, if not yet.
    std::thread::sleep(seq_1_old_at.saturating_duration_since(Instant::now()));
    runtime().block_on(async {
        let (connection, channel) = channel().await;
        for body in [goodbye(Some(1)), goodbye(None)] {
            publish(&channel, &queue, &body, Some(&keys.sign(&body))).await;
        }
        connection.close(200, "done".into()).await.unwrap();
    });
    monitor.expect_no_json(
        Duration::from_secs(2),
        "LEFT on a played-back goodbye",
        |v| v["service"] == service.as_str() && v["to"] == "left",
    );
    monitor.stop_cleanly("INT", Duration::from_secs(3));
    let stopping = summary(&monitor);
    assert!(stopping.contains("unknown_seq=2"), "{stopping}");
}

/// A misconfigured service is named: the monitor's log and `/metrics` say
/// which service sends unsigned echoes and which sends echoes signed with
/// another key (here one that accepts our pings but signs with its own
/// first key, a rotation done in the wrong order), by the name in their
/// bodies, and neither comes UP.
#[test]
fn the_service_sending_unsigned_or_wrongly_signed_echoes_is_named_in_the_log_and_metrics() {
    // A key of this test's own: the misrotated service answers every
    // monitor holding it, and the other tests' monitors must not hear it.
    let key = "e2e-naming-the-misconfigured-0001";
    let (mut monitor, base) = http_monitor(BROKER, &[("HEARTBEAT_KEY", key)]);
    let (keyless, misrotated) = (unique("keyless"), unique("misrotated"));
    let _keyless = mock(BROKER, &keyless, "k-1", &[]);
    let _misrotated = mock_with_env(
        BROKER,
        &misrotated,
        "m-1",
        &[],
        &[(
            "HEARTBEAT_KEY",
            &format!("a-key-the-monitor-lacks-0001,{key}"),
        )],
    );
    for (service, reason) in [(&keyless, "unsigned"), (&misrotated, "bad_signature")] {
        let series = format!(
            "heartbeat_messages_rejected_by_service_total{{service=\"{service}\",reason=\"{reason}\"}}"
        );
        let counted = wait_for(UP_WITHIN, &series, || {
            metric(&base, &series).filter(|&n| n >= 1.0)
        });
        assert!(counted >= 1.0);
        monitor.wait_stderr(
            Duration::from_secs(5),
            &format!("reason=\"{reason}\" claims_service={service}"),
        );
    }
    monitor.expect_no_json(Duration::from_secs(1), "a misconfigured service UP", |v| {
        v["service"] == keyless.as_str() || v["service"] == misrotated.as_str()
    });
    monitor.stop_cleanly("INT", Duration::from_secs(3));
}
