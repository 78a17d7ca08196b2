use std::process::ExitCode;

use clap::Parser;
use skynet_runtime::CommonArgs;

/// SKYNET ledger: keeps every job's state in SQLite, built from the event stream, and
/// answers job and worker queries.
#[derive(Debug, Parser)]
#[command(name = "skynet-ledger", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Heartbeats a worker may miss before it is listed as offline.
    #[arg(long, env = "SKYNET_MISSED_HEARTBEATS", default_value_t = 3)]
    missed_heartbeats: u32,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    let config = skynet_ledger::Config {
        data_dir: args.common.data_dir.clone(),
        missed_heartbeats: args.missed_heartbeats,
    };
    skynet_runtime::service::main_service("skynet-ledger", &args.common, |client, token| {
        skynet_ledger::run(config.clone(), client, token)
    })
}
