//! The owner's part in schedules: it fires their ticks and serves `skynet.api.schedules.get`,
//! `.list`, `.pause`, `.resume` and `.delete`.
//!
//! Every schedule lives in the `skynet-schedules` bucket (watched here into memory). On each
//! turn of the owner's clock, each active schedule is decided by
//! [`lifecycle::schedule::tick`](skynet_protocol::lifecycle::schedule::tick) from its record,
//! its calendar and its previous job's state (as the log says); the new record is written
//! back with the revision it was read at, and only then is the tick's job submitted to
//! `skynet.jobs.submit` (with `Nats-Msg-Id` its id, `<name>-<UTC time>`). Two copies of the
//! dispatcher decide the same tick: one write wins, the other reads the record again and
//! finds nothing left to do; a submit lost to a crash after the write is sent again while
//! the job has no events, and intake never makes a second job of one id.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, message::PublishMessage};
use futures::StreamExt;
use skynet_protocol::api::{ApiError, CancelRequest};
use skynet_protocol::lifecycle::Open;
use skynet_protocol::lifecycle::schedule::{self, Prev, Refusal};
use skynet_protocol::schedule::{Deleted, ListReply, NameRequest, Schedule};
use skynet_protocol::{JobId, streams, subjects};
use skynet_runtime::{Shutdown, api};
use tokio_util::sync::CancellationToken;

use crate::effects::Effects;

/// How often a tick's job that intake has not recorded yet is submitted again.
const RESUBMIT_EVERY: Duration = Duration::from_secs(5);

/// A change in the bucket.
pub(crate) enum Update {
    Put(Box<Schedule>, u64),
    Gone(String),
}

pub(crate) struct Scheduler {
    kv: kv::Store,
    js: jetstream::Context,
    known: HashMap<String, (Schedule, u64)>,
    submitted: HashMap<JobId, Instant>,
}

pub(crate) fn watch(
    js: jetstream::Context,
    shutdown: CancellationToken,
) -> tokio::sync::mpsc::Receiver<Update> {
    skynet_runtime::registry::watch_bucket(js, streams::SCHEDULES_BUCKET, shutdown, |entry| {
        Some(match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Schedule>(&entry.value) {
                Ok(s) if s.name == entry.key => Update::Put(Box::new(s), entry.revision),
                Ok(_) | Err(_) => {
                    tracing::warn!(key = %entry.key, "unreadable schedule; ignored");
                    return None;
                }
            },
            _ => Update::Gone(entry.key),
        })
    })
}

impl Scheduler {
    pub(crate) async fn open(js: &jetstream::Context) -> anyhow::Result<Self> {
        Ok(Self {
            kv: js.get_key_value(streams::SCHEDULES_BUCKET).await?,
            js: js.clone(),
            known: HashMap::new(),
            submitted: HashMap::new(),
        })
    }

    pub(crate) fn on_update(&mut self, u: Update) {
        match u {
            Update::Put(s, revision) => {
                let newer = self.known.get(&s.name).is_none_or(|(_, r)| *r <= revision);
                if newer {
                    self.known.insert(s.name.clone(), (*s, revision));
                }
            }
            Update::Gone(name) => {
                self.known.remove(&name);
            }
        }
    }

    /// The previous job of `s`, from the open set, or else from the log.
    async fn prev(&self, s: &Schedule, open: &Open, fx: &Effects) -> anyhow::Result<Prev> {
        let Some(job) = &s.last_job_id else {
            return Ok(Prev::None);
        };
        if let Some(j) = open.get(job)
            && let Some(st) = j.state
        {
            return Ok(if st.is_terminal() {
                Prev::Ended(st)
            } else {
                Prev::Open(st)
            });
        }
        if let Some(st) = s.last_state
            && st.is_terminal()
        {
            return Ok(Prev::Ended(st));
        }
        Ok(match fx.log.last(job).await? {
            None => Prev::Submitted,
            Some(stored) => {
                let st = stored.event.state();
                if st.is_terminal() {
                    Prev::Ended(st)
                } else {
                    Prev::Open(st)
                }
            }
        })
    }

    /// One turn of the clock over every schedule.
    pub(crate) async fn turn(&mut self, open: &Open, fx: &Effects) {
        let now_s = skynet_protocol::time::now_ms() / 1000;
        let names: Vec<String> = self.known.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.turn_one(&name, open, fx, now_s).await {
                tracing::warn!(schedule = %name, error = %e, "schedule tick");
            }
        }
        self.submitted
            .retain(|_, at| at.elapsed() < RESUBMIT_EVERY * 4);
    }

    async fn turn_one(
        &mut self,
        name: &str,
        open: &Open,
        fx: &Effects,
        now_s: i64,
    ) -> anyhow::Result<()> {
        let Some((s, revision)) = self.known.get(name).cloned() else {
            return Ok(());
        };
        let cal = s.calendar()?;
        let prev = self.prev(&s, open, fx).await?;
        let d = schedule::tick(&s, &cal, prev, now_s);
        let Some(next) = d.schedule else {
            if prev == Prev::Submitted
                && let (Some(job), Some(tick)) = (&s.last_job_id, s.last_run.as_deref())
                && self
                    .submitted
                    .get(job)
                    .is_none_or(|at| at.elapsed() >= RESUBMIT_EVERY)
                && let Some(t) = skynet_protocol::time::parse(tick)
            {
                tracing::info!(schedule = %name, job_id = %job, "tick's job not recorded yet; submitting it again");
                self.submit(&s, t.unix_timestamp()).await?;
            }
            return Ok(());
        };
        let body = serde_json::to_vec(&next)?;
        match self.kv.update(name, body.into(), revision).await {
            Ok(rev) => {
                self.known.insert(name.to_owned(), (next.clone(), rev));
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Another copy (or an API call) wrote first: decide again on what it wrote.
                if let Some(entry) = self.kv.entry(name).await?
                    && entry.operation == kv::Operation::Put
                {
                    let s: Schedule = serde_json::from_slice(&entry.value)?;
                    self.known.insert(name.to_owned(), (s, entry.revision));
                } else {
                    self.known.remove(name);
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(job) = d.cancel {
            tracing::info!(schedule = %name, job_id = %job, "replacing the schedule's running job");
            let req = CancelRequest {
                job_id: job.clone(),
                by: Some(format!(
                    "{}{name}",
                    skynet_protocol::schedule::REQUESTED_BY_PREFIX
                )),
            };
            if let Err(e) = crate::cancel(fx, req).await {
                tracing::info!(schedule = %name, job_id = %job, error = %e, "cancelling the replaced job");
            }
        }
        if let Some(t) = d.submit {
            self.submit(&next, t).await?;
        }
        Ok(())
    }

    /// Submits the job of the tick at `t` (idempotent: its id is the tick's).
    async fn submit(&mut self, s: &Schedule, t: i64) -> anyhow::Result<()> {
        let req = s.tick_request(t);
        let Some(id) = req.id.clone() else {
            return Ok(());
        };
        let body = serde_json::to_vec(&req)?;
        self.js
            .send_publish(
                subjects::SUBMIT,
                PublishMessage::build()
                    .payload(body.into())
                    .message_id(id.as_str()),
            )
            .await?
            .await?;
        tracing::info!(schedule = %s.name, job_id = %id, "tick");
        self.submitted.insert(id, Instant::now());
        Ok(())
    }
}

/// Serves the owner's schedule endpoints.
pub(crate) async fn serve(
    service: &async_nats::service::Service,
    tasks: &Shutdown,
    kv: kv::Store,
) -> anyhow::Result<()> {
    use subjects::api as ep;
    let get = {
        let kv = kv.clone();
        move |req: NameRequest| {
            let kv = kv.clone();
            async move { read(&kv, &req.name).await.map(|(s, _)| s) }
        }
    };
    tasks.tasks.spawn(api::serve(
        api::endpoint(service, ep::SCHEDULES_GET).await?,
        tasks.clone(),
        get,
    ));
    let list = {
        let kv = kv.clone();
        move |_: skynet_protocol::api::Empty| {
            let kv = kv.clone();
            async move { list(&kv).await }
        }
    };
    tasks.tasks.spawn(api::serve(
        api::endpoint(service, ep::SCHEDULES_LIST).await?,
        tasks.clone(),
        list,
    ));
    for (endpoint, action) in [
        (ep::SCHEDULES_PAUSE, Change::Pause),
        (ep::SCHEDULES_RESUME, Change::Resume),
    ] {
        let kv = kv.clone();
        tasks.tasks.spawn(api::serve(
            api::endpoint(service, endpoint).await?,
            tasks.clone(),
            move |req: NameRequest| {
                let kv = kv.clone();
                async move { change(&kv, req, action).await }
            },
        ));
    }
    tasks.tasks.spawn(api::serve(
        api::endpoint(service, ep::SCHEDULES_DELETE).await?,
        tasks.clone(),
        move |req: NameRequest| {
            let kv = kv.clone();
            async move { delete(&kv, req).await }
        },
    ));
    Ok(())
}

fn by(req: &NameRequest) -> String {
    req.by
        .clone()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".into())
}

fn check(name: &str) -> Result<(), ApiError> {
    skynet_protocol::schedule::check_name(name).map_err(ApiError::bad_request)
}

async fn read(kv: &kv::Store, name: &str) -> Result<(Schedule, u64), ApiError> {
    check(name)?;
    match kv
        .entry(name)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
    {
        Some(e) if e.operation == kv::Operation::Put => {
            let s = serde_json::from_slice(&e.value)
                .map_err(|e| ApiError::internal(format!("unreadable schedule: {e}")))?;
            Ok((s, e.revision))
        }
        _ => Err(ApiError::not_found(format!("no schedule {name}"))),
    }
}

async fn list(kv: &kv::Store) -> Result<ListReply, ApiError> {
    let mut keys = kv
        .keys()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut schedules = Vec::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if let Ok((mut s, _)) = read(kv, &key).await {
            s.history.clear();
            schedules.push(s);
        }
    }
    schedules.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ListReply { schedules })
}

#[derive(Clone, Copy)]
enum Change {
    Pause,
    Resume,
}

async fn change(kv: &kv::Store, req: NameRequest, action: Change) -> Result<Schedule, ApiError> {
    let by = by(&req);
    for _ in 0..8 {
        let (s, revision) = read(kv, &req.name).await?;
        let cal = s
            .calendar()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let now_s = skynet_protocol::time::now_ms() / 1000;
        let next = match action {
            Change::Pause => schedule::pause(&s, &by, now_s),
            Change::Resume => schedule::resume(&s, &cal, &by, now_s),
        }
        .map_err(|r| match r {
            Refusal::Bad(m) => ApiError::bad_request(m),
            Refusal::Conflict(m) => ApiError::conflict(m),
        })?;
        let Some(next) = next else {
            return Ok(s);
        };
        let body = serde_json::to_vec(&next).map_err(|e| ApiError::internal(e.to_string()))?;
        match kv.update(&req.name, body.into(), revision).await {
            Ok(_) => {
                tracing::info!(schedule = %req.name, by, state = next.state.as_str(), "schedule changed");
                return Ok(next);
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(ApiError::internal(format!("writing the schedule: {e}"))),
        }
    }
    Err(ApiError::internal("the schedule kept changing"))
}

async fn delete(kv: &kv::Store, req: NameRequest) -> Result<Deleted, ApiError> {
    let by = by(&req);
    let (s, _) = read(kv, &req.name).await?;
    kv.purge(&req.name)
        .await
        .map_err(|e| ApiError::internal(format!("deleting the schedule: {e}")))?;
    tracing::info!(schedule = %req.name, by, last_job_id = ?s.last_job_id, "schedule deleted");
    Ok(Deleted {
        name: req.name,
        deleted: true,
    })
}
