//! `skynet up`'s flags, and checking all of them before anything starts: a missing root, an
//! unreadable policy or a credentials directory a job could read stop `skynet up` with one
//! line naming the flag, before a server or a service has been started.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use skynet_protocol::WorkerId;
use skynet_runtime::{ConfigError, NatsArgs};

use crate::paths;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the stack keeps its state: the ledger, the worker's records and the NATS store.
    #[arg(
        long = "data-dir",
        env = "SKYNET_DATA_DIR",
        default_value = "./skynet-data"
    )]
    pub data_dir: PathBuf,

    /// Where the keys of every part and the server configuration are kept. It must lie
    /// outside every worker root, where jobs could read it [default: $XDG_RUNTIME_DIR/skynet/creds,
    /// or <tmp>/skynet-<uid>/creds]
    #[arg(long = "creds-dir", env = paths::CREDS_DIR_ENV)]
    pub creds_dir: Option<PathBuf>,

    /// The local worker's id (default: the host name).
    #[arg(long = "worker-id", env = "SKYNET_WORKER_ID")]
    pub worker_id: Option<String>,

    /// A directory the local worker may touch; it must exist (repeatable; default: your home).
    #[arg(long = "root", env = "SKYNET_WORKER_ROOTS", value_delimiter = ':')]
    pub roots: Vec<PathBuf>,

    /// The local worker's labels, comma-separated (jobs may ask for them with --label).
    #[arg(long = "labels", env = "SKYNET_WORKER_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Jobs the local worker runs at once.
    #[arg(long = "max-jobs", env = "SKYNET_WORKER_MAX_JOBS", default_value_t = 2)]
    pub max_jobs: u32,

    /// Policy rules (TOML); default: the built-in policy.
    #[arg(long = "policy", env = "SKYNET_POLICY_FILE")]
    pub policy: Option<PathBuf>,

    /// Start no local worker.
    #[arg(long = "no-worker")]
    pub no_worker: bool,

    /// The nats-server binary to start when none answers (default: .tools/bin/nats-server,
    /// then PATH).
    #[arg(long = "nats-server", env = "SKYNET_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,

    /// A queued job that no online worker can take raises a job_unroutable alert after this
    /// long (shown to `skynet submit --wait`).
    #[arg(long = "unroutable-after", env = "SKYNET_UNROUTABLE_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub unroutable_after: Duration,

    /// Log as JSON lines.
    #[arg(long = "log-json", env = "SKYNET_LOG_JSON")]
    pub log_json: bool,

    /// The planner's backend and its settings (the same flags and variables as
    /// skynet-planner: SKYNET_PLANNER, ANTHROPIC_API_KEY, OPENAI_BASE_URL, ...).
    #[command(flatten)]
    pub planner: skynet_planner::PlannerArgs,
}

/// Everything `skynet up` will run, checked.
pub struct Plan {
    pub nats: NatsArgs,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub creds_dir: PathBuf,
    pub home: PathBuf,
    pub worker: Option<Worker>,
    pub policy: Arc<skynet_policy::Policy>,
    pub planner: skynet_planner::Config,
    pub telegram: Option<skynet_telegram_ingress::Config>,
    pub sentinel: skynet_sentinel::Config,
    pub nats_server: Option<PathBuf>,
}

pub struct Worker {
    pub id: WorkerId,
    pub roots: Vec<PathBuf>,
    pub labels: Vec<String>,
    pub max_jobs: u32,
}

impl Plan {
    pub fn check(nats: NatsArgs, args: UpArgs) -> Result<Self, ConfigError> {
        let (host, port) = local_port(&nats)?;
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
            .ok_or_else(|| ConfigError::new("--root", "HOME is not set"))?;
        let data_dir = std::path::absolute(&args.data_dir).map_err(|e| {
            ConfigError::new("--data-dir", format!("{}: {e}", args.data_dir.display()))
        })?;
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(ConfigError::new(
                "--data-dir",
                format!("{} is not a directory", data_dir.display()),
            ));
        }
        let creds_dir = paths::creds_dir(args.creds_dir.as_deref())?;

        let worker = if args.no_worker {
            None
        } else {
            let id = match &args.worker_id {
                Some(id) => WorkerId::parse(id)
                    .map_err(|e| ConfigError::new("--worker-id", e.to_string()))?,
                None => WorkerId::sanitize(
                    &nix::unistd::gethostname()
                        .map(|h| h.to_string_lossy().into_owned())
                        .unwrap_or_else(|_| "local".into()),
                )
                .map_err(|e| ConfigError::new("--worker-id", e.to_string()))?,
            };
            let roots = if args.roots.is_empty() {
                vec![home.clone()]
            } else {
                args.roots.clone()
            };
            let roots = roots
                .iter()
                .map(|r| check_root(r))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(root) = paths::inside_root(&creds_dir, &roots) {
                return Err(ConfigError::new(
                    "--creds-dir",
                    format!(
                        "{} is inside the worker root {}, where jobs could read every key; \
                         choose a directory outside every --root",
                        creds_dir.display(),
                        root.display()
                    ),
                ));
            }
            Some(Worker {
                id,
                roots,
                labels: args.labels.clone(),
                max_jobs: args.max_jobs,
            })
        };

        let policy = match &args.policy {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new("--policy", format!("{}: {e}", path.display()))
                })?;
                skynet_policy::Policy::from_toml(&text)
                    .map_err(|e| ConfigError::new("--policy", format!("{}: {e}", path.display())))?
            }
            None => skynet_policy::Policy::builtin()
                .map_err(|e| ConfigError::new("--policy", e.to_string()))?,
        };
        let planner = args.planner.config(args.policy.as_deref())?;
        let telegram = skynet_telegram_ingress::config_from_env()?;
        Ok(Self {
            nats,
            host,
            port,
            data_dir,
            creds_dir,
            home,
            worker,
            policy: Arc::new(policy),
            planner,
            telegram,
            sentinel: skynet_sentinel::Config {
                timing: skynet_protocol::lifecycle::Timing {
                    unroutable_after: args.unroutable_after,
                    ..Default::default()
                },
            },
            nats_server: args.nats_server,
        })
    }

    /// Whether the first `--nats-url` is on this machine (where `skynet up` may start one).
    pub fn is_local(&self) -> bool {
        matches!(
            self.host.as_str(),
            "127.0.0.1" | "localhost" | "::1" | "[::1]"
        )
    }

    /// The nats-server binary to start, or a message saying how to get one.
    pub fn nats_server_binary(&self) -> Result<PathBuf, ConfigError> {
        find_nats_server(self.nats_server.as_deref()).ok_or_else(|| {
            ConfigError::new(
                "--nats-server",
                "no nats-server found: run scripts/install-nats, or put nats-server >= 2.11 on PATH",
            )
        })
    }
}

fn check_root(root: &Path) -> Result<PathBuf, ConfigError> {
    match root.canonicalize() {
        Ok(real) if real.is_dir() => Ok(real),
        Ok(_) => Err(ConfigError::new(
            "--root",
            format!("{} is not a directory", root.display()),
        )),
        Err(e) => Err(ConfigError::new(
            "--root",
            format!("{}: {e}", root.display()),
        )),
    }
}

fn find_nats_server(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_path_buf());
    }
    let mut candidates = vec![PathBuf::from(".tools/bin/nats-server")];
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/skynet -> the checkout's .tools
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join(".tools/bin/nats-server"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| std::path::absolute(p).ok())
}

/// The host and port of the first `--nats-url`.
fn local_port(nats: &NatsArgs) -> Result<(String, u16), ConfigError> {
    let addr = skynet_runtime::connect::servers(nats)?
        .into_iter()
        .next()
        .ok_or_else(|| ConfigError::new("--nats-url", "no server"))?;
    let url = addr.into_inner();
    Ok((
        url.host_str().unwrap_or("127.0.0.1").to_owned(),
        url.port().unwrap_or(4222),
    ))
}
