use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use skynet_runtime::{CommonArgs, ConfigError};

/// SKYNET policy: judges every plan (allow, ask a person, deny) and seals what may run.
#[derive(Debug, Parser)]
#[command(name = "skynet-policy", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Policy rules (TOML). Without it the built-in policy applies (see --print-default).
    #[arg(long = "policy", env = "SKYNET_POLICY_FILE")]
    policy: Option<PathBuf>,

    /// nkey seed that seals approvals (mode 0600): workers trust its public key. Defaults to --nats-seed, else a
    /// key kept in the data dir (`policy-signing.seed`, created on first start).
    #[arg(long = "signing-seed", env = "SKYNET_POLICY_SIGNING_SEED_FILE")]
    signing_seed: Option<PathBuf>,

    /// How long an approval stays good for starting attempts of its job (a job still
    /// waiting for a worker after that fails).
    #[arg(long = "grant-ttl", env = "SKYNET_GRANT_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    grant_ttl: Duration,

    /// Overrides the policy file's approval time-out (e.g. 30m).
    #[arg(long = "approval-ttl", env = "SKYNET_APPROVAL_TTL", value_parser = humantime::parse_duration)]
    approval_ttl: Option<Duration>,

    /// The identities whose signed approvals and denials count (`approvers` in a credentials
    /// directory). Default: the `approvers` file next to --nats-seed; without an identity
    /// (no auth), decisions are taken as named.
    #[arg(long = "approvers", env = "SKYNET_POLICY_APPROVERS_FILE")]
    approvers: Option<PathBuf>,

    /// Print the built-in policy and exit.
    #[arg(long = "print-default")]
    print_default: bool,
}

fn main() -> ExitCode {
    let args: Args = skynet_runtime::parse_args();
    if args.print_default {
        print!("{}", skynet_policy::rules::DEFAULT_POLICY);
        return ExitCode::SUCCESS;
    }
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skynet-policy: {e}");
            return ExitCode::from(skynet_runtime::EXIT_CONFIG);
        }
    };
    skynet_runtime::service::main_service("skynet-policy", &args.common, |client, token| {
        skynet_policy::run(config.clone(), client, token)
    })
}

fn config(args: &Args) -> Result<skynet_policy::Config, ConfigError> {
    let mut policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new("--policy", format!("{}: {e}", path.display())))?;
            skynet_policy::Policy::from_toml(&text)
                .map_err(|e| ConfigError::new("--policy", format!("{}: {e}", path.display())))?
        }
        None => skynet_policy::Policy::builtin()
            .map_err(|e| ConfigError::new("--policy", format!("built-in policy: {e}")))?,
    };
    if let Some(ttl) = args.approval_ttl {
        policy.approval_ttl = ttl;
    }
    let signing_key = match args
        .signing_seed
        .as_ref()
        .or(args.common.nats.seed.as_ref())
    {
        Some(path) => skynet_runtime::args::read_seed(path, "--signing-seed")?.key_pair()?,
        None => skynet_runtime::keys::load_or_create(
            &args.common.data_dir.join("policy-signing.seed"),
            "--signing-seed",
        )?,
    };
    Ok(skynet_policy::Config {
        policy: Arc::new(policy),
        signing_key: Arc::new(signing_key),
        grant_ttl: args.grant_ttl,
        deciders: skynet_policy::deciders_for(
            args.common.nats.seed.as_deref(),
            args.approvers.as_deref(),
        ),
    })
}
