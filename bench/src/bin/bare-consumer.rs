//! The floor for `bench/scale.sh`: the least a monitor written on lapin can
//! cost per echo. It pings every service once a second through the fanout
//! exchange, as the monitor does, and consumes the echoes on its own
//! exclusive queue without acknowledgements, decoding each body as JSON and
//! nothing more: no detector, no sinks, no hand-off between tasks.
//!
//! Prints `<unix seconds> <echoes so far>` on stdout once a second, so a
//! script can count the echoes of any window.
//!
//! usage: bare-consumer [URL]   (default amqp://127.0.0.1:5672/%2f)
//!
//! The one place besides `orchestrator_lib::transport::amqp` that uses lapin:
//! it measures lapin itself.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

const PING_EXCHANGE: &str = "heartbeat.ping";

#[tokio::main]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "amqp://127.0.0.1:5672/%2f".into());
    if let Err(error) = run(&url).await {
        eprintln!("bare-consumer: {error}");
        std::process::exit(1);
    }
}

async fn run(url: &str) -> lapin::Result<()> {
    let id = format!("bare-{}", std::process::id());
    let queue = format!("heartbeat.monitor.{id}");
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            PING_EXCHANGE.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "bare".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;

    let pinger = channel.clone();
    let reply_to = queue.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for seq in 1u64.. {
            tick.tick().await;
            let body = serde_json::json!({
                "v": 1, "type": "ping", "monitor": id, "seq": seq,
                "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
            .to_string();
            let properties = BasicProperties::default()
                .with_reply_to(reply_to.as_str().into())
                .with_expiration("3000".into());
            let published = pinger
                .basic_publish(
                    PING_EXCHANGE.into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    properties,
                )
                .await;
            if published.is_err() {
                return;
            }
        }
    });

    let mut echoes = 0u64;
    let mut report = tokio::time::interval(Duration::from_secs(1));
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            delivery = consumer.next() => {
                let Some(delivery) = delivery else { return Ok(()) };
                let delivery = delivery?;
                if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&delivery.data)
                    && body.get("type").and_then(|t| t.as_str()) == Some("echo")
                {
                    echoes += 1;
                }
            }
            _ = report.tick() => {
                let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
                if writeln!(out, "{now:.3} {echoes}").and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
        }
    }
}
