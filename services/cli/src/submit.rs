//! `skynet submit` and watching a job: states as they pass and the live output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    message::PublishMessage,
    stream::DirectGetErrorKind,
};
use clap::Args;
use futures::{Stream, StreamExt};
use skynet_protocol::{Event, EventKind, JobId, JobRequest, Step, WorkerId, streams, subjects};
use skynet_runtime::ConfigError;
use skynet_runtime::logs::LogMsg;

use crate::render;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// What you want done, in words (the planner writes the steps).
    #[arg(long)]
    goal: Option<String>,

    /// A JobRequest as JSON (`-` reads standard input).
    #[arg(long)]
    file: Option<PathBuf>,

    /// Run on this worker.
    #[arg(long)]
    worker: Option<String>,

    /// Run on a worker with this label (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,

    /// The job's time limit in seconds.
    #[arg(long = "timeout")]
    timeout_s: Option<u64>,

    /// How often the job may be dispatched again if its worker is lost.
    #[arg(long)]
    retries: Option<u32>,

    /// The job's id (default: a new random id). Submitting an id again never makes a
    /// second job.
    #[arg(long)]
    id: Option<String>,

    /// Directory the command runs in (on the worker).
    #[arg(long)]
    cwd: Option<String>,

    /// Show the states as they pass and the live output, then exit with the job's exit code.
    #[arg(long)]
    wait: bool,

    /// The command: one argument is a shell command line (`"make && ls | wc -l"`), several
    /// are run as-is without a shell (`-- cargo test --release`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// Builds the request from the flags.
fn request(args: &SubmitArgs) -> Result<JobRequest, ConfigError> {
    let mut req = match &args.file {
        Some(path) => {
            let bytes = if path.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                    .map_err(|e| ConfigError::new("--file", e.to_string()))?;
                buf
            } else {
                std::fs::read(path)
                    .map_err(|e| ConfigError::new("--file", format!("{}: {e}", path.display())))?
            };
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| ConfigError::new("--file", format!("not JSON: {e}")))?;
            serde_json::from_value::<JobRequest>(v)
                .map_err(|e| ConfigError::new("--file", format!("not a JobRequest: {e}")))?
        }
        None => JobRequest {
            id: None,
            goal: None,
            steps: None,
            worker: None,
            labels: vec![],
            timeout_s: None,
            retries: 0,
            requested_by: None,
            origin: None,
            ..Default::default()
        },
    };
    if let Some(goal) = &args.goal {
        req.goal = Some(goal.clone());
    }
    if !args.command.is_empty() {
        if req.steps.is_some() {
            return Err(ConfigError::new(
                "--",
                "the file already has steps; give either",
            ));
        }
        let step = if args.command.len() == 1 {
            Step::Shell {
                cmd: Some(args.command[0].clone()),
                argv: None,
                cwd: args.cwd.clone(),
                env: Default::default(),
                timeout_s: None,
                artifacts: vec![],
            }
        } else {
            Step::Shell {
                cmd: None,
                argv: Some(args.command.clone()),
                cwd: args.cwd.clone(),
                env: Default::default(),
                timeout_s: None,
                artifacts: vec![],
            }
        };
        req.steps = Some(vec![step]);
    } else if args.cwd.is_some() {
        return Err(ConfigError::new(
            "--cwd",
            "only applies to a command after --",
        ));
    }
    if let Some(w) = &args.worker {
        req.worker =
            Some(WorkerId::parse(w).map_err(|e| ConfigError::new("--worker", e.to_string()))?);
    }
    if !args.labels.is_empty() {
        req.labels = args.labels.clone();
    }
    if let Some(t) = args.timeout_s {
        req.timeout_s = Some(t);
    }
    if let Some(r) = args.retries {
        req.retries = r;
    }
    if let Some(id) = &args.id {
        req.id = Some(JobId::parse(id).map_err(|e| ConfigError::new("--id", e.to_string()))?);
    }
    req.id.get_or_insert_with(JobId::generate);
    req.requested_by.get_or_insert_with(crate::me);
    req.validate()
        .map_err(|e| ConfigError::new("submit", e.to_string()))?;
    Ok(req)
}

pub async fn submit(client: &async_nats::Client, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let req = request(&args)?;
    let id = req.id.clone().unwrap_or_else(JobId::generate);
    let js = jetstream::new(client.clone());
    // Subscribe before submitting, so nothing is missed.
    let watch = if args.wait {
        Some((events(&js, &id).await?, logs(&js, &id).await?))
    } else {
        None
    };
    js.send_publish(
        subjects::SUBMIT,
        PublishMessage::build()
            .payload(serde_json::to_vec(&req)?.into())
            .message_id(id.as_str()),
    )
    .await?
    .await
    .map_err(|e| anyhow::anyhow!("storing the request: {e}"))?;
    let Some((events, logs)) = watch else {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!("job {id}");
    let end = watch_job(&js, &id, events, logs, true).await?;
    Ok(exit_code(&end))
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<Event>> + Send>>;
type LogStream = std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<LogMsg>> + Send>>;

async fn events(js: &jetstream::Context, job: &JobId) -> anyhow::Result<EventStream> {
    let stream = js.get_stream_no_info(streams::EVENTS).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::events(job),
            deliver_policy: DeliverPolicy::All,
            max_expires: Duration::from_secs(5),
            ..Default::default()
        })
        .await?;
    let messages = consumer.messages().await?;
    Ok(Box::pin(messages.map(|m| {
        let m = m.map_err(|e| anyhow::anyhow!("following events: {e}"))?;
        Ok(serde_json::from_slice::<Event>(&m.payload)?)
    })))
}

async fn logs(js: &jetstream::Context, job: &JobId) -> anyhow::Result<LogStream> {
    Ok(Box::pin(skynet_runtime::logs::follow(js, job).await?))
}

/// Prints states (when `show_states`) and output until the job ends; returns the end.
async fn watch_job(
    js: &jetstream::Context,
    job: &JobId,
    mut events: EventStream,
    mut logs: LogStream,
    show_states: bool,
) -> anyhow::Result<Event> {
    let mut last_log = 0u64;
    let end = loop {
        tokio::select! {
            e = events.next() => match e {
                Some(Ok(e)) => {
                    // The end is shown after the last of the output.
                    if e.state().is_terminal() {
                        break e;
                    }
                    if show_states {
                        eprintln!("{}", render::event_line(&e));
                    }
                }
                Some(Err(e)) => return Err(e),
                None => anyhow::bail!("event stream ended"),
            },
            l = logs.next() => match l {
                Some(Ok(m)) => {
                    last_log = m.seq;
                    render::print_chunk(&m.stream, &m.data);
                }
                Some(Err(e)) => return Err(e),
                None => anyhow::bail!("log stream ended"),
            },
        }
    };
    // Output is relayed before the end is recorded: read up to the last chunk stored.
    let stream = js.get_stream_no_info(streams::LOGS).await?;
    let stored_last = match stream
        .direct_get_last_for_subject(subjects::logs(job))
        .await
    {
        Ok(m) => m.sequence,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    };
    while last_log < stored_last {
        match tokio::time::timeout(Duration::from_secs(5), logs.next()).await {
            Ok(Some(Ok(m))) => {
                last_log = m.seq;
                render::print_chunk(&m.stream, &m.data);
            }
            _ => break,
        }
    }
    if show_states {
        eprintln!("{}", render::event_line(&end));
    }
    Ok(end)
}

/// The exit status `--wait` ends with.
pub fn exit_code(end: &Event) -> ExitCode {
    let code = match &end.kind {
        EventKind::Succeeded(_) => 0,
        EventKind::Failed(f) => f
            .steps
            .iter()
            .find_map(|s| s.exit_code.filter(|c| *c != 0))
            .map(|c| c.clamp(1, 255) as u8)
            .unwrap_or(1),
        EventKind::TimedOut(_) => 124,
        EventKind::Cancelled(_) | EventKind::ForceCancelled(_) => 130,
        EventKind::Denied { .. } => 77,
        EventKind::Rejected { .. } => 65,
        _ => 1,
    };
    ExitCode::from(code)
}

/// Waits for the job's end (at most a minute).
pub async fn wait_terminal(client: &async_nats::Client, job: &JobId) -> anyhow::Result<Event> {
    let js = jetstream::new(client.clone());
    let mut events = events(&js, job).await?;
    let wait = async {
        while let Some(e) = events.next().await {
            let e = e?;
            if e.state().is_terminal() {
                return Ok(e);
            }
        }
        anyhow::bail!("event stream ended")
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .map_err(|_| anyhow::anyhow!("the job did not end within a minute"))?
}

/// `skynet logs -f`: the output from the start, live until the job ends.
pub async fn follow_logs(client: &async_nats::Client, job: &JobId) -> anyhow::Result<ExitCode> {
    let js = jetstream::new(client.clone());
    let events = events(&js, job).await?;
    let logs = logs(&js, job).await?;
    let end = watch_job(&js, job, events, logs, false).await?;
    eprintln!("{}", render::event_line(&end));
    Ok(ExitCode::SUCCESS)
}
