//! `skynet`: the command line of SKYNET.
//!
//! Submits jobs (publishing to `skynet.jobs.submit`, so the request is durable even while the
//! planner is down), watches them (`skynet.events.<job>`, `skynet.logs.<job>`), and talks to
//! the `skynet` NATS service for everything else. `skynet up` runs the whole stack locally.

mod artifacts;
mod creds;
mod render;
mod submit;
mod up;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use skynet_protocol::api::{
    self as wire, CancelRequest, DecisionRequest, Empty, GetRequest, JobView, ListReply,
    ListRequest, LogsReply, LogsRequest, StateReply, WorkersReply,
};
use skynet_protocol::{JobId, JobState, subjects};
use skynet_runtime::api::{CallError, call};
use skynet_runtime::{ConfigError, NatsArgs};

/// SKYNET: run work on your own machines from anywhere, safely.
#[derive(Debug, Parser)]
#[command(name = "skynet", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    nats: NatsArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit a job: `skynet submit -- cargo test`, `--goal "..."` or `--file job.json`.
    Submit(submit::SubmitArgs),
    /// Show one job: state, plan, history and result.
    Status {
        /// Job id or a unique prefix (6+ characters).
        id: String,
        /// Print the job as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first.
    Jobs {
        /// Only jobs in this state.
        #[arg(long)]
        state: Option<JobState>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job; waits for the worker to confirm.
    Cancel {
        id: String,
        /// Return once the cancel is requested.
        #[arg(long)]
        no_wait: bool,
    },
    /// Approve a job that awaits approval (shows the plan being approved).
    Approve(Decision),
    /// Deny a job that awaits approval.
    Deny(Decision),
    /// Print a job's output; `-f` follows it live until the job ends.
    Logs {
        id: String,
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Download the files a job kept as artifacts.
    Artifacts {
        id: String,
        /// Where to put them (default: a directory named after the job's short id).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// List workers.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// Manage identities: keys for services, CLIs and workers, and the server configuration.
    Creds(creds::CredsArgs),
    /// Run the whole stack here in the foreground: NATS (if none answers), every service
    /// and one local worker, and the Telegram bot when TELEGRAM_BOT_TOKEN is set. Ctrl-C
    /// stops it all.
    Up(up::UpArgs),
}

#[derive(Debug, Args)]
struct Decision {
    id: String,
    /// Why (shown in the job's history).
    #[arg(long)]
    reason: Option<String>,
}

fn main() -> ExitCode {
    // `skynet up` runs a worker in this process: its steps are supervised by this binary.
    if let Some(code) = skynet_worker::supervise::main_if_asked() {
        return code;
    }
    let cli: Cli = skynet_runtime::parse_args();
    let cli = match cli.command {
        Command::Up(args) => return up::main(cli.nats, args),
        Command::Creds(args) => {
            return match creds::main(args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("skynet: {e}");
                    ExitCode::from(skynet_runtime::EXIT_CONFIG)
                }
            };
        }
        command => Cli {
            nats: cli.nats,
            command,
        },
    };
    // Only warnings (a refused permission, a lost connection) reach the terminal.
    skynet_runtime::telemetry::init_with("warn", false);
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<ConfigError>() {
                eprintln!("skynet: {c}");
                return ExitCode::from(skynet_runtime::EXIT_CONFIG);
            }
            eprintln!("skynet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Who the CLI acts as in `requested_by` and `by`.
fn me() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = skynet_runtime::connect::connect_once(&cli.nats, "skynet-cli").await?;
    match cli.command {
        Command::Submit(args) => submit::submit(&client, args).await,
        Command::Status { id, json } => {
            let job = get(&client, &id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print!("{}", render::job(&job));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { state, limit, json } => {
            let reply: ListReply = call(
                &client,
                subjects::api::JOBS_LIST,
                &ListRequest {
                    state,
                    limit: Some(limit),
                },
            )
            .await
            .map_err(api_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print!("{}", render::jobs(&reply.jobs));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id, no_wait } => {
            let job_id = resolve(&client, &id).await?;
            let reply: StateReply = call(
                &client,
                subjects::api::JOBS_CANCEL,
                &CancelRequest {
                    job_id: job_id.clone(),
                    by: Some(me()),
                },
            )
            .await
            .map_err(api_error)?;
            if reply.state == JobState::CancelRequested {
                println!("{}: cancel requested", job_id.short());
                if no_wait {
                    return Ok(ExitCode::SUCCESS);
                }
                let end = submit::wait_terminal(&client, &job_id).await?;
                println!("{}: {}", job_id.short(), render::state_word(end.state()));
            } else {
                println!("{}: {}", job_id.short(), render::state_word(reply.state));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve(d) => decide(&client, d, true).await,
        Command::Deny(d) => decide(&client, d, false).await,
        Command::Logs { id, follow } => {
            let job_id = resolve(&client, &id).await?;
            // A finished job is read whole (from the archive once the live log expired).
            let ended = get(&client, job_id.as_str())
                .await
                .map(|j| j.state.is_terminal())
                .unwrap_or(false);
            if follow && !ended {
                return submit::follow_logs(&client, &job_id).await;
            }
            let mut offset = 0;
            loop {
                let page: LogsReply = call(
                    &client,
                    subjects::api::JOBS_LOGS,
                    &LogsRequest {
                        job_id: job_id.clone(),
                        offset: Some(offset),
                        max_bytes: None,
                    },
                )
                .await
                .map_err(api_error)?;
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
            let reply: WorkersReply = call(&client, subjects::api::WORKERS_LIST, &Empty {})
                .await
                .map_err(api_error)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print!("{}", render::workers(&reply.workers));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Artifacts { id, out } => {
            let job_id = resolve(&client, &id).await?;
            let dir = out.unwrap_or_else(|| std::path::PathBuf::from(job_id.short()));
            artifacts::fetch(&client, &job_id, &dir).await
        }
        Command::Up(_) | Command::Creds(_) => unreachable!("handled before connecting"),
    }
}

fn api_error(e: CallError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

async fn get(client: &async_nats::Client, id: &str) -> anyhow::Result<JobView> {
    call(
        client,
        subjects::api::JOBS_GET,
        &GetRequest {
            job_id: id.to_owned(),
        },
    )
    .await
    .map_err(api_error)
}

/// A full job id from an id or a unique prefix.
async fn resolve(client: &async_nats::Client, id: &str) -> anyhow::Result<JobId> {
    match get(client, id).await {
        Ok(job) => Ok(job.job_id),
        // Without the ledger a full id still works.
        Err(e) => match JobId::parse(id) {
            Ok(full) if id.len() > wire::MIN_PREFIX + 2 => Ok(full),
            _ => Err(e),
        },
    }
}

async fn decide(
    client: &async_nats::Client,
    d: Decision,
    approve: bool,
) -> anyhow::Result<ExitCode> {
    let job = get(client, &d.id).await?;
    print!("{}", render::plan(&job));
    let endpoint = if approve {
        subjects::api::JOBS_APPROVE
    } else {
        subjects::api::JOBS_DENY
    };
    let reply: StateReply = call(
        client,
        endpoint,
        &DecisionRequest {
            job_id: job.job_id.clone(),
            by: Some(me()),
            reason: d.reason,
            plan_hash: job.plan_hash.clone(),
        },
    )
    .await
    .map_err(api_error)?;
    println!(
        "{}: {}",
        job.job_id.short(),
        render::state_word(reply.state)
    );
    Ok(ExitCode::SUCCESS)
}
