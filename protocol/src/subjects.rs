//! Every NATS subject SKYNET uses, built in one place. No other module writes a subject
//! string literal.
//!
//! Public (the contract): `skynet.jobs.submit`, `skynet.api.*`, `skynet.events.<job>`,
//! `skynet.logs.<job>`, `skynet.alerts`, `skynet.rejected`.
//! Internal: `skynet.work.<worker>.<job>` (execution specs for one worker),
//! `skynet.out.<worker>.<job>.{event,log,artifact}` (what a worker reports, attributable to it
//! because the server only lets a worker publish under its own id), `skynet.control.<worker>`
//! (cancel requests to a worker), the `skynet-workers` KV bucket (the worker registry) and the
//! `skynet-artifacts` object store's chunks, which a worker writes under its own id
//! (`$O.skynet-artifacts.C.<worker>.<id>`), and metadata, which only the dispatcher writes.

use crate::ids::{JobId, WorkerId};

pub const SUBMIT: &str = "skynet.jobs.submit";
pub const EVENTS_ALL: &str = "skynet.events.>";
pub const LOGS_ALL: &str = "skynet.logs.>";
pub const ALERTS: &str = "skynet.alerts";
pub const REJECTED: &str = "skynet.rejected";
pub const API_PREFIX: &str = "skynet.api";
pub const WORK_ALL: &str = "skynet.work.>";
pub const OUTBOX_ALL: &str = "skynet.out.>";
pub const CONTROL_ALL: &str = "skynet.control.*";
/// Any one job's events, logs, or any worker's work (one token per id: what permissions grant).
pub const EVENTS_ANY_JOB: &str = "skynet.events.*";
pub const LOGS_ANY_JOB: &str = "skynet.logs.*";
pub const WORK_ANY: &str = "skynet.work.*.*";

const EVENTS_PREFIX: &str = "skynet.events.";
const LOGS_PREFIX: &str = "skynet.logs.";
const WORK_PREFIX: &str = "skynet.work.";
const OUTBOX_PREFIX: &str = "skynet.out.";
const CONTROL_PREFIX: &str = "skynet.control.";

/// The NATS service name and its endpoints (`skynet.api.<endpoint>`).
pub mod api {
    pub const SERVICE: &str = "skynet";
    pub const JOBS_SUBMIT: &str = "jobs.submit";
    pub const JOBS_GET: &str = "jobs.get";
    pub const JOBS_LIST: &str = "jobs.list";
    pub const JOBS_CANCEL: &str = "jobs.cancel";
    pub const JOBS_APPROVE: &str = "jobs.approve";
    pub const JOBS_DENY: &str = "jobs.deny";
    pub const JOBS_LOGS: &str = "jobs.logs";
    pub const WORKERS_LIST: &str = "workers.list";
    pub const SCHEDULES_CREATE: &str = "schedules.create";
    pub const SCHEDULES_GET: &str = "schedules.get";
    pub const SCHEDULES_LIST: &str = "schedules.list";
    pub const SCHEDULES_PAUSE: &str = "schedules.pause";
    pub const SCHEDULES_RESUME: &str = "schedules.resume";
    pub const SCHEDULES_DELETE: &str = "schedules.delete";
    pub const SCHEDULES_APPROVE: &str = "schedules.approve";
    /// Internal (planner → policy): what policy says about a new schedule's plan.
    pub const SCHEDULES_JUDGE: &str = "schedules.judge";
    pub const ALL: [&str; 15] = [
        JOBS_SUBMIT,
        JOBS_GET,
        JOBS_LIST,
        JOBS_CANCEL,
        JOBS_APPROVE,
        JOBS_DENY,
        JOBS_LOGS,
        WORKERS_LIST,
        SCHEDULES_CREATE,
        SCHEDULES_GET,
        SCHEDULES_LIST,
        SCHEDULES_PAUSE,
        SCHEDULES_RESUME,
        SCHEDULES_DELETE,
        SCHEDULES_APPROVE,
    ];
    /// The schedule endpoints the owner (the dispatcher) serves.
    pub const SCHEDULES_OWNER: [&str; 5] = [
        SCHEDULES_GET,
        SCHEDULES_LIST,
        SCHEDULES_PAUSE,
        SCHEDULES_RESUME,
        SCHEDULES_DELETE,
    ];
}

/// Message headers SKYNET sets.
pub mod headers {
    /// `stdout`, `stderr` or `system` on log messages.
    pub const STREAM: &str = "Skynet-Stream";
    /// The step index a log chunk belongs to.
    pub const STEP: &str = "Skynet-Step";
    /// The attempt a worker message belongs to.
    pub const ATTEMPT: &str = "Skynet-Attempt";
    /// A worker's per-attempt sequence number for what it reports.
    pub const SEQ: &str = "Skynet-Seq";
}

/// The full subject of an API endpoint.
pub fn api(endpoint: &str) -> String {
    format!("{API_PREFIX}.{endpoint}")
}

pub fn events(job: &JobId) -> String {
    format!("{EVENTS_PREFIX}{job}")
}

pub fn logs(job: &JobId) -> String {
    format!("{LOGS_PREFIX}{job}")
}

/// Where the dispatcher puts the execution spec of `job` for `worker`.
pub fn work(worker: &WorkerId, job: &JobId) -> String {
    format!("{WORK_PREFIX}{worker}.{job}")
}

/// The filter of `worker`'s work consumer.
pub fn work_filter(worker: &WorkerId) -> String {
    format!("{WORK_PREFIX}{worker}.>")
}

/// What a worker reports about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    /// A JSON `WorkerReport`.
    Event,
    /// Raw output bytes.
    Log,
    /// The metadata of an artifact whose chunks the worker stored (JSON `ObjectInfo`).
    Artifact,
}

impl OutKind {
    fn as_str(self) -> &'static str {
        match self {
            OutKind::Event => "event",
            OutKind::Log => "log",
            OutKind::Artifact => "artifact",
        }
    }
}

pub fn outbox(worker: &WorkerId, job: &JobId, kind: OutKind) -> String {
    format!("{OUTBOX_PREFIX}{worker}.{job}.{}", kind.as_str())
}

/// Everything one worker may publish to its outbox.
pub fn outbox_filter(worker: &WorkerId) -> String {
    format!("{OUTBOX_PREFIX}{worker}.>")
}

/// Where worker `worker` stores the chunks of the artifact `id` (the object's `nuid` is
/// `<worker>.<id>`, so the chunks of each worker's objects lie under its own id).
pub fn artifact_chunks(nuid: &str) -> String {
    format!("$O.{}.C.{nuid}", crate::streams::ARTIFACTS_BUCKET)
}

/// Every chunk subject worker `worker` may write.
pub fn artifact_chunks_of(worker: &WorkerId) -> String {
    format!("$O.{}.C.{worker}.>", crate::streams::ARTIFACTS_BUCKET)
}

/// The metadata subject of the artifact object `name`.
pub fn artifact_meta(name: &str) -> String {
    use base64::Engine as _;
    format!(
        "$O.{}.M.{}",
        crate::streams::ARTIFACTS_BUCKET,
        base64::engine::general_purpose::URL_SAFE.encode(name)
    )
}

/// Every artifact metadata subject.
pub fn artifact_meta_all() -> String {
    format!("$O.{}.M.>", crate::streams::ARTIFACTS_BUCKET)
}

pub fn control(worker: &WorkerId) -> String {
    format!("{CONTROL_PREFIX}{worker}")
}

/// The job id of a `skynet.events.<job>` subject.
pub fn parse_events(subject: &str) -> Option<JobId> {
    JobId::parse(subject.strip_prefix(EVENTS_PREFIX)?).ok()
}

/// The job id of a `skynet.logs.<job>` subject.
pub fn parse_logs(subject: &str) -> Option<JobId> {
    JobId::parse(subject.strip_prefix(LOGS_PREFIX)?).ok()
}

/// Worker, job and kind of a `skynet.out.<worker>.<job>.<kind>` subject.
pub fn parse_outbox(subject: &str) -> Option<(WorkerId, JobId, OutKind)> {
    let mut parts = subject.strip_prefix(OUTBOX_PREFIX)?.split('.');
    let worker = WorkerId::parse(parts.next()?).ok()?;
    let job = JobId::parse(parts.next()?).ok()?;
    let kind = match parts.next()? {
        "event" => OutKind::Event,
        "log" => OutKind::Log,
        "artifact" => OutKind::Artifact,
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((worker, job, kind))
}

/// Worker and job of a `skynet.work.<worker>.<job>` subject.
pub fn parse_work(subject: &str) -> Option<(WorkerId, JobId)> {
    let mut parts = subject.strip_prefix(WORK_PREFIX)?.split('.');
    let worker = WorkerId::parse(parts.next()?).ok()?;
    let job = JobId::parse(parts.next()?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((worker, job))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_subject(s: &str) -> bool {
        !s.is_empty()
            && s.split('.').all(|t| {
                !t.is_empty()
                    && !t.contains(char::is_whitespace)
                    && (t == ">" || t == "*" || !t.contains(['*', '>']))
            })
    }

    #[test]
    fn every_builder_makes_a_valid_subject_under_skynet() {
        let j = JobId::parse("job_1-x").unwrap();
        let w = WorkerId::parse("laptop-1").unwrap();
        let all = [
            SUBMIT.to_string(),
            EVENTS_ALL.into(),
            LOGS_ALL.into(),
            ALERTS.into(),
            REJECTED.into(),
            WORK_ALL.into(),
            OUTBOX_ALL.into(),
            CONTROL_ALL.into(),
            EVENTS_ANY_JOB.into(),
            LOGS_ANY_JOB.into(),
            WORK_ANY.into(),
            events(&j),
            logs(&j),
            work(&w, &j),
            work_filter(&w),
            outbox(&w, &j, OutKind::Event),
            outbox(&w, &j, OutKind::Log),
            outbox(&w, &j, OutKind::Artifact),
            outbox_filter(&w),
            control(&w),
        ]
        .into_iter()
        .chain(api::ALL.iter().map(|e| api(e)));
        for s in all {
            assert!(s.starts_with("skynet."), "{s}");
            assert!(valid_subject(&s), "{s}");
        }
    }

    #[test]
    fn artifact_subjects_keep_each_workers_chunks_apart() {
        let w = WorkerId::parse("w1").unwrap();
        for s in [
            artifact_chunks("w1.abc"),
            artifact_chunks_of(&w),
            artifact_meta("j1/report.txt"),
            artifact_meta_all(),
        ] {
            assert!(s.starts_with("$O.skynet-artifacts."), "{s}");
            assert!(valid_subject(&s), "{s}");
        }
        assert_eq!(artifact_chunks("w1.abc"), "$O.skynet-artifacts.C.w1.abc");
        assert_eq!(artifact_chunks_of(&w), "$O.skynet-artifacts.C.w1.>");
    }

    #[test]
    fn contract_subjects_are_exact() {
        let j = JobId::parse("nightly-42").unwrap();
        assert_eq!(events(&j), "skynet.events.nightly-42");
        assert_eq!(logs(&j), "skynet.logs.nightly-42");
        assert_eq!(api(api::JOBS_GET), "skynet.api.jobs.get");
        assert_eq!(api(api::WORKERS_LIST), "skynet.api.workers.list");
    }

    #[test]
    fn subjects_parse_back() {
        let j = JobId::parse("j1").unwrap();
        let w = WorkerId::parse("w1").unwrap();
        assert_eq!(parse_events(&events(&j)), Some(j.clone()));
        assert_eq!(parse_logs(&logs(&j)), Some(j.clone()));
        assert_eq!(parse_work(&work(&w, &j)), Some((w.clone(), j.clone())));
        assert_eq!(
            parse_outbox(&outbox(&w, &j, OutKind::Log)),
            Some((w.clone(), j.clone(), OutKind::Log))
        );
        assert_eq!(
            parse_outbox(&outbox(&w, &j, OutKind::Artifact)),
            Some((w.clone(), j.clone(), OutKind::Artifact))
        );
        assert_eq!(parse_outbox("skynet.out.w1.j1.other"), None);
        assert_eq!(parse_outbox("skynet.out.w1.j1.log.x"), None);
        assert_eq!(parse_events("skynet.events.a.b"), None);
    }
}
