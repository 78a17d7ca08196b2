//! The event log: the one way anybody writes a job's state, reading a job afresh, and
//! following the stream from a position.
//!
//! [`EventLog::append`] takes the job as the writer saw it ([`Job`], the one fold every
//! service uses) and refuses, before publishing, an event that may not follow it. It
//! publishes with `Nats-Expected-Last-Subject-Sequence` set to the job's last position, so
//! JetStream refuses the write if another event landed on that job in between; the loser
//! reads the job again ([`EventLog::job`]) and decides again. Each event also carries a
//! `Nats-Msg-Id` derived from job, state and attempt, so a retried publish is stored once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{
    self, Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    context::PublishErrorKind,
    message::PublishMessage,
    stream::DirectGetErrorKind,
};
use futures::{Stream, StreamExt};
use skynet_protocol::lifecycle::{Illegal, Job};
use skynet_protocol::{Event, EventKind, JobId, Step, streams, subjects};

/// The event a stored record holds; an unreadable one is logged and skipped.
fn readable(r: crate::logs::Record) -> Option<Stored> {
    match serde_json::from_slice::<Event>(&r.payload) {
        Ok(event) => Some(Stored { seq: r.seq, event }),
        Err(e) => {
            tracing::warn!(seq = r.seq, error = %e, "unreadable event skipped");
            None
        }
    }
}

/// Events asked for in one direct get while catching up with the stream.
const CATCH_UP_BATCH: usize = 512;

/// An event and its position in `SKYNET_EVENTS`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub seq: u64,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another event landed on the job first; read it again and decide again.
    #[error("job changed concurrently")]
    Conflict,
    /// An event with the same job, state and attempt was stored already (at this sequence),
    /// possibly with other content: read the job again before relying on it.
    #[error("event already stored at {0}")]
    Duplicate(u64),
    /// The event may not follow the job as the writer saw it; nothing was published.
    #[error(transparent)]
    Illegal(#[from] Illegal),
    #[error("event log: {0}")]
    Nats(String),
}

impl AppendError {
    /// True when the job moved on under the writer: read it again and decide again.
    pub fn is_race(&self) -> bool {
        matches!(self, AppendError::Conflict | AppendError::Duplicate(_))
    }
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

/// How long a follower's pull waits before it asks again: short, so a restarted server is
/// noticed (and the consumer recreated) within a couple of seconds.
const FOLLOW_EXPIRES: Duration = Duration::from_secs(2);

impl EventLog {
    pub async fn open(js: Context) -> anyhow::Result<Self> {
        let stream = js.get_stream_no_info(streams::EVENTS).await?;
        Ok(Self { js, stream })
    }

    pub fn context(&self) -> &Context {
        &self.js
    }

    /// Appends `kind` as the next event of `job` (the job as the caller saw it: a fresh
    /// [`Job::new`] for one with no events yet). Refuses an illegal event without
    /// publishing; a race with another writer comes back as [`AppendError::is_race`].
    pub async fn append(&self, job: &Job, kind: EventKind) -> Result<Stored, AppendError> {
        job.check(&kind)?;
        let event = Event::now(job.id.clone(), kind);
        let publish = PublishMessage::build()
            .payload(event.to_json().into())
            .message_id(msg_id(&event))
            .expected_last_subject_sequence(job.seq);
        let subject = subjects::events(&event.job_id);
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| AppendError::Nats(e.to_string()))?
            .await;
        match ack {
            Ok(ack) if ack.duplicate => Err(AppendError::Duplicate(ack.sequence)),
            Ok(ack) => Ok(Stored {
                seq: ack.sequence,
                event,
            }),
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
        let messages =
            crate::logs::read_subject(&self.js, streams::EVENTS, &subjects::events(job)).await?;
        Ok(messages.into_iter().filter_map(readable).collect())
    }

    /// The job as its whole history says, read afresh: what a writer decides on when its own
    /// view may lag.
    pub async fn job(&self, id: &JobId) -> anyhow::Result<Job> {
        let history = self.history(id).await?;
        Ok(Job::fold(
            id.clone(),
            history.iter().map(|s| (s.seq, &s.event)),
        ))
    }

    /// The steps of the plan whose `planned` event is at `seq`.
    pub async fn steps_at(&self, seq: u64) -> anyhow::Result<Arc<Vec<Step>>> {
        let msg = self.stream.direct_get(seq).await?;
        match serde_json::from_slice::<Event>(&msg.payload)?.kind {
            EventKind::Planned { steps, .. } => Ok(Arc::new(steps)),
            other => anyhow::bail!("event {seq} is {}, not a plan", other.state()),
        }
    }

    /// Makes sure `job` carries its plan's steps, reading them from the log if needed.
    pub async fn with_steps(&self, job: &mut Job) -> anyhow::Result<Arc<Vec<Step>>> {
        if let Some(s) = &job.steps {
            return Ok(s.clone());
        }
        let Some(seq) = job.plan.as_ref().map(|p| p.seq) else {
            anyhow::bail!("job {} has no plan", job.id);
        };
        let steps = self.steps_at(seq).await?;
        job.steps = Some(steps.clone());
        Ok(steps)
    }

    /// Information about the stream: (created, first sequence, last sequence).
    pub async fn position(&self) -> anyhow::Result<(String, u64, u64)> {
        let info = self
            .js
            .get_stream(streams::EVENTS)
            .await?
            .info()
            .await?
            .clone();
        Ok((
            info.created.unix_timestamp_nanos().to_string(),
            info.state.first_sequence,
            info.state.last_sequence,
        ))
    }

    /// Follows every job's events from stream sequence `from` (1 = the beginning), in order,
    /// for ever. What the stream already holds when this is called is read with batched
    /// direct gets ([`crate::logs::direct_batch`]): a long history is read fast, and
    /// without the reply permission the server would otherwise remember for every message
    /// it delivers through a consumer to a service that answers requests (hundreds of
    /// megabytes on the server for a replay of a few hundred thousand events). From there
    /// an ordered consumer delivers what comes. Survives server restarts: when the
    /// connection comes back the consumer is made again, after the last event delivered.
    /// Unreadable events are logged and skipped.
    pub async fn follow(
        &self,
        from: u64,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<Stored>> + Send + use<>> {
        let (_, _, last) = self.position().await?;
        Ok(self.follow_known(from, last))
    }

    /// [`EventLog::follow`], for a caller that has just read the stream's last sequence
    /// ([`EventLog::position`]): what is stored up to `last` is read by direct gets.
    pub fn follow_known(
        &self,
        from: u64,
        last: u64,
    ) -> impl Stream<Item = anyhow::Result<Stored>> + Send + use<> {
        let client = self.js.client();
        let connects = crate::connect::connects(&client);
        struct State {
            log: EventLog,
            client: async_nats::Client,
            inner: Option<std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<Stored>> + Send>>>,
            next: u64,
            connects: u64,
            /// Read by direct gets up to here (0 once done).
            catch_up_to: u64,
            read: std::collections::VecDeque<Stored>,
        }
        let state = State {
            log: self.clone(),
            client,
            inner: None,
            next: from.max(1),
            connects,
            catch_up_to: if last >= from.max(1) { last } else { 0 },
            read: Default::default(),
        };
        futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(stored) = st.read.pop_front() {
                    st.next = stored.seq + 1;
                    return Some((Ok(stored), st));
                }
                if st.catch_up_to >= st.next {
                    match st.log.read_batch(st.next).await {
                        Ok((read, more)) => {
                            // A batch that ends the stream (or a replica that lags) hands
                            // over to the consumer, which reads from where this stopped.
                            let past = read.last().is_none_or(|s| s.seq >= st.catch_up_to);
                            if !more || past {
                                st.catch_up_to = 0;
                            }
                            st.read
                                .extend(read.into_iter().filter(|s| s.seq >= st.next));
                        }
                        Err(e) => {
                            // The consumer reads the same events, only slower.
                            tracing::debug!(error = %e, from = st.next, "catching up by direct gets; following with a consumer instead");
                            st.catch_up_to = 0;
                        }
                    }
                    continue;
                }
                let Some(inner) = st.inner.as_mut() else {
                    st.connects = crate::connect::connects(&st.client);
                    match st.log.ordered(st.next).await {
                        Ok(s) => st.inner = Some(Box::pin(s)),
                        Err(e) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            return Some((Err(e), st));
                        }
                    }
                    continue;
                };
                tokio::select! {
                    item = inner.next() => match item {
                        Some(Ok(stored)) => {
                            st.next = stored.seq + 1;
                            return Some((Ok(stored), st));
                        }
                        Some(Err(e)) => return Some((Err(e), st)),
                        None => st.inner = None,
                    },
                    _ = crate::connect::reconnected(&st.client, st.connects) => {
                        tracing::debug!(from = st.next, "reconnected; following the events anew");
                        st.inner = None;
                    }
                }
            }
        })
    }

    /// One batch of events from stream sequence `from` on, read by a direct get, and
    /// whether more are stored after it. Unreadable events are logged and skipped.
    async fn read_batch(&self, from: u64) -> anyhow::Result<(Vec<Stored>, bool)> {
        // The stream holds only events: asking for every subject (`>`) rather than for
        // `skynet.events.>` spares the server matching each job's subject to count what
        // is left after every message it sends.
        let batch =
            crate::logs::direct_batch(&self.js, streams::EVENTS, ">", from, CATCH_UP_BATCH).await?;
        let read = batch.records.into_iter().filter_map(readable).collect();
        Ok((read, batch.more))
    }

    /// One ordered consumer over every job's events from `from`.
    async fn ordered(
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
                name: Some(streams::ordered_consumer_name()),
                filter_subject: subjects::EVENTS_ALL.into(),
                deliver_policy,
                max_expires: FOLLOW_EXPIRES,
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

    /// Reads the job afresh, lets `decide` pick the next event, and appends it; on a race it
    /// reads again and asks again. Returns the event written (or `None` when `decide`
    /// declined) together with the job it based that on.
    pub async fn transition<F>(&self, id: &JobId, mut decide: F) -> anyhow::Result<Transition>
    where
        F: FnMut(&Job) -> Option<EventKind>,
    {
        for _ in 0..8 {
            let job = self.job(id).await?;
            let Some(kind) = decide(&job) else {
                return Ok(Transition::Declined(Box::new(job)));
            };
            match self.append(&job, kind).await {
                Ok(stored) => return Ok(Transition::Written(Box::new(stored))),
                Err(e) if e.is_race() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("job {id} keeps changing; gave up deciding")
    }
}

/// What [`EventLog::transition`] did.
#[derive(Debug)]
pub enum Transition {
    Written(Box<Stored>),
    Declined(Box<Job>),
}
