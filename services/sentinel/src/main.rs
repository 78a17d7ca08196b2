use std::process::ExitCode;

use clap::Parser;
use skynet_runtime::{CommonArgs, TimingArgs};

/// SKYNET sentinel: notices dead workers (and records them, so the dispatcher moves their
/// jobs on) and stalled, overdue and unroutable jobs, and raises alerts on skynet.alerts.
#[derive(Debug, Parser)]
#[command(name = "skynet-sentinel", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    timing: TimingArgs,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    let config = skynet_sentinel::Config {
        timing: args.timing.timing(),
    };
    skynet_runtime::service::main_service("skynet-sentinel", &args.common, |client, token| {
        skynet_sentinel::run(config.clone(), client, token)
    })
}
