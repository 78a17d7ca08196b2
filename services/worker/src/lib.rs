//! skynet-worker: the agent on a user's machine that runs what policy signed.
//!
//! It pulls specs from its own consumer (`worker-<id>`, filtered to `skynet.work.<id>.>` on
//! `SKYNET_WORK`), verifies each (trusted signer, untampered, addressed to this worker, not
//! expired, not an attempt it already ran), records the attempt before acknowledging it so
//! it never runs twice, and runs the steps in order: paths confined to its roots, its own
//! forbidden-command check, a scrubbed environment, and each step confined by the kernel
//! ([`sandbox`]: Landlock on Linux). Output and results go to its outbox
//! (`skynet.out.<id>.<job>.{log,event}`), which the dispatcher relays. It answers stop
//! requests on `skynet.control.<id>` and heartbeats into the `skynet-workers` registry.

pub mod artifacts;
pub mod caps;
pub mod cleanup;
pub mod clone;
pub mod exec;
pub mod guard;
pub mod outbox;
pub mod paths;
mod presence;
pub mod records;
pub mod redact;
pub mod sandbox;
pub mod secrets;
pub mod supervise;
mod work;

use presence::{control, heartbeat};
pub use work::still_current;
use work::{pull_work, wait_for_streams};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer, stream::DirectGetErrorKind};
use futures::StreamExt;
use skynet_protocol::lifecycle::Timing;
use skynet_protocol::spec::Me;
use skynet_protocol::worker::{
    ControlReply, ControlRequest, ControlStatus, StopReason, WorkerInfo, WorkerReport,
};
use skynet_protocol::{ExecutionSpec, JobId, JobState, Step, WorkerId, streams, subjects};
use skynet_runtime::ConfigError;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::exec::StopSignal;
use crate::outbox::{Outbox, Reporter};
use crate::records::{Records, Seen};

/// Environment variables a step inherits from the worker unless configured otherwise.
pub const DEFAULT_ENV_ALLOW: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TERM",
    "TMPDIR",
    "TZ",
    "SHELL",
];

/// Settings of a worker.
#[derive(Clone)]
pub struct Config {
    pub id: WorkerId,
    pub labels: Vec<String>,
    /// The only directories steps may touch.
    pub roots: Vec<PathBuf>,
    /// The worker user's home (`~` in steps).
    pub home: PathBuf,
    pub max_jobs: u32,
    pub heartbeat: Duration,
    /// Heartbeats that may be missed before the worker counts as lost; it stops its own
    /// steps one heartbeat earlier when its heartbeats cannot reach the server.
    pub missed_heartbeats: u32,
    /// The program that hosts step supervisors (`__supervise`): this binary, normally.
    pub supervisor: PathBuf,
    /// Public nkeys whose seals this worker accepts.
    pub trusted_keys: Vec<String>,
    pub data_dir: PathBuf,
    /// Between SIGTERM and SIGKILL when stopping a step.
    pub kill_grace: Duration,
    /// Variables passed from the worker's environment to steps.
    pub env_allow: Vec<String>,
    /// Extra forbidden-command patterns (regexes).
    pub forbid: Vec<String>,
    /// Strings masked in output before it leaves the machine.
    pub redact: Vec<String>,
    /// The largest file a step may keep as an artifact.
    pub artifact_max_bytes: u64,
    /// `--sandbox`; `None`: `require` where the kernel can confine steps, best effort
    /// elsewhere.
    pub sandbox: Option<sandbox::Mode>,
    /// The worker's own files besides `data_dir` that no step may reach: its credentials
    /// directory, seed file, trust file.
    pub protected: Vec<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("id", &self.id)
            .field("labels", &self.labels)
            .field("roots", &self.roots)
            .field("max_jobs", &self.max_jobs)
            .field("heartbeat", &self.heartbeat)
            .field("trusted_keys", &self.trusted_keys)
            .field("sandbox", &self.sandbox)
            .field("redact", &format_args!("<{} secrets>", self.redact.len()))
            .finish_non_exhaustive()
    }
}

struct Running {
    attempt: u32,
    stop: Arc<StopSignal>,
    progress: Arc<std::sync::atomic::AtomicU64>,
}

/// The worker's lease: it may run steps while its heartbeats reach the server.
struct Lease {
    /// Until when ([`supervise::boottime_ms`]); 0 before the first heartbeat landed.
    until: AtomicI64,
    tx: watch::Sender<i64>,
    length: Duration,
}

impl Lease {
    fn valid(&self) -> bool {
        supervise::boottime_ms() < self.until.load(Ordering::SeqCst)
    }

    /// A heartbeat sent at `sent_at` reached the server: the lease runs from then.
    fn extend(&self, sent_at: i64) {
        let until = sent_at + self.length.as_millis() as i64;
        self.until.fetch_max(until, Ordering::SeqCst);
        self.tx.send_replace(self.until.load(Ordering::SeqCst));
    }
}

struct Worker {
    cfg: Config,
    ctx: exec::Ctx,
    sandbox: std::sync::Arc<sandbox::Sandbox>,
    records: Records,
    outbox: Outbox,
    redact: Arc<redact::Redactor>,
    running: Mutex<HashMap<JobId, Running>>,
    lease: Lease,
    work: jetstream::stream::Stream<()>,
    session: String,
    started_at: String,
    tools: Vec<String>,
}

/// Runs the worker until `shutdown` is cancelled.
pub async fn run(cfg: Config, client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    if cfg.trusted_keys.is_empty() {
        return Err(ConfigError::new(
            "--trust-key",
            "no trusted policy key: give the public key that seals approvals (skynet-policy logs it)",
        )
        .into());
    }
    for k in &cfg.trusted_keys {
        if nkeys::KeyPair::from_public_key(k).is_err() {
            return Err(
                ConfigError::new("--trust-key", format!("{k:?} is not a public nkey")).into(),
            );
        }
    }
    if cfg.max_jobs == 0 {
        return Err(ConfigError::new("--max-jobs", "must be at least 1").into());
    }
    std::fs::create_dir_all(&cfg.data_dir)?;
    let mut protected = vec![cfg.data_dir.clone()];
    protected.extend(cfg.protected.iter().cloned());
    let roots = paths::Roots::new(&cfg.roots, cfg.home.clone())
        .map_err(|e| ConfigError::new("--root", e))?
        .protecting(&protected);
    let level = sandbox::decide(cfg.sandbox, sandbox::probe())
        .map_err(|e| ConfigError::new("--sandbox", e))?;
    let guard =
        guard::Guard::new(&cfg.forbid).map_err(|e| ConfigError::new("--forbid", e.to_string()))?;
    let db = records::open(&cfg.data_dir.join(format!("worker-{}.db", cfg.id)))?;
    let incarnation = records::incarnation(&db)?;
    let records = Records::new(db.clone());
    let mut env: BTreeMap<String, String> = cfg
        .env_allow
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect();
    env.insert("HOME".into(), cfg.home.to_string_lossy().into_owned());
    let tools = caps::tools(env.get("PATH").map(String::as_str));
    let sandbox = sandbox::Sandbox::new(
        level,
        roots.list(),
        &cfg.home,
        roots.protected(),
        env.get("PATH").map(String::as_str),
    );
    match sandbox.level.warning() {
        Some(w) => tracing::warn!(sandbox = %sandbox.level.describe(), "{w}"),
        None => {
            tracing::info!(sandbox = %sandbox.level.describe(), "steps are confined by the kernel")
        }
    }

    let js = jetstream::new(client.clone());
    let stream = wait_for_streams(&js, &shutdown).await?;
    let Some(stream) = stream else { return Ok(()) };

    let artifacts = js
        .get_object_store(streams::ARTIFACTS_BUCKET)
        .await
        .ok()
        .map(|_| js.clone());
    if artifacts.is_none() {
        tracing::warn!("the artifact store is not reachable; steps with artifacts will fail");
    }
    let outbox_stop = CancellationToken::new();
    let (outbox, outbox_task) = Outbox::start(
        db,
        incarnation,
        js.clone(),
        outbox_stop.clone(),
        Duration::from_secs(2),
    )?;
    let timing = Timing {
        heartbeat: cfg.heartbeat,
        missed_heartbeats: cfg.missed_heartbeats,
        ..Timing::default()
    };
    let (lease_tx, lease_rx) = watch::channel(0i64);
    let worker = Arc::new(Worker {
        sandbox: std::sync::Arc::new(sandbox),
        redact: Arc::new(redact::Redactor::new(cfg.redact.clone())),
        ctx: exec::Ctx {
            roots,
            supervisor: exec::Supervisor {
                program: cfg.supervisor.clone(),
            },
            lease: lease_rx,
            records: records.clone(),
            guard: Arc::new(guard),
            env,
            kill_grace: cfg.kill_grace,
            artifacts,
            artifact_max_bytes: cfg.artifact_max_bytes,
        },
        records,
        outbox,
        running: Mutex::new(HashMap::new()),
        lease: Lease {
            until: AtomicI64::new(0),
            tx: lease_tx,
            length: timing.lease(cfg.heartbeat),
        },
        work: stream.clone(),
        session: uuid::Uuid::new_v4().simple().to_string(),
        started_at: skynet_protocol::time::now(),
        tools,
        cfg,
    });
    tracing::info!(worker = %worker.cfg.id, roots = ?worker.ctx.roots.list(), "worker ready");
    worker.report_abandoned().await;

    let tasks = TaskTracker::new();
    tasks.spawn(heartbeat(worker.clone(), js.clone(), shutdown.clone()));
    tasks.spawn(control(worker.clone(), client.clone(), shutdown.clone()));

    let jobs = TaskTracker::new();
    let result = pull_work(&client, &worker, &stream, &jobs, &shutdown).await;

    // Give up what still runs (its jobs are retried elsewhere while retries last), let it
    // report, then flush the outbox for a moment: what is left is sent by the next start.
    for r in lock(&worker.running).values() {
        r.stop.abandon("the worker was shut down while the job ran");
    }
    jobs.close();
    let grace = worker.cfg.kill_grace + Duration::from_secs(3);
    if tokio::time::timeout(grace, jobs.wait()).await.is_err() {
        tracing::warn!("jobs still running at shutdown");
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
    outbox_stop.cancel();
    drop(worker);
    let _ = tokio::time::timeout(Duration::from_secs(3), outbox_task).await;
    result
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Worker {
    fn reporter(&self, job: &JobId, attempt: u32) -> Reporter {
        Reporter::new(
            self.outbox.clone(),
            self.cfg.id.clone(),
            job.clone(),
            attempt,
            self.redact.clone(),
        )
    }

    /// Verifies, records and runs one spec.
    async fn take(&self, msg: jetstream::Message) {
        let now = skynet_protocol::time::now_ms() / 1000;
        let me = Me {
            id: &self.cfg.id,
            labels: &self.cfg.labels,
            trusted: &self.cfg.trusted_keys,
        };
        let parsed = ExecutionSpec::from_slice(&msg.payload);
        let verified = parsed
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|s| s.verify(&me, now).map(|g| (s, g)));
        let (spec, grant) = match verified {
            Ok(v) => v,
            Err(e) => {
                let _ = msg.ack_with(AckKind::Term).await;
                let peek = ExecutionSpec::peek(&msg.payload).or_else(|| {
                    let (_, job) = subjects::parse_work(&msg.subject)?;
                    Some((job, 0))
                });
                tracing::warn!(subject = %msg.subject, error = %e, "refused a spec");
                if let Some((job, attempt)) = peek {
                    self.reporter(&job, attempt)
                        .report(WorkerReport::Refused {
                            attempt,
                            reason: e.to_string(),
                            replayed: false,
                        })
                        .await;
                }
                return;
            }
        };
        let (job, attempt) = (spec.job_id.clone(), spec.attempt);
        // Registered first, so a stop that arrives while the attempt is checked is kept.
        let stop = Arc::new(StopSignal::default());
        let rep = self.reporter(&job, attempt);
        let duplicate = {
            let mut running = lock(&self.running);
            let duplicate = running.get(&job).is_some_and(|r| r.attempt == attempt);
            if !duplicate {
                running.insert(
                    job.clone(),
                    Running {
                        attempt,
                        stop: stop.clone(),
                        progress: rep.progress(),
                    },
                );
            }
            duplicate
        };
        if duplicate {
            // A redelivery of the attempt this worker runs right now.
            let _ = msg.ack().await;
            return;
        }
        let outcome = self.start(&msg, spec, grant, &rep, &stop).await;
        lock(&self.running).remove(&job);
        if let Some(state) = outcome {
            tracing::info!(job_id = %job, attempt, outcome = %state, "finished");
        }
    }

    /// Checks the attempt is current and new, records it, acknowledges its spec and runs
    /// it. Returns the outcome, when it ran.
    async fn start(
        &self,
        msg: &jetstream::Message,
        spec: &ExecutionSpec,
        grant: skynet_protocol::Grant,
        rep: &Reporter,
        stop: &StopSignal,
    ) -> Option<JobState> {
        let (job, attempt) = (&spec.job_id, spec.attempt);
        if !self.lease.valid() {
            // Woken from a freeze, or cut off: the owner may have moved on. Ask again once a
            // heartbeat has landed.
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_millis(250))))
                .await;
            return None;
        }
        match still_current(&self.work, msg).await {
            Some(true) => {}
            Some(false) => {
                tracing::info!(job_id = %job, attempt, "the spec was withdrawn before it started; dropped");
                let _ = msg.ack_with(AckKind::Term).await;
                return None;
            }
            None => {
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return None;
            }
        }
        // On a blocking thread: the database is shared with the outbox's writer, and
        // waiting for it must not stall the connection and the other jobs.
        let begun = {
            let (records, job) = (self.records.clone(), job.clone());
            tokio::task::spawn_blocking(move || records.begin(&job, attempt))
                .await
                .unwrap_or_else(|e| Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
        };
        let seen = match begun {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the attempt; leaving the spec for later");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
                return None;
            }
        };
        // Recorded first, acknowledged second: a crash in between means a redelivery that
        // is refused as a replay, never a second run.
        if let Err(e) = msg.ack().await {
            tracing::warn!(error = %e, "could not acknowledge the spec");
        }
        match seen {
            Seen::Replayed => {
                tracing::warn!(job_id = %job, attempt, "replayed spec refused");
                rep.report(WorkerReport::Refused {
                    attempt,
                    reason: "this attempt already ran on this worker (replayed spec)".into(),
                    replayed: true,
                })
                .await;
                return None;
            }
            Seen::Prevented => {
                return Some(
                    ended_unrun(
                        rep,
                        attempt,
                        JobState::Cancelled,
                        "cancelled before it started",
                    )
                    .await,
                );
            }
            Seen::New => {}
        }
        tracing::info!(job_id = %job, attempt, steps = spec.steps.len(), "running");
        // The attempt's temp dir (its steps' TMPDIR, writable under the sandbox) is made only
        // when a step starts a process; file steps are done by the worker itself.
        let processes = spec
            .steps
            .iter()
            .any(|s| !matches!(s, Step::FileRead { .. } | Step::FileWrite { .. }));
        let made = if processes {
            make_tmp(job, attempt)
        } else {
            // Never made: were a process to start anyway, it would find no writable TMPDIR.
            Ok(std::env::temp_dir().join(format!("skynet-{job}-{attempt}-unmade")))
        };
        let tmp = match made {
            Ok(t) => t,
            Err(e) => {
                let error = format!("cannot make the attempt's temp dir: {e}");
                tracing::error!(job_id = %job, attempt, %error);
                return Some(ended_unrun(rep, attempt, JobState::Failed, &error).await);
            }
        };
        let confinement = exec::Attempt {
            sandbox: self.sandbox.clone(),
            network: grant.network,
            tmp: tmp.clone(),
            banner: self.sandbox.banner(grant.network),
        };
        rep.report(WorkerReport::Started {
            attempt,
            sandbox: Some(self.sandbox.describe_attempt(grant.network)),
        })
        .await;
        let outcome = exec::run_job(
            &spec.steps,
            grant.timeout_s,
            &grant.env,
            &confinement,
            &self.ctx,
            rep,
            stop,
        )
        .await;
        // Removed beside the report, not before it.
        if processes {
            drop(tokio::task::spawn_blocking(move || {
                std::fs::remove_dir_all(tmp)
            }));
        }
        if let Some(why) = stop.abandoned() {
            tracing::warn!(job_id = %job, attempt, %why, "attempt abandoned");
            rep.last(
                WorkerReport::Abandoned {
                    attempt,
                    reason: why,
                },
                "abandoned",
            )
            .await;
            return None;
        }
        rep.last(
            WorkerReport::Finished {
                attempt,
                outcome: outcome.state,
                steps: outcome.steps,
                error: outcome.error,
            },
            outcome.state.as_str(),
        )
        .await;
        Some(outcome.state)
    }

    /// Attempts that were running when this worker last stopped uncleanly never finished:
    /// end whatever is left of them, then say so, so their jobs are retried or fail.
    async fn report_abandoned(&self) {
        let abandoned = match self.records.abandoned() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading abandoned attempts");
                return;
            }
        };
        for a in abandoned {
            let killed = cleanup::end_leftovers(&a.job, a.attempt, a.pgid).await;
            tracing::warn!(job_id = %a.job, attempt = a.attempt, killed, "attempt abandoned by a previous run of this worker");
            self.reporter(&a.job, a.attempt)
                .last(
                    WorkerReport::Abandoned {
                        attempt: a.attempt,
                        reason: "the worker stopped while running the job".into(),
                    },
                    "abandoned",
                )
                .await;
        }
    }

    fn info(&self) -> WorkerInfo {
        let now = skynet_protocol::time::now();
        let (running, progress, attempts) = {
            let r = lock(&self.running);
            (
                r.keys().cloned().collect(),
                r.iter()
                    .map(|(job, run)| {
                        (
                            job.clone(),
                            run.progress.load(std::sync::atomic::Ordering::Relaxed),
                        )
                    })
                    .collect(),
                r.iter()
                    .map(|(job, run)| (job.clone(), run.attempt))
                    .collect(),
            )
        };
        WorkerInfo {
            id: self.cfg.id.clone(),
            labels: self.cfg.labels.clone(),
            roots: self
                .ctx
                .roots
                .list()
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            max_jobs: self.cfg.max_jobs,
            running,
            version: skynet_protocol::VERSION.into(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            tools: self.tools.clone(),
            free_disk_bytes: caps::free_disk(self.ctx.roots.first()),
            heartbeat_ms: self.cfg.heartbeat.as_millis() as u64,
            started_at: self.started_at.clone(),
            last_seen: now,
            session: self.session.clone(),
            progress,
            attempts,
            sandbox: Some(self.sandbox.level.describe()),
        }
    }

    /// Answers a stop request.
    fn stop(&self, req: &ControlRequest) -> ControlStatus {
        if let Some(r) = lock(&self.running).get(&req.job_id)
            && (req.attempt == 0 || req.attempt == r.attempt)
        {
            tracing::info!(job_id = %req.job_id, reason = ?req.reason, "stopping");
            r.stop.stop(req.reason);
            return ControlStatus::Stopping;
        }
        if self.records.seen(&req.job_id, req.attempt).unwrap_or(false)
            || req.reason == StopReason::Fenced
        {
            return ControlStatus::Finished;
        }
        if let Err(e) = self.records.prevent(&req.job_id) {
            tracing::warn!(error = %e, "recording a cancel");
        }
        ControlStatus::Prevented
    }

    /// The lease ran out: every running attempt is given up (its supervisor ends it too).
    fn lease_lost(&self) {
        let running = lock(&self.running);
        if running.is_empty() {
            return;
        }
        tracing::warn!(
            jobs = running.len(),
            "no heartbeat reached the server for {} s; stopping every step (they may run elsewhere now)",
            self.lease.length.as_secs()
        );
        for r in running.values() {
            r.stop.abandon(format!(
                "the worker lost touch with the server for more than {} s",
                self.lease.length.as_secs()
            ));
        }
    }
}

/// A private (0700) temp dir for one attempt, outside every root: the steps' `TMPDIR`, the
/// only place outside the roots they may write. Removed when the attempt ends.
/// Reports an attempt that ends before any of its steps ran: started, then ended as
/// `outcome` with `error`.
async fn ended_unrun(rep: &Reporter, attempt: u32, outcome: JobState, error: &str) -> JobState {
    rep.report(WorkerReport::Started {
        attempt,
        sandbox: None,
    })
    .await;
    rep.last(
        WorkerReport::Finished {
            attempt,
            outcome,
            steps: vec![],
            error: Some(error.to_owned()),
        },
        outcome.as_str(),
    )
    .await;
    outcome
}

fn make_tmp(job: &JobId, attempt: u32) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "skynet-{job}-{attempt}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    dir.canonicalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_debug_hides_secrets() {
        let c = Config {
            id: WorkerId::parse("w").unwrap(),
            labels: vec![],
            roots: vec![],
            home: PathBuf::from("/h"),
            max_jobs: 1,
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 3,
            supervisor: PathBuf::from("/bin/false"),
            trusted_keys: vec![],
            data_dir: PathBuf::from("/d"),
            kill_grace: Duration::from_secs(5),
            env_allow: vec![],
            forbid: vec![],
            redact: vec!["hunter2-secret".into()],
            artifact_max_bytes: 1,
            sandbox: None,
            protected: vec![],
        };
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("1 secrets"), "{text}");
    }
}
