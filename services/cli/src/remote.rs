//! The commands that talk to a running SKYNET over NATS: their flags, and what each does.
//! Arguments are checked before connecting, so a mistake is reported without a server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use skynet_protocol::api::{
    self as wire, CancelRequest, DecisionRequest, Empty, GetRequest, JobView, ListReply,
    ListRequest, LogsReply, LogsRequest, StateReply, WorkersReply,
};
use skynet_protocol::{JobId, JobState, subjects};
use skynet_runtime::api::CallError;
use skynet_runtime::{ConfigError, NatsArgs};

use crate::connect::{Conn, Failure};
use crate::exit::{self, Exit};
use crate::{artifacts, render, schedule, submit};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a job: `skynet submit -- uname -a`, `--goal "..."` or `--file job.json`.
    Submit(submit::SubmitArgs),
    /// Show one job: state, plan, history and result.
    Status {
        /// The job's id, or a unique prefix of it (6+ characters).
        id: String,
        /// Print the job as JSON (the `jobs.get` reply).
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first.
    Jobs {
        /// Only jobs in this state.
        #[arg(long)]
        state: Option<JobState>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the list as JSON (the `jobs.list` reply).
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job; waits for the worker to confirm.
    Cancel {
        /// The job's id, or a unique prefix of it (6+ characters).
        id: String,
        /// Return once the cancel is requested, without waiting for the worker.
        #[arg(long)]
        no_wait: bool,
    },
    /// Approve a job that awaits approval (shows the plan being approved).
    Approve(Decision),
    /// Deny a job that awaits approval.
    Deny(Decision),
    /// Print a job's output; `-f` follows it live until the job ends.
    Logs {
        /// The job's id, or a unique prefix of it (6+ characters).
        id: String,
        /// Keep printing new output until the job ends (replays from the start first).
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// List the files a job kept as artifacts; `--out DIR` downloads them.
    Artifacts {
        /// The job's id, or a unique prefix of it (6+ characters).
        id: String,
        /// Download them into this directory (created if missing), keeping their paths.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Schedules: a job at every tick of a calendar (`skynet schedule add|ls|show|pause|resume|rm|approve`).
    Schedule {
        #[command(subcommand)]
        command: schedule::ScheduleCommand,
    },
    /// List workers.
    Workers {
        /// Print the list as JSON (the `workers.list` reply).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct Decision {
    /// The job's id, or a unique prefix of it (6+ characters).
    id: String,
    /// Why (shown in the job's history).
    #[arg(long)]
    reason: Option<String>,
}

pub fn main(nats: NatsArgs, command: Command) -> ExitCode {
    // Only warnings (a lost connection) reach the terminal; the CLI explains the rest.
    skynet_runtime::telemetry::init_with("warn,async_nats=off", false);
    let command = match Prepared::check(command) {
        Ok(c) => c,
        Err(e) => return report(e.into()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skynet: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(nats, command)) {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

/// Prints an error and gives its exit status.
pub fn report(e: anyhow::Error) -> ExitCode {
    if let Some(c) = e.downcast_ref::<ConfigError>() {
        eprintln!("skynet: {c}");
        return exit::code(exit::USAGE);
    }
    if let Some(x) = e.downcast_ref::<Exit>() {
        eprintln!("skynet: {x}");
        return exit::code(x.code);
    }
    eprintln!("skynet: {e:#}");
    exit::code(exit::FAILURE)
}

/// A command whose arguments have been checked.
enum Prepared {
    Submit(Box<submit::Submission>),
    Schedule(
        schedule::ScheduleCommand,
        Option<Box<skynet_protocol::schedule::CreateRequest>>,
    ),
    Other(Command),
}

impl Prepared {
    fn check(command: Command) -> Result<Self, ConfigError> {
        Ok(match command {
            Command::Submit(args) => Prepared::Submit(Box::new(submit::Submission::new(args)?)),
            Command::Schedule {
                command: schedule::ScheduleCommand::Add(args),
            } => {
                let create = schedule::check(args)?;
                let name = create.name.clone();
                Prepared::Schedule(
                    schedule::ScheduleCommand::Show { name, json: false },
                    Some(Box::new(create)),
                )
            }
            Command::Schedule { command } => Prepared::Schedule(command, None),
            other => Prepared::Other(other),
        })
    }
}

async fn run(nats: NatsArgs, command: Prepared) -> anyhow::Result<ExitCode> {
    let (nats, _) = crate::connect::discover(&nats);
    let conn = crate::connect::connect(&nats, "skynet-cli").await?;
    let command = match command {
        Prepared::Submit(s) => return s.run(&conn).await,
        Prepared::Schedule(c, add) => return schedule::run(&conn, c, add.map(|a| *a)).await,
        Prepared::Other(c) => c,
    };
    match command {
        Command::Submit(_) | Command::Schedule { .. } => {
            Err(anyhow::anyhow!("submit and schedule were prepared above"))
        }
        Command::Status { id, json } => {
            let job = get(&conn, &id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print!("{}", render::job(&job));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { state, limit, json } => {
            let reply: ListReply = conn
                .call(
                    subjects::api::JOBS_LIST,
                    &ListRequest {
                        state,
                        limit: Some(limit),
                    },
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print!("{}", render::jobs(&reply.jobs));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id, no_wait } => {
            let job_id = resolve(&conn, &id).await?;
            let reply: StateReply = conn
                .call(
                    subjects::api::JOBS_CANCEL,
                    &CancelRequest {
                        job_id: job_id.clone(),
                        by: Some(me()),
                    },
                )
                .await?;
            if reply.state == JobState::CancelRequested {
                println!("{}: cancel requested", job_id.short());
                if no_wait {
                    return Ok(ExitCode::SUCCESS);
                }
                let end = submit::wait_terminal(&conn.client, &job_id).await?;
                println!("{}: {}", job_id.short(), render::state_word(end.state()));
            } else {
                println!("{}: {}", job_id.short(), render::state_word(reply.state));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve(d) => decide(&conn, d, true).await,
        Command::Deny(d) => decide(&conn, d, false).await,
        Command::Logs { id, follow } => {
            let job_id = resolve(&conn, &id).await?;
            // A finished job is read whole (from the archive once the live log expired).
            let ended = get(&conn, job_id.as_str())
                .await
                .map(|j| j.state.is_terminal())
                .unwrap_or(false);
            if follow && !ended {
                return submit::follow_logs(&conn, &job_id).await;
            }
            let mut offset = 0;
            loop {
                let page: LogsReply = conn
                    .call(
                        subjects::api::JOBS_LOGS,
                        &LogsRequest {
                            job_id: job_id.clone(),
                            offset: Some(offset),
                            max_bytes: None,
                        },
                    )
                    .await?;
                for chunk in &page.chunks {
                    render::print_chunk(&chunk.stream, chunk.data.as_bytes());
                }
                offset = page.next_offset;
                if page.complete {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Workers { json } => {
            let reply: WorkersReply = conn.call(subjects::api::WORKERS_LIST, &Empty {}).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print!("{}", render::workers(&reply.workers));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Artifacts { id, out } => {
            let job_id = resolve(&conn, &id).await?;
            artifacts::fetch(&conn.client, &job_id, out.as_deref()).await
        }
    }
}

/// Who the CLI acts as in `requested_by` and `by`.
pub fn me() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub async fn get(conn: &Conn, id: &str) -> Result<JobView, Failure> {
    conn.call(
        subjects::api::JOBS_GET,
        &GetRequest {
            job_id: id.to_owned(),
        },
    )
    .await
}

/// A full job id from an id or a unique prefix. An unknown job is an error; only when the
/// ledger cannot answer at all is a full id taken on trust.
async fn resolve(conn: &Conn, id: &str) -> anyhow::Result<JobId> {
    match get(conn, id).await {
        Ok(job) => Ok(job.job_id),
        Err(Failure::Call(CallError::NoService(_) | CallError::Timeout(_)))
            if id.len() > wire::MIN_PREFIX + 2 && JobId::parse(id).is_ok() =>
        {
            Ok(JobId::parse(id)?)
        }
        Err(e) => Err(e.into()),
    }
}

async fn decide(conn: &Conn, d: Decision, approve: bool) -> anyhow::Result<ExitCode> {
    let job = get(conn, &d.id).await?;
    print!("{}", render::plan(&job));
    let endpoint = if approve {
        subjects::api::JOBS_APPROVE
    } else {
        subjects::api::JOBS_DENY
    };
    // The decision is signed with this identity's key: policy records the identity whose
    // signature verifies, not the `by` name.
    let signature = match (&conn.signer, &job.plan_hash) {
        (Some(key), Some(hash)) => Some(skynet_protocol::approval::sign(
            key,
            &skynet_protocol::approval::Decision {
                job_id: &job.job_id,
                plan_hash: hash,
                verdict: if approve {
                    skynet_protocol::approval::Verdict::Approve
                } else {
                    skynet_protocol::approval::Verdict::Deny
                },
            },
            skynet_protocol::time::now_ms() / 1000,
            None,
        )?),
        _ => None,
    };
    let reply: StateReply = conn
        .call(
            endpoint,
            &DecisionRequest {
                job_id: job.job_id.clone(),
                by: Some(me()),
                reason: d.reason,
                plan_hash: job.plan_hash.clone(),
                signature,
            },
        )
        .await?;
    println!(
        "{}: {}",
        job.job_id.short(),
        render::state_word(reply.state)
    );
    Ok(ExitCode::SUCCESS)
}
