//! The one library every component uses to reach the broker.
//!
//! Layout:
//! - `wire`: the versioned JSON messages (`ping`, `echo`, `goodbye`) and their codec. Pure.
//! - `broker_url`: parsing and redacting `amqp://` / `amqps://` URLs.
//! - `scope`: [`Scope`], which heartbeat on a shared vhost a participant belongs to.
//! - `topology`: exchange and queue names (per scope), and the [`Endpoint`] a participant listens on.
//! - `backoff`: capped exponential reconnect delays with jitter.
//! - `transport`: the [`Link`] handle (publish, inbox, status) and its two back ends:
//!   AMQP through lapin, and an in-process [`MemoryBroker`](plumbing::MemoryBroker).
//! - `signing`: HMAC-SHA256 [`Keys`] from `HEARTBEAT_KEY`: sign and verify bodies.
//! - `responder`: the ready-made heartbeat responder a service embeds in a few lines.
//! - `monitor_book`: whom a responder answers and how often: its defence against floods.
//! - `signals`: one shutdown token cancelled by Ctrl+C or SIGTERM; a panic ends the process.
//! - `logging`: one way to set up logs: `RUST_LOG`, `NO_COLOR`, the AMQP client capped.
//! - `identity`: [`Identity`], who a service instance is (below `topology` and `responder`).
//! - `error`: the library's typed [`Error`].
//!
//! The root holds what a service author uses (the names the snippet below
//! needs, and the `wire` and `signing` modules, which are the protocol);
//! [`plumbing`] holds what the monitor and the mock fleet build on (the
//! link's parts, the in-process broker, many endpoints on one connection).
//!
//! A service joins the heartbeat like this:
//!
//! ```no_run
//! # async fn demo() -> Result<(), orchestrator_lib::Error> {
//! use orchestrator_lib::{BrokerUrl, Endpoint, Faults, Identity, LinkOptions};
//! let url: BrokerUrl = "amqp://guest:guest@127.0.0.1:5672/%2f".parse()?;
//! // The default scope unless HEARTBEAT_SCOPE_NAME names one (staging, production, ...).
//! let me = Identity::new("orders", "orders-1")?.in_scope(orchestrator_lib::Scope::from_env()?);
//! let link = orchestrator_lib::connect(&url, Endpoint::service(&me), LinkOptions::service());
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! orchestrator_lib::respond(link, me, Faults::default(), shutdown).await
//! # }
//! ```

mod backoff;
mod broker_url;
mod error;
mod identity;
mod logging;
mod monitor_book;
pub mod plumbing;
mod responder;
mod scope;
mod signals;
pub mod signing;
mod topology;
mod transport;
pub mod wire;

pub use broker_url::{BrokerUrl, BrokerUrls};
pub use error::Error;
pub use identity::Identity;
pub use logging::{init_logging, use_colour};
pub use responder::{Farewell, Faults, respond, respond_with};
pub use scope::Scope;
pub use signals::cancel_on_shutdown_signal;
pub use signing::Keys;
pub use topology::Endpoint;
pub use transport::{Link, LinkOptions, connect};
