//! Following the event stream with the open jobs in memory, resuming from a snapshot.
//!
//! Policy, the dispatcher and the sentinel keep every job that has not ended as a
//! [`Job`](skynet_protocol::lifecycle::Job) (the one fold of the lifecycle module) in an
//! [`Open`] set. A [`Follower`] feeds it the stream in order and, every few seconds, writes it
//! as a snapshot (gzipped JSON) to the object store `skynet-snapshots`, one object per
//! service. A service that starts reads its snapshot and follows from the position after
//! it, so start-up does not grow with the stream's history. Without a snapshot (the first
//! start, or a stream that was recreated) it replays from the beginning, once.
//!
//! Copies of one service share its snapshot: any copy's snapshot is the same fold at some
//! position, so whichever was written last is a correct place to resume from.

use std::io::{Read, Write};
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use skynet_protocol::lifecycle::Open;
use skynet_protocol::lifecycle::job::Change;
use skynet_protocol::streams;
use tokio::io::AsyncReadExt;

use crate::events::{EventLog, Stored};

/// How often a follower writes its snapshot (when it moved on).
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);

/// The version of the snapshot format; another version is ignored (and replaced).
const VERSION: u32 = 1;

/// Where a follower is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Rebuilding state from history: do not act yet.
    Replay,
    /// This event completes the history as it was at start: reconcile, then act.
    CaughtUp,
    /// A new event: act on it.
    Live,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// The event stream's creation time: a snapshot of another incarnation is worthless.
    stream: String,
    open: Open,
}

/// Follows the event stream into an [`Open`] set.
pub struct Follower {
    name: String,
    stream_created: String,
    store: Option<object_store::ObjectStore>,
    events: Pin<Box<dyn Stream<Item = anyhow::Result<Stored>> + Send>>,
    caught_up_at: u64,
    live: bool,
    saved_position: u64,
    saved_at: Instant,
    saving: Option<tokio::task::JoinHandle<()>>,
}

impl Follower {
    /// Loads the snapshot of service `name` (if it fits this stream) and starts following
    /// after its position. Returns the follower and the open jobs as of the snapshot.
    pub async fn start(
        log: &EventLog,
        js: &jetstream::Context,
        name: &str,
    ) -> anyhow::Result<(Self, Open)> {
        let started = Instant::now();
        let (stream_created, first, last) = log.position().await?;
        let store = match js.get_object_store(streams::SNAPSHOTS_BUCKET).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no snapshot store; replaying the whole stream");
                None
            }
        };
        let mut open = Open::default();
        if let Some(store) = &store {
            match load(store, name).await {
                Ok(Some(s)) if s.version == VERSION && s.stream == stream_created => {
                    if s.open.position <= last {
                        open = s.open;
                    } else {
                        tracing::warn!(
                            snapshot = s.open.position,
                            last,
                            "the snapshot is ahead of the stream; replaying"
                        );
                    }
                }
                Ok(Some(_)) => tracing::info!("the snapshot is of another stream; replaying"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "unreadable snapshot; replaying"),
            }
        }
        let from = (open.position + 1).max(first);
        let events = Box::pin(log.follow_known(from, last));
        tracing::info!(
            service = name,
            from,
            last,
            open = open.jobs.len(),
            ms = started.elapsed().as_millis() as u64,
            "following events"
        );
        Ok((
            Self {
                name: name.to_owned(),
                stream_created,
                store,
                events,
                caught_up_at: last,
                live: last < from,
                saved_position: open.position,
                saved_at: Instant::now(),
                saving: None,
            },
            open,
        ))
    }

    /// True once the history as it was at start has been read.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The next event, applied to `open`, with what it changed and the phase; `None` if the
    /// stream ended.
    pub async fn next(
        &mut self,
        open: &mut Open,
    ) -> Option<anyhow::Result<(Stored, Change, Phase)>> {
        let stored = match self.events.next().await? {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let change = open.follow(stored.seq, &stored.event);
        let phase = if self.live {
            Phase::Live
        } else if stored.seq >= self.caught_up_at {
            self.live = true;
            Phase::CaughtUp
        } else {
            Phase::Replay
        };
        Some(Ok((stored, change, phase)))
    }

    /// The next event if it is already at hand, without waiting: `None` when none is ready,
    /// `Some(None)` when the stream ended. A service drains these after [`Follower::next`]
    /// to act on many events at once.
    #[allow(clippy::type_complexity)]
    pub fn next_ready(
        &mut self,
        open: &mut Open,
    ) -> Option<Option<anyhow::Result<(Stored, Change, Phase)>>> {
        use futures::FutureExt as _;
        // Polling `next` once and dropping it is safe: the event stream loses nothing when a
        // pending `next` is dropped, and a ready one is applied before it returns.
        self.next(open).now_or_never()
    }

    /// Writes a snapshot of `open` when it moved on and the last one is old enough (or at
    /// once with `force`, as at shutdown and when caught up). The write runs in the
    /// background; at most one at a time.
    pub fn snapshot(&mut self, open: &Open, force: bool) {
        let Some(store) = self.store.clone() else {
            return;
        };
        if open.position == self.saved_position
            || (!force && self.saved_at.elapsed() < SNAPSHOT_EVERY)
            || self.saving.as_ref().is_some_and(|h| !h.is_finished())
        {
            return;
        }
        let snapshot = Snapshot {
            version: VERSION,
            stream: self.stream_created.clone(),
            open: open.clone(),
        };
        self.saved_position = open.position;
        self.saved_at = Instant::now();
        let name = object_name(&self.name);
        self.saving = Some(tokio::spawn(async move {
            if let Err(e) = save(&store, &name, &snapshot).await {
                tracing::warn!(error = %e, "writing the snapshot");
            }
        }));
    }

    /// Writes the snapshot now and waits (at most `grace`) for it to be stored.
    pub async fn finish(&mut self, open: &Open, grace: Duration) {
        if let Some(h) = self.saving.take() {
            let _ = tokio::time::timeout(grace, h).await;
        }
        self.snapshot(open, true);
        if let Some(h) = self.saving.take()
            && tokio::time::timeout(grace, h).await.is_err()
        {
            tracing::warn!("the snapshot was not stored before shutdown");
        }
    }
}

fn object_name(service: &str) -> String {
    format!("{service}.json.gz")
}

async fn load(store: &object_store::ObjectStore, name: &str) -> anyhow::Result<Option<Snapshot>> {
    let mut object = match store.get(object_name(name)).await {
        Ok(o) => o,
        Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await?;
    let mut json = Vec::new();
    GzDecoder::new(bytes.as_slice()).read_to_end(&mut json)?;
    Ok(Some(serde_json::from_slice(&json)?))
}

async fn save(store: &object_store::ObjectStore, name: &str, s: &Snapshot) -> anyhow::Result<()> {
    let json = serde_json::to_vec(s)?;
    let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
    gz.write_all(&json)?;
    let bytes = gz.finish()?;
    store.put(name, &mut bytes.as_slice()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skynet_protocol::{Event, EventKind, JobId, JobRequest};

    #[test]
    fn snapshots_round_trip_through_their_encoding() {
        let mut open = Open::default();
        let id = JobId::parse("j").unwrap();
        open.follow(
            3,
            &Event::now(
                id.clone(),
                EventKind::Received {
                    request: JobRequest::from_slice(br#"{"goal":"g"}"#).unwrap(),
                },
            ),
        );
        let s = Snapshot {
            version: VERSION,
            stream: "1".into(),
            open,
        };
        let json = serde_json::to_vec(&s).unwrap();
        let back: Snapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.open, s.open);
        assert_eq!(back.open.position, 3);
        assert!(back.open.get(&id).is_some());
    }
}
