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
//! Serves `skynet.api.jobs.approve` and `skynet.api.jobs.deny`. A person's decision records
//! the identity whose signature verifies (`skynet_protocol::approval`), never the request's
//! free-text `by`. For schedules ([`schedules`]) it serves `skynet.api.schedules.approve`
//! (signed and verified the same way) and the internal `schedules.judge` (a new schedule's plan, judged once); a schedule's
//! tick jobs (`requested_by: schedule:<name>`) are approved by whoever let the schedule run
//! (policy or a person) when their plan is the schedule's; every other plan of theirs is
//! denied.

pub mod rules;
mod schedules;
pub mod shell;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use skynet_protocol::api::{ApiError, DecisionRequest, StateReply};
use skynet_protocol::approval::{Approvers, Decision, DecisionSignature, Signable};
use skynet_protocol::lifecycle::{Change, Job, Open};
use skynet_protocol::spec::{Grant, Seal, plan_hash};
use skynet_protocol::{EventKind, JobId, JobState, subjects};
use skynet_runtime::events::{EventLog, Transition};
use skynet_runtime::follow::{Follower, Phase};
use skynet_runtime::{Shutdown, api};
use tokio_util::sync::CancellationToken;

pub use rules::{Judgement, Policy, PolicyError, Verdict};

/// At most this many events already at hand are taken in before acting on them.
const EVENT_BATCH: usize = 512;

/// Settings of the policy service.
#[derive(Clone)]
pub struct Config {
    pub policy: Arc<Policy>,
    /// The key that seals approvals; workers trust its public key.
    pub signing_key: Arc<nkeys::KeyPair>,
    /// How long an approval stays good for starting attempts of its job.
    pub grant_ttl: Duration,
    /// Whose approvals and denials count.
    pub deciders: Deciders,
}

/// Whose decisions policy accepts, by default: the `approvers` file given; else, with an
/// identity (`seed`), the `approvers` file next to its seed in the credentials directory;
/// else (no identities on the bus) anyone.
pub fn deciders_for(
    seed: Option<&std::path::Path>,
    approvers: Option<&std::path::Path>,
) -> Deciders {
    match (approvers, seed) {
        (Some(file), _) => Deciders::File(file.to_path_buf()),
        (None, Some(seed)) => Deciders::File(
            seed.parent()
                .unwrap_or(std::path::Path::new("."))
                .join(APPROVERS_FILE),
        ),
        (None, None) => Deciders::Anyone,
    }
}

/// The name of the approvers file in a credentials directory.
pub const APPROVERS_FILE: &str = "approvers";

/// Whose decisions policy accepts.
#[derive(Debug, Clone)]
pub enum Deciders {
    /// A bus without identities (a development server without auth): nobody can be
    /// verified, so the name a request gives is recorded, never policy's own.
    Anyone,
    /// Decisions signed by these identities only.
    Known(Approvers),
    /// Decisions signed by the identities listed in this file (`approvers` in a
    /// credentials directory), read at each decision so a new approver counts at once.
    File(PathBuf),
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("policy", &self.policy)
            .field("signer", &self.signing_key.public_key())
            .field("grant_ttl", &self.grant_ttl)
            .field("deciders", &self.deciders)
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
    /// The grant for approving `job` (by `by`, letting the risky variables `env` through,
    /// with outbound TCP when `network`).
    fn seal(&self, job: &Job, by: &str, env: Vec<String>, network: bool) -> anyhow::Result<Seal> {
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
            network,
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
        let deciders = Arc::new(config.deciders.clone());
        tasks.tasks.spawn(api::serve_from(
            api::endpoint(&service, endpoint).await?,
            tasks.clone(),
            move |req: DecisionRequest, caller: api::Caller| {
                let (log, sealer, policy, deciders) = (
                    log.clone(),
                    sealer.clone(),
                    policy.clone(),
                    deciders.clone(),
                );
                async move {
                    let by = who_decided(&deciders, &req, &caller, approve).await?;
                    decide_by_person(&log, &sealer, &policy, req, by, approve).await
                }
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
        Arc::new(config.deciders.clone()),
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
            next = follower.next(&mut engine.open) => {
                // Every event already at hand is taken in, and the plans among them judged
                // and written together.
                let mut next = next;
                let mut planned = Vec::new();
                for _ in 0..EVENT_BATCH {
                    match next {
                        Some(Ok((stored, change, phase))) => match phase {
                            Phase::Live => {
                                if change == Change::Moved(JobState::Planned) {
                                    planned.push(stored.event.job_id);
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
                    }
                    match follower.next_ready(&mut engine.open) {
                        Some(n) => next = n,
                        None => break,
                    }
                }
                engine.judge_all(planned).await;
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
        self.judge_all(planned).await;
        self.expire_due().await;
    }

    /// Judges the planned jobs among `ids` and writes the decisions, all at once: the
    /// judging runs concurrently, the events are written concurrently, and what was stored
    /// is applied to the open set in order.
    async fn judge_all(&mut self, ids: Vec<JobId>) {
        let mut seen = std::collections::HashSet::new();
        let jobs: Vec<Job> = ids
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .filter_map(|id| self.open.get(&id).filter(|j| j.judgeable()).cloned())
            .collect();
        if jobs.is_empty() {
            return;
        }
        let this = &*self;
        let decided = futures::future::join_all(jobs.into_iter().map(|mut job| async move {
            let kind = this.decide(&mut job).await;
            (job, kind)
        }))
        .await;
        let written =
            futures::future::join_all(decided.into_iter().filter_map(|(job, kind)| match kind {
                Ok(kind) => {
                    tracing::info!(job_id = %job.id, decision = %kind.state(), "judged");
                    Some(async move {
                        let r = this.log.append(&job, kind).await;
                        (job.id, r)
                    })
                }
                Err(e) => {
                    tracing::error!(job_id = %job.id, error = %e, "policy could not judge the job");
                    None
                }
            }))
            .await;
        for (id, r) in written {
            match r {
                Ok(stored) => {
                    self.open.apply(stored.seq, &stored.event);
                }
                // Someone else moved the job first: the stream will say what happened.
                Err(e) if e.is_race() => {}
                Err(e) => tracing::error!(job_id = %id, error = %e, "writing the decision"),
            }
        }
    }

    /// The decision about a planned job.
    async fn decide(&self, job: &mut Job) -> anyhow::Result<EventKind> {
        let steps = self.log.with_steps(job).await?;
        let hash = job
            .plan
            .as_ref()
            .map(|p| p.hash.clone())
            .unwrap_or_default();
        if plan_hash(&steps) != hash {
            return Ok(EventKind::Denied {
                reason: "the plan does not match its hash".into(),
                by: "policy".into(),
                steps: vec![],
            });
        }
        let j = if steps.len() > 8 || serde_json::to_vec(&*steps).map_or(0, |b| b.len()) > 4096 {
            // Judging a large plan takes a while: off the runtime's threads.
            let (policy, plan) = (self.policy.clone(), steps.clone());
            tokio::task::spawn_blocking(move || policy.judge(&plan)).await?
        } else {
            self.policy.judge(&steps)
        };
        let of_schedule =
            skynet_protocol::schedule::schedule_of(&job.id, job.wants.requested_by.as_deref());
        if let Some(name) = of_schedule {
            let kind = match schedules::tick_approval(&self.schedules, &name, &hash, &j).await? {
                // A person who approved the schedule approved its plan as a whole, network
                // included, as with a job's approval.
                Ok(by) => EventKind::Approved {
                    seal: Some(self.sealer.seal(
                        job,
                        &by,
                        j.allowed_env,
                        j.network || by != "policy",
                    )?),
                    by,
                    reasons: vec![format!("a tick of schedule {name}")],
                },
                Err(reason) => EventKind::Denied {
                    reason,
                    by: "policy".into(),
                    steps: vec![],
                },
            };
            tracing::info!(job_id = %job.id, schedule = %name, decision = %kind.state(), "judged a tick");
            return Ok(kind);
        }
        Ok(match j.verdict {
            Verdict::Allow => EventKind::Approved {
                by: "policy".into(),
                seal: Some(self.sealer.seal(job, "policy", j.allowed_env, j.network)?),
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
        })
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

/// Who made a job decision: the identity whose signature verifies. Only on a bus without
/// identities is the request's own `by` taken, and never when it names policy.
async fn who_decided(
    deciders: &Deciders,
    req: &DecisionRequest,
    caller: &api::Caller,
    approve: bool,
) -> Result<String, ApiError> {
    if let Deciders::Anyone = deciders {
        return verified_by(deciders, req.by.as_deref(), None, caller, &NoDecision).await;
    }
    let plan_hash = match (&req.signature, req.plan_hash.as_deref()) {
        (Some(_), None) => {
            return Err(ApiError::bad_request(
                "a signed decision names the plan_hash it signed",
            ));
        }
        (_, h) => h.unwrap_or(""),
    };
    let decision = Decision {
        job_id: &req.job_id,
        plan_hash,
        verdict: if approve {
            skynet_protocol::approval::Verdict::Approve
        } else {
            skynet_protocol::approval::Verdict::Deny
        },
    };
    verified_by(
        deciders,
        req.by.as_deref(),
        req.signature.as_ref(),
        caller,
        &decision,
    )
    .await
}

/// Stands for a decision where none is checked (a bus without identities).
struct NoDecision;

impl Signable for NoDecision {
    fn signed_bytes(&self, _: i64, _: Option<&str>) -> Vec<u8> {
        Vec::new()
    }
}

/// Who made `decision` (a job's or a schedule's): with identities, the approver whose
/// signature `sig` verifies (403 for a stale one or any other key); unsigned, the approving
/// command line whose private inbox the reply goes to, as the server vouches for it (403 for
/// any other caller). On a bus without identities, the `claimed` name (default `api`), never
/// one that names policy. The request's own `by` is never taken where identities exist.
pub(crate) async fn verified_by(
    deciders: &Deciders,
    claimed: Option<&str>,
    sig: Option<&DecisionSignature>,
    caller: &api::Caller,
    decision: &impl Signable,
) -> Result<String, ApiError> {
    let known = match deciders {
        Deciders::Anyone => {
            let by = claimed
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .unwrap_or("api");
            return if claims_to_be_policy(by) {
                Err(ApiError::forbidden(format!(
                    "{by:?} is not a person: only policy itself decides as policy"
                )))
            } else {
                Ok(by.to_owned())
            };
        }
        Deciders::Known(known) => known.clone(),
        Deciders::File(path) => {
            let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                ApiError::internal(format!("reading approvers {}: {e}", path.display()))
            })?;
            Approvers::parse(&text).map_err(|e| ApiError::internal(e.to_string()))?
        }
    };
    let Some(sig) = sig else {
        return caller
            .inbox_key
            .as_deref()
            .and_then(|key| known.by_inbox(key))
            .ok_or_else(|| {
                ApiError::forbidden(
                    "a decision must come from an approving identity: signed with the                      approver's key (skynet approve, skynet schedule approve and the Telegram                      ingress sign with their NATS seed), or sent by an approving command line                      with its own inbox",
                )
            });
    };
    known
        .verify(sig, decision, skynet_protocol::time::now_ms() / 1000)
        .map_err(|e| ApiError::forbidden(e.to_string()))
}

/// Names only policy's own decisions carry.
fn claims_to_be_policy(by: &str) -> bool {
    let b = by.to_ascii_lowercase();
    b == "policy" || b.starts_with("policy:") || b.starts_with("schedule:")
}

/// `jobs.approve` / `jobs.deny` by `by` (verified): only a job awaiting approval can be
/// decided, and only for the plan the person saw when they give its hash.
async fn decide_by_person(
    log: &EventLog,
    sealer: &Sealer,
    policy: &Policy,
    req: DecisionRequest,
    by: String,
    approve: bool,
) -> Result<StateReply, ApiError> {
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
                // The person saw the plan's variables: the approval lets its risky ones through,
                // and the plan's network use (the sandbox cannot tell which steps need it).
                let env = job
                    .steps
                    .as_deref()
                    .map(|steps| policy.judge(steps).allowed_env)
                    .unwrap_or_default();
                match sealer.seal(job, &by, env, true) {
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
            deciders: Deciders::Anyone,
        };
        let text = format!("{config:?}");
        assert!(!text.contains(&seed), "{text}");
        assert!(text.contains(&config.signing_key.public_key()));
    }

    #[test]
    fn nobody_decides_in_policys_name() {
        for name in ["policy", " Policy", "POLICY:x", "schedule:nightly"] {
            assert!(claims_to_be_policy(name.trim()), "{name}");
        }
        assert!(!claims_to_be_policy("alice"));
        assert!(!claims_to_be_policy("telegram:1001"));
    }
}
