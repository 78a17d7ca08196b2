//! SKYNET's integration suite: one binary, one module per behaviour area. Every test starts
//! its own nats-server and runs the real services against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approval;
mod archive;
mod evasions;
mod execution;
mod faults;
mod identity;
mod intake;
mod kit_smoke;
mod pipeline;
mod planner;
mod policy_evasions;
mod priorities;
mod restarts;
mod routing;
mod sandbox;
mod schedules;
mod security;
mod sentinel;
mod telegram;
mod transport;
