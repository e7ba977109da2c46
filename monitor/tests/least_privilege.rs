//! The least a monitor and a service need on the broker, as README's
//! "Least privilege" documents it, proven on a private node: both run as
//! users with exactly those permissions, and a service's user can read
//! neither another service's queue nor the monitor's.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// The permissions README documents, as `rabbitmqctl set_permissions` takes them.
fn monitor_permissions() -> [&'static str; 3] {
    [
        r"^heartbeat\.(ping|monitor\..+)$",
        r"^heartbeat\.ping$",
        r"^heartbeat\.monitor\..+$",
    ]
}

fn service_permissions(service: &str) -> [String; 3] {
    let queue = format!(r"heartbeat\.service\.{}/.+", service.replace('.', r"\."));
    [
        format!(r"^heartbeat\.ping$|^{queue}$"),
        format!(r"^amq\.default$|^{queue}$"),
        format!(r"^heartbeat\.ping$|^{queue}$"),
    ]
}

fn add_user(node: &PrivateBroker, user: &str, permissions: &[&str]) {
    node.ctl(&["add_user", user, "pw"]);
    let mut args = vec!["set_permissions", "-p", "/", user];
    args.extend_from_slice(permissions);
    node.ctl(&args);
}

/// Try to consume `queue` as `user`; the broker's verdict.
fn consume_as(node: &PrivateBroker, user: &str, queue: &str) -> Result<(), String> {
    let url = format!("amqp://{user}:pw@127.0.0.1:{}/%2f", node.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use lapin::{Connection, ConnectionProperties, options::BasicConsumeOptions};
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .map_err(|e| e.to_string())?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        let consumed = channel
            .basic_consume(
                queue.into(),
                "intruder".into(),
                BasicConsumeOptions::default(),
                Default::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = connection.close(200, "done".into()).await;
        consumed
    })
}

/// Publish a ping to the ping exchange as `user`, then ask the broker
/// something on the same channel: a publish that was refused has closed it.
fn publish_ping_as(node: &PrivateBroker, user: &str) -> Result<(), String> {
    let url = format!("amqp://{user}:pw@127.0.0.1:{}/%2f", node.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
        use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .map_err(|e| e.to_string())?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        let body = br#"{"v":1,"type":"ping","monitor":"flood","seq":1}"#;
        let properties = BasicProperties::default().with_reply_to("heartbeat.monitor.flood".into());
        let published = channel
            .basic_publish(
                "heartbeat.ping".into(),
                "".into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let asked = channel
            .exchange_declare(
                "heartbeat.ping".into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .map_err(|e| e.to_string());
        let _ = connection.close(200, "done".into()).await;
        published.and(asked)
    })
}

#[test]
fn a_monitor_and_services_work_with_least_privilege_and_cannot_read_each_other() {
    let node = PrivateBroker::start();
    let (orders, billing) = (unique("orders"), unique("billing"));
    add_user(&node, "hb-monitor", &monitor_permissions());
    for (user, service) in [("hb-orders", &orders), ("hb-billing", &billing)] {
        let permissions = service_permissions(service);
        add_user(&node, user, &permissions.each_ref().map(String::as_str));
    }
    let url = |user: &str| format!("amqp://{user}:pw@127.0.0.1:{}/%2f", node.port);

    let id = unique("mon");
    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", &url("hb-monitor"), "--id", &id])
        .args(["--interval", "200ms", "--timeout", "1s"]);
    let mut monitor = Proc::spawn("monitor (least privilege)", command);
    let mut first = mock(&url("hb-orders"), &orders, "o-1", &[]);
    let _second = mock(&url("hb-billing"), &billing, "b-1", &[]);
    for service in [&orders, &billing] {
        monitor.wait_json(
            Duration::from_secs(20),
            "first seen",
            transition(service, "up", "first_seen"),
        );
    }

    // What a compromised service could try: read the monitor's echoes, or
    // another service's pings.
    for queue in [
        format!("heartbeat.monitor.{id}"),
        format!("heartbeat.service.{billing}/b-1"),
    ] {
        let refused = consume_as(&node, "hb-orders", &queue).expect_err(&queue);
        assert!(refused.contains("ACCESS_REFUSED"), "{queue}: {refused}");
    }

    // A flood of pings from a service's user is refused outright: only a
    // monitor's user may write to the ping exchange.
    let refused =
        publish_ping_as(&node, "hb-orders").expect_err("a service's user published a ping");
    assert!(refused.contains("ACCESS_REFUSED"), "{refused}");
    publish_ping_as(&node, "hb-monitor").expect("the monitor's user publishes pings");

    first.signal("INT");
    monitor.wait_json(Duration::from_secs(5), "left", |v| {
        v["service"] == orders.as_str() && v["reason"] == "left"
    });
    assert!(first.wait_exit(Duration::from_secs(5)).success());

    // A service started under another's name: its user may not declare that
    // queue, and the one line says so as a permission, not as a password.
    let mut command = Command::new(mock_bin());
    command.args([
        "--url",
        &url("hb-orders"),
        "--name",
        &billing,
        "--instance",
        "b-2",
    ]);
    let mut impostor = Proc::spawn("mock under another service's name", command);
    assert!(!impostor.wait_exit(Duration::from_secs(20)).success());
    let stderr = impostor.stderr();
    assert!(stderr.contains("denied this user access"), "{stderr}");
    assert!(stderr.contains("Least privilege"), "{stderr}");
    // (The warning about a password on the command line is another line.)
    let denied: Vec<&str> = stderr.lines().filter(|l| l.contains("denied")).collect();
    assert!(!denied.is_empty(), "{stderr}");
    assert!(denied.iter().all(|l| !l.contains("password")), "{stderr}");
}

/// A monitor whose user may not publish pings, and a service whose user may
/// not send its echoes, stop with exit code 1 and one line naming the
/// missing permission, as a refused login does, instead of reconnecting
/// once per ping for ever (issue 24).
#[test]
fn a_missing_permission_to_publish_stops_the_program_and_names_it() {
    let node = PrivateBroker::start();
    let orders = unique("orders");
    // Configure and read as README says, write on nothing: no pings.
    let [configure, _, read] = monitor_permissions();
    add_user(&node, "hb-mute-monitor", &[configure, "^$", read]);
    // Everything but `amq.default`: it can bind its queue, not answer.
    let [configure, _, read] = service_permissions(&orders);
    let queue_only = format!(r"^heartbeat\.service\.{orders}/.+$");
    add_user(&node, "hb-mute-orders", &[&configure, &queue_only, &read]);
    let url = |user: &str| format!("amqp://{user}:pw@127.0.0.1:{}/%2f", node.port);

    let mut command = Command::new(monitor_bin());
    command
        .args(["--headless", "--url", &url("hb-mute-monitor")])
        .args(["--id", &unique("mon"), "--interval", "200ms"]);
    let mut monitor = Proc::spawn("monitor that may not publish", command);
    let status = monitor.wait_exit(Duration::from_secs(20));
    let stderr = monitor.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("access to exchange 'heartbeat.ping'")
            && stderr.contains("needs the write permission"),
        "{stderr}"
    );
    assert!(stderr.contains("Least privilege"), "{stderr}");
    assert!(!stderr.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains(":pw@"), "{stderr}");

    // The service: it connects and binds, then its first echo is refused.
    // A monitor with every permission pings it.
    let mut pinger = monitor_with_env(&node.url(), &[], &[]);
    let mut service = mock(&url("hb-mute-orders"), &orders, "o-1", &[]);
    let status = service.wait_exit(Duration::from_secs(20));
    let stderr = service.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("access to exchange 'amq.default'")
            && stderr.contains("needs the write permission"),
        "{stderr}"
    );
    assert!(stderr.contains("Least privilege"), "{stderr}");
    assert!(!stderr.contains("unreachable"), "{stderr}");
    pinger.expect_no_json(Duration::from_millis(500), "the mute service UP", |v| {
        v["service"] == orders.as_str() && v["to"] == "up"
    });
    pinger.stop_cleanly("INT", Duration::from_secs(5));
}
