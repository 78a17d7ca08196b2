use std::process::ExitCode;

use clap::Parser;
use skynet_runtime::{CommonArgs, TimingArgs};

/// SKYNET dispatcher: owns every approved job: routes it to a worker, relays what workers
/// report, retries jobs of lost workers, and enforces cancels and time limits.
#[derive(Debug, Parser)]
#[command(name = "skynet-dispatcher", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    timing: TimingArgs,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    let config = skynet_dispatcher::Config {
        timing: args.timing.timing(),
    };
    skynet_runtime::service::main_service("skynet-dispatcher", &args.common, |client, token| {
        skynet_dispatcher::run(config.clone(), client, token)
    })
}
