//! A second floor for `bench/scale.sh`: what `bare-consumer` does, on
//! amqprs instead of lapin, on a current-thread runtime (amqprs reads and
//! dispatches on the thread that polls it, lapin hands every delivery from an
//! I/O thread of its own). It pings every service once a second through the
//! fanout exchange and consumes the echoes on its own exclusive queue
//! without acknowledgements, decoding each body as JSON and nothing more.
//!
//! Prints `<unix seconds> <echoes so far>` on stdout once a second, as
//! `bare-consumer` does.
//!
//! usage: bare-amqprs [URL]   (default amqp://guest:guest@127.0.0.1:5672/%2f;
//!                             no TLS, no query parameters)
//!
//! Measured beside the product, never used by it: issue 25 asks whether
//! another client would cost the monitor less per echo.

use std::io::Write;
use std::time::Duration;

use amqprs::BasicProperties;
use amqprs::channel::{
    BasicConsumeArguments, BasicPublishArguments, ExchangeDeclareArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};

const PING_EXCHANGE: &str = "heartbeat.ping";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    if let Err(error) = run(&url).await {
        eprintln!("bare-amqprs: {error}");
        std::process::exit(1);
    }
}

/// `amqp://user:password@host:port/vhost`, the vhost percent-decoded as
/// RabbitMQ's URI spec says (`%2f` is `/`).
fn arguments(url: &str) -> Result<OpenConnectionArguments, String> {
    let rest = url
        .strip_prefix("amqp://")
        .ok_or("only amqp:// URLs are supported")?;
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, "%2f"));
    let (credentials, address) = authority
        .rsplit_once('@')
        .unwrap_or(("guest:guest", authority));
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (host, port) = address.split_once(':').unwrap_or((address, "5672"));
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let vhost = if vhost.is_empty() {
        "/".to_owned()
    } else {
        vhost.replace("%2f", "/").replace("%2F", "/")
    };
    let mut args = OpenConnectionArguments::new(host, port, user, password);
    args.virtual_host(&vhost);
    Ok(args)
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let id = format!("bare-amqprs-{}", std::process::id());
    let queue = format!("heartbeat.monitor.{id}");
    let connection = Connection::open(&arguments(url)?).await?;
    let channel = connection.open_channel(None).await?;
    channel
        .exchange_declare(
            ExchangeDeclareArguments::new(PING_EXCHANGE, "fanout")
                .durable(true)
                .finish(),
        )
        .await?;
    channel
        .queue_declare(
            QueueDeclareArguments::new(&queue)
                .exclusive(true)
                .auto_delete(true)
                .finish(),
        )
        .await?;
    let (_tag, mut deliveries) = channel
        .basic_consume_rx(
            BasicConsumeArguments::new(&queue, "bare")
                .manual_ack(false)
                .finish(),
        )
        .await?;

    let mut ping = tokio::time::interval(Duration::from_secs(1));
    let mut report = tokio::time::interval(Duration::from_secs(1));
    let mut seq = 0u64;
    let mut echoes = 0u64;
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            delivery = deliveries.recv() => {
                let Some(delivery) = delivery else { return Ok(()) };
                if let Some(body) = delivery.content
                    && let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body)
                    && body.get("type").and_then(|t| t.as_str()) == Some("echo")
                {
                    echoes += 1;
                }
            }
            _ = ping.tick() => {
                seq += 1;
                let body = serde_json::json!({
                    "v": 1, "type": "ping", "monitor": id, "seq": seq,
                    "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                })
                .to_string();
                let properties = BasicProperties::default()
                    .with_reply_to(&queue)
                    .with_expiration("3000")
                    .finish();
                channel
                    .basic_publish(properties, body.into_bytes(), BasicPublishArguments::new(PING_EXCHANGE, ""))
                    .await?;
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
