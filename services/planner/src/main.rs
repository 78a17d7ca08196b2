use std::process::ExitCode;

use clap::Parser;
use skynet_runtime::CommonArgs;

/// SKYNET planner: turns job requests into concrete plans for policy to check.
#[derive(Debug, Parser)]
#[command(name = "skynet-planner", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Requests planned at the same time.
    #[arg(long, env = "SKYNET_PLANNER_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    let config = skynet_planner::Config {
        concurrency: args.concurrency,
    };
    skynet_runtime::service::main_service("skynet-planner", &args.common, |client, token| {
        skynet_planner::run(config, client, token)
    })
}
