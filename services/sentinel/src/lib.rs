//! skynet-sentinel: nothing runs unseen. It observes and alerts; it decides nothing about
//! jobs.
//!
//! Watches the worker registry (`skynet-workers`: every heartbeat rewrites a worker's key)
//! and follows `SKYNET_EVENTS` (resuming from its snapshot). It raises alerts on
//! `skynet.alerts` (stream `SKYNET_ALERTS`) once when a condition begins and once when it
//! ends: `worker_offline`/`worker_online`, `job_stalled`/`job_resumed`,
//! `job_unroutable`/`job_routable`; and single alerts `job_worker_lost` (when the owner moved
//! a job off a lost worker) and `job_overdue` (a job still on its worker well past its time
//! limit).
//!
//! - A worker is offline after `missed_heartbeats` intervals without a new registry
//!   revision, confirmed by reading the key from the server (the watch may lag, the server
//!   does not). The sentinel only declares deaths while its own connection has been up for
//!   the whole window, and when most workers fall silent at once it holds off for one more
//!   window: that looks like a partition, not deaths. The record of an offline worker (its
//!   key `worker_offline.<id>` in `skynet-sentinel`) is what the dispatcher acts on: it
//!   retries or fails the worker's jobs.
//! - Running jobs whose output count (reported in heartbeats) does not move for
//!   `stall_after` are stalled; waiting jobs no online worker can take are unroutable after
//!   `unroutable_after`.
//!
//! Open conditions live in the KV bucket `skynet-sentinel` (one key each), written with
//! create / expected-revision, so two sentinels raise and clear every alert exactly once,
//! and a restarted sentinel does not raise again what is already raised.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::jetstream::{self, kv, message::PublishMessage};
use serde::{Deserialize, Serialize};
use skynet_protocol::alert::{Alert, AlertKind};
use skynet_protocol::lifecycle::{Change, Job, Open, Timing};
use skynet_protocol::worker::WorkerInfo;
use skynet_protocol::{EventKind, JobId, JobState, WorkerId, streams, subjects};
use skynet_runtime::follow::{Follower, Phase};
use skynet_runtime::registry::{self, Update};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Settings of the sentinel.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub timing: Timing,
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

/// What the sentinel notices about a job, besides its events.
#[derive(Debug, Default)]
struct Watch {
    /// Last sign of life: an event, or the output count moving.
    activity: Option<Instant>,
    progress: Option<u64>,
    /// Since when no online worker can take it (while it waits).
    unroutable_since: Option<Instant>,
    /// The attempt it was found overdue in.
    overdue: Option<u32>,
}

struct Sentinel {
    timing: Timing,
    client: Client,
    js: jetstream::Context,
    registry_kv: kv::Store,
    conditions_kv: kv::Store,
    workers: HashMap<WorkerId, WorkerView>,
    open: Open,
    watch: HashMap<JobId, Watch>,
    conditions: HashMap<String, Condition>,
    /// Connection health: the connect count seen last, and since when it has been up.
    connects: u64,
    up_since: Option<Instant>,
    /// While many workers fell silent at once: no deaths declared before this.
    hold_until: Option<Instant>,
    unsent: Vec<Alert>,
}

/// Whether one of `workers` could take `job`.
fn can_take(workers: &[&WorkerInfo], job: &Job) -> bool {
    workers
        .iter()
        .any(|w| w.matches(job.wants.worker.as_ref(), &job.wants.labels))
}

enum CondUpdate {
    Put(String, CondValue, u64),
    Removed(String),
}

/// Runs the sentinel until `shutdown` is cancelled.
pub async fn run(cfg: Config, client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some((js, log)) = skynet_runtime::setup::open(&client, &shutdown).await? else {
        return Ok(());
    };
    let registry_kv = js.get_key_value(streams::WORKERS_BUCKET).await?;
    let conditions_kv = js.get_key_value(streams::SENTINEL_BUCKET).await?;
    let (mut follower, open) = Follower::start(&log, &js, "sentinel").await?;
    let mut s = Sentinel {
        timing: cfg.timing,
        client: client.clone(),
        js: js.clone(),
        registry_kv,
        conditions_kv: conditions_kv.clone(),
        workers: HashMap::new(),
        open,
        watch: HashMap::new(),
        conditions: HashMap::new(),
        connects: 0,
        up_since: None,
        hold_until: None,
        unsent: Vec::new(),
    };
    let mut registry = registry::watch(js.clone(), shutdown.clone());
    let mut conditions = watch_conditions(js.clone(), shutdown.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!("sentinel watching");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            next = follower.next(&mut s.open) => match next {
                Some(Ok((stored, change, phase))) => {
                    s.observe(&stored.event, change, phase == Phase::Live).await;
                    if phase == Phase::CaughtUp {
                        tracing::info!(jobs = s.open.jobs.len(), "sentinel caught up");
                        follower.snapshot(&s.open, true);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "following events"),
                None => anyhow::bail!("event stream ended"),
            },
            Some(update) = registry.recv() => s.on_registry(update),
            Some(update) = conditions.recv() => s.on_condition(update),
            _ = tick.tick() => {
                s.watch_connection();
                if follower.is_live() {
                    s.check().await;
                    follower.snapshot(&s.open, false);
                }
            }
        }
    }
    follower.finish(&s.open, Duration::from_secs(3)).await;
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
        self.timing
            .offline_after(Duration::from_millis(w.heartbeat_ms.max(1)))
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

    /// An event, already applied to the open set: note the sign of life, and tell people
    /// when the owner moved a job off a lost worker.
    async fn observe(&mut self, event: &skynet_protocol::Event, change: Change, live: bool) {
        let id = &event.job_id;
        if let Change::Ended(_) = change {
            self.watch.remove(id);
        } else if let Some(job) = self.open.get(id) {
            let w = self.watch.entry(id.clone()).or_default();
            w.activity = Some(Instant::now());
            if matches!(
                event.kind,
                EventKind::Queued { .. } | EventKind::Dispatched { .. }
            ) {
                w.progress = None;
            }
            if !job.waiting() {
                w.unroutable_since = None;
            }
        }
        if !live {
            return;
        }
        let lost = match &event.kind {
            EventKind::Queued { attempt, reason } if *attempt > 1 => reason
                .as_deref()
                .filter(|r| r.contains("was lost"))
                .map(|r| {
                    (
                        attempt - 1,
                        format!("job {id}: {r}; it is re-queued as attempt {attempt}"),
                    )
                }),
            kind => kind.as_finished().and_then(|f| {
                let error = f.error.as_deref()?;
                let lost = error.starts_with("worker_lost") || error.contains("was lost");
                lost.then(|| {
                    (
                        f.attempt.unwrap_or(0),
                        format!("job {id} ended {}: {error}", kind.state()),
                    )
                })
            }),
        };
        if let Some((attempt, detail)) = lost {
            let worker = match &event.kind {
                EventKind::Queued { .. } => None,
                kind => kind.worker().cloned(),
            };
            let mut alert = self.alert(AlertKind::JobWorkerLost, worker.as_ref(), Some(id), detail);
            alert.id = format!("job_worker_lost.{id}:{attempt}");
            tracing::warn!(job_id = %id, "job's worker lost");
            self.publish(alert).await;
        }
    }

    fn on_registry(&mut self, update: Update) {
        match update {
            Update::Put(info, revision) => {
                let info = *info;
                for (job, count) in &info.progress {
                    if let Some(j) = self.open.get(job)
                        && j.worker.as_ref() == Some(&info.id)
                    {
                        let w = self.watch.entry(job.clone()).or_default();
                        if w.progress != Some(*count) {
                            w.progress = Some(*count);
                            w.activity = Some(Instant::now());
                        }
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
        self.conditions.contains_key(&streams::offline_key(worker))
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
                    .get(&streams::offline_key(&w.info.id))
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
            self.clear(&streams::offline_key(&id), alert).await;
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
                now + self.timing.partition_hold
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
            let (revision, missed) = (w.revision, self.timing.missed_heartbeats);
            let detail = format!(
                "worker {id} missed {missed} heartbeats (last heard {:.1} s ago)",
                w.heard.elapsed().as_secs_f64()
            );
            let alert = self.alert(AlertKind::WorkerOffline, Some(&id), None, detail);
            self.raise(&streams::offline_key(&id), alert, Some(revision))
                .await;
        }
    }

    /// The workers online now: heard from lately, and not declared offline.
    fn online(&self) -> Vec<&WorkerInfo> {
        self.workers
            .values()
            .filter(|w| {
                !self.is_offline(&w.info.id) && w.heard.elapsed() <= self.threshold(&w.info)
            })
            .map(|w| &w.info)
            .collect()
    }

    /// Whether some online worker could take `job`.
    fn routable(&self, job: &Job) -> bool {
        can_take(&self.online(), job)
    }

    /// The open jobs the checks may act on: seen for the first time, past a limit, or with
    /// a condition raised (by any copy) that may end. The rest (most of a long queue) are
    /// passed over without a copy or a key built for them.
    fn to_check(&self, now: Instant, now_ms: i64) -> Vec<JobId> {
        let flagged: HashSet<&JobId> = self
            .conditions
            .values()
            .filter_map(|c| c.value.alert.job_id.as_ref())
            .collect();
        let grace = self.timing.overdue_grace.as_millis() as i64;
        let online = self.online();
        self.open
            .jobs
            .values()
            .filter(|job| {
                let watch = self.watch.get(&job.id);
                let Some(activity) = watch.and_then(|w| w.activity) else {
                    return true;
                };
                let overdue = job.on_worker()
                    && watch.and_then(|w| w.overdue) != Some(job.attempt)
                    && job.deadline_ms().is_some_and(|d| now_ms > d + grace);
                let quiet = job.state == Some(JobState::Running)
                    && now.duration_since(activity) >= self.timing.stall_after;
                let unroutable = job.waiting() && {
                    let since = watch.and_then(|w| w.unroutable_since);
                    if can_take(&online, job) {
                        since.is_some()
                    } else {
                        since.is_none_or(|s| now.duration_since(s) >= self.timing.unroutable_after)
                    }
                };
                overdue || quiet || unroutable || flagged.contains(&job.id)
            })
            .map(|job| job.id.clone())
            .collect()
    }

    async fn check_jobs(&mut self) {
        let now = Instant::now();
        let now_ms = skynet_protocol::time::now_ms();
        // Conditions of jobs that ended or moved on end too.
        let open: Vec<(String, AlertKind, String)> = self
            .conditions
            .iter()
            .filter_map(|(k, c)| {
                let job = c.value.alert.job_id.as_ref()?;
                let state = self.open.get(job).and_then(|j| j.state);
                let over = match c.value.alert.kind {
                    AlertKind::JobStalled => state != Some(JobState::Running),
                    AlertKind::JobUnroutable => {
                        !matches!(state, Some(JobState::Queued | JobState::Approved))
                    }
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
        for id in self.to_check(now, now_ms) {
            let Some(job) = self.open.get(&id).cloned() else {
                continue;
            };
            let watch = self.watch.entry(id.clone()).or_default();
            let activity = *watch.activity.get_or_insert(now);
            // Overdue: still on its worker well past its time limit (the owner ends it; this
            // only tells people).
            if job.on_worker()
                && watch.overdue != Some(job.attempt)
                && job
                    .deadline_ms()
                    .is_some_and(|d| now_ms > d + self.timing.overdue_grace.as_millis() as i64)
            {
                watch.overdue = Some(job.attempt);
                let detail = format!(
                    "job {id} ran past its time limit of {} s on {}",
                    job.wants.timeout_s,
                    job.worker.as_ref().map(|w| w.as_str()).unwrap_or("?")
                );
                let mut alert = self.alert(
                    AlertKind::JobOverdue,
                    job.worker.as_ref(),
                    Some(&id),
                    detail,
                );
                alert.id = format!("job_overdue.{id}:{}", job.attempt);
                self.publish(alert).await;
            }
            // Stalled.
            let stalled_key = key("job_stalled", id.as_str());
            if job.state == Some(JobState::Running) {
                let quiet = now.duration_since(activity);
                let raised = self.conditions.get(&stalled_key);
                if quiet >= self.timing.stall_after && raised.is_none() {
                    let detail = format!(
                        "job {id} on {} produced no output for {}",
                        job.worker.as_ref().map(|w| w.as_str()).unwrap_or("?"),
                        humantime::format_duration(Duration::from_secs(quiet.as_secs()))
                    );
                    let alert = self.alert(
                        AlertKind::JobStalled,
                        job.worker.as_ref(),
                        Some(&id),
                        detail,
                    );
                    self.raise(&stalled_key, alert, None).await;
                } else if let Some(c) = raised
                    && activity > c.since
                {
                    let alert = self.alert(
                        AlertKind::JobResumed,
                        job.worker.as_ref(),
                        Some(&id),
                        format!("job {id} is making progress again"),
                    );
                    self.clear(&stalled_key, alert).await;
                }
            }
            // Unroutable.
            let unroutable_key = key("job_unroutable", id.as_str());
            if job.waiting() {
                if self.routable(&job) {
                    if let Some(w) = self.watch.get_mut(&id) {
                        w.unroutable_since = None;
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
                    let since = match self.watch.get_mut(&id) {
                        Some(w) => *w.unroutable_since.get_or_insert(now),
                        None => now,
                    };
                    if now.duration_since(since) >= self.timing.unroutable_after
                        && !self.conditions.contains_key(&unroutable_key)
                    {
                        let wants = match (&job.wants.worker, job.wants.labels.is_empty()) {
                            (Some(w), _) => format!("worker {w}"),
                            (None, false) => {
                                format!("a worker with labels {}", job.wants.labels.join(","))
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
}
