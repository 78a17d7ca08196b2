//! The event log: appending state changes with optimistic concurrency, reading a job's
//! latest event or whole history, and following the stream from a position.
//!
//! Every writer passes the sequence of the event it based its decision on; JetStream refuses
//! the write if another event landed on that job in between (`Nats-Expected-Last-Subject-
//! Sequence`), and the loser re-reads and re-decides. Each event also carries a `Nats-Msg-Id`
//! derived from job, state and attempt, so a retried publish is not stored twice.

use std::time::Duration;

use async_nats::jetstream::{
    self, Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    context::PublishErrorKind,
    message::PublishMessage,
    stream::DirectGetErrorKind,
};
use futures::{Stream, StreamExt};
use skynet_protocol::{Event, JobId, JobState, streams, subjects};

/// An event and its position in `SKYNET_EVENTS`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub seq: u64,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another event landed on the job first; re-read and decide again.
    #[error("job changed concurrently")]
    Conflict,
    /// An event with the same job, state and attempt was stored already (at this sequence),
    /// possibly with other content: re-read before relying on it.
    #[error("event already stored at {0}")]
    Duplicate(u64),
    #[error("illegal transition {from:?} -> {to}")]
    Illegal {
        from: Option<JobState>,
        to: JobState,
    },
    #[error("event log: {0}")]
    Nats(String),
}

/// Handle on `SKYNET_EVENTS`.
#[derive(Clone)]
pub struct EventLog {
    js: Context,
    stream: jetstream::stream::Stream<()>,
}

/// The `Nats-Msg-Id` of an event: one per job, state and attempt.
pub fn msg_id(event: &Event) -> String {
    format!(
        "{}:{}:{}",
        event.job_id,
        event.state(),
        event.kind.attempt().unwrap_or(0)
    )
}

impl EventLog {
    pub async fn open(js: Context) -> anyhow::Result<Self> {
        let stream = js.get_stream_no_info(streams::EVENTS).await?;
        Ok(Self { js, stream })
    }

    pub fn context(&self) -> &Context {
        &self.js
    }

    /// Appends `event`. `expect` is the sequence of the job's latest event as the caller
    /// saw it (`Some(0)` for a job with no events yet); `None` skips the check.
    pub async fn append(&self, event: &Event, expect: Option<u64>) -> Result<u64, AppendError> {
        let mut publish = PublishMessage::build()
            .payload(event.to_json().into())
            .message_id(msg_id(event));
        if let Some(seq) = expect {
            publish = publish.expected_last_subject_sequence(seq);
        }
        let subject = subjects::events(&event.job_id);
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| AppendError::Nats(e.to_string()))?
            .await;
        match ack {
            Ok(ack) if ack.duplicate => Err(AppendError::Duplicate(ack.sequence)),
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(AppendError::Conflict),
            Err(e) => Err(AppendError::Nats(e.to_string())),
        }
    }

    /// The latest event of `job`, if it has any.
    pub async fn last(&self, job: &JobId) -> anyhow::Result<Option<Stored>> {
        match self
            .stream
            .direct_get_last_for_subject(subjects::events(job))
            .await
        {
            Ok(msg) => {
                let event: Event = serde_json::from_slice(&msg.payload)?;
                Ok(Some(Stored {
                    seq: msg.sequence,
                    event,
                }))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every event of `job`, oldest first.
    pub async fn history(&self, job: &JobId) -> anyhow::Result<Vec<Stored>> {
        let messages = crate::logs::read_subject(&self.stream, &subjects::events(job)).await?;
        Ok(messages
            .into_iter()
            .filter_map(
                |(seq, msg)| match serde_json::from_slice::<Event>(&msg.payload) {
                    Ok(event) => Some(Stored { seq, event }),
                    Err(e) => {
                        tracing::warn!(seq, error = %e, "unreadable event skipped");
                        None
                    }
                },
            )
            .collect())
    }

    /// Follows every job's events from stream sequence `from` (1 = the beginning), in order,
    /// for ever. Survives server restarts: the ordered consumer recreates itself where it left
    /// off. Unreadable events are logged and skipped.
    pub async fn follow(
        &self,
        from: u64,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<Stored>> + Send + use<>> {
        let deliver_policy = if from <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: from,
            }
        };
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: subjects::EVENTS_ALL.into(),
                deliver_policy,
                // Short pulls so a restarted server is noticed within seconds.
                max_expires: Duration::from_secs(5),
                ..Default::default()
            })
            .await?;
        let messages = consumer.messages().await?;
        Ok(messages.filter_map(|msg| async move {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => return Some(Err(anyhow::anyhow!("following events: {e}"))),
            };
            let seq = match msg.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => return Some(Err(anyhow::anyhow!("event without info: {e}"))),
            };
            match serde_json::from_slice::<Event>(&msg.payload) {
                Ok(event) => Some(Ok(Stored { seq, event })),
                Err(e) => {
                    tracing::warn!(seq, subject = %msg.subject, error = %e, "unreadable event skipped");
                    None
                }
            }
        }))
    }

    /// Reads the job's latest event, lets `decide` pick the next one, and appends it; on a
    /// concurrent change it re-reads and asks again. Returns the event written (or `None`
    /// when `decide` declined) together with the latest event it based that on.
    pub async fn transition<F>(&self, job: &JobId, mut decide: F) -> anyhow::Result<Transition>
    where
        F: FnMut(Option<&Stored>) -> Option<skynet_protocol::EventKind>,
    {
        for _ in 0..8 {
            let last = self.last(job).await?;
            let Some(kind) = decide(last.as_ref()) else {
                return Ok(Transition::Declined(last));
            };
            let from = last.as_ref().map(|s| s.event.state());
            if !JobState::can_follow(from, kind.state()) {
                return Err(AppendError::Illegal {
                    from,
                    to: kind.state(),
                }
                .into());
            }
            let event = Event::now(job.clone(), kind);
            match self
                .append(&event, Some(last.as_ref().map_or(0, |s| s.seq)))
                .await
            {
                Ok(seq) => return Ok(Transition::Written(Stored { seq, event })),
                Err(AppendError::Conflict | AppendError::Duplicate(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("job {job} keeps changing; gave up deciding")
    }
}

/// Where a replaying follower is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Rebuilding state from history: do not act yet.
    Replay,
    /// This event completes the history as it was at start: reconcile, then act.
    CaughtUp,
    /// A new event: act on it.
    Live,
}

/// Every event from the start, each tagged with whether it is history or news: the way a
/// service that keeps its state only in memory rebuilds it after a restart.
pub struct Replay {
    events: std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<Stored>> + Send>>,
    caught_up_at: u64,
    live: bool,
}

impl Replay {
    /// True once history has been replayed (from the start when there was none).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The next event and its phase; `None` if the stream ended.
    pub async fn next(&mut self) -> Option<anyhow::Result<(Stored, Phase)>> {
        let stored = match self.events.next().await? {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let phase = if self.live {
            Phase::Live
        } else if stored.seq >= self.caught_up_at {
            self.live = true;
            Phase::CaughtUp
        } else {
            Phase::Replay
        };
        Some(Ok((stored, phase)))
    }
}

impl EventLog {
    /// Follows every job's events from the start; see [`Replay`].
    pub async fn replay(&self) -> anyhow::Result<Replay> {
        let caught_up_at = self
            .js
            .get_stream(streams::EVENTS)
            .await?
            .info()
            .await?
            .state
            .last_sequence;
        Ok(Replay {
            events: Box::pin(self.follow(1).await?),
            caught_up_at,
            live: caught_up_at == 0,
        })
    }
}

/// What [`EventLog::transition`] did.
#[derive(Debug)]
pub enum Transition {
    Written(Stored),
    Declined(Option<Stored>),
}
