//! skynet-policy: decides whether a plan may run, and signs what runs.
//!
//! Follows `SKYNET_EVENTS` from the start (state is rebuilt by replay, so a restart loses
//! nothing). For every `planned` job it judges each step against the rules and writes
//! `approved` (`by: policy`), `awaiting_approval` (with `risk` and `reasons`) or `denied`.
//! An approval nobody answers expires to `denied` ("approval expired"). When the dispatcher
//! writes `dispatched`, policy signs an ExecutionSpec for exactly that job, attempt, worker
//! and plan, and puts it on `skynet.work.<worker>.<job>` (stream `SKYNET_WORK`).
//!
//! Serves `skynet.api.jobs.approve` and `skynet.api.jobs.deny`.

pub mod rules;
pub mod shell;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, message::PublishMessage};
use skynet_protocol::api::{ApiError, DecisionRequest, StateReply};
use skynet_protocol::spec::{ExecutionSpec, plan_hash};
use skynet_protocol::{Event, EventKind, JobId, JobState, Step, WorkerId, subjects};
use skynet_runtime::events::{AppendError, EventLog, Phase, Stored, Transition};
use skynet_runtime::{Shutdown, api};
use tokio_util::sync::CancellationToken;

pub use rules::{Judgement, Policy, PolicyError, Verdict};

/// Settings of the policy service.
pub struct Config {
    pub policy: Arc<Policy>,
    /// The key that signs execution specs; workers trust its public key.
    pub signing_key: Arc<nkeys::KeyPair>,
    /// How long a signed spec may wait before it must not start any more.
    pub spec_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("policy", &self.policy)
            .field("signer", &self.signing_key.public_key())
            .field("spec_ttl", &self.spec_ttl)
            .finish()
    }
}

/// What policy remembers of a job that has not ended.
#[derive(Debug, Default)]
struct Track {
    seq: u64,
    state: Option<JobState>,
    steps: Vec<Step>,
    plan_hash: String,
    timeout_s: u64,
    expires_ms: Option<i64>,
    approved: bool,
    /// The worker and attempt of the latest `dispatched`.
    dispatched: Option<(WorkerId, u32)>,
    /// Attempts whose spec this process already sent.
    sent: Option<u32>,
}

struct Engine {
    config: Config,
    log: EventLog,
    js: jetstream::Context,
    jobs: HashMap<JobId, Track>,
}

/// Runs policy until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (js, log) = skynet_runtime::setup::open(&client).await?;
    let tasks = Shutdown::new(shutdown.clone());
    tracing::info!(signer = %config.signing_key.public_key(), "policy signing key");

    let service = api::start_service(&client, "policy").await?;
    for (endpoint, approve) in [
        (subjects::api::JOBS_APPROVE, true),
        (subjects::api::JOBS_DENY, false),
    ] {
        let log = log.clone();
        let key = config.signing_key.clone();
        tasks.tasks.spawn(api::serve(
            api::endpoint(&service, endpoint).await?,
            tasks.clone(),
            move |req: DecisionRequest| {
                let (log, key) = (log.clone(), key.clone());
                async move { decide_by_person(&log, &key, req, approve).await }
            },
        ));
    }

    let mut engine = Engine {
        config,
        log: log.clone(),
        js,
        jobs: HashMap::new(),
    };
    let mut events = log.replay().await?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            next = events.next() => match next {
                Some(Ok((stored, phase))) => {
                    let job = stored.event.job_id.clone();
                    engine.apply(stored);
                    match phase {
                        Phase::Live => engine.react(&job).await,
                        Phase::CaughtUp => {
                            tracing::info!(jobs = engine.jobs.len(), "caught up with the event stream");
                            engine.reconcile().await;
                        }
                        Phase::Replay => {}
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "following events"),
                None => anyhow::bail!("event stream ended"),
            },
            _ = tick.tick(), if events.is_live() => engine.expire_due().await,
        }
    }
    let _ = service.stop().await;
    tasks.drain(Duration::from_secs(5)).await;
    Ok(())
}

impl Engine {
    fn apply(&mut self, stored: Stored) {
        let me = self.config.signing_key.public_key();
        let Stored { seq, event } = stored;
        let state = event.state();
        if state.is_terminal() {
            self.jobs.remove(&event.job_id);
            return;
        }
        let track = self.jobs.entry(event.job_id.clone()).or_default();
        if seq <= track.seq {
            return;
        }
        let decided = track.state.is_some_and(|s| s != JobState::Received);
        track.seq = seq;
        track.state = Some(state);
        match event.kind {
            EventKind::Received { request } => track.timeout_s = request.timeout(),
            // A plan is fixed once judged: a later `planned` cannot swap the steps.
            EventKind::Planned { .. } if decided => {
                tracing::error!(job_id = %event.job_id, "a second plan for a judged job is ignored");
            }
            EventKind::Planned {
                steps, plan_hash, ..
            } => {
                track.steps = steps;
                track.plan_hash = plan_hash;
            }
            EventKind::AwaitingApproval { expires_at, .. } => {
                track.expires_ms =
                    skynet_protocol::time::parse(&expires_at).map(skynet_protocol::time::unix_ms);
            }
            EventKind::Dispatched { worker, attempt } => {
                track.dispatched = Some((worker, attempt));
            }
            EventKind::Approved { seal, .. } => {
                // Only an approval policy sealed (for this job and this plan) counts.
                track.approved = seal.as_deref().is_some_and(|s| {
                    skynet_protocol::spec::verify_approval(&me, &event.job_id, &track.plan_hash, s)
                });
                if !track.approved {
                    tracing::error!(job_id = %event.job_id, "an approval without policy's seal; it will not be signed");
                }
            }
            _ => {}
        }
        if track.timeout_s == 0 {
            track.timeout_s = skynet_protocol::job::DEFAULT_TIMEOUT_S;
        }
    }

    async fn reconcile(&mut self) {
        let ids: Vec<JobId> = self.jobs.keys().cloned().collect();
        for id in ids {
            self.react(&id).await;
        }
    }

    async fn react(&mut self, job: &JobId) {
        let Some(track) = self.jobs.get(job) else {
            return;
        };
        let result = match track.state {
            Some(JobState::Planned) => self.judge(job).await,
            Some(JobState::Dispatched) => self.send_spec(job).await,
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!(job_id = %job, error = %e, "policy could not act on the job");
        }
    }

    /// Writes the decision for a planned job.
    async fn judge(&mut self, job: &JobId) -> anyhow::Result<()> {
        let Some(track) = self.jobs.get(job) else {
            return Ok(());
        };
        let kind = if plan_hash(&track.steps) != track.plan_hash {
            EventKind::Denied {
                reason: "the plan does not match its hash".into(),
                by: "policy".into(),
                steps: vec![],
            }
        } else {
            let j = self.config.policy.judge(&track.steps);
            match j.verdict {
                Verdict::Allow => EventKind::Approved {
                    by: "policy".into(),
                    reasons: j.reasons,
                    seal: Some(skynet_protocol::spec::seal_approval(
                        &self.config.signing_key,
                        job,
                        &track.plan_hash,
                    )?),
                },
                Verdict::Approve => {
                    let ttl_ms = self.config.policy.approval_ttl.as_millis() as i64;
                    EventKind::AwaitingApproval {
                        risk: j.risk,
                        reasons: j.reasons,
                        plan_hash: track.plan_hash.clone(),
                        expires_at: skynet_protocol::time::from_unix_ms(
                            skynet_protocol::time::now_ms() + ttl_ms,
                        ),
                    }
                }
                Verdict::Deny => EventKind::Denied {
                    reason: j.reasons.join("; "),
                    by: "policy".into(),
                    steps: vec![],
                },
            }
        };
        tracing::info!(job_id = %job, decision = %kind.state(), "judged");
        self.write(job, kind).await
    }

    /// Appends an event based on what this engine saw last, and applies it at once so the
    /// engine never acts twice on the same state.
    async fn write(&mut self, job: &JobId, kind: EventKind) -> anyhow::Result<()> {
        let Some(track) = self.jobs.get(job) else {
            return Ok(());
        };
        let event = Event::now(job.clone(), kind);
        match self.log.append(&event, Some(track.seq)).await {
            Ok(seq) => {
                self.apply(Stored { seq, event });
                Ok(())
            }
            // Someone else moved the job on; the stream will tell us what happened.
            Err(AppendError::Conflict | AppendError::Duplicate(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Signs and sends the spec of a dispatched job.
    async fn send_spec(&mut self, job: &JobId) -> anyhow::Result<()> {
        let Some(track) = self.jobs.get_mut(job) else {
            return Ok(());
        };
        let Some((worker, attempt)) = track.dispatched.clone() else {
            return Ok(());
        };
        if track.sent == Some(attempt) {
            return Ok(());
        }
        if !track.approved {
            tracing::error!(job_id = %job, "dispatched without an approval sealed by policy; refusing");
            let kind = EventKind::Failed(skynet_protocol::event::Finished {
                steps: vec![],
                error: Some("refused: the job's approval was not made by policy".into()),
                worker: Some(worker),
                attempt: Some(attempt),
            });
            return self.write(job, kind).await;
        }
        let now = skynet_protocol::time::now_ms() / 1000;
        let spec = ExecutionSpec {
            job_id: job.clone(),
            attempt,
            worker: worker.clone(),
            steps: track.steps.clone(),
            plan_hash: track.plan_hash.clone(),
            timeout_s: track.timeout_s,
            not_after: now + self.config.spec_ttl.as_secs() as i64,
            issued_at: now,
        };
        let signed = spec.sign(&self.config.signing_key)?;
        send_work(&self.js, &worker, job, attempt, signed.to_json()).await?;
        track.sent = Some(attempt);
        tracing::info!(job_id = %job, worker = %worker, attempt, "spec signed and sent");
        Ok(())
    }

    async fn expire_due(&mut self) {
        let now = skynet_protocol::time::now_ms();
        let due: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, t)| {
                t.state == Some(JobState::AwaitingApproval)
                    && t.expires_ms.is_some_and(|e| e <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for job in due {
            tracing::info!(job_id = %job, "approval expired");
            let kind = EventKind::Denied {
                reason: "approval expired".into(),
                by: "policy".into(),
                steps: vec![],
            };
            if let Err(e) = self.write(&job, kind).await {
                tracing::warn!(job_id = %job, error = %e, "expiring an approval");
            }
        }
    }
}

async fn send_work(
    js: &jetstream::Context,
    worker: &WorkerId,
    job: &JobId,
    attempt: u32,
    body: Vec<u8>,
) -> anyhow::Result<()> {
    js.send_publish(
        subjects::work(worker, job),
        PublishMessage::build()
            .payload(body.into())
            .message_id(format!("{job}:{attempt}")),
    )
    .await?
    .await?;
    Ok(())
}

/// `jobs.approve` / `jobs.deny`: only a job awaiting approval can be decided, and only for
/// the plan the person saw when they give its hash.
async fn decide_by_person(
    log: &EventLog,
    key: &nkeys::KeyPair,
    req: DecisionRequest,
    approve: bool,
) -> Result<StateReply, ApiError> {
    let by = req
        .by
        .clone()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".into());
    if let Some(h) = &req.plan_hash
        && (h.len() < 12 || !h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(ApiError::bad_request(
            "plan_hash must be at least 12 hex digits of the plan hash",
        ));
    }
    let mut mismatch = false;
    let outcome = log
        .transition(&req.job_id, |last| {
            let last = last?;
            let EventKind::AwaitingApproval { plan_hash, .. } = &last.event.kind else {
                return None;
            };
            if let Some(h) = &req.plan_hash
                && !plan_hash.starts_with(h.as_str())
            {
                mismatch = true;
                return None;
            }
            Some(if approve {
                EventKind::Approved {
                    by: by.clone(),
                    reasons: vec![],
                    seal: skynet_protocol::spec::seal_approval(key, &req.job_id, plan_hash).ok(),
                }
            } else {
                EventKind::Denied {
                    reason: req
                        .reason
                        .clone()
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| format!("denied by {by}")),
                    by: by.clone(),
                    steps: vec![],
                }
            })
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match outcome {
        Transition::Written(s) => {
            tracing::info!(job_id = %req.job_id, by, state = %s.event.state(), "decided by a person");
            Ok(StateReply {
                job_id: req.job_id,
                state: s.event.state(),
            })
        }
        Transition::Declined(None) => Err(ApiError::not_found(format!("no job {}", req.job_id))),
        Transition::Declined(Some(_)) if mismatch => Err(ApiError::conflict(
            "the plan of this job is not the one given (plan_hash differs)",
        )),
        Transition::Declined(Some(last)) => Err(ApiError::conflict(format!(
            "job {} is {}, not awaiting approval",
            req.job_id,
            last.event.state()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_debug_shows_the_public_key_and_never_the_seed() {
        let key = nkeys::KeyPair::new_user();
        let seed = key.seed().unwrap();
        let config = Config {
            policy: Arc::new(Policy::builtin().unwrap()),
            signing_key: Arc::new(key),
            spec_ttl: Duration::from_secs(60),
        };
        let text = format!("{config:?}");
        assert!(!text.contains(&seed), "{text}");
        assert!(text.contains(&config.signing_key.public_key()));
    }
}
