//! `skynet schedule add|ls|show|pause|resume|rm|approve`: schedules through the
//! `skynet.api.schedules.*` endpoints.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use skynet_protocol::api::Empty;
use skynet_protocol::schedule::{
    ApproveRequest, CreateRequest, Deleted, ListReply, NameRequest, Schedule,
};
use skynet_protocol::{Priority, subjects::api};
use skynet_runtime::ConfigError;

use crate::connect::Conn;
use crate::remote::me;
use crate::submit::{RequestFlags, schedule_request};

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Make a job at every tick: `skynet schedule add tests --cron '0 * * * *' -- cargo test`.
    /// The plan is judged once, now; one that needs a person waits for `schedule approve`.
    Add(Box<AddArgs>),
    /// List schedules: state, next and last run, the last job and how it went.
    Ls {
        /// Print the `schedules.list` reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one schedule, with its plan and its history (who changed what, skipped ticks).
    Show {
        /// The schedule's name.
        name: String,
        /// Print the `schedules.get` reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop making jobs (the running one is left alone).
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Make jobs again, from the next tick on.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Delete a schedule (its jobs stay).
    Rm {
        /// The schedule's name.
        name: String,
    },
    /// Approve a schedule whose plan needs a person (shows the plan being approved).
    Approve {
        /// The schedule's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// `[a-z0-9][a-z0-9_-]{0,31}`; each tick's job is `<name>-<UTC yyyymmddHHMMSS>`.
    name: String,
    /// Five cron fields (`0 * * * *`), `@every 30s`, `@hourly` or `@daily`.
    #[arg(long)]
    cron: String,
    /// The IANA time zone of the cron fields (default UTC).
    #[arg(long)]
    tz: Option<String>,
    /// What a tick does while the previous job runs: skip (default), queue, replace.
    #[arg(long)]
    overlap: Option<String>,
    /// Ticks missed while nothing could fire: one (default; one job for all), none.
    #[arg(long = "catch-up")]
    catch_up: Option<String>,
    /// What you want done, in words (the planner writes the steps, once).
    #[arg(long)]
    goal: Option<String>,
    /// A JobRequest as JSON, without an id (`-` reads standard input).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Run on this worker.
    #[arg(long)]
    worker: Option<String>,
    /// Run on a worker with this label (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Each job's time limit in seconds.
    #[arg(long = "timeout")]
    timeout_s: Option<u64>,
    /// How often a job may be dispatched again if its worker is lost.
    #[arg(long)]
    retries: Option<u32>,
    /// Directory the command runs in (on the worker).
    #[arg(long)]
    cwd: Option<String>,
    /// high, normal (default) or low.
    #[arg(long)]
    priority: Option<Priority>,
    /// Never run at the same time as another job with this lock.
    #[arg(long)]
    lock: Option<String>,
    /// The command (as for `skynet submit`).
    #[arg(last = true)]
    command: Vec<String>,
}

/// Checks the flags before connecting.
pub fn check(args: Box<AddArgs>) -> Result<CreateRequest, ConfigError> {
    let args = *args;
    let request = schedule_request(RequestFlags {
        goal: args.goal,
        file: args.file,
        worker: args.worker,
        labels: args.labels,
        timeout_s: args.timeout_s,
        retries: args.retries,
        cwd: args.cwd,
        priority: args.priority,
        lock: args.lock,
        command: args.command,
    })?;
    let create = CreateRequest {
        name: args.name,
        cron: args.cron,
        tz: args.tz,
        request: serde_json::to_value(&request)
            .map_err(|e| ConfigError::new("schedule", e.to_string()))?,
        overlap: args.overlap,
        catch_up: args.catch_up,
        by: Some(me()),
    };
    create
        .check()
        .map_err(|e| ConfigError::new("schedule", e))?;
    Ok(create)
}

/// Runs a schedule command; `add` is a checked `schedule add` (then `command` is ignored).
pub async fn run(
    conn: &Conn,
    command: ScheduleCommand,
    add: Option<CreateRequest>,
) -> anyhow::Result<ExitCode> {
    let named = |name: &str| NameRequest {
        name: name.to_owned(),
        by: Some(me()),
    };
    if let Some(create) = add {
        let s: Schedule = conn.call(api::SCHEDULES_CREATE, &create).await?;
        print!("{}", show(&s, false));
        if s.state == skynet_protocol::schedule::ScheduleState::AwaitingApproval {
            println!(
                "The plan needs a person: `skynet schedule approve {}` runs it unattended.",
                s.name
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    match command {
        ScheduleCommand::Add(_) => anyhow::bail!("schedule add was not checked"),
        ScheduleCommand::Ls { json } => {
            let reply: ListReply = conn.call(api::SCHEDULES_LIST, &Empty {}).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print!("{}", table(&reply.schedules));
            }
        }
        ScheduleCommand::Show { name, json } => {
            let s: Schedule = conn.call(api::SCHEDULES_GET, &named(&name)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", show(&s, true));
            }
        }
        ScheduleCommand::Pause { name } => {
            let s: Schedule = conn.call(api::SCHEDULES_PAUSE, &named(&name)).await?;
            println!("{}: {}", s.name, s.state.as_str());
        }
        ScheduleCommand::Resume { name } => {
            let s: Schedule = conn.call(api::SCHEDULES_RESUME, &named(&name)).await?;
            println!(
                "{}: {} (next run {})",
                s.name,
                s.state.as_str(),
                s.next_run.as_deref().unwrap_or("-")
            );
        }
        ScheduleCommand::Rm { name } => {
            let d: Deleted = conn.call(api::SCHEDULES_DELETE, &named(&name)).await?;
            println!("{}: deleted", d.name);
        }
        ScheduleCommand::Approve { name } => {
            let s: Schedule = conn.call(api::SCHEDULES_GET, &named(&name)).await?;
            print!("{}", show(&s, false));
            // Signed with this identity's key: policy records the identity whose signature
            // verifies, not the `by` name.
            let signature = match &conn.signer {
                Some(key) => Some(skynet_protocol::approval::sign(
                    key,
                    &skynet_protocol::approval::ScheduleDecision {
                        name: &s.name,
                        plan_hash: &s.plan_hash,
                    },
                    skynet_protocol::time::now_ms() / 1000,
                    None,
                )?),
                None => None,
            };
            let s: Schedule = conn
                .call(
                    api::SCHEDULES_APPROVE,
                    &ApproveRequest {
                        name: s.name.clone(),
                        plan_hash: s.plan_hash.clone(),
                        by: Some(me()),
                        signature,
                    },
                )
                .await?;
            println!(
                "{}: {} (next run {})",
                s.name,
                s.state.as_str(),
                s.next_run.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn table(schedules: &[Schedule]) -> String {
    if schedules.is_empty() {
        return "No schedules.\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<17} {:<14} {:<24} {:<24} {:<36} LAST STATE",
        "NAME", "STATE", "CRON", "NEXT RUN", "LAST RUN", "LAST JOB"
    );
    for s in schedules {
        let _ = writeln!(
            out,
            "{:<20} {:<17} {:<14} {:<24} {:<24} {:<36} {}",
            s.name,
            s.state.as_str(),
            s.cron,
            s.next_run.as_deref().unwrap_or("-"),
            s.last_run.as_deref().unwrap_or("-"),
            s.last_job_id.as_ref().map(|j| j.as_str()).unwrap_or("-"),
            s.last_state.map(|st| st.as_str()).unwrap_or("-"),
        );
    }
    out
}

fn show(s: &Schedule, history: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Schedule {} ({})", s.name, s.state.as_str());
    let _ = writeln!(out, "  cron       {} ({})", s.cron, s.tz);
    let _ = writeln!(
        out,
        "  overlap    {:?}, catch_up {:?}",
        s.overlap, s.catch_up
    );
    let _ = writeln!(out, "  plan       {}", s.summary);
    let _ = writeln!(
        out,
        "  plan hash  {}",
        &s.plan_hash[..12.min(s.plan_hash.len())]
    );
    if let Some(risk) = s.risk {
        let _ = writeln!(out, "  risk       {risk:?}: {}", s.reasons.join("; "));
    }
    if let Some(by) = &s.approved_by {
        let _ = writeln!(out, "  approved   by {by}");
    }
    let _ = writeln!(out, "  next run   {}", s.next_run.as_deref().unwrap_or("-"));
    let _ = writeln!(
        out,
        "  last run   {} {} {}",
        s.last_run.as_deref().unwrap_or("-"),
        s.last_job_id.as_ref().map(|j| j.as_str()).unwrap_or(""),
        s.last_state.map(|st| st.as_str()).unwrap_or("")
    );
    let _ = writeln!(out, "  created    {} by {}", s.created_at, s.created_by);
    if history && !s.history.is_empty() {
        let _ = writeln!(out, "History:");
        for h in &s.history {
            let _ = writeln!(
                out,
                "  {}  {:<9} {:<16} {}",
                h.at,
                h.action,
                h.by,
                h.detail.as_deref().unwrap_or("")
            );
        }
    }
    out
}
