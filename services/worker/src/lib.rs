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
pub mod cleanup;
pub mod exec;
pub mod guard;
pub mod outbox;
pub mod paths;
pub mod records;
pub mod redact;
pub mod supervise;

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
use skynet_protocol::{ExecutionSpec, JobId, JobState, WorkerId, streams, subjects};
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
    let roots = paths::Roots::new(&cfg.roots, cfg.home.clone())
        .map_err(|e| ConfigError::new("--root", e))?;
    let guard =
        guard::Guard::new(&cfg.forbid).map_err(|e| ConfigError::new("--forbid", e.to_string()))?;
    std::fs::create_dir_all(&cfg.data_dir)?;
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
    client: &Client,
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
        // No new work without a lease: a worker cut off from the server may be declared lost
        // at any moment.
        if !worker.lease.valid() {
            drop(permit);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            continue;
        }
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
        // One pull asks for as many specs as there are free slots; each spec that arrives
        // takes a slot and starts at once, while the pull waits for the rest.
        let mut permits = vec![permit];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let connects = skynet_runtime::connect::connects(client);
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            // A restarted server forgot the pull: pull again at once.
            _ = skynet_runtime::connect::reconnected(client, connects) => Ok(()),
            f = async {
                // A waiting pull: `fetch` would return at once on an empty queue, and the
                // loop would spin.
                let mut batch = c
                    .batch()
                    .max_messages(permits.len())
                    .expires(Duration::from_secs(2))
                    .messages()
                    .await?;
                while let Some(m) = batch.next().await {
                    let msg = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let Some(permit) = permits.pop() else { break };
                    let worker = worker.clone();
                    jobs.spawn(async move {
                        worker.take(msg).await;
                        drop(permit);
                    });
                    if permits.is_empty() {
                        break;
                    }
                }
                anyhow::Ok(())
            } => f,
        };
        match fetched {
            Ok(()) => {}
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

/// Whether the spec in hand is still the one waiting on its subject: the owner withdraws a
/// spec (purges it) before it moves the job on without this attempt, so a spec that is gone
/// must not start. `None` when it cannot be told now.
pub async fn still_current(
    work: &jetstream::stream::Stream<()>,
    msg: &jetstream::Message,
) -> Option<bool> {
    let seq = msg.info().ok()?.stream_sequence;
    match work
        .direct_get_last_for_subject(msg.subject.to_string())
        .await
    {
        Ok(last) => Some(last.sequence == seq),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Some(false),
        Err(e) => {
            tracing::debug!(error = %e, "cannot check the spec is current");
            None
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
        let seen = match self.records.begin(job, attempt) {
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
                rep.report(WorkerReport::Started { attempt }).await;
                rep.last(
                    WorkerReport::Finished {
                        attempt,
                        outcome: JobState::Cancelled,
                        steps: vec![],
                        error: Some("cancelled before it started".into()),
                    },
                    "cancelled",
                )
                .await;
                return Some(JobState::Cancelled);
            }
            Seen::New => {}
        }
        tracing::info!(job_id = %job, attempt, steps = spec.steps.len(), "running");
        rep.report(WorkerReport::Started { attempt }).await;
        let outcome = exec::run_job(
            &spec.steps,
            grant.timeout_s,
            &grant.env,
            &self.ctx,
            rep,
            stop,
        )
        .await;
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

/// Rewrites the registry entry twice every interval (so one slow or lost write costs no
/// lease); each one that lands extends the lease, and a lease that runs out stops the steps.
async fn heartbeat(worker: Arc<Worker>, js: jetstream::Context, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(worker.cfg.heartbeat / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(Duration::from_millis(200));
    let mut store = None;
    let mut lapsed = false;
    let client = js.client();
    let mut connects = skynet_runtime::connect::connects(&client);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            // Back from an outage: say so at once, so the lease holds and work flows again.
            _ = skynet_runtime::connect::reconnected(&client, connects) => {
                connects = skynet_runtime::connect::connects(&client);
            }
            _ = check.tick() => {
                let valid = worker.lease.valid();
                if !valid && !lapsed && worker.lease.until.load(Ordering::SeqCst) > 0 {
                    worker.lease_lost();
                }
                lapsed = !valid;
                continue;
            }
            _ = tick.tick() => {}
        }
        if store.is_none() {
            store = js.get_key_value(streams::WORKERS_BUCKET).await.ok();
        }
        let Some(kv) = &store else { continue };
        let sent_at = supervise::boottime_ms();
        let body = serde_json::to_vec(&worker.info()).unwrap_or_default();
        let put = tokio::time::timeout(
            worker.cfg.heartbeat,
            kv.put(worker.cfg.id.as_str(), body.into()),
        );
        match put.await {
            Ok(Ok(_)) => worker.lease.extend(sent_at),
            Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat not stored"),
            Err(_) => tracing::debug!("heartbeat timed out"),
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
            missed_heartbeats: 3,
            supervisor: PathBuf::from("/bin/false"),
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
