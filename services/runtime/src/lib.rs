//! What every SKYNET binary shares: the common flags, connecting to NATS (nkey seed, TLS,
//! reconnect logging), tracing, signal handling, creating the streams, the event log helpers
//! and the plumbing of the `skynet` NATS service. It holds no business logic.

pub mod api;
pub mod archive;
pub mod args;
pub mod connect;
pub mod creds;
pub mod events;
pub mod follow;
pub mod keys;
pub mod logs;
pub mod registry;
pub mod service;
pub mod setup;
pub mod shutdown;
pub mod telemetry;

pub use args::{CommonArgs, ConfigError, NatsArgs, TimingArgs, parse_args};
pub use connect::connect;
pub use events::{AppendError, EventLog};
pub use shutdown::{Shutdown, signal_token};

/// Exit status for a configuration error (EX_CONFIG is 78; the contract asks for 64, EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
