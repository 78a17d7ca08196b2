//! `skynet up`: the whole stack in one process, for a laptop or a demo.
//!
//! In order: check every flag (nothing has started yet), lock the data and credentials
//! directories (one `skynet up` each), replace a nats-server an earlier crashed run left
//! behind, start nats-server with auth on under the guard (it dies with us, SIGKILL
//! included), then every service and the local worker. SIGINT, SIGTERM or SIGHUP stop it all
//! within the grace periods below, whether NATS still answers or not; a second signal stops
//! at once.

mod config;
mod local_nats;
mod lock;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use skynet_runtime::creds::{CredsDir, ServerSettings};
use skynet_runtime::setup::{Existing, ensure_all, retention_from_env};
use skynet_runtime::{ConfigError, NatsArgs};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use config::Plan;
pub use config::UpArgs;
use local_nats::LocalNats;
use lock::{DirLock, LockError};

use crate::signals::Signals;

/// How long the services may take to drain after a stop signal.
const SERVICE_GRACE: Duration = Duration::from_secs(10);
/// How long draining the admin connection and stopping nats-server may take each.
const NATS_GRACE: Duration = Duration::from_secs(3);
/// How long nats-server may take to start accepting connections.
const NATS_START: Duration = Duration::from_secs(15);

/// The file in the credentials directory that says where the stack listens, so other
/// commands on this machine can find the CLI identity by themselves.
pub const STACK_FILE: &str = "stack.json";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StackFile {
    pub url: String,
    pub pid: u32,
    pub data_dir: PathBuf,
}

pub fn main(nats: NatsArgs, args: UpArgs) -> ExitCode {
    // async-nats's own lines repeat what the connection events and our errors say.
    skynet_runtime::telemetry::init_with("info,async_nats=off", args.log_json);
    match prepare(nats, args) {
        Ok((plan, start, locks)) => {
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
            let result = runtime.block_on(run(plan, start));
            drop(locks);
            skynet_runtime::service::exit_status("skynet up", result)
        }
        Err(e) => match e.downcast_ref::<LockError>() {
            Some(held @ LockError::Held { .. }) => {
                eprintln!("skynet up: {held}");
                ExitCode::from(skynet_runtime::EXIT_CONFIG)
            }
            _ => skynet_runtime::service::exit_status("skynet up", Err(e)),
        },
    }
}

/// How NATS is provided.
enum Start {
    /// A server of our own, auth on.
    Local { nats: LocalNats, creds: CredsDir },
    /// A server that was already answering (not ours); the identity is the caller's.
    Existing,
}

/// Everything before the async runtime, on the main thread: the checks, the locks, and
/// starting nats-server (whose parent-death signal is tied to this thread).
fn prepare(nats: NatsArgs, args: UpArgs) -> anyhow::Result<(Plan, Start, Vec<DirLock>)> {
    let plan = Plan::check(nats, args)?;
    std::fs::create_dir_all(&plan.data_dir)
        .map_err(|e| ConfigError::new("--data-dir", format!("{}: {e}", plan.data_dir.display())))?;
    crate::paths::private_dir(&plan.creds_dir, "--creds-dir")?;
    let locks = vec![
        DirLock::acquire(&plan.data_dir, "skynet-up.lock")?,
        DirLock::acquire(&plan.creds_dir, "skynet-up.lock")?,
    ];
    tracing::debug!(locks = ?locks.iter().map(|l| l.path().to_owned()).collect::<Vec<_>>(), "locked");

    let old_creds = plan.data_dir.join("creds");
    // A server an earlier skynet up of these directories left running (it crashed, or was
    // an older version): we hold the locks, so it is nobody's now.
    let configs = [
        plan.creds_dir.join("nats-server.conf"),
        old_creds.join("nats-server.conf"),
    ];
    for pid in local_nats::leftovers(&configs) {
        eprintln!(
            "skynet up: replacing nats-server (pid {pid}) left over from an earlier skynet up"
        );
        local_nats::end(pid, Duration::from_secs(5));
    }
    if old_creds.join("identities.json").is_file() {
        tracing::warn!(
            "{} holds keys of an older skynet up, inside the data directory where jobs may read them; \
             they are no longer used: remove them with rm -r {}",
            old_creds.display(),
            old_creds.display()
        );
    }

    if answers_now(&plan.host, plan.port) {
        tracing::warn!(url = %plan.nats.url, "a NATS server that skynet up did not start already answers; using it with --nats-seed");
        return Ok((plan, Start::Existing, locks));
    }
    if !plan.is_local() {
        return Err(ConfigError::new(
            "--nats-url",
            format!(
                "nothing answers at {} and it is not local, so skynet up will not start one there",
                plan.nats.url
            ),
        )
        .into());
    }
    let bin = plan.nats_server_binary()?;
    let mut creds = CredsDir::init(
        &plan.creds_dir,
        ServerSettings {
            listen: format!("127.0.0.1:{}", plan.port),
            store_dir: plan.data_dir.join("nats"),
        },
    )?;
    if let Some(w) = &plan.worker {
        creds.add_worker(&w.id)?;
    }
    let stack = StackFile {
        url: plan.nats.url.clone(),
        pid: std::process::id(),
        data_dir: plan.data_dir.clone(),
    };
    let stack_path = plan.creds_dir.join(STACK_FILE);
    std::fs::write(&stack_path, serde_json::to_vec_pretty(&stack)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", stack_path.display()))?;
    tracing::info!(bin = %bin.display(), port = plan.port, "starting a local nats-server (auth on)");
    let nats = LocalNats::spawn(
        &bin,
        &plan.creds_dir.join("nats-server.conf"),
        &plan.data_dir.join("nats-server.log"),
    )?;
    tracing::debug!(pid = ?nats.pid(), "nats-server started under the guard");
    Ok((plan, Start::Local { nats, creds }, locks))
}

/// Whether anything accepts connections at `host:port` (blocking, at most a second).
fn answers_now(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// Whether anything accepts connections at `host:port`.
async fn answers(host: &str, port: u16) -> bool {
    tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

async fn run(plan: Plan, start: Start) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let (mut local, creds) = match start {
        Start::Local { nats, creds } => (Some(nats), Some(creds)),
        Start::Existing => (None, None),
    };
    let result = serve(&plan, local.as_mut(), creds.as_ref(), &signals).await;
    if let Some(nats) = local {
        let grace = if signals.now.is_cancelled() {
            Duration::ZERO
        } else {
            NATS_GRACE
        };
        nats.stop(grace).await;
    }
    result
}

/// The identity each part connects as.
fn identity(plan: &Plan, creds: Option<&CredsDir>, name: &str) -> NatsArgs {
    match creds {
        Some(c) => NatsArgs {
            url: plan.nats.url.clone(),
            seed: Some(c.seed_path(name)),
            ca: plan.nats.ca.clone(),
        },
        None => plan.nats.clone(),
    }
}

async fn serve(
    plan: &Plan,
    local: Option<&mut LocalNats>,
    creds: Option<&CredsDir>,
    signals: &Signals,
) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    let mut set: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let startup = start_services(plan, local, creds, &token, &mut set);
    let admin = tokio::select! {
        r = startup => r?,
        _ = signals.stop.cancelled() => {
            eprintln!("skynet up: stopped while starting");
            return Ok(());
        }
    };

    let mut failure: Option<anyhow::Error> = None;
    tokio::select! {
        _ = signals.stop.cancelled() => {
            eprintln!("skynet up: stopping (again to stop at once)");
        }
        Some(done) = set.join_next() => {
            if let Ok((name, result)) = done {
                let e = result.err().unwrap_or_else(|| anyhow::anyhow!("stopped unexpectedly"));
                failure = Some(e.context(name));
            }
        }
    }
    token.cancel();
    let drain = async {
        while let Some(done) = set.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::warn!(service = name, error = %e, "stopped with an error");
            }
        }
    };
    tokio::select! {
        _ = drain => {}
        _ = tokio::time::sleep(SERVICE_GRACE) => {
            tracing::warn!("services still running after {SERVICE_GRACE:?}; stopping them");
        }
        _ = signals.now.cancelled() => {}
    }
    set.abort_all();
    if !signals.now.is_cancelled() {
        let _ = tokio::time::timeout(NATS_GRACE, admin.drain()).await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Waits for NATS, creates the streams, starts every service and the worker; returns the
/// admin connection.
async fn start_services(
    plan: &Plan,
    local: Option<&mut LocalNats>,
    creds: Option<&CredsDir>,
    token: &CancellationToken,
    set: &mut JoinSet<(&'static str, anyhow::Result<()>)>,
) -> anyhow::Result<async_nats::Client> {
    if let Some(nats) = local {
        nats.wait_ready(&plan.host, plan.port, NATS_START).await?;
    }
    let admin_args = identity(plan, creds, "admin");
    // One quick attempt first: a server that refuses us should say so, not retry forever.
    let admin = crate::connect::connect(&admin_args, "skynet-up")
        .await
        .map_err(|e| match creds {
            None => anyhow::anyhow!(
                "{e:#}\n  A NATS server skynet up did not start answers at {}. Stop it, give skynet up \
                 another port (--nats-url nats://127.0.0.1:4333), or pass the identity it expects (--nats-seed).",
                plan.nats.url
            ),
            Some(_) => e,
        })?
        .client;
    // Only now, with a server that accepts us: no key is left behind by a failed start.
    let signing_key = Arc::new(match creds {
        Some(c) => {
            skynet_runtime::args::read_seed(&c.seed_path("policy"), "--creds-dir")?.key_pair()?
        }
        None => skynet_runtime::keys::load_or_create(
            &plan.creds_dir.join("policy-signing.seed"),
            "--creds-dir",
        )?,
    });
    let js = async_nats::jetstream::new(admin.clone());
    tokio::time::timeout(
        Duration::from_secs(30),
        ensure_all(&js, &retention_from_env()?, Existing::Update),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "setting up the streams on {} timed out: does the server run with JetStream (-js)?",
            plan.nats.url
        )
    })?
    .map_err(|e| anyhow::anyhow!("setting up the streams on {}: {e:#}", plan.nats.url))?;

    macro_rules! service {
        ($name:literal, $identity:expr, $run:expr) => {{
            let client = skynet_runtime::connect(&identity(plan, creds, $identity), $name).await?;
            let t = token.clone();
            let run = $run;
            set.spawn(async move { ($name, run(client, t).await) });
        }};
    }
    let ledger = skynet_ledger::Config {
        data_dir: plan.data_dir.clone(),
        missed_heartbeats: 3,
    };
    service!("skynet-ledger", "ledger", move |c, t| skynet_ledger::run(
        ledger, c, t
    ));
    let planner_config = plan.planner.clone();
    service!("skynet-planner", "planner", move |c, t| {
        skynet_planner::run(planner_config, c, t)
    });
    let policy_config = skynet_policy::Config {
        policy: plan.policy.clone(),
        signing_key: signing_key.clone(),
        grant_ttl: Duration::from_secs(7 * 24 * 3600),
        deciders: match creds {
            Some(c) => skynet_policy::Deciders::File(c.dir().join(skynet_policy::APPROVERS_FILE)),
            None => skynet_policy::Deciders::Anyone,
        },
    };
    service!("skynet-policy", "policy", move |c, t| {
        skynet_policy::run(policy_config, c, t)
    });
    service!("skynet-dispatcher", "dispatcher", |c, t| {
        skynet_dispatcher::run(Default::default(), c, t)
    });
    let sentinel = plan.sentinel.clone();
    service!("skynet-sentinel", "sentinel", move |c, t| {
        skynet_sentinel::run(sentinel, c, t)
    });
    service!("skynet-archiver", "archiver", |c, t| {
        skynet_archiver::run(Default::default(), c, t)
    });
    let telegram_line = match plan.telegram.clone() {
        Some(mut config) => {
            if let Some(c) = creds {
                config.signer = Some(Arc::new(
                    skynet_runtime::args::read_seed(&c.seed_path("telegram"), "--creds-dir")?
                        .key_pair()?,
                ));
            }
            service!("skynet-telegram", "telegram", move |c, t| {
                skynet_telegram_ingress::run(config, c, t)
            });
            "\n  telegram   the bot is on"
        }
        None => "",
    };

    let mut worker_line = String::from("none (--no-worker)");
    if let Some(w) = &plan.worker {
        worker_line = format!(
            "{} (roots {})",
            w.id,
            w.roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        );
        let config = skynet_worker::Config {
            id: w.id.clone(),
            labels: w.labels.clone(),
            roots: w.roots.clone(),
            home: plan.home.clone(),
            max_jobs: w.max_jobs,
            heartbeat: Duration::from_secs(5),
            missed_heartbeats: 3,
            supervisor: std::env::current_exe()?,
            trusted_keys: vec![signing_key.public_key()],
            data_dir: plan.data_dir.clone(),
            kill_grace: Duration::from_secs(5),
            env_allow: skynet_worker::DEFAULT_ENV_ALLOW
                .iter()
                .map(|s| s.to_string())
                .collect(),
            forbid: vec![],
            redact: vec![],
            artifact_max_bytes: 64 << 20,
        };
        let name = format!("worker-{}", w.id);
        service!("skynet-worker", &name, move |c, t| {
            skynet_worker::run(config, c, t)
        });
    }
    wait_for_api(&admin).await;
    eprintln!("{}", banner(plan, creds, &worker_line, telegram_line));
    Ok(admin)
}

/// Waits (at most 15 s) until the ledger, dispatcher and policy answer their endpoints, so
/// "SKYNET is up" means a command typed now is served. Each probe is a malformed request
/// the service refuses without acting.
async fn wait_for_api(admin: &async_nats::Client) {
    use skynet_protocol::subjects::api;
    use skynet_runtime::api::{CallError, call_raw};
    let probe = bytes::Bytes::from_static(br#"{"job_id":"!"}"#);
    let start = std::time::Instant::now();
    for endpoint in [api::JOBS_LIST, api::JOBS_CANCEL, api::JOBS_APPROVE] {
        loop {
            match call_raw(admin, endpoint, probe.clone(), Duration::from_secs(2)).await {
                Ok(_) | Err(CallError::Api(_)) => break,
                Err(e) if start.elapsed() > Duration::from_secs(15) => {
                    tracing::warn!(endpoint, error = %e, "not answering yet");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

fn banner(plan: &Plan, creds: Option<&CredsDir>, worker: &str, telegram: &str) -> String {
    let nats = match creds {
        Some(_) => format!(
            "{} (auth on; server log {})",
            plan.nats.url,
            plan.data_dir.join("nats-server.log").display()
        ),
        None => format!(
            "{} (a server skynet up did not start; its auth is its own business)",
            plan.nats.url
        ),
    };
    let cli = match creds {
        Some(c) => format!(
            "\n  CLI        export SKYNET_NATS_SEED_FILE={}\n             (skynet commands on this machine find it by themselves)",
            c.seed_path("cli").display()
        ),
        None => String::new(),
    };
    format!(
        "SKYNET is up (pid {}):\n  NATS       {nats}\n  worker     {worker}\n  data       {}\n  keys       {} (outside the worker's roots){cli}{telegram}\n  try        skynet submit --wait -- uname -a\nCtrl-C stops everything.",
        std::process::id(),
        plan.data_dir.display(),
        plan.creds_dir.display(),
    )
}

/// The stack file of the credentials directory `dir`, if a `skynet up` wrote one.
pub fn stack_file(dir: &Path) -> Option<StackFile> {
    let text = std::fs::read(dir.join(STACK_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}
