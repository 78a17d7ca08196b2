use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use skynet_runtime::CommonArgs;

/// SKYNET dispatcher: routes approved jobs to workers, relays what workers report, and
/// enforces cancels and time limits.
#[derive(Debug, Parser)]
#[command(name = "skynet-dispatcher", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Heartbeats a worker may miss before no more work goes to it.
    #[arg(long, env = "SKYNET_MISSED_HEARTBEATS", default_value_t = 3)]
    missed_heartbeats: u32,

    /// How long a cancel may go unconfirmed before the job ends force_cancelled.
    #[arg(long, env = "SKYNET_CANCEL_CONFIRM", default_value = "15s", value_parser = humantime::parse_duration)]
    cancel_confirm: Duration,

    /// Slack after a job's timeout_s before the dispatcher stops it.
    #[arg(long, env = "SKYNET_TIMEOUT_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout_grace: Duration,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    let config = skynet_dispatcher::Config {
        missed_heartbeats: args.missed_heartbeats,
        cancel_confirm: args.cancel_confirm,
        timeout_grace: args.timeout_grace,
    };
    skynet_runtime::service::main_service("skynet-dispatcher", &args.common, |client, token| {
        skynet_dispatcher::run(config, client, token)
    })
}
