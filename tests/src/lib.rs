//! The test kit: a throwaway `nats-server` per test and helpers to run SKYNET's services
//! in-process against it, the way async-nats's own tests start real servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fake_llm;
pub mod fake_telegram;
pub mod http;
pub mod nats;
pub mod process;
pub mod proxy;
pub mod stack;

pub use nats::NatsServer;
pub use process::ServiceProcess;
pub use stack::{Options, PERMISSIVE_POLICY, Stack, TelegramHandle, WAIT, WorkerHandle};
