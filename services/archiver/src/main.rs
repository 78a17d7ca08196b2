use std::process::ExitCode;

use clap::Parser;
use skynet_runtime::CommonArgs;

/// SKYNET archiver: keeps every finished job's output, history and artifact list in the
/// `skynet-archive` object store, after the live streams have moved on.
#[derive(Debug, Parser)]
#[command(name = "skynet-archiver", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    skynet_runtime::service::main_service("skynet-archiver", &args.common, |client, token| {
        skynet_archiver::run(skynet_archiver::Config::default(), client, token)
    })
}
