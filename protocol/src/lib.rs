//! The SKYNET wire contract, as Rust types.
//!
//! This crate is pure: serde types, subject builders, stream and consumer definitions,
//! validation and signing helpers. It does no I/O and starts no tasks, so every service,
//! the CLI and the tests agree on one definition of each message. `README.md` next to this
//! crate documents the same contract for people.

pub mod alert;
pub mod api;
pub mod approval;
pub mod artifact;
pub mod event;
pub mod ids;
pub mod job;
pub mod lifecycle;
pub mod permissions;
pub mod schedule;
pub mod shell;
pub mod spec;
pub mod streams;
pub mod subjects;
pub mod time;
pub mod worker;

pub use event::{Event, EventKind, Finished, JobState, StepResult};
pub use ids::{IdError, JobId, WorkerId};
pub use job::{GitOp, JobRequest, Priority, Step, ValidationError};
pub use spec::{ExecutionSpec, Grant, Seal, SpecError};

/// The largest JobRequest (in bytes) any intake accepts. Well under NATS's 1 MiB default
/// max payload, so a request always fits one message with room for headers.
pub const MAX_REQUEST_BYTES: usize = 512 * 1024;

/// The version every binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
