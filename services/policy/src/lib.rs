//! skynet-policy: decides whether a plan may run, and seals what may.
//!
//! Follows `SKYNET_EVENTS` (resuming from its snapshot in `skynet-snapshots`) with every open
//! job in memory. For every `planned` job it judges each step against the rules and writes
//! `approved` (`by: policy`), `awaiting_approval` (with `risk` and `reasons`) or `denied`.
//! An approval nobody answers expires to `denied` ("approval expired"). Every approval,
//! its own or a person's through its API, carries a grant sealed with policy's key
//! (`skynet_protocol::spec::Grant`): the job, its plan hash, the attempts its retries allow,
//! its time limit and routing, who approved, until when. Workers run only what a seal they
//! trust covers; policy takes no part in a job after `approved`.
//!
//! Serves `skynet.api.jobs.approve` and `skynet.api.jobs.deny`, and for schedules
//! ([`schedules`]) `skynet.api.schedules.approve` and the internal `schedules.judge` (a new
//! schedule's plan, judged once). A schedule's tick jobs (`requested_by: schedule:<name>`)
//! are approved by whoever let the schedule run (policy or a person) when their plan is the
//! schedule's; every other plan of theirs is denied.

pub mod rules;
mod schedules;
pub mod shell;

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use skynet_protocol::api::{ApiError, DecisionRequest, StateReply};
use skynet_protocol::lifecycle::{Change, Job, Open};
use skynet_protocol::spec::{Grant, Seal, plan_hash};
use skynet_protocol::{EventKind, JobId, JobState, subjects};
use skynet_runtime::events::{EventLog, Transition};
use skynet_runtime::follow::{Follower, Phase};
use skynet_runtime::{Shutdown, api};
use tokio_util::sync::CancellationToken;

pub use rules::{Judgement, Policy, PolicyError, Verdict};

/// Settings of the policy service.
#[derive(Clone)]
pub struct Config {
    pub policy: Arc<Policy>,
    /// The key that seals approvals; workers trust its public key.
    pub signing_key: Arc<nkeys::KeyPair>,
    /// How long an approval stays good for starting attempts of its job.
    pub grant_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("policy", &self.policy)
            .field("signer", &self.signing_key.public_key())
            .field("grant_ttl", &self.grant_ttl)
            .finish()
    }
}

/// Seals approvals.
#[derive(Clone)]
struct Sealer {
    key: Arc<nkeys::KeyPair>,
    ttl: Duration,
}

impl Sealer {
    /// The grant for approving `job` (by `by`, letting the risky variables `env` through).
    fn seal(&self, job: &Job, by: &str, env: Vec<String>) -> anyhow::Result<Seal> {
        let plan = job
            .plan
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("job {} has no plan", job.id))?;
        let now = skynet_protocol::time::now_ms() / 1000;
        let grant = Grant {
            job_id: job.id.clone(),
            plan_hash: plan.hash.clone(),
            max_attempt: job.wants.retries + 1,
            timeout_s: job.wants.timeout_s,
            worker: job.wants.worker.clone(),
            labels: job.wants.labels.clone(),
            env,
            by: by.to_owned(),
            issued_at: now,
            not_after: now + self.ttl.as_secs() as i64,
        };
        Ok(grant.seal(&self.key)?)
    }
}

struct Engine {
    policy: Arc<Policy>,
    sealer: Sealer,
    log: EventLog,
    open: Open,
    schedules: async_nats::jetstream::kv::Store,
}

/// Runs policy until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some((js, log)) = skynet_runtime::setup::open(&client, &shutdown).await? else {
        return Ok(());
    };
    let tasks = Shutdown::new(shutdown.clone());
    tracing::info!(signer = %config.signing_key.public_key(), "policy sealing key");
    let sealer = Sealer {
        key: config.signing_key.clone(),
        ttl: config.grant_ttl,
    };

    let service = api::start_service(&client, "policy").await?;
    for (endpoint, approve) in [
        (subjects::api::JOBS_APPROVE, true),
        (subjects::api::JOBS_DENY, false),
    ] {
        let log = log.clone();
        let sealer = sealer.clone();
        let policy = config.policy.clone();
        tasks.tasks.spawn(api::serve(
            api::endpoint(&service, endpoint).await?,
            tasks.clone(),
            move |req: DecisionRequest| {
                let (log, sealer, policy) = (log.clone(), sealer.clone(), policy.clone());
                async move { decide_by_person(&log, &sealer, &policy, req, approve).await }
            },
        ));
    }

    let schedules_kv = js
        .get_key_value(skynet_protocol::streams::SCHEDULES_BUCKET)
        .await?;
    schedules::serve(
        &service,
        &tasks,
        schedules_kv.clone(),
        config.policy.clone(),
    )
    .await?;

    let (mut follower, open) = Follower::start(&log, &js, "policy").await?;
    let mut engine = Engine {
        policy: config.policy.clone(),
        sealer,
        log: log.clone(),
        open,
        schedules: schedules_kv,
    };
    if follower.is_live() {
        engine.reconcile().await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            next = follower.next(&mut engine.open) => match next {
                Some(Ok((stored, change, phase))) => match phase {
                    Phase::Live => {
                        if change == Change::Moved(JobState::Planned) {
                            engine.judge_logged(&stored.event.job_id).await;
                        }
                    }
                    Phase::CaughtUp => {
                        tracing::info!(jobs = engine.open.jobs.len(), "caught up with the event stream");
                        follower.snapshot(&engine.open, true);
                        engine.reconcile().await;
                    }
                    Phase::Replay => {}
                },
                Some(Err(e)) => tracing::warn!(error = %e, "following events"),
                None => anyhow::bail!("event stream ended"),
            },
            _ = tick.tick(), if follower.is_live() => {
                engine.expire_due().await;
                follower.snapshot(&engine.open, false);
            }
        }
    }
    follower.finish(&engine.open, Duration::from_secs(3)).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), service.stop()).await;
    tasks.drain(Duration::from_secs(5)).await;
    Ok(())
}

impl Engine {
    async fn reconcile(&mut self) {
        let planned: Vec<JobId> = self
            .open
            .jobs
            .values()
            .filter(|j| j.judgeable())
            .map(|j| j.id.clone())
            .collect();
        for id in planned {
            self.judge_logged(&id).await;
        }
        self.expire_due().await;
    }

    async fn judge_logged(&mut self, id: &JobId) {
        if let Err(e) = self.judge(id).await {
            tracing::error!(job_id = %id, error = %e, "policy could not judge the job");
        }
    }

    /// Writes the decision for a planned job.
    async fn judge(&mut self, id: &JobId) -> anyhow::Result<()> {
        let Some(job) = self.open.get_mut(id) else {
            return Ok(());
        };
        if !job.judgeable() {
            return Ok(());
        }
        let steps = self.log.with_steps(job).await?;
        let job = job.clone();
        let hash = job
            .plan
            .as_ref()
            .map(|p| p.hash.clone())
            .unwrap_or_default();
        let kind = if plan_hash(&steps) != hash {
            EventKind::Denied {
                reason: "the plan does not match its hash".into(),
                by: "policy".into(),
                steps: vec![],
            }
        } else {
            // Judging a large plan takes a while: off the runtime's threads.
            let (policy, plan) = (self.policy.clone(), steps.clone());
            let j = tokio::task::spawn_blocking(move || policy.judge(&plan)).await?;
            let of_schedule =
                skynet_protocol::schedule::schedule_of(&job.id, job.wants.requested_by.as_deref());
            if let Some(name) = of_schedule {
                let kind = match schedules::tick_approval(&self.schedules, &name, &hash, &j).await?
                {
                    Ok(by) => EventKind::Approved {
                        seal: Some(self.sealer.seal(&job, &by, j.allowed_env)?),
                        by,
                        reasons: vec![format!("a tick of schedule {name}")],
                    },
                    Err(reason) => EventKind::Denied {
                        reason,
                        by: "policy".into(),
                        steps: vec![],
                    },
                };
                tracing::info!(job_id = %id, schedule = %name, decision = %kind.state(), "judged a tick");
                return self.write(&job, kind).await;
            }
            match j.verdict {
                Verdict::Allow => EventKind::Approved {
                    by: "policy".into(),
                    seal: Some(self.sealer.seal(&job, "policy", j.allowed_env)?),
                    reasons: j.reasons,
                },
                Verdict::Approve => {
                    let ttl_ms = self.policy.approval_ttl.as_millis() as i64;
                    EventKind::AwaitingApproval {
                        risk: j.risk,
                        reasons: j.reasons,
                        plan_hash: hash,
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
        tracing::info!(job_id = %id, decision = %kind.state(), "judged");
        self.write(&job, kind).await
    }

    /// Appends an event on top of the job as this engine saw it, and applies it at once so
    /// the engine never acts twice on the same state. Someone else moving the job first is
    /// fine: the stream will say what happened.
    async fn write(&mut self, job: &Job, kind: EventKind) -> anyhow::Result<()> {
        match self.log.append(job, kind).await {
            Ok(stored) => {
                self.open.apply(stored.seq, &stored.event);
                Ok(())
            }
            Err(e) if e.is_race() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn expire_due(&mut self) {
        let now = skynet_protocol::time::now_ms();
        let due: Vec<Job> = self
            .open
            .jobs
            .values()
            .filter(|j| j.approval_expired(now))
            .cloned()
            .collect();
        for job in due {
            tracing::info!(job_id = %job.id, "approval expired");
            let kind = EventKind::Denied {
                reason: "approval expired".into(),
                by: "policy".into(),
                steps: vec![],
            };
            if let Err(e) = self.write(&job, kind).await {
                tracing::warn!(job_id = %job.id, error = %e, "expiring an approval");
            }
        }
    }
}

/// `jobs.approve` / `jobs.deny`: only a job awaiting approval can be decided, and only for
/// the plan the person saw when they give its hash.
async fn decide_by_person(
    log: &EventLog,
    sealer: &Sealer,
    policy: &Policy,
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
    let mut sealing: Option<String> = None;
    let outcome = log
        .transition(&req.job_id, |job| {
            if job.state != Some(JobState::AwaitingApproval) {
                return None;
            }
            let hash = job.plan.as_ref().map(|p| p.hash.as_str()).unwrap_or("");
            if let Some(h) = &req.plan_hash
                && !hash.starts_with(h.as_str())
            {
                mismatch = true;
                return None;
            }
            Some(if approve {
                // The person saw the plan's variables: the approval lets its risky ones through.
                let env = job
                    .steps
                    .as_deref()
                    .map(|steps| policy.judge(steps).allowed_env)
                    .unwrap_or_default();
                match sealer.seal(job, &by, env) {
                    Ok(seal) => EventKind::Approved {
                        by: by.clone(),
                        reasons: vec![],
                        seal: Some(seal),
                    },
                    Err(e) => {
                        sealing = Some(e.to_string());
                        return None;
                    }
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
    if let Some(e) = sealing {
        return Err(ApiError::internal(format!("sealing the approval: {e}")));
    }
    match outcome {
        Transition::Written(s) => {
            tracing::info!(job_id = %req.job_id, by, state = %s.event.state(), "decided by a person");
            Ok(StateReply {
                job_id: req.job_id,
                state: s.event.state(),
            })
        }
        Transition::Declined(job) if job.state.is_none() => {
            Err(ApiError::not_found(format!("no job {}", req.job_id)))
        }
        Transition::Declined(_) if mismatch => Err(ApiError::conflict(
            "the plan of this job is not the one given (plan_hash differs)",
        )),
        Transition::Declined(job) => Err(ApiError::conflict(format!(
            "job {} is {}, not awaiting approval",
            req.job_id,
            job.state.map(|s| s.as_str()).unwrap_or("unknown")
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
            grant_ttl: Duration::from_secs(60),
        };
        let text = format!("{config:?}");
        assert!(!text.contains(&seed), "{text}");
        assert!(text.contains(&config.signing_key.public_key()));
    }
}
