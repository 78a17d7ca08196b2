//! Every JetStream stream, consumer, KV bucket and object store SKYNET uses, defined in one
//! place. The runtime crate's `ensure_all` creates or updates them idempotently.

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{AckPolicy, DeliverPolicy, pull},
    kv, object_store,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};

use sha2::{Digest, Sha256};

use crate::ids::{JobId, WorkerId};
use crate::subjects;

pub const SUBMIT: &str = "SKYNET_SUBMIT";
pub const EVENTS: &str = "SKYNET_EVENTS";
pub const LOGS: &str = "SKYNET_LOGS";
pub const WORK: &str = "SKYNET_WORK";
pub const OUTBOX: &str = "SKYNET_OUTBOX";
pub const ALERTS: &str = "SKYNET_ALERTS";
pub const REJECTED: &str = "SKYNET_REJECTED";

/// The worker registry: one key per worker, refreshed by every heartbeat.
pub const WORKERS_BUCKET: &str = "skynet-workers";
/// Files that steps declared as artifacts, under `<job_id>/<path>`.
pub const ARTIFACTS_BUCKET: &str = "skynet-artifacts";
/// Archived logs and event histories of finished jobs, under `<job_id>/...`.
pub const ARCHIVE_BUCKET: &str = "skynet-archive";
/// Snapshots of the services that keep the open jobs in memory (policy, dispatcher,
/// sentinel): one object per service, so a restart resumes from a position instead of the
/// stream's beginning.
pub const SNAPSHOTS_BUCKET: &str = "skynet-snapshots";
/// Tokens spent by the LLM planners, one running total per day, planner and model
/// (`<YYYY-MM-DD>.<planner>.<model>`), updated with compare-and-set by every planner copy.
pub const PLANNER_USAGE_BUCKET: &str = "skynet-planner-usage";

/// Schedules: one key per schedule (its name), the record of `skynet_protocol::schedule`:
/// its definition, plan, state, next and last run and history, written with the revision
/// it was read at (compare-and-set) by the planner (create), policy (approve) and the
/// dispatcher (ticks, pause, resume, delete).
pub const SCHEDULES_BUCKET: &str = "skynet-schedules";

/// The sentinel's open conditions (`worker_offline.<id>`, `job_stalled.<job>`, ...): one key
/// per condition while it lasts, so copies of the sentinel raise and clear each alert once.
pub const SENTINEL_BUCKET: &str = "skynet-sentinel";

/// The Telegram ingress's conversations: one record per job it talks about (origin chat,
/// status message, approval requests, whether the final message went out), so a restarted
/// ingress carries on where it stopped. A record goes once its job's conversation is over.
pub const TELEGRAM_BUCKET: &str = "skynet-telegram";
/// Alerts the Telegram ingress has delivered, one key per alert and chat, so each alert
/// reaches each chat once.
pub const TELEGRAM_ALERTS_BUCKET: &str = "skynet-telegram-alerts";

/// Which owner (dispatcher) copy routes: one key, [`ROUTING_LEASE_KEY`], holding a
/// `lifecycle::lease::RouteLease`, renewed by its holder and taken over by another copy only
/// with compare-and-set. Only the dispatcher writes it.
pub const ROUTING_BUCKET: &str = "skynet-routing";
/// The routing lease's key in [`ROUTING_BUCKET`].
pub const ROUTING_LEASE_KEY: &str = "lease";

/// The durable consumer the planner reads intake with.
pub const PLANNER_CONSUMER: &str = "planner";
/// The durable consumer the dispatcher relays worker reports with.
pub const RELAY_CONSUMER: &str = "relay";
/// The Telegram ingress's durable consumer on `SKYNET_EVENTS`.
pub const TELEGRAM_EVENTS_CONSUMER: &str = "telegram";
/// The Telegram ingress's durable consumer on `SKYNET_ALERTS`.
pub const TELEGRAM_ALERTS_CONSUMER: &str = "telegram-alerts";

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Retention and placement of the streams, set by configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Replicas of every stream (1 on one server, 3 in a cluster).
    pub replicas: usize,
    /// How long events are kept; the contract promises at least 7 days.
    pub events_max_age: Duration,
    pub logs_max_age: Duration,
    /// Total size of the live log stream; the oldest output goes first.
    pub logs_max_bytes: i64,
    pub alerts_max_age: Duration,
    /// How long an archive stays in the object store.
    pub archive_max_age: Duration,
    pub artifacts_max_age: Duration,
    /// Largest single artifact accepted.
    pub artifact_max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            replicas: 1,
            events_max_age: 30 * DAY,
            logs_max_age: 7 * DAY,
            logs_max_bytes: 1 << 30,
            alerts_max_age: 30 * DAY,
            archive_max_age: 365 * DAY,
            artifacts_max_age: 30 * DAY,
            artifact_max_bytes: 64 << 20,
        }
    }
}

fn base(name: &str, subjects: &[&str], r: &Retention) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        storage: StorageType::File,
        num_replicas: r.replicas,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        discard: DiscardPolicy::Old,
        ..Default::default()
    }
}

/// The durable intake: every JobRequest as it was published.
pub fn submit(r: &Retention) -> stream::Config {
    stream::Config {
        description: Some("SKYNET job requests as submitted".into()),
        max_age: 7 * DAY,
        ..base(SUBMIT, &[subjects::SUBMIT], r)
    }
}

/// The truth: one event per state change of every job.
pub fn events(r: &Retention) -> stream::Config {
    stream::Config {
        description: Some("SKYNET job state changes".into()),
        max_age: r.events_max_age,
        ..base(EVENTS, &[subjects::EVENTS_ALL], r)
    }
}

/// Live output of every job.
pub fn logs(r: &Retention) -> stream::Config {
    stream::Config {
        description: Some("SKYNET job output".into()),
        max_age: r.logs_max_age,
        max_bytes: r.logs_max_bytes,
        ..base(LOGS, &[subjects::LOGS_ALL], r)
    }
}

/// Signed specs, one filtered consumer per worker; a spec is gone once its worker acked it.
pub fn work(r: &Retention) -> stream::Config {
    stream::Config {
        description: Some("SKYNET signed execution specs per worker".into()),
        retention: RetentionPolicy::WorkQueue,
        max_age: DAY,
        ..base(WORK, &[subjects::WORK_ALL], r)
    }
}

/// What workers report (events and output), until the dispatcher has relayed it.
pub fn outbox(r: &Retention) -> stream::Config {
    stream::Config {
        description: Some("SKYNET worker reports awaiting relay".into()),
        retention: RetentionPolicy::WorkQueue,
        max_age: 7 * DAY,
        ..base(OUTBOX, &[subjects::OUTBOX_ALL], r)
    }
}

pub fn alerts(r: &Retention) -> stream::Config {
    stream::Config {
        description: Some("SKYNET sentinel alerts".into()),
        max_age: r.alerts_max_age,
        ..base(ALERTS, &[subjects::ALERTS], r)
    }
}

pub fn rejected(r: &Retention) -> stream::Config {
    stream::Config {
        description: Some("SKYNET requests that could not be given a job id".into()),
        max_age: 7 * DAY,
        max_messages: 100_000,
        ..base(REJECTED, &[subjects::REJECTED], r)
    }
}

/// Every stream, in creation order.
pub fn all(r: &Retention) -> Vec<stream::Config> {
    vec![
        submit(r),
        events(r),
        logs(r),
        work(r),
        outbox(r),
        alerts(r),
        rejected(r),
    ]
}

pub fn workers_kv(r: &Retention) -> kv::Config {
    kv::Config {
        bucket: WORKERS_BUCKET.into(),
        description: "SKYNET worker registry".into(),
        history: 1,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

pub fn sentinel_kv(r: &Retention) -> kv::Config {
    kv::Config {
        bucket: SENTINEL_BUCKET.into(),
        description: "SKYNET sentinel conditions".into(),
        history: 1,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

pub fn schedules_kv(r: &Retention) -> kv::Config {
    kv::Config {
        bucket: SCHEDULES_BUCKET.into(),
        description: "SKYNET schedules".into(),
        history: 1,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

/// The routing lease of the dispatcher copies (one small key, no history).
pub fn routing_kv(r: &Retention) -> kv::Config {
    kv::Config {
        bucket: ROUTING_BUCKET.into(),
        description: "SKYNET routing lease of the dispatcher copies".into(),
        history: 1,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

/// Daily token totals of the LLM planners; a day's entries are kept for about a year.
pub fn planner_usage_kv(r: &Retention) -> kv::Config {
    kv::Config {
        bucket: PLANNER_USAGE_BUCKET.into(),
        description: "SKYNET planner token usage per day".into(),
        history: 1,
        max_age: 400 * DAY,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

pub fn artifacts_store(r: &Retention) -> object_store::Config {
    object_store::Config {
        bucket: ARTIFACTS_BUCKET.into(),
        description: Some("SKYNET job artifacts".into()),
        max_age: r.artifacts_max_age,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

pub fn snapshots_store(r: &Retention) -> object_store::Config {
    object_store::Config {
        bucket: SNAPSHOTS_BUCKET.into(),
        description: Some("SKYNET service snapshots of the open jobs".into()),
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

pub fn archive_store(r: &Retention) -> object_store::Config {
    object_store::Config {
        bucket: ARCHIVE_BUCKET.into(),
        description: Some("SKYNET archived job logs and histories".into()),
        max_age: r.archive_max_age,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

pub fn telegram_kv(r: &Retention) -> kv::Config {
    kv::Config {
        bucket: TELEGRAM_BUCKET.into(),
        description: "SKYNET Telegram conversations of jobs in flight".into(),
        history: 1,
        // A record outlives any job that is still moving: events are kept this long.
        max_age: r.events_max_age,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

pub fn telegram_alerts_kv(r: &Retention) -> kv::Config {
    kv::Config {
        bucket: TELEGRAM_ALERTS_BUCKET.into(),
        description: "SKYNET alerts delivered to Telegram chats".into(),
        history: 1,
        // As long as an alert can be redelivered from its stream.
        max_age: r.alerts_max_age,
        storage: StorageType::File,
        num_replicas: r.replicas,
        ..Default::default()
    }
}

/// The key of `job`'s conversation in [`TELEGRAM_BUCKET`] (a job id is a valid key).
pub fn telegram_job_key(job: &JobId) -> String {
    job.as_str().to_owned()
}

/// The key in [`TELEGRAM_ALERTS_BUCKET`] that records alert `alert_id` as delivered to
/// `chat`. Alert ids may hold characters keys may not, so the id is hashed.
pub fn telegram_alert_key(alert_id: &str, chat: i64) -> String {
    let digest = Sha256::digest(alert_id.as_bytes());
    format!("{}.{chat}", hex::encode(&digest[..16]))
}

/// The sentinel's key for "worker `id` is offline" in [`SENTINEL_BUCKET`]: present while it
/// is. The dispatcher watches these keys and moves the worker's jobs on.
pub fn offline_key(worker: &WorkerId) -> String {
    format!("worker_offline.{worker}")
}

/// The worker an [`offline_key`] names.
pub fn parse_offline_key(key: &str) -> Option<WorkerId> {
    WorkerId::parse(key.strip_prefix("worker_offline.")?).ok()
}

/// The planner's durable consumer on the intake. Copies of the planner share it.
pub fn planner_consumer() -> pull::Config {
    pull::Config {
        durable_name: Some(PLANNER_CONSUMER.into()),
        description: Some("skynet-planner intake".into()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(60),
        max_ack_pending: 1024,
        ..Default::default()
    }
}

/// The archiver's durable consumer on the event stream.
pub const ARCHIVER_CONSUMER: &str = "archiver";

/// The dispatcher's durable consumer on worker reports.
pub fn relay_consumer() -> pull::Config {
    pull::Config {
        durable_name: Some(RELAY_CONSUMER.into()),
        description: Some("skynet-dispatcher relay of worker reports".into()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 10_000,
        ..Default::default()
    }
}

/// The Telegram ingress's consumer on `SKYNET_EVENTS`. It starts at the events that arrive
/// after it is first created: jobs older than the ingress have no conversation to continue.
pub fn telegram_events_consumer() -> pull::Config {
    pull::Config {
        durable_name: Some(TELEGRAM_EVENTS_CONSUMER.into()),
        description: Some("skynet-telegram conversations".into()),
        filter_subject: subjects::EVENTS_ALL.into(),
        deliver_policy: DeliverPolicy::New,
        ack_policy: AckPolicy::Explicit,
        // Short, so an event handed to a copy of the ingress that just went away comes back
        // within seconds; the ingress reports progress while it waits out Telegram's flood
        // control.
        ack_wait: Duration::from_secs(10),
        max_ack_pending: 256,
        ..Default::default()
    }
}

/// The Telegram ingress's consumer on `SKYNET_ALERTS` (new alerts only, like the events).
pub fn telegram_alerts_consumer() -> pull::Config {
    pull::Config {
        durable_name: Some(TELEGRAM_ALERTS_CONSUMER.into()),
        description: Some("skynet-telegram alerts to approvers".into()),
        filter_subject: subjects::ALERTS.into(),
        deliver_policy: DeliverPolicy::New,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(10),
        max_ack_pending: 64,
        ..Default::default()
    }
}

/// A fresh name for an ordered (ephemeral) consumer. Readers name theirs: the unnamed
/// create subject (`$JS.API.CONSUMER.CREATE.<stream>`) would let a config naming a durable
/// rewrite it, so it is denied on every stream with durables (see `permissions`).
pub fn ordered_consumer_name() -> String {
    format!("r{}", uuid::Uuid::new_v4().simple())
}

/// The name of `worker`'s work consumer.
pub fn work_consumer_name(worker: &WorkerId) -> String {
    format!("worker-{worker}")
}

/// The archiver's durable consumer: every event, so it sees each job end, and resumes where
/// it left off after a restart (a job that ended meanwhile is archived on return).
pub fn archiver_consumer() -> pull::Config {
    pull::Config {
        durable_name: Some(ARCHIVER_CONSUMER.into()),
        description: Some("skynet-archiver".into()),
        filter_subject: subjects::EVENTS_ALL.into(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(300),
        max_ack_pending: 1024,
        ..Default::default()
    }
}

/// The name of a job's archive in the `skynet-archive` object store.
pub fn archive_object(job: &crate::JobId) -> String {
    format!("jobs/{job}.json.gz")
}

/// The prefix of a job's artifacts in the `skynet-artifacts` object store.
pub fn artifact_prefix(job: &crate::JobId) -> String {
    format!("{job}/")
}

/// One worker's consumer on `SKYNET_WORK`, filtered to its own subject.
pub fn work_consumer(worker: &WorkerId) -> pull::Config {
    pull::Config {
        durable_name: Some(work_consumer_name(worker)),
        description: Some(format!("work for {worker}")),
        filter_subject: subjects::work_filter(worker),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 256,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_kept_at_least_a_week() {
        assert!(events(&Retention::default()).max_age >= 7 * DAY);
    }

    #[test]
    fn stream_subjects_do_not_overlap() {
        let all = all(&Retention::default());
        let subjects: Vec<&String> = all.iter().flat_map(|s| &s.subjects).collect();
        for (i, a) in subjects.iter().enumerate() {
            for b in &subjects[i + 1..] {
                let (pa, pb) = (a.trim_end_matches('>'), b.trim_end_matches('>'));
                assert!(
                    !pa.starts_with(pb) && !pb.starts_with(pa),
                    "{a} overlaps {b}"
                );
            }
        }
    }

    #[test]
    fn telegram_keys_are_valid_kv_keys() {
        let valid = |k: &str| {
            !k.is_empty()
                && !k.starts_with('.')
                && !k.ends_with('.')
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-/_=.".contains(c))
        };
        let job = JobId::parse("job_1-x").unwrap();
        assert!(valid(&telegram_job_key(&job)));
        let a = telegram_alert_key("worker_offline:laptop 1:1", -100123);
        assert!(valid(&a), "{a}");
        assert_ne!(a, telegram_alert_key("worker_offline:laptop 1:1", 5));
        assert_ne!(a, telegram_alert_key("worker_offline:laptop 1:2", -100123));
        assert_eq!(
            telegram_events_consumer().deliver_policy,
            DeliverPolicy::New
        );
    }

    #[test]
    fn offline_keys_name_their_worker() {
        let w = WorkerId::parse("laptop-1").unwrap();
        assert_eq!(parse_offline_key(&offline_key(&w)), Some(w));
        assert_eq!(parse_offline_key("job_stalled.x"), None);
    }

    #[test]
    fn work_consumers_are_per_worker() {
        let w = WorkerId::parse("w1").unwrap();
        let c = work_consumer(&w);
        assert_eq!(c.filter_subject, "skynet.work.w1.>");
        assert_eq!(c.durable_name.as_deref(), Some("worker-w1"));
        assert_eq!(
            work(&Retention::default()).retention,
            RetentionPolicy::WorkQueue
        );
    }
}
