//! Pings as an attacker with ordinary publish rights sends them, on a
//! private node: a recorded signed ping played back and forged unsigned
//! ones, both naming the victim monitor's queue, at 40 a second; and a
//! burst of 20,000 pings with made-up `reply_to`s. Neither may blind a
//! signed fleet's monitor, and a burst must cost no more than its own
//! duration (docs/PROTOCOL.md, "Fresh pings" and "Broker objects").

mod support;

use std::time::{Duration, Instant};

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use orchestrator_lib::Keys;
use orchestrator_lib::signing::MAC_HEADER;
use support::*;

const KEY: &str = "hostile-pings-test-key-00000001";
const UP_WITHIN: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn channel(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

fn with_mac(properties: BasicProperties, mac: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(MAC_HEADER.into(), AMQPValue::LongString(mac.into()));
    properties.with_headers(headers)
}

async fn ping_exchange(channel: &Channel, body: &[u8], properties: BasicProperties) {
    channel
        .basic_publish(
            "heartbeat.ping".into(),
            "".into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap();
}

/// What a listener bound to the ping exchange hears: the first ping the
/// monitor with queue `reply_to` sends, body and properties, as anyone who
/// may read a queue of their own bound to the exchange can record it.
async fn record_a_ping(channel: &Channel, reply_to: &str) -> (Vec<u8>, BasicProperties) {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            "heartbeat.ping".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no ping from {reply_to} recorded"
        );
        let got = channel
            .basic_get(queue.name().clone(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        match got {
            Some(message)
                if message
                    .delivery
                    .properties
                    .reply_to()
                    .as_ref()
                    .is_some_and(|to| to.as_str() == reply_to) =>
            {
                return (
                    message.delivery.data.clone(),
                    message.delivery.properties.clone(),
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[test]
fn a_played_back_signed_ping_and_forged_unsigned_ones_blind_no_signed_monitor() {
    let node = PrivateBroker::start();
    let url = node.url();
    let key = [("HEARTBEAT_KEY", KEY)];
    let mut victim = monitor_with_env(&url, &[], &key);
    let fleet = unique("victimised");
    let _services = mock_with_env(&url, &fleet, "h", &["--count", "4"], &key);
    for i in 0..4 {
        let service = format!("{fleet}-{i}");
        victim.wait_json(
            UP_WITHIN,
            "first seen",
            transition(&service, "up", "first_seen"),
        );
    }
    let reply_to = format!(
        "heartbeat.monitor.{}",
        victim.name.strip_prefix("monitor ").unwrap()
    );

    let attack = Duration::from_secs(8);
    runtime().block_on(async {
        let (_connection, channel) = channel(&url).await;
        let (recorded, properties) = record_a_ping(&channel, &reply_to).await;
        let forged_properties = BasicProperties::default().with_reply_to(reply_to.as_str().into());
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        let started = Instant::now();
        let mut seq = 1_000_000u64;
        while started.elapsed() < attack {
            tick.tick().await;
            // The recording, byte for byte, MAC and reply_to and all.
            ping_exchange(&channel, &recorded, properties.clone()).await;
            // And a forgery in the victim's name, unsigned, with a made-up seq.
            seq += 7919;
            let monitor = reply_to.strip_prefix("heartbeat.monitor.").unwrap();
            let forged = format!(r#"{{"v":1,"type":"ping","monitor":"{monitor}","seq":{seq}}}"#);
            ping_exchange(&channel, forged.as_bytes(), forged_properties.clone()).await;
        }
    });
    // The attack and a timeout after it: no service of the fleet may have
    // left UP on the victim.
    victim.expect_no_json(
        Duration::from_millis(TIMEOUT_MS * 2),
        "a service not UP under attack",
        |v| v["service"].as_str().is_some_and(|s| s.starts_with(&fleet)) && v["to"] != "up",
    );
    victim.stop_cleanly("INT", Duration::from_secs(5));
}

#[test]
fn after_a_burst_of_20000_pings_a_real_ping_is_answered_within_an_interval() {
    let node = PrivateBroker::start();
    let url = node.url();
    let key = [("HEARTBEAT_KEY", KEY)];
    let fleet = unique("flooded");
    let services = mock_with_env(&url, &fleet, "h", &["--count", "4"], &key);
    services.wait_stderr(Duration::from_secs(20), "connected");
    let keys = Keys::parse(KEY).unwrap();
    let boot = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();

    let answered_in = runtime().block_on(async {
        // The test is the monitor here: its own queue, a signed ping, and a
        // clock on the four echoes.
        let (_connection, channel) = channel(&url).await;
        let id = unique("mon");
        let queue = format!("heartbeat.monitor.{id}");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut echoes = channel
            .basic_consume(
                queue.as_str().into(),
                "test".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let ping = |seq: u64| {
            let body =
                format!(r#"{{"v":1,"type":"ping","monitor":"{id}","seq":{seq},"boot":{boot}}}"#);
            let properties = with_mac(
                BasicProperties::default().with_reply_to(queue.as_str().into()),
                &keys.sign(body.as_bytes()),
            );
            (body, properties)
        };
        // Every service answers before the burst.
        let (body, properties) = ping(1);
        ping_exchange(&channel, body.as_bytes(), properties).await;
        let heard = wait_echoes(&mut echoes, 4, Duration::from_secs(10)).await;
        assert_eq!(heard, 4, "the fleet did not answer before the burst");

        // The burst: made-up monitors, unsigned, as fast as the broker takes them.
        let flood = BasicProperties::default();
        for i in 0..20_000 {
            let body = format!(r#"{{"v":1,"type":"ping","monitor":"fake-{i}","seq":{i}}}"#);
            let to = format!("heartbeat.monitor.fake-{i}");
            ping_exchange(
                &channel,
                body.as_bytes(),
                flood.clone().with_reply_to(to.into()),
            )
            .await;
        }
        // Published before the real ping: the broker has taken the burst
        // when it answers this (a channel's commands run in order).
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let (body, properties) = ping(2);
        let sent = Instant::now();
        ping_exchange(&channel, body.as_bytes(), properties).await;
        let heard = wait_echoes(&mut echoes, 4, Duration::from_secs(30)).await;
        assert_eq!(heard, 4, "the fleet did not answer after the burst");
        sent.elapsed()
    });
    eprintln!("after a burst of 20,000 pings, a real ping answered by all 4 in {answered_in:?}");
    // One interval of the default monitor (1 s).
    assert!(
        answered_in < Duration::from_secs(1),
        "answered in {answered_in:?}"
    );
}

/// Count the messages on the test monitor's queue until `n` have come or `within` has passed.
async fn wait_echoes(echoes: &mut lapin::Consumer, n: usize, within: Duration) -> usize {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut heard = 0;
    while heard < n {
        match tokio::time::timeout_at(deadline, echoes.next()).await {
            Ok(Some(Ok(_))) => heard += 1,
            _ => break,
        }
    }
    heard
}
