//! Reading job output from `SKYNET_LOGS`: everything stored so far, or live from the start.

use std::time::Duration;

use async_nats::jetstream::{
    self, Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    stream::DirectGetErrorKind,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use skynet_protocol::{JobId, streams, subjects};

/// One chunk of a job's output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMsg {
    pub seq: u64,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub step: Option<usize>,
    pub data: Bytes,
}

impl LogMsg {
    fn from_message(seq: u64, headers: Option<&async_nats::HeaderMap>, data: Bytes) -> Self {
        let get = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        Self {
            seq,
            stream: get(subjects::headers::STREAM).unwrap_or_else(|| "stdout".into()),
            step: get(subjects::headers::STEP).and_then(|s| s.parse().ok()),
            data,
        }
    }
}

/// Every message stored on `subject` in `stream` up to now, oldest first, with its sequence.
pub async fn read_subject(
    stream: &jetstream::stream::Stream<()>,
    subject: &str,
) -> anyhow::Result<Vec<(u64, jetstream::Message)>> {
    let last = match stream.direct_get_last_for_subject(subject).await {
        Ok(m) => m.sequence,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject.into(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    let read = async {
        while let Some(msg) = messages.next().await {
            let msg = msg?;
            let seq = msg
                .info()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .stream_sequence;
            out.push((seq, msg));
            if seq >= last {
                break;
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .map_err(|_| anyhow::anyhow!("reading {subject} timed out"))??;
    Ok(out)
}

/// The output of `job` stored so far.
pub async fn read_all(js: &Context, job: &JobId) -> anyhow::Result<Vec<LogMsg>> {
    let stream = js.get_stream_no_info(streams::LOGS).await?;
    Ok(read_subject(&stream, &subjects::logs(job))
        .await?
        .into_iter()
        .map(|(seq, m)| LogMsg::from_message(seq, m.headers.as_ref(), m.payload.clone()))
        .collect())
}

/// The output of `job` from the start, then live, for ever.
pub async fn follow(
    js: &Context,
    job: &JobId,
) -> anyhow::Result<impl Stream<Item = anyhow::Result<LogMsg>> + Send + use<>> {
    let stream = js.get_stream_no_info(streams::LOGS).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::logs(job),
            deliver_policy: DeliverPolicy::All,
            max_expires: Duration::from_secs(5),
            ..Default::default()
        })
        .await?;
    let messages = consumer.messages().await?;
    Ok(messages.map(|m| {
        let m = m.map_err(|e| anyhow::anyhow!("following logs: {e}"))?;
        let seq = m
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        Ok(LogMsg::from_message(seq, m.headers.as_ref(), m.payload.clone()))
    }))
}
