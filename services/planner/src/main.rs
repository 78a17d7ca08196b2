use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use skynet_planner::PlannerArgs;
use skynet_runtime::CommonArgs;

/// SKYNET planner: turns job requests into concrete plans for policy to check.
#[derive(Debug, Parser)]
#[command(name = "skynet-planner", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    planner: PlannerArgs,

    /// Requests planned at the same time.
    #[arg(long, env = "SKYNET_PLANNER_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,

    /// The policy file skynet-policy uses (default: the built-in policy). The LLM planners
    /// are told its rules in brief; policy itself still judges every plan.
    #[arg(long = "policy", env = "SKYNET_POLICY_FILE")]
    policy: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    let mut config = match args.planner.config(args.policy.as_deref()) {
        Ok(c) => c,
        Err(e) => return skynet_runtime::service::exit_status("skynet-planner", Err(e.into())),
    };
    config.concurrency = args.concurrency;
    skynet_runtime::service::main_service("skynet-planner", &args.common, |client, token| {
        skynet_planner::run(config.clone(), client, token)
    })
}
