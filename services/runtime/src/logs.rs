//! Reading job output from `SKYNET_LOGS`: everything stored so far, or live from the start.

use std::time::Duration;

use async_nats::jetstream::{
    Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
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

/// One message as stored in a stream.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub headers: Option<async_nats::HeaderMap>,
    pub payload: Bytes,
}

/// Messages asked for in one batched direct get.
const DIRECT_BATCH: usize = 256;

/// How long one batched direct get may take.
const DIRECT_WAIT: Duration = Duration::from_secs(10);

/// One batch of a batched direct get.
#[derive(Debug, Default)]
pub struct Batch {
    /// The messages, oldest first.
    pub records: Vec<Record>,
    /// Whether messages past the batch are left on the subject (as the server counted
    /// them when it sent the batch).
    pub more: bool,
}

/// Up to `batch` messages of stream `stream` on `subject` (wildcards allowed) from stream
/// sequence `from` on, with one batched direct get (ADR-31: one request, the messages,
/// then an end-of-batch mark). It creates no consumer: nothing is left behind on the
/// server, and the messages come back without reply subjects, so a reader allowed to
/// answer requests does not make the server remember one reply permission per message.
pub async fn direct_batch(
    js: &Context,
    stream: &str,
    subject: &str,
    from: u64,
    batch: usize,
) -> anyhow::Result<Batch> {
    let client = js.client();
    let api = format!("$JS.API.DIRECT.GET.{stream}");
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    let request = serde_json::json!({
        "seq": from.max(1),
        "next_by_subj": subject,
        "batch": batch,
    });
    client
        .publish_with_reply(api, inbox, request.to_string().into())
        .await?;
    let mut out = Batch::default();
    let read = async {
        while let Some(msg) = replies.next().await {
            match msg.status.map(|s| s.as_u16()) {
                // End of the batch.
                Some(204) => return anyhow::Ok(()),
                // Nothing (more) on the subject.
                Some(404) => {
                    out.more = false;
                    return Ok(());
                }
                Some(code) => anyhow::bail!(
                    "reading {subject}: {code} {}",
                    msg.description.as_deref().unwrap_or_default()
                ),
                None => {}
            }
            let header = |name: &str| {
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
            };
            let Some(seq) = header("Nats-Sequence") else {
                anyhow::bail!("reading {subject}: a message without its sequence");
            };
            out.more = header("Nats-Num-Pending").is_some_and(|n| n > 0);
            out.records.push(Record {
                seq,
                headers: msg.headers.clone(),
                payload: msg.payload.clone(),
            });
        }
        anyhow::bail!("reading {subject}: the connection closed")
    };
    let read = tokio::time::timeout(DIRECT_WAIT, read).await;
    let _ = replies.unsubscribe().await;
    read.map_err(|_| anyhow::anyhow!("reading {subject} timed out"))??;
    if out.records.is_empty() {
        out.more = false;
    }
    Ok(out)
}

/// Every message stored on `subject` in stream `stream` up to now, oldest first, with its
/// sequence, read with batched direct gets ([`direct_batch`]), so a read creates no
/// consumer: a service that reads many jobs (the archiver over a long history, the
/// dispatcher refreshing a job) leaves nothing behind on the server.
pub async fn read_subject(
    js: &Context,
    stream: &str,
    subject: &str,
) -> anyhow::Result<Vec<Record>> {
    let mut out: Vec<Record> = Vec::new();
    let mut from = 1u64;
    loop {
        let batch = direct_batch(js, stream, subject, from, DIRECT_BATCH).await?;
        let more = batch.more;
        out.extend(batch.records);
        match out.last() {
            Some(last) if more => from = last.seq + 1,
            _ => return Ok(out),
        }
    }
}

/// The output of `job` stored so far.
pub async fn read_all(js: &Context, job: &JobId) -> anyhow::Result<Vec<LogMsg>> {
    Ok(read_subject(js, streams::LOGS, &subjects::logs(job))
        .await?
        .into_iter()
        .map(|r| LogMsg::from_message(r.seq, r.headers.as_ref(), r.payload))
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
            name: Some(streams::ordered_consumer_name()),
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
        Ok(LogMsg::from_message(
            seq,
            m.headers.as_ref(),
            m.payload.clone(),
        ))
    }))
}

/// Builds one page of a `jobs.logs` reply: the output from byte `offset` (counted over the
/// raw bytes of every chunk, in order), at most `max_bytes` of it.
pub fn page(
    job: &JobId,
    source: &str,
    msgs: &[LogMsg],
    offset: u64,
    max_bytes: u64,
) -> skynet_protocol::api::LogsReply {
    use skynet_protocol::api::{LogChunk, LogsReply};
    let mut pos = 0u64;
    let mut taken = 0u64;
    let mut chunks: Vec<LogChunk> = Vec::new();
    let mut output = String::new();
    let mut complete = true;
    for m in msgs {
        let len = m.data.len() as u64;
        let (start, end) = (pos, pos + len);
        pos = end;
        if end <= offset {
            continue;
        }
        if taken >= max_bytes {
            complete = false;
            break;
        }
        let from = offset.saturating_sub(start) as usize;
        let room = (max_bytes - taken) as usize;
        let to = (from + room).min(m.data.len());
        let slice = &m.data[from..to];
        taken += slice.len() as u64;
        let text = String::from_utf8_lossy(slice);
        output.push_str(&text);
        match chunks.last_mut() {
            Some(last) if last.step == m.step && last.stream == m.stream => {
                last.data.push_str(&text)
            }
            _ => chunks.push(LogChunk {
                step: m.step,
                stream: m.stream.clone(),
                data: text.into_owned(),
            }),
        }
        if to < m.data.len() {
            complete = false;
            break;
        }
    }
    LogsReply {
        job_id: job.clone(),
        source: source.to_owned(),
        output,
        chunks,
        offset,
        next_offset: offset + taken,
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(stream: &str, step: usize, data: &str) -> LogMsg {
        LogMsg {
            seq: 0,
            stream: stream.into(),
            step: Some(step),
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn pages_cover_the_output_exactly_once() {
        let job = JobId::parse("j").unwrap();
        let msgs = vec![
            msg("stdout", 0, "hello "),
            msg("stdout", 0, "world\n"),
            msg("stderr", 1, "oops\n"),
        ];
        let all = page(&job, "live", &msgs, 0, 1 << 20);
        assert_eq!(all.output, "hello world\noops\n");
        assert!(all.complete);
        assert_eq!(all.chunks.len(), 2);
        assert_eq!(all.chunks[0].data, "hello world\n");

        let mut out = String::new();
        let mut offset = 0;
        loop {
            let p = page(&job, "live", &msgs, offset, 4);
            out.push_str(&p.output);
            offset = p.next_offset;
            if p.complete {
                break;
            }
        }
        assert_eq!(out, all.output);
    }
}
