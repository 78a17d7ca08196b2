//! A job's life, as one pure module: the fold of its events ([`Job`]), the rules of time
//! ([`Timing`]), and every decision about what happens next ([`owner`], [`route`]).
//!
//! Nothing here does I/O. Services read (events, reports, the registry, the clock), call a
//! function of this module, and write what it returns: the events to append and the effects
//! to perform. Who decides what:
//!
//! | from | to | decided by |
//! |---|---|---|
//! | (new) | `received`, `rejected` | the planner (intake) |
//! | `received` | `planned`, `rejected` | the planner |
//! | `planned` | `approved`, `awaiting_approval`, `denied` | policy ([`Job::judgeable`]) |
//! | `awaiting_approval` | `approved`, `denied` | policy: a person, or the approval clock ([`Job::approval_expired`]) |
//! | before `approved` | `cancelled` | the cancel API ([`owner::cancel`]) |
//! | `approved` and after | everything | the owner, the dispatcher ([`owner`], [`route`]); routing by the one copy that holds the routing lease ([`lease`]) |
//!
//! The sentinel decides nothing about jobs: it observes, raises alerts, and records which
//! workers are offline; the owner acts on that record ([`owner::worker_lost`]).

pub mod job;
pub mod lease;
pub mod owner;
pub mod route;
pub mod schedule;
pub mod timing;

pub use job::{Applied, Change, Illegal, Job, Open};
pub use owner::{Decision, Effect, Nudge};
pub use route::{Placement, Slot};
pub use timing::Timing;

#[cfg(test)]
#[path = "tests/properties.rs"]
mod properties;
