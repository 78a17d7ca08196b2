//! Alerts on `skynet.alerts` (stream `SKYNET_ALERTS`): raised by the sentinel once when a
//! condition begins and once when it ends, never as a repeating stream.

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, WorkerId};

/// What happened. Conditions come in pairs: the second of each pair says it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A worker missed its heartbeats.
    WorkerOffline,
    /// It is back.
    WorkerOnline,
    /// A running job produced no output and no progress for a while.
    JobStalled,
    /// It is moving again (or ended).
    JobResumed,
    /// A queued job has no online worker able to take it.
    JobUnroutable,
    /// It has one again (or ended).
    JobRoutable,
    /// A job's worker was lost with the job on it.
    JobWorkerLost,
    /// A job ran past its time limit while its worker was silent.
    JobOverdue,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::WorkerOffline => "worker_offline",
            AlertKind::WorkerOnline => "worker_online",
            AlertKind::JobStalled => "job_stalled",
            AlertKind::JobResumed => "job_resumed",
            AlertKind::JobUnroutable => "job_unroutable",
            AlertKind::JobRoutable => "job_routable",
            AlertKind::JobWorkerLost => "job_worker_lost",
            AlertKind::JobOverdue => "job_overdue",
        }
    }

    /// True for the kinds that report a problem (rather than its end).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            AlertKind::WorkerOffline
                | AlertKind::JobStalled
                | AlertKind::JobUnroutable
                | AlertKind::JobWorkerLost
                | AlertKind::JobOverdue
        )
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: AlertKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    pub at: String,
    /// A sentence for people.
    pub detail: String,
    /// Identifies this occurrence; copies of the sentinel publish it with this
    /// `Nats-Msg-Id`, so each alert is stored once.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_have_the_contract_shape() {
        let a = Alert {
            kind: AlertKind::WorkerOffline,
            worker: Some(WorkerId::parse("laptop-1").unwrap()),
            job_id: None,
            at: "2026-11-25T20:00:00.123Z".into(),
            detail: "laptop-1 missed 3 heartbeats".into(),
            id: "worker_offline:laptop-1:1".into(),
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["kind"], "worker_offline");
        assert_eq!(v["worker"], "laptop-1");
        assert!(v.get("job_id").is_none());
        assert_eq!(serde_json::from_value::<Alert>(v).unwrap(), a);
        assert!(AlertKind::WorkerOffline.is_problem());
        assert!(!AlertKind::WorkerOnline.is_problem());
    }
}
