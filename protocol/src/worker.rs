//! What workers say about themselves (the registry), what they are told (control) and what
//! they report about jobs (the outbox).

use serde::{Deserialize, Serialize};

use crate::event::{JobState, StepResult};
use crate::ids::{JobId, WorkerId};

/// A worker's registry entry, rewritten with every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: WorkerId,
    pub labels: Vec<String>,
    pub roots: Vec<String>,
    pub max_jobs: u32,
    pub running: Vec<JobId>,
    pub version: String,
    pub os: String,
    pub arch: String,
    /// Tools found on PATH (git, python3, cargo, ...).
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub free_disk_bytes: Option<u64>,
    /// The heartbeat interval, so readers know when it is late.
    pub heartbeat_ms: u64,
    pub started_at: String,
    pub last_seen: String,
    /// Unique per process start: a change means the worker restarted.
    pub session: String,
    /// Per running job, how many messages it has produced so far: when the count stops
    /// moving, the job makes no progress.
    #[serde(default)]
    pub progress: std::collections::BTreeMap<JobId, u64>,
    /// Per running job, the attempt it runs.
    #[serde(default)]
    pub attempts: std::collections::BTreeMap<JobId, u32>,
    /// How this worker confines steps: `landlock abi 7`, `best-effort: <why>` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

impl WorkerInfo {
    /// Online while fewer than `missed` heartbeats are late.
    pub fn is_online(&self, now_ms: i64, missed: u32) -> bool {
        let Some(seen) = crate::time::parse(&self.last_seen) else {
            return false;
        };
        let age = now_ms - crate::time::unix_ms(seen);
        age <= self.heartbeat_ms as i64 * i64::from(missed.max(1))
    }

    /// Whether this worker serves a job asking for `worker` and `labels`.
    pub fn matches(&self, worker: Option<&WorkerId>, labels: &[String]) -> bool {
        worker.is_none_or(|w| w == &self.id) && labels.iter().all(|l| self.labels.contains(l))
    }
}

/// Why a worker is asked to stop a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Someone cancelled it; the worker reports `cancelled`.
    Cancel,
    /// It ran past its time; the worker reports `timed_out`.
    Timeout,
    /// The attempt is no longer current (the job moved on); the worker stops quietly.
    Fenced,
}

/// Sent as a request on `skynet.control.<worker>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlRequest {
    pub job_id: JobId,
    pub attempt: u32,
    pub reason: StopReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlStatus {
    /// The job is being stopped; its end will be reported.
    Stopping,
    /// Not started yet: it never will, and its end will be reported.
    Prevented,
    /// It already ended; its end was (or will be) reported.
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    pub status: ControlStatus,
}

/// A worker's report about one attempt of one job, on `skynet.out.<worker>.<job>.event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkerReport {
    Started {
        attempt: u32,
        /// How the attempt's steps are confined (`landlock abi 7: ...`, `off`, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
    },
    Finished {
        attempt: u32,
        /// `succeeded`, `failed`, `timed_out` or `cancelled`.
        outcome: JobState,
        steps: Vec<StepResult>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The worker would not run the spec (bad seal, expired, meant for another worker,
    /// replayed).
    Refused {
        attempt: u32,
        reason: String,
        /// The worker already ran (or runs) this attempt: a duplicate delivery, not a verdict
        /// on the job.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replayed: bool,
    },
    /// The attempt ended without an outcome: the worker stopped (crashed, was killed, lost
    /// its connection for longer than its lease) while it ran, and has made sure its
    /// processes are gone. The job's owner treats it like a lost worker.
    Abandoned { attempt: u32, reason: String },
}

impl WorkerReport {
    pub fn attempt(&self) -> u32 {
        match self {
            WorkerReport::Started { attempt, .. }
            | WorkerReport::Finished { attempt, .. }
            | WorkerReport::Refused { attempt, .. }
            | WorkerReport::Abandoned { attempt, .. } => *attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(last_seen_ms: i64) -> WorkerInfo {
        WorkerInfo {
            id: WorkerId::parse("w").unwrap(),
            labels: vec!["linux".into(), "gpu".into()],
            roots: vec![],
            max_jobs: 1,
            running: vec![],
            version: "0".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            tools: vec![],
            free_disk_bytes: None,
            heartbeat_ms: 1000,
            started_at: crate::time::from_unix_ms(0),
            last_seen: crate::time::from_unix_ms(last_seen_ms),
            session: "s".into(),
            progress: Default::default(),
            attempts: Default::default(),
            sandbox: None,
        }
    }

    #[test]
    fn a_worker_is_offline_after_missed_heartbeats() {
        let w = info(10_000);
        assert!(w.is_online(12_000, 3));
        assert!(w.is_online(13_000, 3));
        assert!(!w.is_online(13_001, 3));
    }

    #[test]
    fn routing_needs_every_label() {
        let w = info(0);
        assert!(w.matches(None, &[]));
        assert!(w.matches(None, &["linux".into()]));
        assert!(!w.matches(None, &["linux".into(), "mac".into()]));
        assert!(w.matches(Some(&WorkerId::parse("w").unwrap()), &[]));
        assert!(!w.matches(Some(&WorkerId::parse("v").unwrap()), &[]));
    }
}
