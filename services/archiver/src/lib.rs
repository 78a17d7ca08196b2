//! skynet-archiver: nothing is forgotten.
//!
//! Reads `SKYNET_EVENTS` with its durable consumer `archiver`. When a job reaches a terminal
//! state it writes the job's whole output (`SKYNET_LOGS`, with the stream and step of each
//! chunk), its event history (as its consumer delivered it, see `seen.rs`; read back when the
//! job began before this process) and the list of its artifacts (`skynet-artifacts`) as one
//! gzipped object in the `skynet-archive` object store. Archiving is idempotent (an archive
//! with the same terminal sequence is not written again) and survives restarts: the
//! consumer resumes where it stopped, so a job that ended while the archiver was down is
//! archived when it returns. `jobs.logs` and `skynet logs` read the archive once the live
//! log has expired.

mod seen;

use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use skynet_protocol::{Event, EventKind, JobId, streams};
use skynet_runtime::archive::{Archive, ArchiveStore, ArtifactRef};
use skynet_runtime::events::EventLog;
use tokio_util::sync::CancellationToken;

/// Settings of the archiver.
#[derive(Debug, Clone, Default)]
pub struct Config {}

/// Runs the archiver until `shutdown` is cancelled.
pub async fn run(
    _config: Config,
    client: Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some((js, log)) = skynet_runtime::setup::open(&client, &shutdown).await? else {
        return Ok(());
    };
    let archive = ArchiveStore::open(&js).await?;
    let artifacts = js.get_object_store(streams::ARTIFACTS_BUCKET).await?;
    let stream = js.get_stream_no_info(streams::EVENTS).await?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(streams::ARCHIVER_CONSUMER, streams::archiver_consumer())
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(256)
        .heartbeat(Duration::from_millis(2500))
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    tracing::info!("archiver ready");
    let mut seen = seen::Seen::new(seen::MAX_JOBS);
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = messages.next() => match m {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "archiver consumer");
                    continue;
                }
                None => anyhow::bail!("archiver consumer ended"),
            },
        };
        let event = match serde_json::from_slice::<Event>(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "unreadable event skipped");
                let _ = msg.ack().await;
                continue;
            }
        };
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        seen.note(seq, &event);
        if !event.state().is_terminal() {
            let _ = msg.ack().await;
            continue;
        }
        let history = seen.history(&event.job_id, seq);
        let job = &event.job_id;
        let ack = match archive_job(&js, &log, &archive, &artifacts, job, seq, history).await {
            Ok(()) => {
                seen.forget(job);
                AckKind::Ack
            }
            Err(e) => {
                tracing::warn!(job_id = %event.job_id, error = %e, "archiving failed; will retry");
                AckKind::Nak(Some(Duration::from_secs(2)))
            }
        };
        if let Err(e) = msg.ack_with(ack).await {
            tracing::debug!(error = %e, "acking");
        }
    }
}

async fn archive_job(
    js: &jetstream::Context,
    log: &EventLog,
    archive: &ArchiveStore,
    artifacts: &jetstream::object_store::ObjectStore,
    job: &JobId,
    terminal_seq: u64,
    seen: Option<Vec<Event>>,
) -> anyhow::Result<()> {
    if archive.archived_seq(job).await == Some(terminal_seq) {
        return Ok(());
    }
    let events: Vec<Event> = match seen {
        Some(events) => events,
        None => log
            .history(job)
            .await?
            .into_iter()
            .filter(|s| s.seq <= terminal_seq)
            .map(|s| s.event)
            .collect(),
    };
    // Only steps that declare artifacts keep any: the store is listed for those jobs alone
    // (listing it reads every object's metadata).
    let keeps_artifacts = events.iter().any(|e| {
        matches!(&e.kind, EventKind::Planned { steps, .. }
            if steps.iter().any(|s| !s.artifacts().is_empty()))
    });
    let logs = skynet_runtime::logs::read_all(js, job).await?;
    let mut a = Archive::new(job.clone(), terminal_seq, events, &logs);
    let prefix = streams::artifact_prefix(job);
    if keeps_artifacts {
        list_artifacts(artifacts, &prefix, &mut a).await?;
    }
    archive.put(&a).await?;
    tracing::info!(job_id = %job, chunks = a.output.len(), events = a.events.len(), "archived");
    Ok(())
}

/// Adds the job's stored artifacts (names under `prefix`) to its archive.
async fn list_artifacts(
    artifacts: &jetstream::object_store::ObjectStore,
    prefix: &str,
    a: &mut Archive,
) -> anyhow::Result<()> {
    let mut list = artifacts.list().await?;
    while let Some(info) = list.next().await {
        let info = info?;
        if info.name.starts_with(prefix) && !info.deleted {
            a.artifacts.push(ArtifactRef {
                name: info.name.clone(),
                size: info.size as u64,
            });
        }
    }
    Ok(())
}
