//! Many services in one process, on one connection: each has its own queue
//! and answers for itself, and each says its own goodbye.
//!
//! ```sh
//! cargo run -p orchestrator-lib --example fleet -- shop 3   # shop-0, shop-1, shop-2
//! ```
//!
//! The broker URL comes from `CLOUDAMQP_URL`, or is the local default.

use orchestrator_lib::{BrokerUrl, Endpoint, Faults, Identity, LinkOptions};
use tokio_util::sync::CancellationToken;

const LOCAL_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    orchestrator_lib::init_logging(std::io::stderr, false);
    let mut args = std::env::args().skip(1);
    let prefix = args.next().unwrap_or_else(|| "shop".into());
    let count: usize = args.next().map_or(Ok(3), |n| n.parse())?;

    let url: BrokerUrl = std::env::var("CLOUDAMQP_URL")
        .unwrap_or_else(|_| LOCAL_BROKER.into())
        .parse()?;
    let members: Vec<Identity> = (0..count)
        .map(|i| Identity::new(format!("{prefix}-{i}"), "fleet-1"))
        .collect::<Result<_, _>>()?;
    let endpoints = members.iter().map(Endpoint::service).collect();
    let options = LinkOptions {
        // A ping reaches every member at once: room for every answer.
        outgoing_capacity: LinkOptions::service().outgoing_capacity.max(4 * count),
        ..LinkOptions::service()
    };
    let link = orchestrator_lib::plumbing::connect_many(&url, endpoints, options);
    let shutdown = CancellationToken::new();
    orchestrator_lib::cancel_on_shutdown_signal(shutdown.clone());
    orchestrator_lib::plumbing::respond_fleet(link, members, Faults::default(), shutdown).await?;
    Ok(())
}
