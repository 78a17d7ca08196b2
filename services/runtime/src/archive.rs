//! Job archives in the `skynet-archive` object store: a finished job's whole output (with the
//! stream and step of each chunk) and its event history, gzipped JSON under
//! `jobs/<job_id>.json.gz`.
//!
//! Why the object store and not files: it is replicated with the cluster like every other
//! stream, any service or CLI anywhere can read it over NATS (no shared disk), and its
//! retention is one bucket setting (`SKYNET_ARCHIVE_MAX_AGE`).

use std::io::{Read, Write};

use async_nats::jetstream::{self, object_store};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use skynet_protocol::{Event, JobId, streams};
use tokio::io::AsyncReadExt;

use crate::logs::LogMsg;

/// One chunk of output, as archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Its sequence in `SKYNET_LOGS`.
    pub seq: u64,
    pub stream: String,
    pub step: Option<usize>,
    /// The raw bytes, base64.
    pub data: String,
}

/// An artifact the job left, by name in `skynet-artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub name: String,
    pub size: u64,
}

/// A finished job, as kept after the live streams have moved on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Archive {
    pub job_id: JobId,
    pub archived_at: String,
    /// The stream sequence of the terminal event; a later archive of the same job with the
    /// same sequence is the same archive.
    pub terminal_seq: u64,
    pub events: Vec<Event>,
    pub output: Vec<Chunk>,
    #[serde(default)]
    pub artifacts: Vec<ArtifactRef>,
}

impl Archive {
    pub fn new(job_id: JobId, terminal_seq: u64, events: Vec<Event>, logs: &[LogMsg]) -> Self {
        Self {
            job_id,
            archived_at: skynet_protocol::time::now(),
            terminal_seq,
            events,
            output: logs
                .iter()
                .map(|m| Chunk {
                    seq: m.seq,
                    stream: m.stream.clone(),
                    step: m.step,
                    data: STANDARD.encode(&m.data),
                })
                .collect(),
            artifacts: Vec::new(),
        }
    }

    /// The output as log messages again.
    pub fn logs(&self) -> Vec<LogMsg> {
        self.output
            .iter()
            .map(|c| LogMsg {
                seq: c.seq,
                stream: c.stream.clone(),
                step: c.step,
                data: STANDARD.decode(&c.data).unwrap_or_default().into(),
            })
            .collect()
    }

    fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let json = serde_json::to_vec(self)?;
        let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
        gz.write_all(&json)?;
        Ok(gz.finish()?)
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut json = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut json)?;
        Ok(serde_json::from_slice(&json)?)
    }
}

/// The archive store.
#[derive(Clone)]
pub struct ArchiveStore {
    store: object_store::ObjectStore,
}

impl ArchiveStore {
    pub async fn open(js: &jetstream::Context) -> anyhow::Result<Self> {
        Ok(Self {
            store: js.get_object_store(streams::ARCHIVE_BUCKET).await?,
        })
    }

    /// The terminal sequence of the job's archive, if there is one.
    pub async fn archived_seq(&self, job: &JobId) -> Option<u64> {
        let info = self.store.info(streams::archive_object(job)).await.ok()?;
        if info.deleted {
            return None;
        }
        info.metadata.get("terminal_seq")?.parse().ok()
    }

    pub async fn put(&self, archive: &Archive) -> anyhow::Result<()> {
        let bytes = archive.encode()?;
        let meta = object_store::ObjectMetadata {
            name: streams::archive_object(&archive.job_id),
            description: Some(format!("archive of job {}", archive.job_id)),
            metadata: [
                ("terminal_seq".to_owned(), archive.terminal_seq.to_string()),
                ("job_id".to_owned(), archive.job_id.to_string()),
            ]
            .into(),
            ..Default::default()
        };
        self.store.put(meta, &mut bytes.as_slice()).await?;
        Ok(())
    }

    pub async fn get(&self, job: &JobId) -> anyhow::Result<Option<Archive>> {
        let mut object = match self.store.get(streams::archive_object(job)).await {
            Ok(o) => o,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await?;
        Ok(Some(Archive::decode(&bytes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_round_trip_raw_bytes() {
        let job = JobId::parse("j").unwrap();
        let logs = vec![LogMsg {
            seq: 7,
            stream: "stderr".into(),
            step: Some(1),
            data: bytes::Bytes::from_static(b"\xffnot utf-8\n"),
        }];
        let a = Archive::new(job, 42, vec![], &logs);
        let back = Archive::decode(&a.encode().unwrap()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.logs(), logs);
    }
}
