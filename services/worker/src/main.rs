use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use skynet_protocol::WorkerId;
use skynet_runtime::{CommonArgs, ConfigError, TimingArgs};

/// SKYNET worker: runs signed steps on this machine, confined to its roots, and reports
/// their output and results.
#[derive(Debug, Parser)]
#[command(name = "skynet-worker", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// This worker's id (letters, digits, '-', '_'). Defaults to the host name.
    #[arg(long, env = "SKYNET_WORKER_ID")]
    id: Option<String>,

    /// Labels jobs can ask for, comma-separated (e.g. linux,gpu).
    #[arg(long, env = "SKYNET_WORKER_LABELS", value_delimiter = ',')]
    labels: Vec<String>,

    /// A directory steps may touch (repeatable). Defaults to the user's home.
    #[arg(long = "root", env = "SKYNET_WORKER_ROOTS", value_delimiter = ':')]
    roots: Vec<PathBuf>,

    /// Jobs run at the same time.
    #[arg(long, env = "SKYNET_WORKER_MAX_JOBS", default_value_t = 1)]
    max_jobs: u32,

    #[command(flatten)]
    timing: TimingArgs,

    /// Public nkey of a trusted spec signer (repeatable, or comma-separated).
    #[arg(long = "trust-key", env = "SKYNET_TRUSTED_KEYS", value_delimiter = ',')]
    trust_keys: Vec<String>,

    /// File with trusted public nkeys, one per line.
    #[arg(long = "trust-file", env = "SKYNET_TRUST_FILE")]
    trust_file: Option<PathBuf>,

    /// Time between SIGTERM and SIGKILL when a step is stopped.
    #[arg(long, env = "SKYNET_KILL_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    kill_grace: Duration,

    /// Extra environment variables steps may inherit (comma-separated names).
    #[arg(long = "env-allow", env = "SKYNET_ENV_ALLOW", value_delimiter = ',')]
    env_allow: Vec<String>,

    /// Extra forbidden-command pattern, a regex (repeatable).
    #[arg(long = "forbid", env = "SKYNET_FORBID")]
    forbid: Vec<String>,

    /// The largest file a step may keep as an artifact, in bytes.
    #[arg(long, env = "SKYNET_ARTIFACT_MAX_BYTES", default_value_t = 64 << 20)]
    artifact_max_bytes: u64,

    /// Names of environment variables whose values are masked in output (comma-separated).
    #[arg(long = "redact-env", env = "SKYNET_REDACT_ENV", value_delimiter = ',')]
    redact_env: Vec<String>,

    /// How steps are confined by the kernel (Landlock on Linux): `require` refuses to start
    /// where the kernel cannot confine them, `best-effort` runs them unconfined there (and
    /// says so), `off` never confines. Default: `require` where the kernel can confine
    /// steps, `best-effort` elsewhere.
    #[arg(long, env = "SKYNET_SANDBOX", value_enum)]
    sandbox: Option<skynet_worker::sandbox::Mode>,
}

fn main() -> ExitCode {
    if let Some(code) = skynet_worker::supervise::main_if_asked() {
        return code;
    }
    let args: Args = skynet_runtime::parse_args();
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skynet-worker: {e}");
            return ExitCode::from(skynet_runtime::EXIT_CONFIG);
        }
    };
    skynet_runtime::service::main_service("skynet-worker", &args.common, |client, token| {
        skynet_worker::run(config.clone(), client, token)
    })
}

/// The worker's own credentials: its seed file, the directory that holds it (unless that
/// directory holds a root too: a seed kept in the home itself), and its trust file.
fn protected(args: &Args, roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(seed) = &args.common.nats.seed {
        let seed = std::path::absolute(seed).unwrap_or_else(|_| seed.clone());
        if let Some(dir) = seed.parent()
            && !roots.iter().any(|r| r.starts_with(dir))
        {
            out.push(dir.to_path_buf());
        }
        out.push(seed);
    }
    if let Some(t) = &args.trust_file {
        out.push(std::path::absolute(t).unwrap_or_else(|_| t.clone()));
    }
    out
}

fn config(args: &Args) -> Result<skynet_worker::Config, ConfigError> {
    let id = match &args.id {
        Some(id) => WorkerId::parse(id).map_err(|e| ConfigError::new("--id", e.to_string()))?,
        None => {
            let host = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "worker".into());
            WorkerId::sanitize(&host).map_err(|e| ConfigError::new("--id", e.to_string()))?
        }
    };
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| ConfigError::new("--root", "HOME is not set"))?;
    let roots = if args.roots.is_empty() {
        vec![home.clone()]
    } else {
        args.roots.clone()
    };
    let mut trusted: Vec<String> = args
        .trust_keys
        .iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(file) = &args.trust_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::new("--trust-file", format!("{}: {e}", file.display())))?;
        trusted.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    let mut env_allow: Vec<String> = skynet_worker::DEFAULT_ENV_ALLOW
        .iter()
        .map(|s| s.to_string())
        .collect();
    env_allow.extend(args.env_allow.iter().cloned());
    let redact = args
        .redact_env
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect();
    let protected = protected(args, &roots);
    Ok(skynet_worker::Config {
        id,
        labels: args
            .labels
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect(),
        roots,
        home,
        max_jobs: args.max_jobs,
        heartbeat: args.timing.heartbeat,
        missed_heartbeats: args.timing.missed_heartbeats,
        supervisor: std::env::current_exe()
            .map_err(|e| ConfigError::new("--id", format!("cannot find this program: {e}")))?,
        trusted_keys: trusted,
        data_dir: args.common.data_dir.clone(),
        kill_grace: args.kill_grace,
        env_allow,
        forbid: args.forbid.clone(),
        redact,
        artifact_max_bytes: args.artifact_max_bytes,
        sandbox: args.sandbox,
        protected,
    })
}
