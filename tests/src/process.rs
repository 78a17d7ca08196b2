//! Services as separate processes, for tests that kill them with SIGKILL or freeze them
//! with SIGSTOP (a laptop going to sleep).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use skynet_protocol::WorkerId;

/// True while `pid` is a live process (a zombie has exited: it only waits to be reaped).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The program that hosts step supervisors for workers the tests run in-process: the
/// `skynet-testsvc` binary next to the test binary (`SKYNET_SUPERVISOR` overrides it).
pub fn supervisor_program() -> PathBuf {
    if let Some(p) = std::env::var_os("SKYNET_SUPERVISOR") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent();
    // target/<profile>/deps/<test binary>, or target/<profile>/<binary>.
    while let Some(d) = dir {
        let candidate = d.join("skynet-testsvc");
        if candidate.is_file() {
            return candidate;
        }
        dir = d.parent();
    }
    PathBuf::from("skynet-testsvc")
}

/// The settings a `skynet-testsvc worker` process runs with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub id: WorkerId,
    pub labels: Vec<String>,
    pub roots: Vec<PathBuf>,
    pub home: PathBuf,
    pub max_jobs: u32,
    pub heartbeat_ms: u64,
    #[serde(default = "three")]
    pub missed_heartbeats: u32,
    pub trusted_keys: Vec<String>,
    #[serde(default)]
    pub redact: Vec<String>,
}

fn three() -> u32 {
    3
}

impl WorkerSpec {
    pub fn from_config(c: &skynet_worker::Config) -> Self {
        Self {
            id: c.id.clone(),
            labels: c.labels.clone(),
            roots: c.roots.clone(),
            home: c.home.clone(),
            max_jobs: c.max_jobs,
            heartbeat_ms: c.heartbeat.as_millis() as u64,
            missed_heartbeats: c.missed_heartbeats,
            trusted_keys: c.trusted_keys.clone(),
            redact: c.redact.clone(),
        }
    }
}

/// A service process, killed on drop.
pub struct ServiceProcess {
    child: Child,
}

impl ServiceProcess {
    /// Starts `service` with the `skynet-testsvc` binary at `bin` (integration tests get
    /// it as `env!("CARGO_BIN_EXE_skynet-testsvc")`) against `nats_url` with `data_dir`.
    pub fn start(bin: &str, service: &str, nats_url: &str, data_dir: &Path) -> Self {
        Self::start_with_env(bin, service, nats_url, data_dir, &[])
    }

    pub fn start_with_env(
        bin: &str,
        service: &str,
        nats_url: &str,
        data_dir: &Path,
        env: &[(&str, String)],
    ) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args([service, nats_url])
            .arg(data_dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("starting skynet-testsvc");
        Self { child }
    }

    /// A worker in its own process.
    pub fn worker(bin: &str, nats_url: &str, config: &skynet_worker::Config) -> Self {
        let spec = serde_json::to_string(&WorkerSpec::from_config(config)).expect("worker spec");
        Self::start_with_env(
            bin,
            "worker",
            nats_url,
            &config.data_dir,
            &[("SKYNET_TESTSVC_WORKER", spec)],
        )
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the process (and, with `group`, the processes of that group too).
    pub fn stop(&self) {
        let _ = kill(self.pid(), Signal::SIGSTOP);
    }

    /// Wakes it up again.
    pub fn cont(&self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
    }

    /// SIGTERM, then waits (at most `within`) for the process to exit; its status, or
    /// `None` if it did not exit in time.
    pub async fn terminate(
        &mut self,
        within: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let _ = kill(self.pid(), Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
        self.kill9();
    }
}
