//! One fold of a job's events, used by every service (the ledger's projection included), and
//! the legality of the next event.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Finished, JobState, Risk, StepResult};
use crate::ids::{JobId, WorkerId};
use crate::job::{JobRequest, Priority, Step};
use crate::spec::Seal;

/// What a job asked for that matters after intake: where it may run, how long, how often.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Wants {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default)]
    pub retries: u32,
    pub timeout_s: u64,
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
}

impl Wants {
    fn from_request(r: &JobRequest) -> Self {
        Self {
            goal: r.goal.clone(),
            requested_by: r.requested_by.clone(),
            origin: r.origin.clone(),
            worker: r.worker.clone(),
            labels: r.labels.clone(),
            retries: r.retries,
            timeout_s: r.timeout(),
            priority: r.priority,
            lock: r.lock.clone(),
        }
    }
}

/// The plan, once the planner wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub hash: String,
    pub summary: String,
    pub planner: String,
    /// Where the `planned` event is, to read the steps again when they are not in memory.
    pub seq: u64,
}

/// Policy's question to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub risk: Risk,
    pub reasons: Vec<String>,
    pub expires_at: String,
    pub expires_ms: Option<i64>,
}

/// The approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Seal>,
    /// The seal's `not_after` (Unix seconds), read once when the approval is applied, so
    /// routing need not parse the grant on every pass (absent in older snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
}

impl Approval {
    /// Unix seconds after which the seal is no longer valid; `None` without a readable seal.
    pub fn not_after(&self) -> Option<i64> {
        self.not_after
            .or_else(|| self.seal.as_ref()?.peek().map(|g| g.not_after))
    }
}

/// A cancel someone asked for while a worker had the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelAsk {
    pub by: String,
    pub at_ms: Option<i64>,
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct End {
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was denied or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who denied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub at_ms: Option<i64>,
}

/// A job's events folded into one picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    /// Stream sequence of the last event seen on the job's subject, applied or refused: the
    /// position a writer expects (`Nats-Expected-Last-Subject-Sequence`).
    pub seq: u64,
    pub state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub wants: Wants,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// The plan's steps, when this process has read them (never in snapshots: they can be
    /// large, and [`Plan::seq`] finds them).
    #[serde(skip)]
    pub steps: Option<Arc<Vec<Step>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<Question>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The current attempt (0 before the first).
    #[serde(default)]
    pub attempt: u32,
    /// The worker of the current attempt, while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    /// Stream position from which it waits for a worker (approval or re-queue): first come,
    /// first served within a priority.
    #[serde(default)]
    pub waiting_since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_reason: Option<String>,
    /// When the current attempt was dispatched (ms, event time): its time limit counts from
    /// here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_ms: Option<i64>,
    /// Whether any attempt was ever handed to a worker (so the job may have output).
    #[serde(default)]
    pub reached_worker: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<CancelAsk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<End>,
}

/// Why an event may not follow the job's events so far.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {} -> {to}: {why}", from.map(JobState::as_str).unwrap_or("(new)"))]
pub struct Illegal {
    pub from: Option<JobState>,
    pub to: JobState,
    pub why: String,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Not newer than what was applied already.
    Old,
    /// Illegal: the state is unchanged (its position is still taken, so writers expect it).
    Refused(Illegal),
    /// The job moved to this state.
    Moved(JobState),
}

fn at_ms(at: &str) -> Option<i64> {
    crate::time::parse(at).map(crate::time::unix_ms)
}

impl Job {
    pub fn new(id: JobId) -> Self {
        Self {
            id,
            seq: 0,
            state: None,
            created_at: None,
            updated_at: None,
            wants: Wants {
                timeout_s: crate::job::DEFAULT_TIMEOUT_S,
                ..Default::default()
            },
            plan: None,
            steps: None,
            question: None,
            approval: None,
            attempt: 0,
            worker: None,
            waiting_since: 0,
            queued_reason: None,
            dispatched_ms: None,
            running_ms: None,
            reached_worker: false,
            cancel: None,
            end: None,
        }
    }

    /// Folds `(seq, event)` pairs in order.
    pub fn fold<'a>(id: JobId, events: impl IntoIterator<Item = (u64, &'a Event)>) -> Self {
        let mut job = Self::new(id);
        for (seq, e) in events {
            job.apply(seq, e);
        }
        job
    }

    pub fn is_terminal(&self) -> bool {
        self.state.is_some_and(JobState::is_terminal)
    }

    /// Whether a worker may hold the job now (its capacity is taken).
    pub fn on_worker(&self) -> bool {
        self.state.is_some_and(JobState::on_worker)
    }

    /// Whether the job waits for a worker.
    pub fn waiting(&self) -> bool {
        matches!(self.state, Some(JobState::Approved | JobState::Queued))
    }

    /// The moment (ms) past which the current attempt is over its time limit.
    pub fn deadline_ms(&self) -> Option<i64> {
        Some(self.dispatched_ms? + self.wants.timeout_s as i64 * 1000)
    }

    /// A planned job policy has yet to judge.
    pub fn judgeable(&self) -> bool {
        self.state == Some(JobState::Planned)
    }

    /// A question to a person that nobody answered in time.
    pub fn approval_expired(&self, now_ms: i64) -> bool {
        self.state == Some(JobState::AwaitingApproval)
            && self
                .question
                .as_ref()
                .and_then(|q| q.expires_ms)
                .is_some_and(|e| e <= now_ms)
    }

    /// Whether `kind` may be the job's next event.
    pub fn check(&self, kind: &EventKind) -> Result<(), Illegal> {
        let to = kind.state();
        let illegal = |why: String| Illegal {
            from: self.state,
            to,
            why,
        };
        if !JobState::can_follow(self.state, to) {
            return Err(illegal(match self.state {
                Some(s) if s.is_terminal() => "the job already ended".into(),
                _ => "not a next state of the job's state".into(),
            }));
        }
        match kind {
            EventKind::Received { request } => {
                if request.id.as_ref().is_some_and(|id| id != &self.id) {
                    return Err(illegal("the request names another job".into()));
                }
            }
            EventKind::Queued { attempt, .. } => {
                let want = if self.state == Some(JobState::Approved) {
                    1
                } else {
                    self.attempt + 1
                };
                if *attempt != want {
                    return Err(illegal(format!("attempt {attempt} where {want} is next")));
                }
                if *attempt > self.wants.retries + 1 {
                    return Err(illegal(format!(
                        "attempt {attempt} is more than the job's {} retries allow",
                        self.wants.retries
                    )));
                }
            }
            EventKind::Dispatched { attempt, .. } => {
                let want = self.attempt.max(1);
                if *attempt != want {
                    return Err(illegal(format!("dispatches attempt {attempt}, not {want}")));
                }
            }
            EventKind::Running {
                worker, attempt, ..
            } => {
                if *attempt != self.attempt || self.worker.as_ref() != Some(worker) {
                    return Err(illegal(format!(
                        "attempt {attempt} on {worker} is not the current one"
                    )));
                }
            }
            kind => {
                if let Some(f) = kind.as_finished()
                    && self.on_worker()
                    && f.attempt.is_some_and(|a| a != self.attempt)
                {
                    return Err(illegal(format!(
                        "ends attempt {:?}, not the current {}",
                        f.attempt, self.attempt
                    )));
                }
            }
        }
        Ok(())
    }

    /// Applies the event at stream sequence `seq` (0: position unknown, always applied).
    pub fn apply(&mut self, seq: u64, event: &Event) -> Applied {
        if seq != 0 {
            if seq <= self.seq {
                return Applied::Old;
            }
            self.seq = seq;
        }
        if let Err(e) = self.check(&event.kind) {
            return Applied::Refused(e);
        }
        let to = event.state();
        let at = at_ms(&event.at);
        self.state = Some(to);
        if self.created_at.is_none() {
            self.created_at = Some(event.at.clone());
        }
        self.updated_at = Some(event.at.clone());
        match &event.kind {
            EventKind::Received { request } => {
                self.wants = Wants::from_request(request);
                // Explicit steps are the plan's raw material; the planner's are in `planned`.
            }
            EventKind::Planned {
                steps,
                summary,
                planner,
                plan_hash,
                lock,
                ..
            } => {
                if self.wants.lock.is_none() {
                    self.wants.lock = lock.clone();
                }
                self.plan = Some(Plan {
                    hash: plan_hash.clone(),
                    summary: summary.clone(),
                    planner: planner.clone(),
                    seq,
                });
                self.steps = Some(Arc::new(steps.clone()));
            }
            EventKind::AwaitingApproval {
                risk,
                reasons,
                expires_at,
                ..
            } => {
                self.question = Some(Question {
                    risk: *risk,
                    reasons: reasons.clone(),
                    expires_at: expires_at.clone(),
                    expires_ms: at_ms(expires_at),
                });
            }
            EventKind::Approved { by, reasons, seal } => {
                self.approval = Some(Approval {
                    by: by.clone(),
                    reasons: reasons.clone(),
                    seal: seal.clone(),
                    not_after: seal.as_ref().and_then(|s| s.peek()).map(|g| g.not_after),
                });
                self.waiting_since = seq;
            }
            EventKind::Queued { attempt, reason } => {
                self.attempt = *attempt;
                self.worker = None;
                self.dispatched_ms = None;
                self.running_ms = None;
                self.queued_reason = reason.clone();
                if self.waiting_since == 0 || self.attempt > 1 {
                    self.waiting_since = seq;
                }
            }
            EventKind::Dispatched { worker, attempt } => {
                self.worker = Some(worker.clone());
                self.attempt = *attempt;
                self.dispatched_ms = at;
                self.running_ms = None;
                self.reached_worker = true;
                self.queued_reason = None;
            }
            EventKind::Running { .. } => {
                self.running_ms = at;
            }
            EventKind::CancelRequested { by, .. } => {
                self.cancel = Some(CancelAsk {
                    by: by.clone(),
                    at_ms: at,
                });
            }
            EventKind::Denied { reason, by, steps } => {
                self.end = Some(End {
                    state: to,
                    steps: steps.clone(),
                    error: None,
                    reason: Some(reason.clone()),
                    by: Some(by.clone()),
                    at_ms: at,
                });
            }
            EventKind::Rejected { reason, steps } => {
                self.end = Some(End {
                    state: to,
                    steps: steps.clone(),
                    error: None,
                    reason: Some(reason.clone()),
                    by: None,
                    at_ms: at,
                });
            }
            kind => {
                if let Some(Finished { steps, error, .. }) = kind.as_finished() {
                    self.end = Some(End {
                        state: to,
                        steps: steps.clone(),
                        error: error.clone(),
                        reason: None,
                        by: None,
                        at_ms: at,
                    });
                }
            }
        }
        Applied::Moved(to)
    }
}

/// The open (not ended) jobs, as a service following the whole event stream keeps them,
/// and its position in the stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Open {
    /// The last stream sequence delivered in order: a follower resumes after it. (A job in
    /// `jobs` may be further on, when its own writer applied its write at once.)
    pub position: u64,
    pub jobs: HashMap<JobId, Job>,
}

/// What [`Open::apply`] did to one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Nothing (an old event, or one about a job that is not open here).
    None,
    Refused(Illegal),
    /// The job moved on and is still open.
    Moved(JobState),
    /// The job ended; here it is, for the last time.
    Ended(Box<Job>),
}

impl Open {
    /// Applies an event delivered in stream order, and advances the position.
    pub fn follow(&mut self, seq: u64, event: &Event) -> Change {
        self.position = self.position.max(seq);
        self.apply(seq, event)
    }

    /// Applies an event (a delivered one, or one this process just wrote). A job is opened
    /// by its first event; any later event about a job that is not open (it ended, or began
    /// before the history this process read) changes nothing.
    pub fn apply(&mut self, seq: u64, event: &Event) -> Change {
        let opens = matches!(
            event.kind,
            EventKind::Received { .. } | EventKind::Rejected { .. }
        );
        let job = match self.jobs.get_mut(&event.job_id) {
            Some(j) => j,
            None if opens => self
                .jobs
                .entry(event.job_id.clone())
                .or_insert_with(|| Job::new(event.job_id.clone())),
            None => return Change::None,
        };
        match job.apply(seq, event) {
            Applied::Old => Change::None,
            Applied::Refused(e) => {
                if job.state.is_none() {
                    self.jobs.remove(&event.job_id);
                }
                Change::Refused(e)
            }
            Applied::Moved(s) if s.is_terminal() => match self.jobs.remove(&event.job_id) {
                Some(j) => Change::Ended(Box::new(j)),
                None => Change::None,
            },
            Applied::Moved(s) => Change::Moved(s),
        }
    }

    pub fn get(&self, id: &JobId) -> Option<&Job> {
        self.jobs.get(id)
    }

    pub fn get_mut(&mut self, id: &JobId) -> Option<&mut Job> {
        self.jobs.get_mut(id)
    }

    /// Puts a job read afresh from the log in place of what was known, if it is newer.
    pub fn refresh(&mut self, job: Job) {
        if job.is_terminal() || job.state.is_none() {
            self.jobs.remove(&job.id);
            return;
        }
        match self.jobs.get(&job.id) {
            Some(known) if known.seq >= job.seq => {}
            _ => {
                self.jobs.insert(job.id.clone(), job);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::Finished;

    pub(crate) fn req(json: &str) -> JobRequest {
        JobRequest::from_slice(json.as_bytes()).unwrap()
    }

    fn ev(job: &Job, kind: EventKind) -> Event {
        Event::now(job.id.clone(), kind)
    }

    fn w(id: &str) -> WorkerId {
        WorkerId::parse(id).unwrap()
    }

    pub(crate) fn planned() -> EventKind {
        EventKind::Planned {
            steps: vec![],
            summary: "s".into(),
            planner: "passthrough".into(),
            plan_hash: crate::spec::plan_hash(&[]),
            model: None,
            usage: None,
            lock: None,
        }
    }

    pub(crate) fn approved() -> EventKind {
        EventKind::Approved {
            by: "policy".into(),
            reasons: vec![],
            seal: None,
        }
    }

    #[test]
    fn the_fold_follows_a_job_with_a_retry() {
        let mut job = Job::new(JobId::parse("j").unwrap());
        let mut seq = 0;
        let mut step = |job: &mut Job, kind: EventKind| {
            seq += 1;
            let e = ev(job, kind);
            job.apply(seq, &e)
        };
        let r = req(
            r#"{"goal":"g","retries":1,"labels":["gpu"],"timeout_s":9,"priority":"high","lock":"L"}"#,
        );
        assert_eq!(
            step(&mut job, EventKind::Received { request: r }),
            Applied::Moved(JobState::Received)
        );
        assert_eq!(job.wants.labels, vec!["gpu".to_string()]);
        assert_eq!((job.wants.retries, job.wants.timeout_s), (1, 9));
        assert_eq!(job.wants.priority, Priority::High);
        step(&mut job, planned());
        assert!(job.judgeable());
        step(&mut job, approved());
        assert!(job.waiting());
        assert_eq!(job.waiting_since, 3);
        step(
            &mut job,
            EventKind::Dispatched {
                worker: w("a"),
                attempt: 1,
            },
        );
        assert!(job.on_worker() && job.reached_worker);
        assert_eq!(job.deadline_ms(), job.dispatched_ms.map(|d| d + 9000));
        // A report from another worker, or of another attempt, is illegal.
        for bad in [
            EventKind::Running {
                worker: w("b"),
                attempt: 1,
                sandbox: None,
            },
            EventKind::Running {
                worker: w("a"),
                attempt: 2,
                sandbox: None,
            },
            EventKind::Queued {
                attempt: 3,
                reason: None,
            },
        ] {
            assert!(matches!(step(&mut job, bad), Applied::Refused(_)));
        }
        // Refused events still take their position.
        assert_eq!(job.seq, 7);
        step(
            &mut job,
            EventKind::Queued {
                attempt: 2,
                reason: Some("lost".into()),
            },
        );
        assert_eq!(
            (job.attempt, job.worker.as_ref(), job.waiting_since),
            (2, None, 8)
        );
        // No third attempt: the job has one retry.
        let mut copy = job.clone();
        copy.apply(
            0,
            &ev(
                &job,
                EventKind::Dispatched {
                    worker: w("b"),
                    attempt: 2,
                },
            ),
        );
        assert!(
            copy.check(&EventKind::Queued {
                attempt: 3,
                reason: None
            })
            .is_err()
        );
        // Old events change nothing.
        assert_eq!(
            step(&mut job, approved()),
            Applied::Refused(job.check(&approved()).unwrap_err())
        );
        let before = job.clone();
        assert_eq!(job.apply(3, &ev(&job, approved())), Applied::Old);
        assert_eq!(job, before);
    }

    #[test]
    fn a_terminal_event_of_another_attempt_is_illegal() {
        let mut job = Job::new(JobId::parse("j").unwrap());
        for (i, k) in [
            EventKind::Received {
                request: req(r#"{"goal":"g"}"#),
            },
            planned(),
            approved(),
            EventKind::Dispatched {
                worker: w("a"),
                attempt: 1,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let e = ev(&job, k);
            job.apply(i as u64 + 1, &e);
        }
        let stale = EventKind::Failed(Finished {
            attempt: Some(2),
            ..Default::default()
        });
        assert!(job.check(&stale).is_err());
        let current = EventKind::Failed(Finished {
            attempt: Some(1),
            ..Default::default()
        });
        assert!(job.check(&current).is_ok());
        // A dispatched job cannot succeed without having run.
        assert!(
            job.check(&EventKind::Succeeded(Finished::default()))
                .is_err()
        );
    }

    #[test]
    fn open_jobs_are_opened_by_their_first_event_and_closed_by_their_last() {
        let mut open = Open::default();
        let id = JobId::parse("j").unwrap();
        let e = |k| Event::now(id.clone(), k);
        // A mid-life event of a job this follower never saw opens nothing.
        assert_eq!(open.follow(1, &e(approved())), Change::None);
        assert!(open.jobs.is_empty());
        open.follow(
            2,
            &e(EventKind::Received {
                request: req(r#"{"goal":"g"}"#),
            }),
        );
        open.follow(3, &e(planned()));
        assert_eq!(open.get(&id).unwrap().state, Some(JobState::Planned));
        // A write applied at once and delivered later is applied once.
        let denied = e(EventKind::Denied {
            reason: "no".into(),
            by: "policy".into(),
            steps: vec![],
        });
        assert!(matches!(open.apply(5, &denied), Change::Ended(_)));
        assert_eq!(open.follow(4, &e(planned())), Change::None);
        assert_eq!(open.follow(5, &denied), Change::None);
        assert!(open.jobs.is_empty());
        assert_eq!(open.position, 5);
        // The same for a job rejected at once.
        let other = JobId::parse("k").unwrap();
        let rejected = Event::now(
            other,
            EventKind::Rejected {
                reason: "bad".into(),
                steps: vec![],
            },
        );
        assert!(matches!(open.follow(6, &rejected), Change::Ended(_)));
        assert!(open.jobs.is_empty());
    }

    #[test]
    fn snapshots_keep_everything_but_the_steps() {
        let mut job = Job::new(JobId::parse("j").unwrap());
        job.apply(
            1,
            &ev(
                &job,
                EventKind::Received {
                    request: req(r#"{"goal":"g"}"#),
                },
            ),
        );
        job.apply(2, &ev(&job, planned()));
        assert!(job.steps.is_some());
        let back: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back.steps, None);
        assert_eq!(back.plan.as_ref().unwrap().seq, 2);
        let mut without = job.clone();
        without.steps = None;
        assert_eq!(back, without);
    }
}
