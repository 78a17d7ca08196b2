//! Tracing set-up: one filter from `RUST_LOG` (default `info`), text or JSON lines on stderr.
//! Text is coloured only on a terminal, and never with `NO_COLOR` set (no-color.org).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Whether log lines on stderr may carry ANSI colours.
pub fn ansi() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored),
/// so tests and `skynet up` can run several services in one process.
pub fn init(json: bool) {
    init_with("info,async_nats=warn", json);
}

/// Like [`init`], with another default filter when `RUST_LOG` is not set.
pub fn init_with(default: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(ansi()),
            )
            .try_init()
    };
    drop(result);
}

/// The start-up line every service logs.
pub fn announce(service: &str, instance: &str) {
    tracing::info!(
        service,
        version = skynet_protocol::VERSION,
        instance,
        "starting"
    );
}
