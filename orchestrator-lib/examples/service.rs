//! A service that answers a heartbeat monitor: the README's example, whole
//! (a test checks that the README shows exactly the code below).
//!
//! ```sh
//! cargo run -p orchestrator-lib --example service -- orders orders-1
//! ```
//!
//! The broker URL comes from `CLOUDAMQP_URL`, or is the local default.
//! It logs to stderr what it does (connected, retrying, refused; `RUST_LOG`
//! for more). A name outside the rule stops it at once with the rule.
//! Ctrl+C says goodbye (the monitor shows LEFT, not DOWN) and exits 0.

use std::process::ExitCode;

use orchestrator_lib::{BrokerUrl, Endpoint, Error, Faults, Identity, LinkOptions, Scope};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    // Say what it is doing: connected, retrying, refused (on stderr).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    orchestrator_lib::init_logging(std::io::stderr, orchestrator_lib::use_colour(colour));
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, as the library words it.
            eprintln!("service: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), Error> {
    // `service [NAME [INSTANCE]]`; orders/orders-1 by default.
    let mut args = std::env::args().skip(1);
    let service = args.next().unwrap_or_else(|| "orders".into());
    let instance = args.next().unwrap_or_else(|| "orders-1".into());
    let url: BrokerUrl = std::env::var("CLOUDAMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
        .parse()?;
    // Refused here, with the rule, if a name breaks it ("Order Service").
    // In the scope HEARTBEAT_SCOPE_NAME names (staging, ...), else the default.
    let me = Identity::new(service, instance)?.in_scope(Scope::from_env()?);
    let link = orchestrator_lib::connect(&url, Endpoint::service(&me), LinkOptions::service());
    let shutdown = CancellationToken::new();
    orchestrator_lib::cancel_on_shutdown_signal(shutdown.clone());
    // Awaited: a spawned task nobody waits for dies with `main`.
    orchestrator_lib::respond(link, me, Faults::default(), shutdown).await
}
