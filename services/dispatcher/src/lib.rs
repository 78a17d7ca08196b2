//! skynet-dispatcher: the owner of every job from `approved` on.
//!
//! It follows `SKYNET_EVENTS` (resuming from its snapshot in `skynet-snapshots`, see
//! `skynet_runtime::follow`) with every open job in memory, watches the worker registry
//! (`skynet-workers`) and the sentinel's record of offline workers (`skynet-sentinel`), and
//! relays what workers report (`SKYNET_OUTBOX`, consumer `relay`). Every decision is a
//! function of `skynet_protocol::lifecycle`; this crate only reads, calls and writes:
//!
//! - routing ([`lifecycle::route`]): waiting jobs go to workers (`dispatched`, and the spec
//!   on `skynet.work.<worker>.<job>`) by priority, first come first served, respecting locks;
//!   those that cannot go wait (`queued`, with the reason);
//! - reports ([`owner::report`]): `running` and the job's end, for the current attempt only;
//!   a stale attempt is told to stop;
//! - lost workers ([`owner::worker_lost`]): when the sentinel records a worker offline, its
//!   jobs are retried or fail (`worker_lost`), after their specs are withdrawn;
//! - the clock ([`owner::tick`]): specs sent again when a start does not come, stops past the
//!   time limit, repeated cancels, and ends nobody confirmed (`timed_out`, `force_cancelled`);
//! - cancels: `skynet.api.jobs.cancel` ([`owner::cancel`]);
//! - schedules ([`schedules`]): each tick of a schedule in `skynet-schedules` becomes a job
//!   (decided by `lifecycle::schedule`), and `skynet.api.schedules.get`, `.list`, `.pause`,
//!   `.resume`, `.delete`.
//!
//! Several copies may run: each follows everything, and races settle on the event log's
//! expected-sequence check (the loser reads the job again and decides again). Routing alone
//! is decided on the whole picture (locks, free slots), so only the copy holding the routing
//! lease (`skynet-routing`, see [`lease`] and `lifecycle::lease`) routes; everything else
//! every copy does.

mod effects;
mod lease;
mod relay;
mod schedules;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, kv};
use skynet_protocol::api::{ApiError, CancelRequest, StateReply};
use skynet_protocol::lifecycle::route::{self, Placement, Slot};
use skynet_protocol::lifecycle::{Change, Decision, Job, Nudge, Open, Timing, owner};
use skynet_protocol::worker::{StopReason, WorkerInfo};
use skynet_protocol::{EventKind, JobId, JobState, WorkerId, streams, subjects};
use skynet_runtime::follow::{Follower, Phase};
use skynet_runtime::registry::{self, Update};
use skynet_runtime::{Shutdown, api};
use tokio_util::sync::CancellationToken;

use crate::effects::{Done, Effects};

/// At most this many events already at hand are taken in before acting on them.
const EVENT_BATCH: usize = 512;

/// Settings of the dispatcher.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub timing: Timing,
}

/// What the sentinel records about a worker.
enum Condition {
    Offline(WorkerId),
    Online(WorkerId),
}

/// How carrying out one decision went.
pub(crate) enum Step {
    Wrote,
    Nothing,
    Raced,
    Failed(anyhow::Error),
}

pub(crate) struct Owner {
    timing: Timing,
    fx: Effects,
    open: Open,
    nudges: HashMap<JobId, Nudge>,
    workers: HashMap<WorkerId, WorkerInfo>,
    /// Workers the sentinel declared offline (until it says they are back).
    offline: HashSet<WorkerId>,
    /// Something changed that may let a waiting job go.
    reroute: bool,
    sched: schedules::Scheduler,
    /// Whether this copy holds the routing lease.
    lease: lease::Gate,
}

/// Runs the dispatcher until `shutdown` is cancelled.
pub async fn run(cfg: Config, client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some((js, log)) = skynet_runtime::setup::open(&client, &shutdown).await? else {
        return Ok(());
    };
    let tasks = Shutdown::new(shutdown.clone());
    let fx = Effects::open(&client, &js, log.clone()).await?;

    let service = api::start_service(&client, "dispatcher").await?;
    {
        let fx = fx.clone();
        tasks.tasks.spawn(api::serve(
            api::endpoint(&service, subjects::api::JOBS_CANCEL).await?,
            tasks.clone(),
            move |req: CancelRequest| {
                let fx = fx.clone();
                async move { cancel(&fx, req).await }
            },
        ));
    }

    let sched = schedules::Scheduler::open(&js).await?;
    schedules::serve(
        &service,
        &tasks,
        js.get_key_value(streams::SCHEDULES_BUCKET).await?,
    )
    .await?;
    let mut schedule_updates = schedules::watch(js.clone(), shutdown.clone());

    let instance = uuid::Uuid::new_v4().simple().to_string();
    let (holder, gate) = lease::Lease::new(
        js.get_key_value(streams::ROUTING_BUCKET).await?,
        instance,
        cfg.timing.clone(),
    );
    let (mut follower, open) = Follower::start(&log, &js, "dispatcher").await?;
    let mut d = Owner {
        timing: cfg.timing,
        fx,
        open,
        nudges: HashMap::new(),
        workers: HashMap::new(),
        offline: HashSet::new(),
        reroute: true,
        sched,
        lease: gate,
    };
    let mut registry = registry::watch(js.clone(), shutdown.clone());
    let mut conditions = watch_conditions(js.clone(), shutdown.clone());
    let mut relay = relay::Relay::start(&js).await?;
    if follower.is_live() {
        d.reconcile().await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The lease is held beside the main loop, in this task (a copy that dies stops renewing
    // with it), and polled while the loop waits on its own writes.
    let lease_stop = shutdown.child_token();
    let main = async {
        let ended = async {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = follower.next(&mut d.open) => {
                        // Every event already at hand is taken in, then acted on at once: a burst of
                        // approvals is routed (and its specs written) together, not one by one.
                        let mut next = next;
                        let mut moved = Vec::new();
                        for _ in 0..EVENT_BATCH {
                            match next {
                                Some(Ok((stored, change, phase))) => match phase {
                                    Phase::Live => d.note(stored.event.job_id, change, &mut moved),
                                    Phase::CaughtUp => {
                                        tracing::info!(jobs = d.open.jobs.len(), "dispatcher caught up");
                                        follower.snapshot(&d.open, true);
                                        d.reconcile().await;
                                    }
                                    Phase::Replay => {}
                                },
                                Some(Err(e)) => tracing::warn!(error = %e, "following events"),
                                None => anyhow::bail!("event stream ended"),
                            }
                            match follower.next_ready(&mut d.open) {
                                Some(n) => next = n,
                                None => break,
                            }
                        }
                        d.react(moved).await;
                    },
                    Some(update) = registry.recv() => d.on_registry(update, follower.is_live()).await,
                    Some(c) = conditions.recv() => d.on_condition(c, follower.is_live()).await,
                    Some(u) = schedule_updates.recv() => d.sched.on_update(u),
                    Ok(()) = d.lease.changed() => {
                        // Gained the lease: route everything waiting at once.
                        if d.lease.may_route() && follower.is_live() {
                            d.reroute = true;
                            d.route_all().await;
                        }
                    }
                    msg = relay.next(), if follower.is_live() => match msg {
                        Some(msg) => {
                            let mut batch = vec![msg];
                            relay.ready(&mut batch, 255);
                            d.relay_batch(&mut relay, batch).await;
                        }
                        None => anyhow::bail!("worker outbox consumer ended"),
                    },
                    _ = tick.tick(), if follower.is_live() => {
                        relay.flush().await;
                        d.on_tick().await;
                        d.sched.turn(&d.open, &d.fx).await;
                        follower.snapshot(&d.open, false);
                    }
                }
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        lease_stop.cancel();
        ended
    };
    let (ended, ()) = tokio::join!(main, holder.hold(lease_stop.clone()));
    ended?;
    let grace = Duration::from_secs(3);
    let _ = tokio::time::timeout(grace, relay.flush()).await;
    follower.finish(&d.open, grace).await;
    let _ = tokio::time::timeout(grace, service.stop()).await;
    tasks.drain(Duration::from_secs(5)).await;
    Ok(())
}

/// Follows the sentinel's record of offline workers.
fn watch_conditions(
    js: jetstream::Context,
    shutdown: CancellationToken,
) -> tokio::sync::mpsc::Receiver<Condition> {
    registry::watch_bucket(js, streams::SENTINEL_BUCKET, shutdown, |entry| {
        let worker = streams::parse_offline_key(&entry.key)?;
        Some(match entry.operation {
            kv::Operation::Put => Condition::Offline(worker),
            _ => Condition::Online(worker),
        })
    })
}

impl Owner {
    /// Reads a job afresh from the log into the open set (when this copy's view lags).
    async fn refresh(&mut self, id: &JobId) -> anyhow::Result<()> {
        let job = self.fx.log.job(id).await?;
        self.open.refresh(job);
        Ok(())
    }

    /// Carries out decisions about many jobs at once (one per job): their events are
    /// written concurrently, and the results applied to the open set in order. A job that
    /// raced another writer is read afresh.
    pub(crate) async fn execute(&mut self, work: Vec<(JobId, Decision)>) -> Vec<(JobId, Step)> {
        let fx = self.fx.clone();
        let jobs: Vec<(JobId, Job, Decision)> = work
            .into_iter()
            .filter_map(|(id, d)| {
                let job = self.open.get(&id)?.clone();
                Some((id, job, d))
            })
            .collect();
        let results = futures::future::join_all(jobs.into_iter().map(|(id, mut job, d)| {
            let fx = fx.clone();
            async move {
                let done = fx.decide(&mut job, d).await;
                (id, job, done)
            }
        }))
        .await;
        let mut out = Vec::with_capacity(results.len());
        for (id, working, done) in results {
            let step = match done {
                Ok(Done::Wrote(stored)) => {
                    if let Change::Ended(_) = self.open.apply(stored.seq, &stored.event) {
                        self.nudges.remove(&id);
                        self.reroute = true;
                    } else if let Some(job) = self.open.get_mut(&id) {
                        // Keep the steps read while carrying the decision out.
                        if job.steps.is_none() {
                            job.steps = working.steps;
                        }
                    }
                    if matches!(
                        stored.event.kind,
                        EventKind::Queued { .. } | EventKind::Approved { .. }
                    ) {
                        self.reroute = true;
                    }
                    Step::Wrote
                }
                Ok(Done::Nothing) => {
                    if let (Some(job), Some(steps)) = (self.open.get_mut(&id), working.steps) {
                        job.steps.get_or_insert(steps);
                    }
                    Step::Nothing
                }
                Ok(Done::Raced) => {
                    self.reroute = true;
                    match self.refresh(&id).await {
                        Ok(()) => Step::Raced,
                        Err(e) => Step::Failed(e),
                    }
                }
                Err(e) => Step::Failed(e),
            };
            out.push((id, step));
        }
        out
    }

    /// Decides with `decide` about each of `ids` and carries all of it out at once, deciding
    /// again (for the jobs that moved) until nothing more is to be done.
    async fn act_each<F>(&mut self, mut ids: Vec<JobId>, what: &str, mut decide: F)
    where
        F: FnMut(&Job, &mut Nudge) -> Decision,
    {
        for _ in 0..8 {
            let mut work = Vec::new();
            for id in ids.drain(..) {
                let Some(job) = self.open.get(&id) else {
                    continue;
                };
                let nudge = self.nudges.entry(id.clone()).or_default();
                let d = decide(job, nudge);
                if !d.is_none() {
                    work.push((id, d));
                }
            }
            if work.is_empty() {
                return;
            }
            let wrote: HashSet<JobId> = work
                .iter()
                .filter(|(_, d)| d.event.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            for (id, step) in self.execute(work).await {
                match step {
                    Step::Wrote if wrote.contains(&id) => ids.push(id),
                    Step::Raced => ids.push(id),
                    Step::Failed(e) => tracing::warn!(job_id = %id, error = %e, "{what}"),
                    _ => {}
                }
            }
        }
    }

    /// After (re)starting: route what waits, act on workers already offline, and let the
    /// clock catch up with everything on a worker.
    async fn reconcile(&mut self) {
        self.reroute = true;
        let lost: Vec<WorkerId> = self.offline.iter().cloned().collect();
        for w in lost {
            self.lost(&w).await;
        }
        self.on_tick().await;
    }

    /// A new event, already applied to the open set.
    /// Takes in what one new event (already applied to the open set) changed: which jobs
    /// want routing, and which may sit on a worker this copy knows is lost.
    fn note(&mut self, id: JobId, change: Change, moved: &mut Vec<JobId>) {
        match change {
            Change::Moved(JobState::Approved | JobState::Queued) => self.reroute = true,
            Change::Moved(JobState::Dispatched | JobState::Running) => moved.push(id),
            Change::Ended(_) => {
                self.nudges.remove(&id);
                self.reroute = true;
            }
            _ => {}
        }
    }

    /// Acts on a batch of new events: jobs another copy dispatched to a worker this copy
    /// thinks offline are moved off it, then everything waiting is routed once.
    async fn react(&mut self, moved: Vec<JobId>) {
        let lost: Vec<JobId> = moved
            .into_iter()
            .filter(|id| {
                self.open
                    .get(id)
                    .and_then(|j| j.worker.as_ref())
                    .is_some_and(|w| self.offline.contains(w))
            })
            .collect();
        if !lost.is_empty() {
            self.act_each(lost, "moving a job off a lost worker", |job, _| {
                match job.worker.clone() {
                    Some(w) => owner::worker_lost(job, &w),
                    None => Decision::none(),
                }
            })
            .await;
        }
        if self.reroute {
            self.route_all().await;
        }
    }

    async fn on_tick(&mut self) {
        let now = skynet_protocol::time::now_ms();
        let on_worker: Vec<JobId> = self
            .open
            .jobs
            .values()
            .filter(|j| j.on_worker())
            .map(|j| j.id.clone())
            .collect();
        let timing = self.timing.clone();
        self.act_each(on_worker, "acting on the clock", |job, nudge| {
            owner::tick(job, nudge, now, &timing)
        })
        .await;
        self.route_all().await;
    }

    /// The workers as routing sees them.
    fn slots(&self) -> Vec<Slot> {
        let now = skynet_protocol::time::now_ms();
        self.workers
            .values()
            .map(|w| Slot {
                id: w.id.clone(),
                labels: w.labels.clone(),
                max_jobs: w.max_jobs,
                online: w.is_online(now, self.timing.missed_heartbeats)
                    && !self.offline.contains(&w.id),
            })
            .collect()
    }

    /// Routes every waiting job, when this copy holds the routing lease (otherwise what
    /// waits stays marked, to be routed once it holds the lease).
    pub(crate) async fn route_all(&mut self) {
        if !self.reroute || !self.lease.may_route() {
            return;
        }
        self.reroute = false;
        let now_s = skynet_protocol::time::now_ms() / 1000;
        let placements = route::route(self.open.jobs.values(), &self.slots(), now_s);
        // Decided on the whole picture: written once each, all at once, on the jobs as
        // routing saw them (a job another writer moved meanwhile is simply read afresh).
        let mut work = Vec::new();
        for (id, placement) in placements {
            let decision = match placement {
                Placement::Dispatch { worker, attempt } => {
                    tracing::debug!(job_id = %id, worker = %worker, attempt, "dispatching");
                    Decision {
                        event: Some(EventKind::Dispatched {
                            worker: worker.clone(),
                            attempt,
                        }),
                        after: vec![skynet_protocol::lifecycle::Effect::SendSpec {
                            worker,
                            attempt,
                        }],
                        ..Decision::default()
                    }
                }
                Placement::Wait { reason } => {
                    let first = self
                        .open
                        .get(&id)
                        .is_some_and(|j| j.state == Some(JobState::Approved));
                    if !first {
                        continue;
                    }
                    Decision::event(EventKind::Queued {
                        attempt: 1,
                        reason: Some(reason),
                    })
                }
                Placement::Fail { error } => {
                    tracing::warn!(job_id = %id, %error, "the job cannot run");
                    Decision::event(EventKind::Failed(skynet_protocol::event::Finished {
                        error: Some(error),
                        ..Default::default()
                    }))
                }
            };
            work.push((id, decision));
        }
        for (id, step) in self.execute(work).await {
            if let Step::Failed(e) = step {
                tracing::warn!(job_id = %id, error = %e, "routing");
            }
        }
    }

    async fn on_registry(&mut self, update: Update, live: bool) {
        match update {
            Update::Put(info, _) => {
                let info = *info;
                let id = info.id.clone();
                let attempts = info.attempts.clone();
                let changed = self.workers.get(&id).is_none_or(|old| {
                    old.max_jobs != info.max_jobs
                        || old.labels != info.labels
                        || old.running.len() != info.running.len()
                        || old.session != info.session
                });
                let was_online = self.workers.get(&id).is_some_and(|w| {
                    w.is_online(
                        skynet_protocol::time::now_ms(),
                        self.timing.missed_heartbeats,
                    )
                });
                self.workers.insert(id.clone(), info);
                self.reroute |= changed || !was_online;
                if live {
                    self.fence_strays(&id, &attempts).await;
                    self.route_all().await;
                }
            }
            Update::Removed(id) => {
                self.workers.remove(&id);
            }
        }
    }

    /// Tells a worker to stop attempts it runs that are not its own any more (ended, or
    /// moved on while it was away): checked against the log, never against a lagging view.
    async fn fence_strays(
        &mut self,
        worker: &WorkerId,
        attempts: &std::collections::BTreeMap<JobId, u32>,
    ) {
        for (job, attempt) in attempts {
            let current = self
                .open
                .get(job)
                .is_some_and(|j| owner::is_current(j, worker, *attempt));
            if current {
                continue;
            }
            match self.fx.log.job(job).await {
                Ok(fresh) if owner::is_current(&fresh, worker, *attempt) => {
                    self.open.refresh(fresh);
                }
                Ok(_) => {
                    tracing::info!(job_id = %job, worker = %worker, attempt, "worker runs an attempt that is not current; stopping it");
                    self.fx.stop(worker, job, *attempt, StopReason::Fenced);
                }
                Err(e) => {
                    tracing::debug!(job_id = %job, error = %e, "cannot check a stray attempt")
                }
            }
        }
    }

    async fn on_condition(&mut self, c: Condition, live: bool) {
        match c {
            Condition::Offline(w) => {
                if self.offline.insert(w.clone()) {
                    tracing::warn!(worker = %w, "worker offline; moving its jobs on");
                }
                if live {
                    self.lost(&w).await;
                }
            }
            Condition::Online(w) => {
                if self.offline.remove(&w) {
                    tracing::info!(worker = %w, "worker back online");
                    self.reroute = true;
                    if live {
                        self.route_all().await;
                    }
                }
            }
        }
    }

    /// Moves every job of an offline worker on.
    async fn lost(&mut self, worker: &WorkerId) {
        let jobs: Vec<JobId> = self
            .open
            .jobs
            .values()
            .filter(|j| j.on_worker() && j.worker.as_ref() == Some(worker))
            .map(|j| j.id.clone())
            .collect();
        self.act_each(jobs, "moving a job off a lost worker", |job, _| {
            owner::worker_lost(job, worker)
        })
        .await;
        self.route_all().await;
    }
}

/// `jobs.cancel`: decided on the job read afresh.
async fn cancel(fx: &Effects, req: CancelRequest) -> Result<StateReply, ApiError> {
    let by = req
        .by
        .clone()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".into());
    for _ in 0..8 {
        let mut job = fx
            .log
            .job(&req.job_id)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let (decision, state) = owner::cancel(&job, &by).map_err(|e| match e {
            owner::CancelRefusal::NotFound(_) => ApiError::not_found(e.to_string()),
            owner::CancelRefusal::Ended { .. } => ApiError::conflict(e.to_string()),
        })?;
        match fx
            .decide(&mut job, decision)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            Done::Raced => continue,
            Done::Wrote(_) | Done::Nothing => {
                tracing::info!(job_id = %req.job_id, by, %state, "cancel");
                return Ok(StateReply {
                    job_id: req.job_id,
                    state,
                });
            }
        }
    }
    Err(ApiError::internal(format!(
        "job {} kept changing while it was being cancelled",
        req.job_id
    )))
}
