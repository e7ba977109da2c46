//! Logging set up the same way in every binary: `RUST_LOG` as the user sets
//! it, colour only on a terminal and never under `NO_COLOR`, and the AMQP
//! client never below INFO. At DEBUG and TRACE the client dumps protocol
//! frames, the login frame with the password among them
//! (`LongString([0, 117, 0, 83, …])`), and no level a user can set may
//! reveal a secret.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// When `RUST_LOG` is unset: our own INFO, and nothing from the AMQP client,
/// which logs every connection error itself while the transport already
/// reports each one once, with the redacted URL and what happens next.
const DEFAULT: &str = "info,lapin=off,amq_protocol=off,rustls_platform_verifier=off";

/// Install the global subscriber, writing to `writer`. Call once, early.
pub fn init_logging<W>(writer: W, ansi: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_filter(user_filter(std::env::var("RUST_LOG").ok().as_deref()).and(client_cap()));
    tracing_subscriber::registry().with(layer).init();
}

/// Colour for a terminal, unless `NO_COLOR` is set to anything (no-color.org).
pub fn use_colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn user_filter(rust_log: Option<&str>) -> EnvFilter {
    rust_log
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT))
}

/// Everything passes except the client's crates below INFO. Applied on top of
/// the user's filter, so it only ever lowers what is logged. Targets match by
/// prefix: `amq_protocol` covers `amq_protocol_tcp`, `amq_protocol_types`, …
fn client_cap() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("lapin", LevelFilter::INFO)
        .with_target("amq_protocol", LevelFilter::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_client_is_capped_at_info_and_nothing_else_is() {
        let cap = client_cap();
        for target in [
            "lapin",
            "lapin::channel",
            "amq_protocol_tcp",
            "amq_protocol_types",
        ] {
            assert!(cap.would_enable(target, &Level::INFO), "{target}");
            assert!(!cap.would_enable(target, &Level::DEBUG), "{target}");
            assert!(!cap.would_enable(target, &Level::TRACE), "{target}");
        }
        assert!(cap.would_enable("monitor::engine", &Level::TRACE));
    }

    #[test]
    fn unset_or_invalid_is_the_quiet_default() {
        let default = EnvFilter::new(DEFAULT).to_string();
        assert_eq!(user_filter(None).to_string(), default);
        assert_eq!(user_filter(Some("=nonsense=")).to_string(), default);
        assert_eq!(user_filter(Some("debug")).to_string(), "debug");
    }
}
