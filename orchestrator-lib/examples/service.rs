//! A service that answers a heartbeat monitor: the README's example, whole
//! (a test checks that the README shows exactly the code below).
//!
//! ```sh
//! cargo run -p orchestrator-lib --example service -- orders orders-1
//! ```
//!
//! The broker URL comes from `CLOUDAMQP_URL`, or is the local default.
//! Ctrl+C says goodbye (the monitor shows LEFT, not DOWN) and exits 0.

use orchestrator_lib::{BrokerUrl, Endpoint, Faults, Identity, LinkOptions};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `service [NAME [INSTANCE]]`; orders/orders-1 by default.
    let mut args = std::env::args().skip(1);
    let service = args.next().unwrap_or_else(|| "orders".into());
    let instance = args.next().unwrap_or_else(|| "orders-1".into());
    let url: BrokerUrl = std::env::var("CLOUDAMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
        .parse()?;
    let me = Identity::new(service, instance);
    let link = orchestrator_lib::connect(&url, Endpoint::service(&me), LinkOptions::service());
    let shutdown = CancellationToken::new();
    orchestrator_lib::cancel_on_shutdown_signal(shutdown.clone());
    // Awaited: a spawned task nobody waits for dies with `main`.
    orchestrator_lib::respond(link, me, Faults::default(), shutdown).await?;
    Ok(())
}
