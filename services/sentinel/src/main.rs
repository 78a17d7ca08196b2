use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use skynet_runtime::CommonArgs;

/// SKYNET sentinel: notices dead workers and lost, stalled, overdue and unroutable jobs, and
/// raises alerts on skynet.alerts.
#[derive(Debug, Parser)]
#[command(name = "skynet-sentinel", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Heartbeats a worker may miss before it is offline.
    #[arg(long, env = "SKYNET_MISSED_HEARTBEATS", default_value_t = 3)]
    missed_heartbeats: u32,

    /// A running job with no output and no progress for this long is stalled.
    #[arg(long, env = "SKYNET_STALL_AFTER", default_value = "10m", value_parser = humantime::parse_duration)]
    stall_after: Duration,

    /// A queued job no online worker can take is unroutable after this long.
    #[arg(long, env = "SKYNET_UNROUTABLE_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    unroutable_after: Duration,

    /// Past its time limit plus this, a job whose worker is silent ends timed_out.
    #[arg(long, env = "SKYNET_OVERDUE_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    overdue_grace: Duration,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    let config = skynet_sentinel::Config {
        missed_heartbeats: args.missed_heartbeats,
        stall_after: args.stall_after,
        unroutable_after: args.unroutable_after,
        overdue_grace: args.overdue_grace,
    };
    skynet_runtime::service::main_service("skynet-sentinel", &args.common, |client, token| {
        skynet_sentinel::run(config, client, token)
    })
}
