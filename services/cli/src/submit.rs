//! `skynet submit` and watching a job: states as they pass, the live output, and the alerts
//! the sentinel raises about it. An id that is already a job is said to be one, and Ctrl-C
//! while watching detaches (the job goes on).

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
use skynet_protocol::alert::Alert;
use skynet_protocol::api::{Empty, JobView, WorkerStatus, WorkersReply};
use skynet_protocol::{
    Event, EventKind, JobId, JobRequest, Priority, Step, WorkerId, streams, subjects,
};
use skynet_runtime::ConfigError;
use skynet_runtime::api::CallError;
use skynet_runtime::logs::LogMsg;

use crate::connect::{Conn, Failure};
use crate::exit::{self, Exit};
use crate::render;

#[derive(Debug, Args)]
#[command(after_help = exit::TABLE)]
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

    /// Among jobs waiting for the same workers, higher first: high, normal (default), low.
    #[arg(long)]
    priority: Option<Priority>,

    /// Never run at the same time as another job with this lock (e.g. `repo:~/src/app`);
    /// a later one waits until the holder ends.
    #[arg(long)]
    lock: Option<String>,

    /// The job's id (default: a new random id). Submitting an id again never makes a
    /// second job.
    #[arg(long)]
    id: Option<String>,

    /// Directory the command runs in (on the worker).
    #[arg(long)]
    cwd: Option<String>,

    /// Show the states as they pass and the live output, then exit with the job's exit code
    /// (see below). Ctrl-C stops watching and leaves the job running.
    #[arg(long)]
    wait: bool,

    /// Like --wait, but when --id is already a job, watch that job instead of refusing.
    #[arg(long)]
    attach: bool,

    /// The command: one argument is a shell command line (`"make && ls | wc -l"`), several
    /// are run as-is without a shell (`-- cargo test --release`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// What a schedule's request is made of: the flags `skynet schedule add` shares with
/// `submit`.
pub struct RequestFlags {
    pub goal: Option<String>,
    pub file: Option<PathBuf>,
    pub worker: Option<String>,
    pub labels: Vec<String>,
    pub timeout_s: Option<u64>,
    pub retries: Option<u32>,
    pub cwd: Option<String>,
    pub priority: Option<Priority>,
    pub lock: Option<String>,
    pub command: Vec<String>,
}

/// The request `flags` describe, without an id or a requester (a schedule sets both).
pub fn schedule_request(flags: RequestFlags) -> Result<JobRequest, ConfigError> {
    let args = SubmitArgs {
        goal: flags.goal,
        file: flags.file,
        worker: flags.worker,
        labels: flags.labels,
        timeout_s: flags.timeout_s,
        retries: flags.retries,
        priority: flags.priority,
        lock: flags.lock,
        id: None,
        cwd: flags.cwd,
        wait: false,
        attach: false,
        command: flags.command,
    };
    let (mut req, chosen) = request(&args)?;
    if chosen {
        return Err(ConfigError::new(
            "--file",
            "a schedule's request has no id (each tick's job is <name>-<time>)",
        ));
    }
    req.id = None;
    req.requested_by = None;
    Ok(req)
}

/// Builds the request from the flags; says whether the caller chose its id.
fn request(args: &SubmitArgs) -> Result<(JobRequest, bool), ConfigError> {
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
    if let Some(p) = args.priority {
        req.priority = p;
    }
    if let Some(l) = &args.lock {
        req.lock = Some(l.clone());
    }
    if let Some(id) = &args.id {
        req.id = Some(JobId::parse(id).map_err(|e| ConfigError::new("--id", e.to_string()))?);
    }
    if req.goal.is_none() && req.steps.is_none() {
        return Err(ConfigError::new(
            "submit",
            "nothing to run: give a command after -- (skynet submit -- uname -a), --goal \"...\" or --file job.json",
        ));
    }
    let chosen_id = req.id.is_some();
    req.id.get_or_insert_with(JobId::generate);
    req.requested_by.get_or_insert_with(crate::remote::me);
    req.validate()
        .map_err(|e| ConfigError::new("submit", e.to_string()))?;
    Ok((req, chosen_id))
}

/// A submission whose arguments have been checked (before connecting).
pub struct Submission {
    req: JobRequest,
    id: JobId,
    /// The id was chosen by the caller (flag or file), so it may already be a job.
    chosen_id: bool,
    wait: bool,
    attach: bool,
}

impl Submission {
    pub fn new(args: SubmitArgs) -> Result<Self, ConfigError> {
        let (req, chosen_id) = request(&args)?;
        let id = req.id.clone().unwrap_or_else(JobId::generate);
        Ok(Self {
            req,
            id,
            chosen_id,
            wait: args.wait || args.attach,
            attach: args.attach,
        })
    }

    pub async fn run(self, conn: &Conn) -> anyhow::Result<ExitCode> {
        let js = jetstream::new(conn.client.clone());
        let id = &self.id;
        if self.chosen_id
            && let Some(existing) = existing(conn, &js, id).await?
        {
            return self.existing(conn, &js, &existing).await;
        }
        if self.wait {
            check_placement(conn, &self.req).await;
        }
        // Subscribe before submitting, so nothing is missed.
        let watch = if self.wait {
            Some(Watch::open(conn, &js, id).await?)
        } else {
            None
        };
        let ack = js
            .send_publish(
                subjects::SUBMIT,
                PublishMessage::build()
                    .payload(serde_json::to_vec(&self.req)?.into())
                    .message_id(id.as_str()),
            )
            .await?
            .await
            .map_err(|e| anyhow::anyhow!("storing the request: {e}"))?;
        if ack.duplicate {
            // The same id was submitted moments ago: it is that job.
            let existing = Existing {
                summary: format!("job {id} was submitted moments ago"),
            };
            return self.existing(conn, &js, &existing).await;
        }
        let Some(watch) = watch else {
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        };
        eprintln!("job {id}");
        match watch.run(&js, id, true, true).await? {
            Outcome::Ended(end) => Ok(exit_code(&end)),
            Outcome::Detached => Ok(detached(id)),
        }
    }

    /// The id is already a job: say so, and watch it only when asked to.
    async fn existing(
        &self,
        conn: &Conn,
        js: &jetstream::Context,
        existing: &Existing,
    ) -> anyhow::Result<ExitCode> {
        let id = &self.id;
        if self.attach {
            eprintln!(
                "{}; watching it (nothing new was submitted)",
                existing.summary
            );
            let watch = Watch::open(conn, js, id).await?;
            return match watch.run(js, id, true, true).await? {
                Outcome::Ended(end) => Ok(exit_code(&end)),
                Outcome::Detached => Ok(detached(id)),
            };
        }
        if self.wait {
            return Err(Exit::new(
                exit::REJECTED,
                format!(
                    "{}; nothing was submitted.\n  Watch that job: skynet submit --attach --id {id} ... (or skynet logs -f {id}); \
                     run the new request: choose another --id.",
                    existing.summary
                ),
            )
            .into());
        }
        eprintln!(
            "{}; nothing new was submitted (an id is never a second job)",
            existing.summary
        );
        println!("{id}");
        Ok(ExitCode::SUCCESS)
    }
}

/// A job that already has the id.
struct Existing {
    summary: String,
}

/// The job with exactly this id, if there is one: from the ledger, or (while the ledger
/// cannot answer) from the job's last event.
async fn existing(
    conn: &Conn,
    js: &jetstream::Context,
    id: &JobId,
) -> anyhow::Result<Option<Existing>> {
    match crate::remote::get(conn, id.as_str()).await {
        Ok(job) if job.job_id == *id => {
            return Ok(Some(Existing {
                summary: describe(&job),
            }));
        }
        Ok(_) => return Ok(None),
        Err(e) if e.code() == Some(404) => return Ok(None),
        Err(Failure::Call(CallError::NoService(_) | CallError::Timeout(_))) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = js.get_stream_no_info(streams::EVENTS).await?;
    match stream
        .direct_get_last_for_subject(subjects::events(id))
        .await
    {
        Ok(m) => {
            let e: Event = serde_json::from_slice(&m.payload)?;
            Ok(Some(Existing {
                summary: format!(
                    "job {id} already exists ({} {})",
                    render::state_word(e.state()),
                    render::ago(&e.at)
                ),
            }))
        }
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn describe(job: &JobView) -> String {
    let what = job
        .request
        .as_ref()
        .and_then(|r| r.goal.clone())
        .or_else(|| job.steps.first().map(Step::describe))
        .unwrap_or_else(|| "-".into());
    let code = job
        .result
        .as_ref()
        .and_then(|r| r.exit_code)
        .map(|c| format!(", exit {c}"))
        .unwrap_or_default();
    format!(
        "job {} already exists: {} {}{code}, {what}",
        job.job_id,
        render::state_word(job.state),
        render::ago(&job.updated_at)
    )
}

/// Warns at once when no registered worker can take the job (a typo in `--worker`), rather
/// than letting `--wait` look like a hang.
async fn check_placement(conn: &Conn, req: &JobRequest) {
    if req.worker.is_none() && req.labels.is_empty() {
        return;
    }
    let Ok(reply) = conn
        .call::<_, WorkersReply>(subjects::api::WORKERS_LIST, &Empty {})
        .await
    else {
        return;
    };
    let known = || {
        let ids: Vec<&str> = reply.workers.iter().map(|w| w.id.as_str()).collect();
        if ids.is_empty() {
            "none has registered".to_owned()
        } else {
            format!("workers: {}", ids.join(", "))
        }
    };
    if let Some(want) = &req.worker {
        match reply.workers.iter().find(|w| w.id == *want) {
            None => eprintln!(
                "warning: no worker named {want} has registered ({}); the job waits until one does",
                known()
            ),
            Some(w) if w.status == WorkerStatus::Offline => eprintln!(
                "warning: worker {want} is offline (last seen {}); the job waits for it",
                render::ago(&w.last_seen)
            ),
            Some(_) => {}
        }
    }
    if !req.labels.is_empty()
        && !reply
            .workers
            .iter()
            .any(|w| req.labels.iter().all(|l| w.labels.contains(l)))
    {
        eprintln!(
            "warning: no registered worker has the labels {}; the job waits until one does",
            req.labels.join(",")
        );
    }
}

fn detached(id: &JobId) -> ExitCode {
    eprintln!(
        "\ndetached: job {id} continues\n  follow it: skynet logs -f {id}\n  stop it:   skynet cancel {id}"
    );
    exit::code(exit::DETACHED)
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<Event>> + Send>>;
type LogStream = std::pin::Pin<Box<dyn Stream<Item = anyhow::Result<LogMsg>> + Send>>;

async fn events(js: &jetstream::Context, job: &JobId) -> anyhow::Result<EventStream> {
    let stream = js.get_stream_no_info(streams::EVENTS).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            name: Some(streams::ordered_consumer_name()),
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

/// How watching ended.
pub enum Outcome {
    Ended(Box<Event>),
    /// Ctrl-C: the job goes on.
    Detached,
}

/// What is followed while a job runs: its events, its output and the alerts about it.
pub struct Watch {
    events: EventStream,
    logs: LogStream,
    alerts: Option<async_nats::Subscriber>,
}

impl Watch {
    pub async fn open(conn: &Conn, js: &jetstream::Context, job: &JobId) -> anyhow::Result<Self> {
        Ok(Self {
            events: events(js, job).await?,
            logs: logs(js, job).await?,
            // Live only: an alert raised before we looked is in the job's history anyway.
            alerts: conn.client.subscribe(subjects::ALERTS).await.ok(),
        })
    }

    /// Prints states (when `show_states`), output and alerts until the job ends, or until
    /// Ctrl-C when `detach` (otherwise Ctrl-C ends the process as usual).
    pub async fn run(
        mut self,
        js: &jetstream::Context,
        job: &JobId,
        show_states: bool,
        detach: bool,
    ) -> anyhow::Result<Outcome> {
        let interrupted = async {
            if detach {
                let _ = tokio::signal::ctrl_c().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(interrupted);
        let mut last_log = 0u64;
        let end = loop {
            tokio::select! {
                _ = &mut interrupted => return Ok(Outcome::Detached),
                e = self.events.next() => match e {
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
                l = self.logs.next() => match l {
                    Some(Ok(m)) => {
                        last_log = m.seq;
                        render::print_chunk(&m.stream, &m.data);
                    }
                    Some(Err(e)) => return Err(e),
                    None => anyhow::bail!("log stream ended"),
                },
                Some(m) = next_alert(&mut self.alerts) => {
                    if let Ok(alert) = serde_json::from_slice::<Alert>(&m.payload)
                        && alert.job_id.as_ref() == Some(job)
                    {
                        eprintln!("{}", render::alert_line(&alert));
                    }
                }
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
            match tokio::time::timeout(Duration::from_secs(5), self.logs.next()).await {
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
        Ok(Outcome::Ended(Box::new(end)))
    }
}

async fn next_alert(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The exit status `--wait` ends with (the table is `exit::TABLE`).
pub fn exit_code(end: &Event) -> ExitCode {
    let code = match &end.kind {
        EventKind::Succeeded(_) => exit::OK,
        EventKind::Failed(f) => f
            .steps
            .iter()
            .find_map(|s| s.exit_code.filter(|c| *c != 0))
            .map(|c| c.clamp(1, 255) as u8)
            .unwrap_or(exit::FAILURE),
        EventKind::TimedOut(_) => exit::TIMED_OUT,
        EventKind::Cancelled(_) | EventKind::ForceCancelled(_) => exit::CANCELLED,
        EventKind::Denied { .. } => exit::DENIED,
        EventKind::Rejected { .. } => exit::REJECTED,
        _ => exit::FAILURE,
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
pub async fn follow_logs(conn: &Conn, job: &JobId) -> anyhow::Result<ExitCode> {
    let js = jetstream::new(conn.client.clone());
    let watch = Watch::open(conn, &js, job).await?;
    if let Outcome::Ended(end) = watch.run(&js, job, false, false).await? {
        eprintln!("{}", render::event_line(&end));
    }
    Ok(ExitCode::SUCCESS)
}
