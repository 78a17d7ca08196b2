//! Runs one SKYNET service as its own process, through the same `main_service` path as the
//! real binaries, so tests can `kill -9` it: `skynet-testsvc ledger <nats-url> <data-dir>`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, service, url, data_dir] = args.as_slice() else {
        eprintln!("usage: skynet-testsvc <service> <nats-url> <data-dir>");
        return ExitCode::from(64);
    };
    let common = skynet_runtime::CommonArgs {
        nats: skynet_runtime::NatsArgs::new(url.clone()),
        data_dir: data_dir.into(),
        log_json: false,
    };
    match service.as_str() {
        "ledger" => {
            let config = skynet_ledger::Config {
                data_dir: common.data_dir.clone(),
                missed_heartbeats: 3,
            };
            skynet_runtime::service::main_service("skynet-ledger", &common, |client, token| {
                skynet_ledger::run(config, client, token)
            })
        }
        other => {
            eprintln!("skynet-testsvc: no service {other}");
            ExitCode::from(64)
        }
    }
}
