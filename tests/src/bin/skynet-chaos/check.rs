//! The invariants the soak checks at the end, each a row of the table with its count and
//! its violations.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use futures::StreamExt;
use skynet_protocol::lifecycle::Job;
use skynet_protocol::{Event, EventKind, JobId, JobState, streams, subjects};

use crate::load::{Kind, Planned};

/// One row of the table.
pub struct Row {
    pub name: String,
    pub count: usize,
    pub violations: Vec<String>,
}

impl Row {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            count: 0,
            violations: Vec::new(),
        }
    }
}

/// Every message of `stream` up to its last sequence now, as (subject, seq, message).
async fn read_all(
    js: &jetstream::Context,
    stream: &str,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let mut s = js.get_stream(stream).await?;
    let last = s.info().await?.state.last_sequence;
    if last == 0 {
        return Ok(vec![]);
    }
    let consumer = s.create_consumer(OrderedConfig::default()).await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(30), messages.next()).await? {
        let m = m?;
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
        out.push(m);
        if seq >= last {
            break;
        }
    }
    Ok(out)
}

/// The jobs the soak's schedule made so far.
pub async fn tick_jobs(js: &jetstream::Context) -> anyhow::Result<Vec<JobId>> {
    let prefix = format!("{}-", crate::load::SCHEDULE);
    Ok(events(js)
        .await?
        .into_keys()
        .filter(|id| id.as_str().starts_with(&prefix))
        .collect())
}

/// Each tick made one job (its id is the tick's), intake saw it once, and the schedule fired.
fn ticks(events: &HashMap<JobId, Vec<(u64, Event)>>, planned: &HashMap<JobId, Planned>) -> Row {
    let mut row = Row::new("no tick fired twice (one job per tick, received once)");
    let mut ticks = std::collections::HashSet::new();
    for (id, p) in planned.iter().filter(|(_, p)| p.kind == Kind::Tick) {
        row.count += 1;
        let _ = p;
        let history = events.get(id).cloned().unwrap_or_default();
        let received = history
            .iter()
            .filter(|(_, e)| e.state() == JobState::Received)
            .count();
        let by = history.iter().find_map(|(_, e)| match &e.kind {
            EventKind::Received { request } => request.requested_by.clone(),
            _ => None,
        });
        let stamp = id.as_str().rsplit('-').next().unwrap_or("").to_owned();
        if received != 1 || by.as_deref() != Some("schedule:chaos-tick") || !ticks.insert(stamp) {
            row.violations
                .push(format!("{id}: received {received}×, requested by {by:?}"));
        }
    }
    if row.count == 0 {
        row.violations.push("the schedule never fired".into());
    }
    row
}

/// Holding a lock: from a job's `dispatched` until its attempt ended (`queued` again, or
/// its end). Two jobs' holds of one lock never overlap.
fn locks(events: &HashMap<JobId, Vec<(u64, Event)>>) -> Row {
    let mut row = Row::new("no lock held after its holder ended (holds never overlap)");
    let mut holds: HashMap<String, Vec<(i64, i64, JobId)>> = HashMap::new();
    for (id, history) in events {
        let mut lock = None;
        let mut from = None;
        for (_, e) in history {
            match &e.kind {
                EventKind::Received { request } => lock = request.lock.clone(),
                EventKind::Planned { lock: l, .. } if lock.is_none() => lock = l.clone(),
                EventKind::Dispatched { .. } => from = Some(at_ms(e)),
                _ if e.state() == JobState::Queued || e.state().is_terminal() => {
                    if let (Some(l), Some(f)) = (&lock, from.take()) {
                        holds
                            .entry(l.clone())
                            .or_default()
                            .push((f, at_ms(e), id.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    for (lock, mut h) in holds {
        h.sort();
        row.count += h.len();
        for pair in h.windows(2) {
            let ((_, end_a, a), (start_b, _, b)) = (&pair[0], &pair[1]);
            if start_b < end_a {
                row.violations.push(format!(
                    "{lock}: {b} was dispatched {} ms before {a} let go",
                    end_a - start_b
                ));
            }
        }
    }
    row
}

/// Every event of every job, in order.
pub async fn events(js: &jetstream::Context) -> anyhow::Result<HashMap<JobId, Vec<(u64, Event)>>> {
    let mut by_job: HashMap<JobId, Vec<(u64, Event)>> = HashMap::new();
    for m in read_all(js, streams::EVENTS).await? {
        let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
        if let Ok(e) = serde_json::from_slice::<Event>(&m.payload) {
            by_job.entry(e.job_id.clone()).or_default().push((seq, e));
        }
    }
    Ok(by_job)
}

/// Every job's output: (attempt, stream, text) chunks.
async fn logs(
    js: &jetstream::Context,
) -> anyhow::Result<HashMap<JobId, Vec<(u32, String, String)>>> {
    let mut by_job: HashMap<JobId, Vec<(u32, String, String)>> = HashMap::new();
    for m in read_all(js, streams::LOGS).await? {
        let Some(job) = subjects::parse_logs(&m.subject) else {
            continue;
        };
        let h = |name: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let attempt = h(subjects::headers::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let stream = h(subjects::headers::STREAM).unwrap_or_default();
        by_job.entry(job).or_default().push((
            attempt,
            stream,
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
    }
    Ok(by_job)
}

/// Marker lines of every job: (attempt, "start"|"end", time ms, worker home).
fn markers(homes: &[PathBuf]) -> HashMap<String, Vec<(u32, String, i64, String)>> {
    let mut out: HashMap<String, Vec<(u32, String, i64, String)>> = HashMap::new();
    for home in homes {
        let Ok(entries) = std::fs::read_dir(home.join("markers")) else {
            continue;
        };
        for e in entries.flatten() {
            let job = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for line in text.lines() {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let [what, attempt, at] = parts.as_slice()
                    && let (Ok(a), Ok(t)) = (attempt.parse(), at.parse())
                {
                    out.entry(job.clone()).or_default().push((
                        a,
                        what.to_string(),
                        t,
                        home.display().to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// Live processes that carry a soak job in their environment.
fn job_processes(jobs: &HashMap<JobId, Planned>) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            let job = environ
                .split(|b| *b == 0)
                .find_map(|v| v.strip_prefix(b"SKYNET_JOB_ID="))?;
            let job = JobId::parse(std::str::from_utf8(job).ok()?).ok()?;
            jobs.contains_key(&job).then(|| (pid, job.to_string()))
        })
        .collect()
}

fn at_ms(e: &Event) -> i64 {
    skynet_protocol::time::parse(&e.at)
        .map(skynet_protocol::time::unix_ms)
        .unwrap_or(0)
}

/// Runs every check.
pub async fn run(
    js: &jetstream::Context,
    client: &Client,
    planned: &HashMap<JobId, Planned>,
    homes: &[PathBuf],
) -> anyhow::Result<(Vec<Row>, BTreeMap<String, usize>)> {
    let events = events(js).await?;
    let logs = logs(js).await?;
    let markers = markers(homes);
    let mut rows = Vec::new();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();

    let mut acked = Row::new("every acked submission became a job");
    let mut terminal = Row::new("every job has exactly one terminal event, the last");
    let mut ledger = Row::new("the ledger's state equals a fresh fold of the stream");
    let mut once = Row::new("no attempt's step ran twice");
    let mut before_end = Row::new("no step ran after its job ended");
    let mut complete = Row::new("succeeded jobs' logs are complete");
    for (id, p) in planned {
        let history = events.get(id).cloned().unwrap_or_default();
        if p.acked {
            acked.count += 1;
            if history.is_empty() {
                acked.violations.push(format!("{id} ({})", p.kind.name()));
            }
        }
        if history.is_empty() {
            continue;
        }
        terminal.count += 1;
        let ends: Vec<&(u64, Event)> = history
            .iter()
            .filter(|(_, e)| e.state().is_terminal())
            .collect();
        let last_terminal = history.last().is_some_and(|(_, e)| e.state().is_terminal());
        if ends.len() != 1 || !last_terminal {
            terminal.violations.push(format!(
                "{id} ({}): {}",
                p.kind.name(),
                history
                    .iter()
                    .map(|(_, e)| e.state().as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        let fold = Job::fold(id.clone(), history.iter().map(|(s, e)| (*s, e)));
        let state = fold
            .state
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        *states
            .entry(format!("{} {}", p.kind.name(), state))
            .or_default() += 1;

        ledger.count += 1;
        // The ledger may still be a moment behind the stream.
        let mut last = None;
        for _ in 0..40 {
            let got = crate::load::call(
                client,
                skynet_protocol::subjects::api::JOBS_GET,
                serde_json::json!({"job_id": id}),
                Duration::from_secs(20),
            )
            .await;
            if let Some(Ok(v)) = &got
                && v["state"] == state
                && v["attempt"] == fold.attempt
                && v["worker"].as_str() == fold.worker.as_ref().map(|w| w.as_str())
            {
                last = None;
                break;
            }
            last = Some(got);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if let Some(got) = last {
            ledger.violations.push(format!(
                "{id}: the ledger says {got:?}; the fold says {state}, attempt {}, worker {:?}",
                fold.attempt, fold.worker
            ));
        }

        let end = ends.first().map(|(_, e)| at_ms(e));
        let marks = markers.get(id.as_str()).cloned().unwrap_or_default();
        let mut starts: HashMap<u32, usize> = HashMap::new();
        for (attempt, what, at, home) in &marks {
            if what == "start" {
                *starts.entry(*attempt).or_default() += 1;
            }
            before_end.count += 1;
            if let Some(end) = end
                && *at > end
            {
                before_end.violations.push(format!(
                    "{id} attempt {attempt}: {what} at {at}, {} ms after it ended ({home})",
                    at - end
                ));
            }
        }
        for (attempt, n) in starts {
            once.count += 1;
            if n > 1 {
                once.violations
                    .push(format!("{id} attempt {attempt} started {n} times"));
            }
        }
        if fold.state == Some(JobState::Succeeded) && p.kind != Kind::Probe {
            complete.count += 1;
            let attempt = fold.attempt;
            let out: String = logs
                .get(id)
                .map(|chunks| {
                    chunks
                        .iter()
                        .filter(|(a, s, _)| *a == attempt && s == "stdout")
                        .map(|(_, _, t)| t.as_str())
                        .collect()
                })
                .unwrap_or_default();
            let want: Vec<String> = (1..=p.lines).map(|i| format!("line-{i}")).collect();
            let got: Vec<&str> = out.lines().collect();
            if got != want {
                complete.violations.push(format!(
                    "{id}: {} lines of {}, e.g. {:?}",
                    got.len(),
                    want.len(),
                    got.iter().take(3).collect::<Vec<_>>()
                ));
            }
        }
    }
    let mut gone = Row::new("ended jobs' processes are gone");
    gone.count = planned.len();
    for (pid, job) in job_processes(planned) {
        gone.violations
            .push(format!("pid {pid} of job {job} still runs"));
    }
    rows.extend([acked, terminal, ledger, once, before_end, complete, gone]);
    rows.push(ticks(&events, planned));
    rows.push(locks(&events));
    Ok((rows, states))
}
