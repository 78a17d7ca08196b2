//! Flags every binary takes, each with its environment variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use skynet_protocol::lifecycle::Timing;

use clap::{Args, Parser};

/// How to reach NATS.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL, or a comma-separated list of them (a cluster). `tls://` URLs use TLS.
    #[arg(
        long = "nats-url",
        env = "SKYNET_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub url: String,

    /// nkey seed file of this identity (must be mode 0600).
    #[arg(long = "nats-seed", env = "SKYNET_NATS_SEED_FILE", global = true)]
    pub seed: Option<PathBuf>,

    /// CA certificate (PEM) to trust for `tls://` connections.
    #[arg(long = "nats-ca", env = "SKYNET_NATS_CA_FILE", global = true)]
    pub ca: Option<PathBuf>,
}

impl NatsArgs {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            seed: None,
            ca: None,
        }
    }
}

/// The flags shared by every service.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub nats: NatsArgs,

    /// Where this service keeps its state (ledger database, archive, worker records).
    #[arg(
        long = "data-dir",
        env = "SKYNET_DATA_DIR",
        default_value = "./skynet-data"
    )]
    pub data_dir: PathBuf,

    /// Log as JSON lines instead of text (the filter comes from RUST_LOG).
    #[arg(long = "log-json", env = "SKYNET_LOG_JSON")]
    pub log_json: bool,
}

/// The timing rules of a job's life ([`Timing`]): every service takes the same flags and
/// reads the ones it needs, so one environment configures a whole deployment.
#[derive(Debug, Clone, Args)]
pub struct TimingArgs {
    /// How often a worker heartbeats into the registry.
    #[arg(long, env = "SKYNET_HEARTBEAT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub heartbeat: Duration,

    /// Heartbeats a worker may miss before it counts as offline (a worker stops its steps
    /// one heartbeat before that when its heartbeats cannot reach the server).
    #[arg(long, env = "SKYNET_MISSED_HEARTBEATS", default_value_t = 3)]
    pub missed_heartbeats: u32,

    /// A dispatched job whose worker has not started it gets its spec again this often.
    #[arg(long, env = "SKYNET_SPEC_RESEND", default_value = "10s", value_parser = humantime::parse_duration)]
    pub spec_resend: Duration,

    /// Slack after a job's timeout_s before the dispatcher asks its worker to stop it.
    #[arg(long, env = "SKYNET_TIMEOUT_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout_grace: Duration,

    /// How long a stop (a cancel, or a stop past the time limit) may go unconfirmed before
    /// the job ends force_cancelled (or timed_out) without the worker's word.
    #[arg(long, env = "SKYNET_STOP_CONFIRM", default_value = "15s", value_parser = humantime::parse_duration)]
    pub stop_confirm: Duration,

    /// A running job with no output and no progress for this long is stalled (an alert).
    #[arg(long, env = "SKYNET_STALL_AFTER", default_value = "10m", value_parser = humantime::parse_duration)]
    pub stall_after: Duration,

    /// A waiting job no online worker can take is unroutable after this long (an alert).
    #[arg(long, env = "SKYNET_UNROUTABLE_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    pub unroutable_after: Duration,

    /// A job still on its worker this long past its time limit is overdue (an alert).
    #[arg(long, env = "SKYNET_OVERDUE_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub overdue_grace: Duration,
}

impl TimingArgs {
    /// The rules, with everything not set by a flag at its default.
    pub fn timing(&self) -> Timing {
        Timing {
            heartbeat: self.heartbeat,
            missed_heartbeats: self.missed_heartbeats.max(1),
            spec_resend: self.spec_resend,
            timeout_grace: self.timeout_grace,
            stop_confirm: self.stop_confirm,
            stall_after: self.stall_after,
            unroutable_after: self.unroutable_after,
            overdue_grace: self.overdue_grace,
            ..Timing::default()
        }
    }
}

/// A configuration problem, named by its flag. Binaries exit 64 with its one-line message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct ConfigError {
    pub flag: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(flag: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            flag: flag.into(),
            message: message.into(),
        }
    }
}

/// Parses the command line. `--help` and `--version` print and exit 0; any other problem
/// prints one line naming the flag and exits 64.
pub fn parse_args<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                let code = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    crate::EXIT_CONFIG as i32
                } else {
                    0
                };
                std::process::exit(code);
            }
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let bin = std::env::args()
                .next()
                .and_then(|a| {
                    Path::new(&a)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "skynet".into());
            eprintln!("{bin}: {}", line.trim_start_matches("error: "));
            std::process::exit(crate::EXIT_CONFIG as i32);
        }
    }
}

/// Reads an nkey seed file, refusing one that others can read.
pub fn read_seed(path: &Path, flag: &str) -> Result<Seed, ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| ConfigError::new(flag, format!("cannot read {}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::new(
                flag,
                format!(
                    "{} has mode {mode:04o}; a seed must be private (mode 0600): run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ),
            ));
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(flag, format!("cannot read {}: {e}", path.display())))?;
    let seed = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('S') && l.len() > 20)
        .ok_or_else(|| ConfigError::new(flag, format!("{} holds no nkey seed", path.display())))?
        .to_owned();
    nkeys::KeyPair::from_seed(&seed).map_err(|e| {
        ConfigError::new(
            flag,
            format!("{}: not a valid nkey seed: {e}", path.display()),
        )
    })?;
    Ok(Seed(seed))
}

/// An nkey seed. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Seed(String);

impl Seed {
    pub fn new(seed: String) -> Self {
        Self(seed)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn key_pair(&self) -> Result<nkeys::KeyPair, ConfigError> {
        nkeys::KeyPair::from_seed(&self.0)
            .map_err(|e| ConfigError::new("--nats-seed", format!("invalid seed: {e}")))
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_must_be_private_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("skynet-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seed");
        let kp = nkeys::KeyPair::new_user();
        std::fs::write(&path, kp.seed().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_seed(&path, "--nats-seed").unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let seed = read_seed(&path, "--nats-seed").unwrap();
        assert_eq!(seed.key_pair().unwrap().public_key(), kp.public_key());
        assert!(!format!("{seed:?}").contains(seed.expose()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
