//! `skynet up`: the whole stack in one process, for a laptop or a demo.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use skynet_protocol::WorkerId;
use skynet_runtime::setup::{Existing, ensure_all, retention_from_env};
use skynet_runtime::{ConfigError, NatsArgs};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where everything keeps its state (ledger, keys, worker records, NATS store).
    #[arg(
        long = "data-dir",
        env = "SKYNET_DATA_DIR",
        default_value = "./skynet-data"
    )]
    data_dir: PathBuf,

    /// The local worker's id (default: the host name).
    #[arg(long = "worker-id", env = "SKYNET_WORKER_ID")]
    worker_id: Option<String>,

    /// A directory the local worker may touch (repeatable; default: your home).
    #[arg(long = "root", env = "SKYNET_WORKER_ROOTS", value_delimiter = ':')]
    roots: Vec<PathBuf>,

    /// The local worker's labels, comma-separated.
    #[arg(long = "labels", env = "SKYNET_WORKER_LABELS", value_delimiter = ',')]
    labels: Vec<String>,

    /// Jobs the local worker runs at once.
    #[arg(long = "max-jobs", env = "SKYNET_WORKER_MAX_JOBS", default_value_t = 2)]
    max_jobs: u32,

    /// Policy rules (TOML); default: the built-in policy.
    #[arg(long = "policy", env = "SKYNET_POLICY_FILE")]
    policy: Option<PathBuf>,

    /// Start no local worker.
    #[arg(long = "no-worker")]
    no_worker: bool,

    /// The nats-server binary to start when none answers (default: .tools/bin/nats-server,
    /// then PATH).
    #[arg(long = "nats-server", env = "SKYNET_NATS_SERVER")]
    nats_server: Option<PathBuf>,

    /// Log as JSON lines.
    #[arg(long = "log-json", env = "SKYNET_LOG_JSON")]
    log_json: bool,

    /// The planner's backend and its settings (the same flags and variables as
    /// skynet-planner: SKYNET_PLANNER, ANTHROPIC_API_KEY, OPENAI_BASE_URL, ...).
    #[command(flatten)]
    planner: skynet_planner::PlannerArgs,
}

pub fn main(nats: NatsArgs, args: UpArgs) -> ExitCode {
    skynet_runtime::telemetry::init(args.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skynet up: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(up(nats, args));
    skynet_runtime::service::exit_status("skynet up", result)
}

/// A nats-server this command started; stopped on drop.
struct LocalNats(Child);

impl Drop for LocalNats {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_nats_server(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
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
    candidates.into_iter().find(|p| p.is_file())
}

/// The host and port of the first `--nats-url`.
fn local_port(nats: &NatsArgs) -> anyhow::Result<(String, u16)> {
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

/// Whether anything accepts connections at the first `--nats-url`.
async fn answers(host: &str, port: u16) -> bool {
    tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

/// Starts nats-server with `config` and waits until it accepts connections.
async fn start_nats(bin: &Path, config: &Path, host: &str, port: u16) -> anyhow::Result<LocalNats> {
    tracing::info!(bin = %bin.display(), port, "starting a local nats-server (auth on)");
    let child = Command::new(bin)
        .arg("-c")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
    let local = LocalNats(child);
    for _ in 0..100 {
        if answers(host, port).await {
            return Ok(local);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the local nats-server did not come up on port {port}")
}

async fn up(nats: NatsArgs, args: UpArgs) -> anyhow::Result<()> {
    let shutdown = skynet_runtime::signal_token();
    // With a bot token in the environment, the Telegram bot runs too.
    let telegram = skynet_telegram_ingress::config_from_env()?;
    std::fs::create_dir_all(&args.data_dir)?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| ConfigError::new("--root", "HOME is not set"))?;
    let worker_id = match &args.worker_id {
        Some(id) => {
            WorkerId::parse(id).map_err(|e| ConfigError::new("--worker-id", e.to_string()))?
        }
        None => WorkerId::sanitize(
            &nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "local".into()),
        )
        .map_err(|e| ConfigError::new("--worker-id", e.to_string()))?,
    };

    // With no server answering, start one with auth on: every part gets its own identity.
    let (host, port) = local_port(&nats)?;
    let (creds, _local) = if answers(&host, port).await {
        tracing::warn!(url = %nats.url, "a NATS server already answers; using it with --nats-seed (its auth is its own configuration's business)");
        (None, None)
    } else {
        if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1") {
            return Err(ConfigError::new(
                "--nats-url",
                format!("nothing answers at {} and it is not local, so skynet up will not start one there", nats.url),
            )
            .into());
        }
        let bin = find_nats_server(args.nats_server.as_deref()).ok_or_else(|| {
            ConfigError::new(
                "--nats-server",
                "no nats-server found: run scripts/install-nats, or put nats-server >= 2.11 on PATH",
            )
        })?;
        let creds_dir = args.data_dir.join("creds");
        let mut creds = skynet_runtime::creds::CredsDir::init(
            &creds_dir,
            skynet_runtime::creds::ServerSettings {
                listen: format!("127.0.0.1:{port}"),
                store_dir: std::path::absolute(args.data_dir.join("nats"))?,
            },
        )?;
        if !args.no_worker {
            creds.add_worker(&worker_id)?;
        }
        let local = start_nats(&bin, &creds_dir.join("nats-server.conf"), &host, port).await?;
        (Some(creds), Some(local))
    };
    let as_identity = |name: &str| -> NatsArgs {
        match &creds {
            Some(c) => NatsArgs {
                url: nats.url.clone(),
                seed: Some(c.seed_path(name)),
                ca: nats.ca.clone(),
            },
            None => nats.clone(),
        }
    };

    let policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new("--policy", format!("{}: {e}", path.display())))?;
            skynet_policy::Policy::from_toml(&text)
                .map_err(|e| ConfigError::new("--policy", format!("{}: {e}", path.display())))?
        }
        None => skynet_policy::Policy::builtin()
            .map_err(|e| ConfigError::new("--policy", e.to_string()))?,
    };
    let planner_config = args.planner.config(args.policy.as_deref())?;
    // Policy signs with its own identity's key when there is one.
    let signing_key = Arc::new(match &creds {
        Some(c) => {
            skynet_runtime::args::read_seed(&c.seed_path("policy"), "--data-dir")?.key_pair()?
        }
        None => skynet_runtime::keys::load_or_create(
            &args.data_dir.join("policy-signing.seed"),
            "--data-dir",
        )?,
    });

    let admin = skynet_runtime::connect(&as_identity("admin"), "skynet-up").await?;
    let js = async_nats::jetstream::new(admin.clone());
    ensure_all(&js, &retention_from_env()?, Existing::Update).await?;

    let token = CancellationToken::new();
    let mut set: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    macro_rules! service {
        ($name:literal, $identity:expr, $run:expr) => {{
            let client = skynet_runtime::connect(&as_identity($identity), $name).await?;
            let t = token.clone();
            let run = $run;
            set.spawn(async move { ($name, run(client, t).await) });
        }};
    }
    let ledger = skynet_ledger::Config {
        data_dir: args.data_dir.clone(),
        missed_heartbeats: 3,
    };
    service!("skynet-ledger", "ledger", move |c, t| skynet_ledger::run(
        ledger, c, t
    ));
    service!("skynet-planner", "planner", move |c, t| {
        skynet_planner::run(planner_config, c, t)
    });
    let policy_config = skynet_policy::Config {
        policy: Arc::new(policy),
        signing_key: signing_key.clone(),
        grant_ttl: Duration::from_secs(7 * 24 * 3600),
    };
    service!("skynet-policy", "policy", move |c, t| {
        skynet_policy::run(policy_config, c, t)
    });
    service!("skynet-dispatcher", "dispatcher", |c, t| {
        skynet_dispatcher::run(Default::default(), c, t)
    });
    service!("skynet-sentinel", "sentinel", |c, t| {
        skynet_sentinel::run(Default::default(), c, t)
    });
    service!("skynet-archiver", "archiver", |c, t| {
        skynet_archiver::run(Default::default(), c, t)
    });

    let telegram_line = match telegram {
        Some(config) => {
            service!("skynet-telegram", "telegram", move |c, t| {
                skynet_telegram_ingress::run(config, c, t)
            });
            "; the Telegram bot is on"
        }
        None => "",
    };

    let mut worker_line = String::from("no local worker");
    if !args.no_worker {
        let id = worker_id.clone();
        let roots = if args.roots.is_empty() {
            vec![home.clone()]
        } else {
            args.roots.clone()
        };
        worker_line = format!(
            "worker {id} (roots {})",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        );
        let config = skynet_worker::Config {
            id,
            labels: args.labels.clone(),
            roots,
            home,
            max_jobs: args.max_jobs,
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 3,
            supervisor: std::env::current_exe()?,
            trusted_keys: vec![signing_key.public_key()],
            data_dir: args.data_dir.clone(),
            kill_grace: Duration::from_secs(5),
            env_allow: skynet_worker::DEFAULT_ENV_ALLOW
                .iter()
                .map(|s| s.to_string())
                .collect(),
            forbid: vec![],
            redact: vec![],
            artifact_max_bytes: 64 << 20,
        };
        let identity = format!("worker-{worker_id}");
        service!("skynet-worker", &identity, move |c, t| {
            skynet_worker::run(config, c, t)
        });
    }
    let auth = match &creds {
        Some(c) => format!(
            "auth on; the CLI connects as: export SKYNET_NATS_SEED_FILE={}",
            c.seed_path("cli").display()
        ),
        None => "using the server that was already running".into(),
    };
    eprintln!(
        "SKYNET is up: NATS at {} ({auth}), {worker_line}{telegram_line}.\n  try: skynet submit --wait -- echo hello\n  Ctrl-C stops everything.",
        nats.url
    );

    let mut failure: Option<anyhow::Error> = None;
    tokio::select! {
        _ = shutdown.cancelled() => {}
        Some(done) = set.join_next() => {
            if let Ok((name, result)) = done {
                let e = result.err().unwrap_or_else(|| anyhow::anyhow!("stopped unexpectedly"));
                failure = Some(e.context(name));
            }
        }
    }
    token.cancel();
    while let Some(done) = set.join_next().await {
        if let Ok((name, Err(e))) = done {
            tracing::warn!(service = name, error = %e, "stopped with an error");
        }
    }
    let _ = admin.drain().await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
