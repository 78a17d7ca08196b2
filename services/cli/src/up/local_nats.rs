//! The nats-server `skynet up` starts: launched through `skynet __guard` so that it ends
//! when `skynet up` ends however that happens (see `guard.rs`), found and replaced when a
//! crashed run left one behind, stopped last on the way out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A nats-server this `skynet up` started. Dropping it kills the server.
pub struct LocalNats {
    child: Option<Child>,
    log: PathBuf,
}

impl LocalNats {
    /// Starts `bin -c config` under the guard, its output going to `log`.
    ///
    /// Call this from the main thread: the kernel sends the parent-death signal when the
    /// *thread* that forked exits, and the main thread lives as long as the process.
    pub fn spawn(bin: &Path, config: &Path, log: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().map_err(|e| {
            anyhow::anyhow!("cannot find the skynet binary to guard nats-server: {e}")
        })?;
        let out = std::fs::File::create(log)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(exe)
            .arg("__guard")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--")
            .arg(bin)
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
        Ok(Self {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until the server accepts connections on `host:port`, failing with the end of
    /// its log if it exits first or does not come up within `limit`.
    pub async fn wait_ready(
        &mut self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                anyhow::bail!(
                    "nats-server exited ({status}) before it was ready; its log ({}) ends with:\n{}",
                    self.log.display(),
                    log_tail(&self.log, 8)
                );
            }
            if super::answers(host, port).await {
                return Ok(());
            }
            if start.elapsed() > limit {
                anyhow::bail!(
                    "nats-server did not come up on port {port} within {limit:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("nats-server did not stop within {grace:?}; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The pids of this user's nats-servers started with `-c` one of `configs`: servers of an
/// earlier `skynet up` of this directory that outlived it.
pub fn leftovers(configs: &[PathBuf]) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::getuid().as_raw();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me || entry.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        let is_server = argv
            .first()
            .and_then(|a| {
                Path::new(std::str::from_utf8(a).ok()?)
                    .file_name()
                    .map(|f| f.to_owned())
            })
            .is_some_and(|f| f.to_string_lossy().starts_with("nats-server"));
        let ours = argv.windows(2).any(|w| {
            w[0] == b"-c"
                && configs
                    .iter()
                    .any(|c| c.as_os_str().as_encoded_bytes() == w[1])
        });
        if is_server && ours && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Ends a leftover server (not our child): SIGTERM, then SIGKILL after `grace`.
pub fn end(pid: i32, grace: Duration) {
    let pid_t = Pid::from_raw(pid);
    let _ = kill(pid_t, Signal::SIGTERM);
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > grace {
            let _ = kill(pid_t, Signal::SIGKILL);
        }
        if start.elapsed() > grace * 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True while `pid` is a live process (a zombie has exited: it only waits to be reaped).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
