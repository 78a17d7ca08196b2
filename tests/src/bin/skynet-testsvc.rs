//! Runs one SKYNET service as its own process, through the same `main_service` path as the
//! real binaries, so tests can `kill -9`, SIGSTOP and SIGCONT it:
//! `skynet-testsvc <ledger|worker> <nats-url> <data-dir>`. A worker reads its settings as
//! JSON from `SKYNET_TESTSVC_WORKER` (see `skynet_tests::process::WorkerSpec`).

use std::process::ExitCode;
use std::time::Duration;

use skynet_tests::process::WorkerSpec;

fn main() -> ExitCode {
    if let Some(code) = skynet_worker::supervise::main_if_asked() {
        return code;
    }
    let args: Vec<String> = std::env::args().collect();
    let [_, service, url, data_dir] = args.as_slice() else {
        eprintln!("usage: skynet-testsvc <service> <nats-url> <data-dir>");
        return ExitCode::from(64);
    };
    // An identity, when the test runs with auth on.
    let seed = std::env::var_os("SKYNET_TESTSVC_SEED").map(std::path::PathBuf::from);
    let common = skynet_runtime::CommonArgs {
        nats: skynet_runtime::NatsArgs {
            url: url.clone(),
            seed,
            ca: None,
        },
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
                skynet_ledger::run(config.clone(), client, token)
            })
        }
        "worker" => {
            let spec: WorkerSpec = match std::env::var("SKYNET_TESTSVC_WORKER")
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
            {
                Some(s) => s,
                None => {
                    eprintln!(
                        "skynet-testsvc: SKYNET_TESTSVC_WORKER must hold the worker's settings"
                    );
                    return ExitCode::from(64);
                }
            };
            let config = skynet_worker::Config {
                id: spec.id,
                labels: spec.labels,
                roots: spec.roots,
                home: spec.home,
                max_jobs: spec.max_jobs,
                heartbeat: Duration::from_millis(spec.heartbeat_ms),
                missed_heartbeats: spec.missed_heartbeats,
                supervisor: match std::env::current_exe() {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("skynet-testsvc: cannot find itself: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                trusted_keys: spec.trusted_keys,
                data_dir: common.data_dir.clone(),
                kill_grace: Duration::from_secs(5),
                env_allow: skynet_worker::DEFAULT_ENV_ALLOW
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                forbid: vec![],
                redact: spec.redact,
                artifact_max_bytes: 64 << 20,
            };
            skynet_runtime::service::main_service("skynet-worker", &common, |client, token| {
                skynet_worker::run(config.clone(), client, token)
            })
        }
        "dispatcher" => {
            let config = skynet_dispatcher::Config { timing: timing() };
            skynet_runtime::service::main_service("skynet-dispatcher", &common, |client, token| {
                skynet_dispatcher::run(config.clone(), client, token)
            })
        }
        "sentinel" => {
            let config = skynet_sentinel::Config { timing: timing() };
            skynet_runtime::service::main_service("skynet-sentinel", &common, |client, token| {
                skynet_sentinel::run(config.clone(), client, token)
            })
        }
        "policy" => {
            // The sealing key: a seed file named by SKYNET_TESTSVC_SIGNING_SEED.
            let key = std::env::var_os("SKYNET_TESTSVC_SIGNING_SEED")
                .ok_or_else(|| anyhow::anyhow!("SKYNET_TESTSVC_SIGNING_SEED is not set"))
                .and_then(|p| {
                    Ok(
                        skynet_runtime::args::read_seed(std::path::Path::new(&p), "seed")?
                            .key_pair()?,
                    )
                });
            let key = match key {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("skynet-testsvc: {e}");
                    return ExitCode::from(64);
                }
            };
            let policy = match std::env::var("SKYNET_TESTSVC_POLICY") {
                Ok(text) => skynet_policy::Policy::from_toml(&text),
                Err(_) => skynet_policy::Policy::builtin(),
            };
            let policy = match policy {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("skynet-testsvc: policy: {e}");
                    return ExitCode::from(64);
                }
            };
            let config = skynet_policy::Config {
                policy: std::sync::Arc::new(policy),
                signing_key: std::sync::Arc::new(key),
                grant_ttl: Duration::from_secs(24 * 3600),
                deciders: skynet_policy::deciders_for(common.nats.seed.as_deref(), None),
            };
            skynet_runtime::service::main_service("skynet-policy", &common, |client, token| {
                skynet_policy::run(config.clone(), client, token)
            })
        }
        other => {
            eprintln!("skynet-testsvc: no service {other}");
            ExitCode::from(64)
        }
    }
}

/// The timing rules from the environment (`SKYNET_HEARTBEAT`, `SKYNET_STOP_CONFIRM`, ...).
fn timing() -> skynet_protocol::lifecycle::Timing {
    use clap::Parser;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        timing: skynet_runtime::TimingArgs,
    }
    T::parse_from(["skynet-testsvc"]).timing.timing()
}
