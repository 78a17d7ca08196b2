//! skynet-sentinel: nothing runs unseen.
//!
//! Watches the worker registry (`skynet-workers`: every heartbeat rewrites a worker's key)
//! and follows `SKYNET_EVENTS` from the start. It raises alerts on `skynet.alerts` (stream
//! `SKYNET_ALERTS`) once when a condition begins and once when it ends:
//! `worker_offline`/`worker_online`, `job_stalled`/`job_resumed`,
//! `job_unroutable`/`job_routable`; and single alerts `job_worker_lost` and `job_overdue`
//! when it ends or re-queues a job.
//!
//! - A worker is offline after `missed_heartbeats` intervals without a new registry
//!   revision, confirmed by reading the key from the server (the watch may lag, the server
//!   does not). The sentinel only declares deaths while its own connection has been up for
//!   the whole window, and when most workers fall silent at once it holds off for one more
//!   window: that looks like a partition, not deaths.
//! - A job on an offline worker is re-queued as a new attempt while it has `retries` left,
//!   else it ends `failed` with the error `worker_lost`. The dispatcher withdraws the old
//!   attempt's spec and the relay drops its reports, so a worker that comes back cannot
//!   continue it as current.
//! - Running jobs whose output count (reported in heartbeats) does not move for
//!   `stall_after` are stalled; queued jobs no online worker can take are unroutable after
//!   `unroutable_after`; jobs past `timeout_s` plus `overdue_grace` end `timed_out`.
//!
//! Open conditions live in the KV bucket `skynet-sentinel` (one key each), written with
//! create / expected-revision, so two sentinels raise and clear every alert exactly once,
//! and a restarted sentinel does not raise again what is already raised. Job changes go
//! through the event log's optimistic concurrency.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::jetstream::{self, kv, message::PublishMessage};
use serde::{Deserialize, Serialize};
use skynet_protocol::alert::{Alert, AlertKind};
use skynet_protocol::event::Finished;
use skynet_protocol::worker::WorkerInfo;
use skynet_protocol::{Event, EventKind, JobId, JobState, WorkerId, streams, subjects};
use skynet_runtime::events::{AppendError, EventLog, Phase, Stored};
use skynet_runtime::placement::Placement;
use skynet_runtime::registry::{self, Update};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Settings of the sentinel.
#[derive(Debug, Clone)]
pub struct Config {
    /// Heartbeats a worker may miss before it is offline.
    pub missed_heartbeats: u32,
    /// No output and no progress for this long makes a running job stalled.
    pub stall_after: Duration,
    /// A queued job no online worker can take is unroutable after this long.
    pub unroutable_after: Duration,
    /// Past `timeout_s` plus this, a job ends `timed_out`.
    pub overdue_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            missed_heartbeats: 3,
            stall_after: Duration::from_secs(600),
            unroutable_after: Duration::from_secs(60),
            overdue_grace: Duration::from_secs(30),
        }
    }
}

/// A condition's value in `skynet-sentinel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CondValue {
    alert: Alert,
    /// The worker's registry revision when it went offline: a newer one means it is back.
    #[serde(default)]
    worker_revision: Option<u64>,
}

#[derive(Debug, Clone)]
struct Condition {
    value: CondValue,
    revision: u64,
    since: Instant,
}

struct WorkerView {
    info: WorkerInfo,
    revision: u64,
    heard: Instant,
}

#[derive(Debug, Default)]
struct Job {
    p: Placement,
    /// Last sign of life: an event, or the output count moving.
    activity: Option<Instant>,
    progress: Option<u64>,
    /// Since when no online worker can take it (while queued).
    unroutable_since: Option<Instant>,
}

struct Sentinel {
    cfg: Config,
    client: Client,
    js: jetstream::Context,
    log: EventLog,
    registry_kv: kv::Store,
    conditions_kv: kv::Store,
    workers: HashMap<WorkerId, WorkerView>,
    jobs: HashMap<JobId, Job>,
    conditions: HashMap<String, Condition>,
    /// Connection health: the connect count seen last, and since when it has been up.
    connects: u64,
    up_since: Option<Instant>,
    /// While many workers fell silent at once: no deaths declared before this.
    hold_until: Option<Instant>,
    unsent: Vec<Alert>,
}

enum CondUpdate {
    Put(String, CondValue, u64),
    Removed(String),
}

/// Runs the sentinel until `shutdown` is cancelled.
pub async fn run(cfg: Config, client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (js, log) = skynet_runtime::setup::open(&client).await?;
    let registry_kv = js.get_key_value(streams::WORKERS_BUCKET).await?;
    let conditions_kv = js.get_key_value(streams::SENTINEL_BUCKET).await?;
    let mut s = Sentinel {
        cfg,
        client: client.clone(),
        js: js.clone(),
        log: log.clone(),
        registry_kv,
        conditions_kv: conditions_kv.clone(),
        workers: HashMap::new(),
        jobs: HashMap::new(),
        conditions: HashMap::new(),
        connects: 0,
        up_since: None,
        hold_until: None,
        unsent: Vec::new(),
    };
    let mut registry = registry::watch(js.clone(), shutdown.clone());
    let mut conditions = watch_conditions(js.clone(), shutdown.clone());
    let mut events = log.replay().await?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!("sentinel watching");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            next = events.next() => match next {
                Some(Ok((stored, phase))) => {
                    s.apply(stored);
                    if phase == Phase::CaughtUp {
                        tracing::info!(jobs = s.jobs.len(), "sentinel caught up");
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "following events"),
                None => anyhow::bail!("event stream ended"),
            },
            Some(update) = registry.recv() => s.on_registry(update),
            Some(update) = conditions.recv() => s.on_condition(update),
            _ = tick.tick() => {
                s.watch_connection();
                if events.is_live() {
                    s.check().await;
                }
            }
        }
    }
    Ok(())
}

/// Mirrors the conditions bucket, so every copy knows what is raised.
fn watch_conditions(
    js: jetstream::Context,
    shutdown: CancellationToken,
) -> mpsc::Receiver<CondUpdate> {
    registry::watch_bucket(js, streams::SENTINEL_BUCKET, shutdown, |entry| {
        Some(match entry.operation {
            kv::Operation::Put => CondUpdate::Put(
                entry.key.clone(),
                serde_json::from_slice::<CondValue>(&entry.value).ok()?,
                entry.revision,
            ),
            _ => CondUpdate::Removed(entry.key.clone()),
        })
    })
}

fn key(kind: &str, id: &str) -> String {
    format!("{kind}.{id}")
}

impl Sentinel {
    fn threshold(&self, w: &WorkerInfo) -> Duration {
        Duration::from_millis(w.heartbeat_ms.max(1)) * self.cfg.missed_heartbeats.max(1)
    }

    /// Tracks whether this sentinel's own connection has been up, and since when.
    fn watch_connection(&mut self) {
        let connects = self
            .client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed);
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        if !connected {
            if self.up_since.is_some() {
                tracing::warn!(
                    "sentinel lost its NATS connection; no worker is declared dead until it is back for a whole window"
                );
            }
            self.up_since = None;
        } else if connects != self.connects || self.up_since.is_none() {
            self.up_since = Some(Instant::now());
        }
        self.connects = connects;
    }

    fn healthy_for(&self, d: Duration) -> bool {
        self.up_since.is_some_and(|t| t.elapsed() >= d)
    }

    fn apply(&mut self, stored: Stored) {
        let Stored { seq, event } = stored;
        if event.state().is_terminal() {
            self.jobs.remove(&event.job_id);
            return;
        }
        let job = self.jobs.entry(event.job_id.clone()).or_default();
        if !job.p.apply(seq, &event) {
            return;
        }
        job.activity = Some(Instant::now());
        if matches!(
            event.kind,
            EventKind::Queued { .. } | EventKind::Dispatched { .. }
        ) {
            job.progress = None;
        }
        if job.p.state != Some(JobState::Queued) {
            job.unroutable_since = None;
        }
    }

    fn on_registry(&mut self, update: Update) {
        match update {
            Update::Put(info, revision) => {
                let info = *info;
                for (job, count) in &info.progress {
                    if let Some(j) = self.jobs.get_mut(job)
                        && j.p.worker.as_ref() == Some(&info.id)
                        && j.progress != Some(*count)
                    {
                        j.progress = Some(*count);
                        j.activity = Some(Instant::now());
                    }
                }
                let id = info.id.clone();
                let heard = Instant::now();
                match self.workers.get_mut(&id) {
                    Some(w) if w.revision >= revision => {}
                    Some(w) => {
                        w.info = info;
                        w.revision = revision;
                        w.heard = heard;
                    }
                    None => {
                        self.workers.insert(
                            id,
                            WorkerView {
                                info,
                                revision,
                                heard,
                            },
                        );
                    }
                }
            }
            Update::Removed(id) => {
                self.workers.remove(&id);
            }
        }
    }

    fn on_condition(&mut self, update: CondUpdate) {
        match update {
            CondUpdate::Put(key, value, revision) => {
                let since = self
                    .conditions
                    .get(&key)
                    .map(|c| c.since)
                    .unwrap_or_else(Instant::now);
                self.conditions.insert(
                    key,
                    Condition {
                        value,
                        revision,
                        since,
                    },
                );
            }
            CondUpdate::Removed(key) => {
                self.conditions.remove(&key);
            }
        }
    }

    fn is_offline(&self, worker: &WorkerId) -> bool {
        self.conditions
            .contains_key(&key("worker_offline", worker.as_str()))
    }

    async fn check(&mut self) {
        self.resend().await;
        self.check_workers().await;
        self.check_jobs().await;
    }

    async fn check_workers(&mut self) {
        // Back online: a heartbeat newer than the one seen when it went offline.
        let back: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| {
                self.conditions
                    .get(&key("worker_offline", w.info.id.as_str()))
                    .is_some_and(|c| c.value.worker_revision.is_none_or(|r| w.revision > r))
            })
            .map(|w| w.info.id.clone())
            .collect();
        for id in back {
            let alert = self.alert(
                AlertKind::WorkerOnline,
                Some(&id),
                None,
                format!("worker {id} is back online"),
            );
            self.clear(&key("worker_offline", id.as_str()), alert).await;
        }

        let silent: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|w| !self.is_offline(&w.info.id))
            .filter(|w| {
                let t = self.threshold(&w.info);
                w.heard.elapsed() > t && self.healthy_for(t)
            })
            .map(|w| w.info.id.clone())
            .collect();
        if silent.is_empty() {
            self.hold_until = None;
            return;
        }
        let online = self.workers.keys().filter(|w| !self.is_offline(w)).count();
        if silent.len() >= 3 && silent.len() * 2 > online {
            let now = Instant::now();
            let hold = *self.hold_until.get_or_insert_with(|| {
                tracing::warn!(silent = silent.len(), online, "many workers fell silent at once; treating it as a partition for one more window");
                now + Duration::from_secs(15)
            });
            if now < hold {
                return;
            }
        }
        for id in silent {
            // The watch may lag; the server's copy of the key does not.
            match self.registry_kv.entry(id.as_str()).await {
                Ok(Some(entry)) => {
                    if let Some(w) = self.workers.get_mut(&id)
                        && entry.revision > w.revision
                    {
                        if let Ok(info) = serde_json::from_slice::<WorkerInfo>(&entry.value) {
                            w.info = info;
                        }
                        w.revision = entry.revision;
                        w.heard = Instant::now();
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(worker = %id, error = %e, "cannot confirm a silent worker");
                    continue;
                }
            }
            let Some(w) = self.workers.get(&id) else {
                continue;
            };
            let (revision, missed) = (w.revision, self.cfg.missed_heartbeats);
            let detail = format!(
                "worker {id} missed {missed} heartbeats (last heard {:.1} s ago)",
                w.heard.elapsed().as_secs_f64()
            );
            let alert = self.alert(AlertKind::WorkerOffline, Some(&id), None, detail);
            self.raise(&key("worker_offline", id.as_str()), alert, Some(revision))
                .await;
        }
    }

    async fn check_jobs(&mut self) {
        let now = Instant::now();
        let now_ms = skynet_protocol::time::now_ms();
        let ids: Vec<JobId> = self.jobs.keys().cloned().collect();
        // Conditions of jobs that ended or moved on end too.
        let open: Vec<(String, AlertKind, String)> = self
            .conditions
            .iter()
            .filter_map(|(k, c)| {
                let job = c.value.alert.job_id.as_ref()?;
                let state = self.jobs.get(job).and_then(|j| j.p.state);
                let over = match c.value.alert.kind {
                    AlertKind::JobStalled => state != Some(JobState::Running),
                    AlertKind::JobUnroutable => state != Some(JobState::Queued),
                    _ => false,
                };
                over.then(|| (k.clone(), c.value.alert.kind, job.to_string()))
            })
            .collect();
        for (k, kind, job) in open {
            let (end, detail) = match kind {
                AlertKind::JobStalled => (
                    AlertKind::JobResumed,
                    format!("job {job} is no longer stalled"),
                ),
                _ => (
                    AlertKind::JobRoutable,
                    format!("job {job} is no longer waiting for a worker"),
                ),
            };
            let job_id = JobId::parse(&job).ok();
            let alert = self.alert(end, None, job_id.as_ref(), detail);
            self.clear(&k, alert).await;
        }
        for id in ids {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let state = job.p.state;
            // Lost: its worker is offline.
            if let Some(w) = job.p.worker.clone()
                && matches!(state, Some(JobState::Dispatched | JobState::Running))
                && self.is_offline(&w)
            {
                self.lost(&id, &w).await;
                continue;
            }
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            // Overdue.
            if matches!(
                state,
                Some(JobState::Dispatched | JobState::Running | JobState::CancelRequested)
            ) && let Some(clock) = job.p.clock_ms
                && now_ms
                    > clock
                        + job.p.timeout_s as i64 * 1000
                        + self.cfg.overdue_grace.as_millis() as i64
            {
                self.overdue(&id).await;
                continue;
            }
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            // Stalled.
            let stalled_key = key("job_stalled", id.as_str());
            if state == Some(JobState::Running) {
                let quiet = job
                    .activity
                    .map_or(Duration::ZERO, |a| now.duration_since(a));
                let raised = self.conditions.get(&stalled_key);
                if quiet >= self.cfg.stall_after && raised.is_none() {
                    let detail = format!(
                        "job {id} on {} produced no output for {}",
                        job.p.worker.as_ref().map(|w| w.as_str()).unwrap_or("?"),
                        humantime::format_duration(Duration::from_secs(quiet.as_secs()))
                    );
                    let alert = self.alert(
                        AlertKind::JobStalled,
                        job.p.worker.as_ref(),
                        Some(&id),
                        detail,
                    );
                    self.raise(&stalled_key, alert, None).await;
                } else if let Some(c) = raised
                    && job.activity.is_some_and(|a| a > c.since)
                {
                    let alert = self.alert(
                        AlertKind::JobResumed,
                        job.p.worker.as_ref(),
                        Some(&id),
                        format!("job {id} is making progress again"),
                    );
                    self.clear(&stalled_key, alert).await;
                }
            }
            // Unroutable.
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let unroutable_key = key("job_unroutable", id.as_str());
            if state == Some(JobState::Queued) {
                let routable = self.workers.values().any(|w| {
                    !self.is_offline(&w.info.id)
                        && w.heard.elapsed() <= self.threshold(&w.info)
                        && w.info.matches(job.p.want_worker.as_ref(), &job.p.labels)
                });
                if routable {
                    if let Some(j) = self.jobs.get_mut(&id) {
                        j.unroutable_since = None;
                    }
                    if self.conditions.contains_key(&unroutable_key) {
                        let alert = self.alert(
                            AlertKind::JobRoutable,
                            None,
                            Some(&id),
                            format!("a worker can take job {id} again"),
                        );
                        self.clear(&unroutable_key, alert).await;
                    }
                } else {
                    let since = match self.jobs.get_mut(&id) {
                        Some(j) => *j.unroutable_since.get_or_insert(now),
                        None => now,
                    };
                    if now.duration_since(since) >= self.cfg.unroutable_after
                        && !self.conditions.contains_key(&unroutable_key)
                    {
                        let job = &self.jobs[&id];
                        let wants = match (&job.p.want_worker, job.p.labels.is_empty()) {
                            (Some(w), _) => format!("worker {w}"),
                            (None, false) => {
                                format!("a worker with labels {}", job.p.labels.join(","))
                            }
                            (None, true) => "any worker".into(),
                        };
                        let detail = format!(
                            "job {id} has waited {} for {wants}, and none is online",
                            humantime::format_duration(Duration::from_secs(
                                now.duration_since(since).as_secs()
                            ))
                        );
                        let alert = self.alert(AlertKind::JobUnroutable, None, Some(&id), detail);
                        self.raise(&unroutable_key, alert, None).await;
                    }
                }
            }
        }
    }

    fn alert(
        &self,
        kind: AlertKind,
        worker: Option<&WorkerId>,
        job: Option<&JobId>,
        detail: String,
    ) -> Alert {
        Alert {
            kind,
            worker: worker.cloned(),
            job_id: job.cloned(),
            at: skynet_protocol::time::now(),
            detail,
            id: String::new(),
        }
    }

    /// Raises a condition: only the copy that creates its key publishes the alert.
    async fn raise(&mut self, key: &str, mut alert: Alert, worker_revision: Option<u64>) {
        let value = CondValue {
            alert: alert.clone(),
            worker_revision,
        };
        let body = serde_json::to_vec(&value).unwrap_or_default();
        match self.conditions_kv.create(key, body.into()).await {
            Ok(revision) => {
                alert.id = format!("{key}:{revision}");
                tracing::warn!(kind = %alert.kind, detail = %alert.detail, "alert");
                self.conditions.insert(
                    key.to_owned(),
                    Condition {
                        value,
                        revision,
                        since: Instant::now(),
                    },
                );
                self.publish(alert).await;
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                // Another copy raised it (or this one, before a restart).
                if let Ok(Some(entry)) = self.conditions_kv.entry(key).await
                    && let Ok(v) = serde_json::from_slice::<CondValue>(&entry.value)
                {
                    self.on_condition(CondUpdate::Put(key.to_owned(), v, entry.revision));
                }
            }
            Err(e) => tracing::warn!(key, error = %e, "cannot record a condition"),
        }
    }

    /// Ends a condition: only the copy that deletes its key publishes the alert.
    async fn clear(&mut self, key: &str, mut alert: Alert) {
        let Some(cond) = self.conditions.get(key) else {
            return;
        };
        let revision = cond.revision;
        match self
            .conditions_kv
            .delete_expect_revision(key, Some(revision))
            .await
        {
            Ok(()) => {
                self.conditions.remove(key);
                alert.id = format!("{key}:{revision}:end");
                tracing::info!(kind = %alert.kind, detail = %alert.detail, "alert");
                self.publish(alert).await;
            }
            Err(e) => {
                tracing::debug!(key, error = %e, "condition changed meanwhile");
                match self.conditions_kv.entry(key).await {
                    Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                        if let Ok(v) = serde_json::from_slice::<CondValue>(&entry.value) {
                            self.on_condition(CondUpdate::Put(key.to_owned(), v, entry.revision));
                        }
                    }
                    Ok(_) => {
                        self.conditions.remove(key);
                    }
                    Err(_) => {}
                }
            }
        }
    }

    async fn publish(&mut self, alert: Alert) {
        let body = serde_json::to_vec(&alert).unwrap_or_default();
        let sent = async {
            self.js
                .send_publish(
                    subjects::ALERTS,
                    PublishMessage::build()
                        .payload(body.into())
                        .message_id(alert.id.as_str()),
                )
                .await?
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = sent {
            tracing::warn!(id = %alert.id, error = %e, "alert not stored yet; will retry");
            self.unsent.push(alert);
        }
    }

    async fn resend(&mut self) {
        for alert in std::mem::take(&mut self.unsent) {
            self.publish(alert).await;
        }
    }

    /// Writes `kind` on the job's latest event as seen; false when the job moved on.
    async fn write(&mut self, job: &JobId, kind: EventKind) -> bool {
        let Some(j) = self.jobs.get(job) else {
            return false;
        };
        let event = Event::now(job.clone(), kind);
        match self.log.append(&event, Some(j.p.seq)).await {
            Ok(seq) => {
                self.apply(Stored { seq, event });
                true
            }
            Err(AppendError::Conflict | AppendError::Duplicate(_)) => {
                if let Ok(Some(last)) = self.log.last(job).await {
                    self.apply(last);
                }
                false
            }
            Err(e) => {
                tracing::warn!(job_id = %job, error = %e, "writing an event");
                false
            }
        }
    }

    /// A job whose worker is offline: another attempt while retries last, else `failed`.
    async fn lost(&mut self, id: &JobId, worker: &WorkerId) {
        let Some(job) = self.jobs.get(id) else { return };
        let attempt = job.p.attempt.max(1);
        let retries = job.p.retries;
        let (kind, detail) = if attempt <= retries {
            (
                EventKind::Queued {
                    attempt: attempt + 1,
                    reason: Some(format!(
                        "worker {worker} was lost; retry {attempt} of {retries}"
                    )),
                },
                format!(
                    "job {id} was on worker {worker}, which went offline; it is re-queued as attempt {}",
                    attempt + 1
                ),
            )
        } else {
            (
                EventKind::Failed(Finished {
                    steps: vec![],
                    error: Some("worker_lost".into()),
                    worker: Some(worker.clone()),
                    attempt: Some(attempt),
                }),
                format!(
                    "job {id} was on worker {worker}, which went offline; it failed (no retries left)"
                ),
            )
        };
        if self.write(id, kind).await {
            let mut alert = self.alert(AlertKind::JobWorkerLost, Some(worker), Some(id), detail);
            alert.id = format!("job_worker_lost.{id}:{attempt}");
            tracing::warn!(job_id = %id, worker = %worker, "job's worker lost");
            self.publish(alert).await;
        }
    }

    async fn overdue(&mut self, id: &JobId) {
        let Some(job) = self.jobs.get(id) else { return };
        let (worker, attempt, timeout) = (job.p.worker.clone(), job.p.attempt, job.p.timeout_s);
        let finished = Finished {
            steps: vec![],
            error: Some(format!(
                "overdue: ran past its time limit of {timeout} s and its worker did not end it"
            )),
            worker: worker.clone(),
            attempt: Some(attempt),
        };
        if self.write(id, EventKind::TimedOut(finished)).await {
            let detail =
                format!("job {id} ran past its time limit of {timeout} s; it ended timed_out");
            let mut alert = self.alert(AlertKind::JobOverdue, worker.as_ref(), Some(id), detail);
            alert.id = format!("job_overdue.{id}:{attempt}");
            self.publish(alert).await;
        }
    }
}
