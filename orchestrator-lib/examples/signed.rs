//! A service whose heartbeats are signed: with `HEARTBEAT_KEY` set (the
//! same key as the monitor's), it answers only signed pings and signs its
//! echoes, so nobody who can merely publish to the broker can pass for it.
//!
//! ```sh
//! HEARTBEAT_KEY=change-me cargo run -p orchestrator-lib --example signed -- payments payments-1
//! ```

use orchestrator_lib::{BrokerUrl, Endpoint, Faults, Identity, Keys, LinkOptions};
use tokio_util::sync::CancellationToken;

const LOCAL_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    orchestrator_lib::init_logging(std::io::stderr, false);
    let mut args = std::env::args().skip(1);
    let service = args.next().unwrap_or_else(|| "payments".into());
    let instance = args.next().unwrap_or_else(|| "payments-1".into());

    let Some(keys) = Keys::from_env()? else {
        return Err("set HEARTBEAT_KEY to the monitor's key".into());
    };
    let url: BrokerUrl = std::env::var("CLOUDAMQP_URL")
        .unwrap_or_else(|_| LOCAL_BROKER.into())
        .parse()?;
    let me = Identity::new(service, instance)?;
    let options = LinkOptions {
        keys: Some(keys),
        ..LinkOptions::service()
    };
    let link = orchestrator_lib::connect(&url, Endpoint::service(&me), options);
    let shutdown = CancellationToken::new();
    orchestrator_lib::cancel_on_shutdown_signal(shutdown.clone());
    orchestrator_lib::respond(link, me, Faults::default(), shutdown).await?;
    Ok(())
}
