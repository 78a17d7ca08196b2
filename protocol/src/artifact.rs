//! Who may store a job's artifacts: the worker its current attempt was given to, and nobody
//! else.
//!
//! The `skynet-artifacts` object store keeps an object's bytes as chunks and its name in a
//! metadata message whose subject is the base64 of the whole name, so subject permissions
//! cannot tell one job's objects from another's. So the two halves are split:
//! - a worker writes chunks only under its own id (`$O.skynet-artifacts.C.<worker>.<id>`, the
//!   object's `nuid` being `<worker>.<id>`), and nobody else can append to or roll up those
//!   chunks;
//! - it sends the object's metadata through its outbox (`skynet.out.<worker>.<job>.artifact`),
//!   and the dispatcher, which relays a report only for a job's current attempt on the worker
//!   it was given to, writes the metadata after [`accept`] checked that the object belongs to
//!   that job and points only at that worker's chunks.
//!
//! A worker's credential therefore cannot name, replace or damage another worker's
//! artifacts, nor write artifacts for a job that is not (or no longer) its own.

use async_nats::jetstream::object_store::ObjectInfo;

use crate::ids::{JobId, WorkerId};
use crate::streams::{ARTIFACTS_BUCKET, artifact_prefix};

/// The `nuid` of a new artifact object of `worker`.
pub fn new_nuid(worker: &WorkerId) -> String {
    format!("{worker}.{}", uuid::Uuid::new_v4().simple())
}

/// An artifact metadata message the dispatcher may write: its subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub subject: String,
    pub body: Vec<u8>,
    pub name: String,
}

/// Checks the metadata `worker` reported for an artifact of `job` (whose current attempt
/// the caller has established is that worker's).
pub fn accept(payload: &[u8], job: &JobId, worker: &WorkerId) -> Result<Accepted, String> {
    let info: ObjectInfo =
        serde_json::from_slice(payload).map_err(|e| format!("unreadable artifact: {e}"))?;
    if info.bucket != ARTIFACTS_BUCKET {
        return Err(format!("artifact for another store ({})", info.bucket));
    }
    let prefix = artifact_prefix(job);
    let rest = info.name.strip_prefix(&prefix).unwrap_or("");
    if rest.is_empty() {
        return Err(format!(
            "artifact {:?} is not one of job {job}'s",
            info.name
        ));
    }
    let own = format!("{worker}.");
    let id = info.nuid.strip_prefix(&own).unwrap_or("");
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "artifact {:?} points at chunks that are not worker {worker}'s",
            info.name
        ));
    }
    if info.deleted || info.options.as_ref().is_some_and(|o| o.link.is_some()) {
        return Err(format!("artifact {:?}: no deletions or links", info.name));
    }
    let body = serde_json::to_vec(&info).map_err(|e| e.to_string())?;
    Ok(Accepted {
        subject: crate::subjects::artifact_meta(&info.name),
        body,
        name: info.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, nuid: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "name": name, "bucket": ARTIFACTS_BUCKET, "nuid": nuid, "size": 3, "chunks": 1,
            "digest": "SHA-256=x"
        }))
        .unwrap()
    }

    #[test]
    fn a_worker_stores_only_its_jobs_artifacts_from_its_own_chunks() {
        let (j, w) = (JobId::parse("j1").unwrap(), WorkerId::parse("w1").unwrap());
        let nuid = new_nuid(&w);
        let ok = accept(&info("j1/report.txt", &nuid), &j, &w).unwrap();
        assert_eq!(ok.subject, crate::subjects::artifact_meta("j1/report.txt"));
        assert_eq!(ok.name, "j1/report.txt");
        for (name, nuid) in [
            ("j2/report.txt", nuid.as_str()),
            ("j1/", nuid.as_str()),
            ("j10/x", nuid.as_str()),
            ("j1/report.txt", "w2.abc"),
            ("j1/report.txt", "w1."),
            ("j1/report.txt", "w1.a.b"),
            ("j1/report.txt", "w1.>"),
            ("j1/report.txt", "abc"),
        ] {
            assert!(accept(&info(name, nuid), &j, &w).is_err(), "{name} {nuid}");
        }
        let other_store = serde_json::to_vec(&serde_json::json!({
            "name": "j1/x", "bucket": "skynet-archive", "nuid": nuid
        }))
        .unwrap();
        assert!(accept(&other_store, &j, &w).is_err());
        assert!(accept(b"not json", &j, &w).is_err());
    }
}
