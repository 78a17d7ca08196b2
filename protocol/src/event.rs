//! Events: one JSON message per state change on `skynet.events.<job_id>`, and the state
//! machine they must follow.

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, WorkerId};
use crate::job::{JobRequest, Step};

/// Every state a job can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Received,
    Planned,
    AwaitingApproval,
    Approved,
    Queued,
    Dispatched,
    Running,
    CancelRequested,
    Succeeded,
    Failed,
    TimedOut,
    Denied,
    Cancelled,
    ForceCancelled,
    Rejected,
}

impl JobState {
    pub const ALL: [JobState; 15] = [
        JobState::Received,
        JobState::Planned,
        JobState::AwaitingApproval,
        JobState::Approved,
        JobState::Queued,
        JobState::Dispatched,
        JobState::Running,
        JobState::CancelRequested,
        JobState::Succeeded,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Denied,
        JobState::Cancelled,
        JobState::ForceCancelled,
        JobState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Received => "received",
            JobState::Planned => "planned",
            JobState::AwaitingApproval => "awaiting_approval",
            JobState::Approved => "approved",
            JobState::Queued => "queued",
            JobState::Dispatched => "dispatched",
            JobState::Running => "running",
            JobState::CancelRequested => "cancel_requested",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Denied => "denied",
            JobState::Cancelled => "cancelled",
            JobState::ForceCancelled => "force_cancelled",
            JobState::Rejected => "rejected",
        }
    }

    /// A terminal state never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded
                | JobState::Failed
                | JobState::TimedOut
                | JobState::Denied
                | JobState::Cancelled
                | JobState::ForceCancelled
                | JobState::Rejected
        )
    }

    /// True while a worker may hold the job (its capacity is taken).
    pub fn on_worker(self) -> bool {
        matches!(
            self,
            JobState::Dispatched | JobState::Running | JobState::CancelRequested
        )
    }

    /// Whether `from -> to` is a legal transition. `from` is `None` for a job not seen yet.
    pub fn can_follow(from: Option<JobState>, to: JobState) -> bool {
        use JobState::*;
        let Some(from) = from else {
            return matches!(to, Received | Rejected);
        };
        if from.is_terminal() {
            return false;
        }
        match from {
            Received => matches!(to, Planned | Rejected | Cancelled),
            Planned => matches!(
                to,
                AwaitingApproval | Approved | Denied | Rejected | Cancelled
            ),
            AwaitingApproval => matches!(to, Approved | Denied | Cancelled),
            // A job that can never run (its approval carries no valid seal, or the seal
            // expired before a worker could take it) fails without reaching a worker.
            Approved => matches!(to, Queued | Dispatched | Cancelled | Failed),
            Queued => matches!(to, Dispatched | Cancelled | Failed),
            Dispatched => matches!(to, Running | Queued | CancelRequested | Failed | TimedOut),
            Running => matches!(to, Succeeded | Failed | TimedOut | CancelRequested | Queued),
            CancelRequested => matches!(
                to,
                Cancelled | ForceCancelled | Succeeded | Failed | TimedOut
            ),
            Succeeded | Failed | TimedOut | Denied | Cancelled | ForceCancelled | Rejected => false,
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {s:?}; one of {}", names.join(", "))
            })
    }
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    pub index: usize,
    /// `null` when the process did not exit by itself (killed by a signal, never started).
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

/// Risk of a plan, as policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// Tokens an LLM planner spent on a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The end of a job that reached a worker (or was meant to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    #[serde(default)]
    pub steps: Vec<StepResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// What happened, with the fields of each state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EventKind {
    Received {
        request: JobRequest,
    },
    Planned {
        steps: Vec<Step>,
        summary: String,
        planner: String,
        plan_hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
        /// The lock the plan takes when the request named none: a skill that touches a
        /// repository (`git_sync`, `git_commit`, `run_tests`, `build`) locks its directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lock: Option<String>,
    },
    AwaitingApproval {
        risk: Risk,
        reasons: Vec<String>,
        plan_hash: String,
        expires_at: String,
    },
    Approved {
        by: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reasons: Vec<String>,
        /// The grant policy sealed for this approval (itself, or for a person through its
        /// API): workers run only what a trusted seal covers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seal: Option<crate::spec::Seal>,
    },
    Queued {
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Dispatched {
        worker: WorkerId,
        attempt: u32,
    },
    Running {
        worker: WorkerId,
        attempt: u32,
        /// How the worker confines the job's steps (`landlock abi 7: ...`, `off`, ...), as
        /// it reported when it started the attempt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<String>,
    },
    CancelRequested {
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Succeeded(Finished),
    Failed(Finished),
    TimedOut(Finished),
    Cancelled(Finished),
    ForceCancelled(Finished),
    Denied {
        reason: String,
        by: String,
        #[serde(default)]
        steps: Vec<StepResult>,
    },
    Rejected {
        reason: String,
        #[serde(default)]
        steps: Vec<StepResult>,
    },
}

impl EventKind {
    pub fn state(&self) -> JobState {
        match self {
            EventKind::Received { .. } => JobState::Received,
            EventKind::Planned { .. } => JobState::Planned,
            EventKind::AwaitingApproval { .. } => JobState::AwaitingApproval,
            EventKind::Approved { .. } => JobState::Approved,
            EventKind::Queued { .. } => JobState::Queued,
            EventKind::Dispatched { .. } => JobState::Dispatched,
            EventKind::Running { .. } => JobState::Running,
            EventKind::CancelRequested { .. } => JobState::CancelRequested,
            EventKind::Succeeded(_) => JobState::Succeeded,
            EventKind::Failed(_) => JobState::Failed,
            EventKind::TimedOut(_) => JobState::TimedOut,
            EventKind::Cancelled(_) => JobState::Cancelled,
            EventKind::ForceCancelled(_) => JobState::ForceCancelled,
            EventKind::Denied { .. } => JobState::Denied,
            EventKind::Rejected { .. } => JobState::Rejected,
        }
    }

    /// Builds the terminal event of a run with the given outcome state.
    pub fn finished(state: JobState, finished: Finished) -> Option<EventKind> {
        Some(match state {
            JobState::Succeeded => EventKind::Succeeded(finished),
            JobState::Failed => EventKind::Failed(finished),
            JobState::TimedOut => EventKind::TimedOut(finished),
            JobState::Cancelled => EventKind::Cancelled(finished),
            JobState::ForceCancelled => EventKind::ForceCancelled(finished),
            _ => return None,
        })
    }

    /// The run outcome, for the terminal states that have one.
    pub fn as_finished(&self) -> Option<&Finished> {
        match self {
            EventKind::Succeeded(f)
            | EventKind::Failed(f)
            | EventKind::TimedOut(f)
            | EventKind::Cancelled(f)
            | EventKind::ForceCancelled(f) => Some(f),
            _ => None,
        }
    }

    /// The worker the event names, if any.
    pub fn worker(&self) -> Option<&WorkerId> {
        match self {
            EventKind::Dispatched { worker, .. } | EventKind::Running { worker, .. } => {
                Some(worker)
            }
            other => other.as_finished().and_then(|f| f.worker.as_ref()),
        }
    }

    /// The attempt the event names, if any.
    pub fn attempt(&self) -> Option<u32> {
        match self {
            EventKind::Queued { attempt, .. }
            | EventKind::Dispatched { attempt, .. }
            | EventKind::Running { attempt, .. } => Some(*attempt),
            other => other.as_finished().and_then(|f| f.attempt),
        }
    }
}

/// One state change of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub job_id: JobId,
    #[serde(flatten)]
    pub kind: EventKind,
    pub at: String,
}

impl Event {
    /// An event stamped now.
    pub fn now(job_id: JobId, kind: EventKind) -> Self {
        Self {
            job_id,
            kind,
            at: crate::time::now(),
        }
    }

    pub fn state(&self) -> JobState {
        self.kind.state()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_look_like_the_contract() {
        let e = Event {
            job_id: JobId::parse("nightly-42").unwrap(),
            kind: EventKind::Running {
                worker: WorkerId::parse("laptop-1").unwrap(),
                attempt: 1,
                sandbox: None,
            },
            at: "2026-11-25T20:00:00.123Z".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["job_id"], "nightly-42");
        assert_eq!(v["state"], "running");
        assert_eq!(v["worker"], "laptop-1");
        assert_eq!(v["at"], "2026-11-25T20:00:00.123Z");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn terminal_events_carry_steps() {
        for kind in [
            EventKind::Succeeded(Finished::default()),
            EventKind::Denied {
                reason: "r".into(),
                by: "policy".into(),
                steps: vec![],
            },
            EventKind::Rejected {
                reason: "r".into(),
                steps: vec![],
            },
        ] {
            assert!(kind.state().is_terminal());
            let v = serde_json::to_value(Event::now(JobId::parse("j").unwrap(), kind)).unwrap();
            assert!(v["steps"].is_array(), "{v}");
        }
    }

    #[test]
    fn the_happy_path_is_legal() {
        use JobState::*;
        let path = [
            Received, Planned, Approved, Queued, Dispatched, Running, Succeeded,
        ];
        let mut prev = None;
        for s in path {
            assert!(JobState::can_follow(prev, s), "{prev:?} -> {s:?}");
            prev = Some(s);
        }
    }

    #[test]
    fn terminal_states_are_final_and_runs_need_approval() {
        use JobState::*;
        for t in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for s in JobState::ALL {
                assert!(!JobState::can_follow(Some(t), s));
            }
        }
        // Nothing reaches a worker without passing `approved`.
        for from in [Received, Planned, AwaitingApproval] {
            assert!(!JobState::can_follow(Some(from), Dispatched));
            assert!(!JobState::can_follow(Some(from), Queued));
            assert!(!JobState::can_follow(Some(from), Running));
        }
        assert!(!JobState::can_follow(None, Running));
    }

    #[test]
    fn states_parse_from_their_names() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("nope".parse::<JobState>().is_err());
    }
}
