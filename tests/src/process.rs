//! Services as separate processes, for tests that kill them with SIGKILL.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A service process, killed on drop.
pub struct ServiceProcess {
    child: Child,
}

impl ServiceProcess {
    /// Starts `service` with the `skynet-testsvc` binary at `bin` (integration tests get
    /// it as `env!("CARGO_BIN_EXE_skynet-testsvc")`) against `nats_url` with `data_dir`.
    pub fn start(bin: &str, service: &str, nats_url: &str, data_dir: &Path) -> Self {
        let child = Command::new(bin)
            .args([service, nats_url])
            .arg(data_dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting skynet-testsvc");
        Self { child }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
