//! skynet-worker: the agent on a user's machine that runs what policy signed.
//!
//! It pulls specs from its own consumer (`worker-<id>`, filtered to `skynet.work.<id>.>` on
//! `SKYNET_WORK`), verifies each (trusted signer, untampered, addressed to this worker, not
//! expired, not an attempt it already ran), records the attempt before acknowledging it so
//! it never runs twice, and runs the steps in order: paths confined to its roots, its own
//! forbidden-command check, a scrubbed environment. Output and results go to its outbox
//! (`skynet.out.<id>.<job>.{log,event}`), which the dispatcher relays. It answers stop
//! requests on `skynet.control.<id>` and heartbeats into the `skynet-workers` registry.

pub mod artifacts;
pub mod caps;
pub mod exec;
pub mod guard;
pub mod outbox;
pub mod paths;
pub mod records;
pub mod redact;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use skynet_protocol::worker::{
    ControlReply, ControlRequest, ControlStatus, StopReason, WorkerInfo, WorkerReport,
};
use skynet_protocol::{JobId, JobState, SignedSpec, WorkerId, streams, subjects};
use skynet_runtime::ConfigError;
use tokio::sync::Semaphore;
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
    /// Public nkeys whose signatures this worker accepts.
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
            .field("redact", &format_args!("<{} secrets>", self.redact.len()))
            .finish_non_exhaustive()
    }
}

struct Running {
    attempt: u32,
    stop: Arc<StopSignal>,
    progress: Arc<std::sync::atomic::AtomicU64>,
}

struct Worker {
    cfg: Config,
    ctx: exec::Ctx,
    records: Records,
    outbox: Outbox,
    redact: Arc<redact::Redactor>,
    running: Mutex<HashMap<JobId, Running>>,
    session: String,
    started_at: String,
    tools: Vec<String>,
}

/// Runs the worker until `shutdown` is cancelled.
pub async fn run(cfg: Config, client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    if cfg.trusted_keys.is_empty() {
        return Err(ConfigError::new(
            "--trust-key",
            "no trusted policy key: give the public key that signs specs (skynet-policy logs it)",
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
    let roots = paths::Roots::new(&cfg.roots, cfg.home.clone())
        .map_err(|e| ConfigError::new("--root", e))?;
    let guard =
        guard::Guard::new(&cfg.forbid).map_err(|e| ConfigError::new("--forbid", e.to_string()))?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let records = Records::open(&cfg.data_dir.join(format!("worker-{}.db", cfg.id)))?;
    let mut env: BTreeMap<String, String> = cfg
        .env_allow
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect();
    env.insert("HOME".into(), cfg.home.to_string_lossy().into_owned());
    let tools = caps::tools(env.get("PATH").map(String::as_str));

    let js = jetstream::new(client.clone());
    let stream = wait_for_streams(&js, &shutdown).await?;
    let Some(stream) = stream else { return Ok(()) };

    let artifacts = js.get_object_store(streams::ARTIFACTS_BUCKET).await.ok();
    if artifacts.is_none() {
        tracing::warn!("the artifact store is not reachable; steps with artifacts will fail");
    }
    let outbox_stop = CancellationToken::new();
    let (outbox, outbox_task) =
        Outbox::start(js.clone(), outbox_stop.clone(), Duration::from_secs(5));
    let worker = Arc::new(Worker {
        redact: Arc::new(redact::Redactor::new(cfg.redact.clone())),
        ctx: exec::Ctx {
            roots,
            guard: Arc::new(guard),
            env,
            kill_grace: cfg.kill_grace,
            artifacts,
            artifact_max_bytes: cfg.artifact_max_bytes,
        },
        records,
        outbox,
        running: Mutex::new(HashMap::new()),
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
    let result = pull_work(&worker, &stream, &jobs, &shutdown).await;

    // Stop what still runs, let it report, then flush the outbox.
    for r in lock(&worker.running).values() {
        r.stop.stop(StopReason::Fenced);
    }
    jobs.close();
    let grace = worker.cfg.kill_grace + Duration::from_secs(3);
    if tokio::time::timeout(grace, jobs.wait()).await.is_err() {
        tracing::warn!("jobs still running at shutdown");
    }
    tasks.close();
    tasks.wait().await;
    outbox_stop.cancel();
    drop(worker);
    let _ = outbox_task.await;
    result
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The streams are made by the control plane; a worker only waits for them.
async fn wait_for_streams(
    js: &jetstream::Context,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<jetstream::stream::Stream<()>>> {
    let mut warned = false;
    loop {
        match js.get_stream(streams::WORK).await {
            Ok(_) => return Ok(Some(js.get_stream_no_info(streams::WORK).await?)),
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "waiting for the SKYNET streams (is the control plane running?)");
                    warned = true;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn pull_work(
    worker: &Arc<Worker>,
    stream: &jetstream::stream::Stream<()>,
    jobs: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(worker.cfg.max_jobs as usize));
    let mut consumer: Option<PullConsumer> = None;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            p = slots.clone().acquire_owned() => p?,
        };
        let c = match &consumer {
            Some(c) => c.clone(),
            None => {
                let name = streams::work_consumer_name(&worker.cfg.id);
                match stream
                    .get_or_create_consumer::<jetstream::consumer::pull::Config>(
                        &name,
                        streams::work_consumer(&worker.cfg.id),
                    )
                    .await
                {
                    Ok(c) => {
                        consumer = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the work consumer; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
        };
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            f = async {
                // A waiting pull: `fetch` would return at once on an empty queue, and the
                // loop would spin.
                let mut batch = c.batch().max_messages(1).expires(Duration::from_secs(5)).messages().await?;
                match batch.next().await {
                    Some(m) => Ok(Some(m.map_err(|e| anyhow::anyhow!("{e}"))?)),
                    None => anyhow::Ok(None),
                }
            } => f,
        };
        match fetched {
            Ok(Some(msg)) => {
                let worker = worker.clone();
                jobs.spawn(async move {
                    worker.take(msg).await;
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "fetching work");
                if e.to_string().contains("consumer") {
                    consumer = None;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
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
        let signed = SignedSpec::from_slice(&msg.payload);
        let verified = signed
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|s| s.verify(&self.cfg.trusted_keys, &self.cfg.id, now));
        let spec = match verified {
            Ok(spec) => spec,
            Err(e) => {
                let _ = msg.ack_with(AckKind::Term).await;
                let peek = signed.ok().and_then(|s| s.peek()).or_else(|| {
                    let (_, job) = subjects::parse_work(&msg.subject)?;
                    Some((job, 0))
                });
                tracing::warn!(subject = %msg.subject, error = %e, "refused a spec");
                if let Some((job, attempt)) = peek {
                    self.reporter(&job, attempt)
                        .report(WorkerReport::Refused {
                            attempt,
                            reason: e.to_string(),
                        })
                        .await;
                }
                return;
            }
        };
        let seen = match self.records.begin(&spec.job_id, spec.attempt) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the attempt; leaving the spec for later");
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
                return;
            }
        };
        // Recorded first, acknowledged second: a crash in between means a redelivery that
        // is refused as a replay, never a second run.
        if let Err(e) = msg.ack().await {
            tracing::warn!(error = %e, "could not acknowledge the spec");
        }
        let rep = self.reporter(&spec.job_id, spec.attempt);
        match seen {
            Seen::Replayed => {
                tracing::warn!(job_id = %spec.job_id, attempt = spec.attempt, "replayed spec refused");
                rep.report(WorkerReport::Refused {
                    attempt: spec.attempt,
                    reason: "this attempt already ran on this worker (replayed spec)".into(),
                })
                .await;
                return;
            }
            Seen::Prevented => {
                rep.report(WorkerReport::Started {
                    attempt: spec.attempt,
                })
                .await;
                rep.report(WorkerReport::Finished {
                    attempt: spec.attempt,
                    outcome: JobState::Cancelled,
                    steps: vec![],
                    error: Some("cancelled before it started".into()),
                })
                .await;
                let _ = self.records.finish(&spec.job_id, spec.attempt, "cancelled");
                return;
            }
            Seen::New => {}
        }
        let stop = Arc::new(StopSignal::default());
        lock(&self.running).insert(
            spec.job_id.clone(),
            Running {
                attempt: spec.attempt,
                stop: stop.clone(),
                progress: rep.progress(),
            },
        );
        tracing::info!(job_id = %spec.job_id, attempt = spec.attempt, steps = spec.steps.len(), "running");
        rep.report(WorkerReport::Started {
            attempt: spec.attempt,
        })
        .await;
        let outcome = exec::run_job(&spec, &self.ctx, &rep, &stop).await;
        tracing::info!(job_id = %spec.job_id, outcome = %outcome.state, "finished");
        rep.report(WorkerReport::Finished {
            attempt: spec.attempt,
            outcome: outcome.state,
            steps: outcome.steps,
            error: outcome.error,
        })
        .await;
        let _ = self
            .records
            .finish(&spec.job_id, spec.attempt, outcome.state.as_str());
        lock(&self.running).remove(&spec.job_id);
    }

    /// Attempts that were running when this worker last stopped uncleanly never finished:
    /// say so, so their jobs do not wait for ever.
    async fn report_abandoned(&self) {
        let abandoned = match self.records.abandoned() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "reading abandoned attempts");
                return;
            }
        };
        for (job, attempt) in abandoned {
            tracing::warn!(job_id = %job, attempt, "attempt abandoned by a previous run of this worker");
            self.reporter(&job, attempt)
                .report(WorkerReport::Finished {
                    attempt,
                    outcome: JobState::Failed,
                    steps: vec![],
                    error: Some("worker_lost: the worker stopped while running the job".into()),
                })
                .await;
            let _ = self.records.finish(&job, attempt, "abandoned");
        }
    }

    fn info(&self) -> WorkerInfo {
        let now = skynet_protocol::time::now();
        let (running, progress) = {
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
}

/// Rewrites the registry entry every interval.
async fn heartbeat(worker: Arc<Worker>, js: jetstream::Context, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(worker.cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if store.is_none() {
            store = js.get_key_value(streams::WORKERS_BUCKET).await.ok();
        }
        let Some(kv) = &store else { continue };
        let body = serde_json::to_vec(&worker.info()).unwrap_or_default();
        if let Err(e) = kv.put(worker.cfg.id.as_str(), body.into()).await {
            tracing::debug!(error = %e, "heartbeat not stored");
        }
    }
}

/// Serves `skynet.control.<id>`.
async fn control(worker: Arc<Worker>, client: Client, shutdown: CancellationToken) {
    let subject = subjects::control(&worker.cfg.id);
    let mut sub = loop {
        match client.subscribe(subject.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to control; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let body = match serde_json::from_slice::<ControlRequest>(&msg.payload) {
            Ok(req) => serde_json::to_vec(&ControlReply {
                status: worker.stop(&req),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable control request");
                serde_json::to_vec(
                    &serde_json::json!({"error": format!("unreadable control request: {e}")}),
                )
            }
        }
        .unwrap_or_default();
        if let Some(reply) = msg.reply {
            let _ = client.publish(reply, body.into()).await;
        }
    }
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
            trusted_keys: vec![],
            data_dir: PathBuf::from("/d"),
            kill_grace: Duration::from_secs(5),
            env_allow: vec![],
            forbid: vec![],
            redact: vec!["hunter2-secret".into()],
            artifact_max_bytes: 1,
        };
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("1 secrets"), "{text}");
    }
}
