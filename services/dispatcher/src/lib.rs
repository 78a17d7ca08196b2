//! skynet-dispatcher: hands approved work to workers and relays what they report.
//!
//! Follows `SKYNET_EVENTS` from the start (its state is rebuilt by replay) and watches the
//! worker registry (`skynet-workers`). An `approved` job goes to the least busy online worker
//! that matches its `worker` and `labels` and has a free slot (`dispatched`), or waits
//! (`queued`) until one can take it. Policy then signs the spec onto that worker's subject.
//!
//! It is also the relay of worker reports: workers write only to `skynet.out.<worker>.>`
//! (stream `SKYNET_OUTBOX`), and the dispatcher turns reports about the job's *current*
//! attempt on that worker into events and log messages (`skynet.logs.<job>`). Reports about
//! attempts that are no longer current are dropped, and their worker is told to stop.
//!
//! Cancels go to the worker on `skynet.control.<worker>`; a cancel nobody confirms in time
//! ends `force_cancelled`. A job running past `timeout_s` is stopped, and ends `timed_out`.
//!
//! Serves `skynet.api.jobs.cancel`.

mod relay;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream;
use skynet_protocol::api::{ApiError, CancelRequest, StateReply};
use skynet_protocol::event::Finished;
use skynet_protocol::worker::{ControlRequest, ControlStatus, StopReason, WorkerInfo};
use skynet_protocol::{Event, EventKind, JobId, JobState, WorkerId, streams, subjects};
use skynet_runtime::events::{AppendError, EventLog, Phase, Stored, Transition};
use skynet_runtime::placement::Placement;
use skynet_runtime::registry::{self, Update};
use skynet_runtime::{Shutdown, api};
use tokio_util::sync::CancellationToken;

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct Config {
    /// Heartbeats a worker may miss before no more work goes to it.
    pub missed_heartbeats: u32,
    /// How long a cancel may go unconfirmed before the job ends `force_cancelled`.
    pub cancel_confirm: Duration,
    /// Slack after `timeout_s` before the dispatcher steps in.
    pub timeout_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            missed_heartbeats: 3,
            cancel_confirm: Duration::from_secs(15),
            timeout_grace: Duration::from_secs(10),
        }
    }
}

/// What the dispatcher knows of a job that has not ended.
#[derive(Debug, Default, Clone)]
struct Job {
    p: Placement,
    /// Stream position at which it started waiting, for first-come first-served.
    queued_at: u64,
    timeout_nudged: bool,
    cancel_since_ms: Option<i64>,
    last_nudge_ms: i64,
}

struct Dispatcher {
    cfg: Config,
    client: Client,
    log: EventLog,
    work: jetstream::stream::Stream<()>,
    jobs: HashMap<JobId, Job>,
    workers: HashMap<WorkerId, WorkerInfo>,
    /// Jobs that ended recently, to tell a stale report from an unknown job.
    ended: RecentSet,
    /// Attempts taken back from a worker (the job was re-queued): their spec is withdrawn
    /// and the worker told to stop them.
    withdrawals: Vec<(WorkerId, JobId, u32)>,
}

/// Runs the dispatcher until `shutdown` is cancelled.
pub async fn run(cfg: Config, client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (js, log) = skynet_runtime::setup::open(&client).await?;
    let tasks = Shutdown::new(shutdown.clone());

    let service = api::start_service(&client, "dispatcher").await?;
    {
        let log = log.clone();
        tasks.tasks.spawn(api::serve(
            api::endpoint(&service, subjects::api::JOBS_CANCEL).await?,
            tasks.clone(),
            move |req: CancelRequest| {
                let log = log.clone();
                async move { cancel(&log, req).await }
            },
        ));
    }

    let mut d = Dispatcher {
        cfg,
        client: client.clone(),
        log: log.clone(),
        work: js.get_stream_no_info(streams::WORK).await?,
        jobs: HashMap::new(),
        workers: HashMap::new(),
        ended: RecentSet::new(10_000),
        withdrawals: Vec::new(),
    };
    let mut registry = registry::watch(js.clone(), shutdown.clone());
    let mut events = log.replay().await?;
    let mut relay = relay::Relay::start(&js, &tasks).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            next = events.next() => match next {
                Some(Ok((stored, phase))) => {
                    let job = stored.event.job_id.clone();
                    let state = stored.event.state();
                    d.apply(stored);
                    match phase {
                        Phase::Live => d.react(&job, state).await,
                        Phase::CaughtUp => {
                            tracing::info!(jobs = d.jobs.len(), "dispatcher caught up");
                            d.reconcile().await;
                        }
                        Phase::Replay => {}
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "following events"),
                None => anyhow::bail!("event stream ended"),
            },
            Some(update) = registry.recv() => d.on_registry(update, events.is_live()).await,
            msg = relay.next(), if events.is_live() => match msg {
                Some(msg) => d.relay(&relay, msg).await,
                None => anyhow::bail!("worker outbox consumer ended"),
            },
            _ = tick.tick(), if events.is_live() => d.on_tick().await,
        }
    }
    // Closing the relay ends its acker once the last relayed output is stored.
    drop(relay);
    let _ = service.stop().await;
    tasks.drain(Duration::from_secs(5)).await;
    Ok(())
}

impl Dispatcher {
    fn apply(&mut self, stored: Stored) {
        let Stored { seq, event } = stored;
        if event.state().is_terminal() {
            self.jobs.remove(&event.job_id);
            self.ended.insert(event.job_id);
            return;
        }
        let job = self.jobs.entry(event.job_id.clone()).or_default();
        let before = job.p.worker.clone().map(|w| (w, job.p.attempt));
        if !job.p.apply(seq, &event) {
            return;
        }
        match &event.kind {
            EventKind::Approved { .. } => job.queued_at = seq,
            EventKind::Queued { .. } => {
                // Taken back from a worker: its old attempt is withdrawn.
                if let Some((old, attempt)) = before {
                    self.withdrawals.push((old, event.job_id.clone(), attempt));
                }
                job.timeout_nudged = false;
                job.queued_at = seq;
            }
            EventKind::Dispatched { .. } => job.timeout_nudged = false,
            EventKind::CancelRequested { .. } => {
                let at =
                    skynet_protocol::time::parse(&event.at).map(skynet_protocol::time::unix_ms);
                job.cancel_since_ms = at.or(Some(skynet_protocol::time::now_ms()));
                job.last_nudge_ms = 0;
            }
            _ => {}
        }
    }

    async fn reconcile(&mut self) {
        // Old re-queues were dealt with when they happened; a worker still running such an
        // attempt is stopped when its heartbeat lists it.
        self.withdrawals.clear();
        let mut approved: Vec<(u64, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.p.state == Some(JobState::Approved))
            .map(|(id, j)| (j.queued_at, id.clone()))
            .collect();
        approved.sort();
        for (_, id) in approved {
            self.route(&id).await;
        }
        self.dispatch_queued().await;
        self.on_tick().await;
    }

    async fn react(&mut self, job: &JobId, state: JobState) {
        for (worker, job, attempt) in std::mem::take(&mut self.withdrawals) {
            tracing::info!(job_id = %job, worker = %worker, attempt, "attempt taken back from its worker");
            self.withdraw(Some(&worker), &job, attempt).await;
        }
        match state {
            JobState::Approved | JobState::Queued => {
                self.route(job).await;
            }
            JobState::CancelRequested => self.nudge_cancels().await,
            s if s.is_terminal() => self.dispatch_queued().await,
            _ => {}
        }
    }

    /// Writes `kind` on top of the last event this dispatcher saw of `job`. On a conflict
    /// it re-reads the job and returns false: the caller decides again.
    async fn write(&mut self, job: &JobId, kind: EventKind) -> anyhow::Result<bool> {
        let Some(j) = self.jobs.get(job) else {
            return Ok(false);
        };
        let event = Event::now(job.clone(), kind);
        match self.log.append(&event, Some(j.p.seq)).await {
            Ok(seq) => {
                self.apply(Stored { seq, event });
                Ok(true)
            }
            Err(AppendError::Conflict | AppendError::Duplicate(_)) => {
                if let Some(last) = self.log.last(job).await? {
                    self.apply(last);
                }
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn load(&self, worker: &WorkerId) -> usize {
        self.jobs
            .values()
            .filter(|j| {
                j.p.worker.as_ref() == Some(worker) && j.p.state.is_some_and(JobState::on_worker)
            })
            .count()
    }

    /// The least busy online worker that can take `job` now.
    fn pick(&self, job: &Job) -> Option<WorkerId> {
        let now = skynet_protocol::time::now_ms();
        self.workers
            .values()
            .filter(|w| w.is_online(now, self.cfg.missed_heartbeats))
            .filter(|w| w.matches(job.p.want_worker.as_ref(), &job.p.labels))
            .map(|w| (self.load(&w.id), w))
            .filter(|(load, w)| *load < w.max_jobs as usize)
            .min_by(|(la, a), (lb, b)| la.cmp(lb).then_with(|| a.id.cmp(&b.id)))
            .map(|(_, w)| w.id.clone())
    }

    /// Sends an approved or queued job to a worker, or queues it.
    async fn route(&mut self, id: &JobId) -> bool {
        for _ in 0..3 {
            let Some(job) = self.jobs.get(id) else {
                return false;
            };
            let state = job.p.state;
            if !matches!(state, Some(JobState::Approved | JobState::Queued)) {
                return false;
            }
            let attempt = job.p.attempt.max(1);
            let kind = match self.pick(job) {
                Some(worker) => EventKind::Dispatched { worker, attempt },
                None if state == Some(JobState::Approved) => EventKind::Queued {
                    attempt,
                    reason: Some(self.why_waiting(job)),
                },
                None => return false,
            };
            let dispatching = matches!(kind, EventKind::Dispatched { .. });
            match self.write(id, kind).await {
                Ok(true) => {
                    if dispatching {
                        tracing::info!(job_id = %id, worker = ?self.jobs.get(id).and_then(|j| j.p.worker.clone()), attempt, "dispatched");
                    }
                    return dispatching;
                }
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(job_id = %id, error = %e, "routing");
                    return false;
                }
            }
        }
        false
    }

    fn why_waiting(&self, job: &Job) -> String {
        let now = skynet_protocol::time::now_ms();
        let matching: Vec<&WorkerInfo> = self
            .workers
            .values()
            .filter(|w| w.matches(job.p.want_worker.as_ref(), &job.p.labels))
            .collect();
        if matching.is_empty() {
            match (&job.p.want_worker, job.p.labels.is_empty()) {
                (Some(w), _) => format!("waiting for worker {w}"),
                (None, false) => {
                    format!(
                        "waiting for a worker with labels {}",
                        job.p.labels.join(",")
                    )
                }
                (None, true) => "waiting for a worker".into(),
            }
        } else if matching
            .iter()
            .all(|w| !w.is_online(now, self.cfg.missed_heartbeats))
        {
            "every matching worker is offline".into()
        } else {
            "every matching worker is busy".into()
        }
    }

    /// Routes waiting jobs, first come first served.
    async fn dispatch_queued(&mut self) {
        let mut waiting: Vec<(u64, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.p.state == Some(JobState::Queued))
            .map(|(id, j)| (j.queued_at, id.clone()))
            .collect();
        if waiting.is_empty() {
            return;
        }
        waiting.sort();
        for (_, id) in waiting {
            self.route(&id).await;
        }
    }

    async fn on_registry(&mut self, update: Update, live: bool) {
        match update {
            Update::Put(info, _) => {
                let info = *info;
                let id = info.id.clone();
                let running = info.running.clone();
                self.workers.insert(id.clone(), info);
                if live {
                    self.fence_strays(&id, &running);
                    self.dispatch_queued().await;
                }
            }
            Update::Removed(id) => {
                self.workers.remove(&id);
            }
        }
    }

    /// Tells a worker to stop jobs it runs that are no longer its own (ended, or moved to
    /// another worker while it was away).
    fn fence_strays(&self, worker: &WorkerId, running: &[JobId]) {
        for job in running {
            let current = self
                .jobs
                .get(job)
                .is_some_and(|j| j.p.worker.as_ref() == Some(worker));
            if !current {
                tracing::info!(job_id = %job, worker = %worker, "worker runs a job that is not its own; stopping it");
                self.control(worker, job, 0, StopReason::Fenced);
            }
        }
    }

    async fn on_tick(&mut self) {
        self.nudge_cancels().await;
        self.enforce_timeouts().await;
        self.dispatch_queued().await;
    }

    /// Asks workers to stop cancelled jobs, again every 2 s, and gives up after
    /// `cancel_confirm`.
    async fn nudge_cancels(&mut self) {
        let now = skynet_protocol::time::now_ms();
        let confirm_ms = self.cfg.cancel_confirm.as_millis() as i64;
        let due: Vec<(JobId, Option<WorkerId>, u32, i64)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.p.state == Some(JobState::CancelRequested))
            .filter(|(_, j)| now - j.last_nudge_ms >= 2_000)
            .map(|(id, j)| {
                (
                    id.clone(),
                    j.p.worker.clone(),
                    j.p.attempt,
                    j.cancel_since_ms.unwrap_or(now),
                )
            })
            .collect();
        for (id, worker, attempt, since) in due {
            if now - since >= confirm_ms {
                let finished = Finished {
                    steps: vec![],
                    error: Some(format!(
                        "the worker did not confirm the cancel within {} s",
                        confirm_ms / 1000
                    )),
                    worker: worker.clone(),
                    attempt: Some(attempt),
                };
                if self
                    .write(&id, EventKind::ForceCancelled(finished))
                    .await
                    .unwrap_or(false)
                {
                    tracing::warn!(job_id = %id, "force cancelled");
                    self.withdraw(worker.as_ref(), &id, attempt).await;
                }
                continue;
            }
            if let Some(j) = self.jobs.get_mut(&id) {
                j.last_nudge_ms = now;
            }
            if let Some(w) = worker {
                self.control(&w, &id, attempt, StopReason::Cancel);
            }
        }
    }

    /// Stops jobs that ran past their time limit; ends them `timed_out` if the worker does
    /// not.
    async fn enforce_timeouts(&mut self) {
        let now = skynet_protocol::time::now_ms();
        let grace = self.cfg.timeout_grace.as_millis() as i64;
        let confirm = self.cfg.cancel_confirm.as_millis() as i64;
        let over: Vec<(JobId, WorkerId, u32, bool, i64)> = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(j.p.state, Some(JobState::Dispatched | JobState::Running)))
            .filter_map(|(id, j)| {
                let deadline = j.p.clock_ms? + j.p.timeout_s as i64 * 1000 + grace;
                if now < deadline {
                    return None;
                }
                Some((
                    id.clone(),
                    j.p.worker.clone()?,
                    j.p.attempt,
                    j.timeout_nudged,
                    deadline,
                ))
            })
            .collect();
        for (id, worker, attempt, nudged, deadline) in over {
            if !nudged {
                tracing::warn!(job_id = %id, "past its time limit; asking the worker to stop it");
                self.control(&worker, &id, attempt, StopReason::Timeout);
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.timeout_nudged = true;
                }
            } else if now >= deadline + confirm {
                let finished = Finished {
                    steps: vec![],
                    error: Some("ran past its time limit and the worker did not stop it".into()),
                    worker: Some(worker.clone()),
                    attempt: Some(attempt),
                };
                if self
                    .write(&id, EventKind::TimedOut(finished))
                    .await
                    .unwrap_or(false)
                {
                    self.withdraw(Some(&worker), &id, attempt).await;
                }
            }
        }
    }

    /// After a job ended without its worker's word: take back an unstarted spec and tell
    /// the worker to stop whatever it still runs of it.
    async fn withdraw(&self, worker: Option<&WorkerId>, job: &JobId, attempt: u32) {
        let Some(worker) = worker else { return };
        if let Err(e) = self.work.purge().filter(subjects::work(worker, job)).await {
            tracing::warn!(job_id = %job, error = %e, "could not withdraw the spec");
        }
        self.control(worker, job, attempt, StopReason::Fenced);
    }

    /// Sends a stop request to a worker without waiting for it.
    fn control(&self, worker: &WorkerId, job: &JobId, attempt: u32, reason: StopReason) {
        let client = self.client.clone();
        let subject = subjects::control(worker);
        let body = serde_json::to_vec(&ControlRequest {
            job_id: job.clone(),
            attempt,
            reason,
        })
        .unwrap_or_default();
        let job = job.clone();
        tokio::spawn(async move {
            let reply =
                tokio::time::timeout(Duration::from_secs(2), client.request(subject, body.into()))
                    .await;
            match reply {
                Ok(Ok(msg)) => {
                    let status = serde_json::from_slice::<skynet_protocol::worker::ControlReply>(
                        &msg.payload,
                    )
                    .map(|r| r.status);
                    tracing::debug!(job_id = %job, ?reason, ?status, "worker answered");
                    let _: Option<ControlStatus> = status.ok();
                }
                Ok(Err(e)) => tracing::debug!(job_id = %job, error = %e, "worker unreachable"),
                Err(_) => tracing::debug!(job_id = %job, "worker did not answer"),
            }
        });
    }
}

/// `jobs.cancel`: a job that has not reached a worker ends `cancelled` at once; one on a
/// worker goes to `cancel_requested` and the worker is asked to stop it.
async fn cancel(log: &EventLog, req: CancelRequest) -> Result<StateReply, ApiError> {
    let by = req
        .by
        .clone()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".into());
    let outcome = log
        .transition(&req.job_id, |last| {
            let state = last?.event.state();
            match state {
                s if s.is_terminal() => None,
                JobState::CancelRequested => None,
                JobState::Dispatched | JobState::Running => Some(EventKind::CancelRequested {
                    by: by.clone(),
                    reason: None,
                }),
                _ => Some(EventKind::Cancelled(Finished {
                    error: Some(format!("cancelled by {by} before it ran")),
                    ..Default::default()
                })),
            }
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match outcome {
        Transition::Written(s) => {
            tracing::info!(job_id = %req.job_id, by, state = %s.event.state(), "cancel");
            Ok(StateReply {
                job_id: req.job_id,
                state: s.event.state(),
            })
        }
        Transition::Declined(None) => Err(ApiError::not_found(format!("no job {}", req.job_id))),
        Transition::Declined(Some(last)) if last.event.state() == JobState::CancelRequested => {
            Ok(StateReply {
                job_id: req.job_id,
                state: JobState::CancelRequested,
            })
        }
        Transition::Declined(Some(last)) => Err(ApiError::conflict(format!(
            "job {} already ended: {}",
            req.job_id,
            last.event.state()
        ))),
    }
}

/// A bounded set that forgets its oldest members.
struct RecentSet {
    cap: usize,
    order: VecDeque<JobId>,
    set: HashSet<JobId>,
}

impl RecentSet {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }
    fn insert(&mut self, id: JobId) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > self.cap
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
    fn contains(&self, id: &JobId) -> bool {
        self.set.contains(id)
    }
}
