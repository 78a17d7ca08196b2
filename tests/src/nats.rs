//! A real nats-server with JetStream in a temp dir, on a random port, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where the server binary is: `SKYNET_NATS_SERVER`, then `.tools/bin/nats-server` (put there
/// by `scripts/install-nats`), then `nats-server` on PATH.
pub fn server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SKYNET_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/nats-server");
    if tools.is_file() {
        return tools;
    }
    PathBuf::from("nats-server")
}

/// A running nats-server. The store directory survives [`NatsServer::restart`].
pub struct NatsServer {
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    config: Option<String>,
}

impl NatsServer {
    /// Starts a server with JetStream on a random loopback port.
    pub fn start() -> Self {
        Self::launch(None, 0)
    }

    /// Starts a server with a configuration file body (auth, permissions). The port and the
    /// store dir are still chosen here.
    pub fn start_with_config(config: &str) -> Self {
        Self::launch(Some(config.to_owned()), 0)
    }

    fn launch(config: Option<String>, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let mut server = Self {
            log: Default::default(),
            child: None,
            port,
            dir,
            config,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let bin = server_binary();
        let store = self.dir.path().join("js");
        let mut cmd = Command::new(&bin);
        cmd.arg("-js")
            .arg("-sd")
            .arg(&store)
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(if self.port == 0 {
                "-1".to_string()
            } else {
                self.port.to_string()
            })
            .arg("-c")
            .arg(self.config_path());
        // The name lives in the file, so a reload (which compares it) keeps it.
        let body = format!(
            "server_name: skynet-test\n{}",
            self.config.as_deref().unwrap_or("")
        );
        std::fs::write(self.config_path(), body).expect("writing server config");
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}. Run scripts/install-nats (it puts nats-server v2.15.1 \
                 into .tools/bin) or set SKYNET_NATS_SERVER.",
                bin.display()
            )
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let keep = self.log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut k) = keep.lock() {
                    k.push(line.clone());
                }
                if !sent {
                    log.push(line.clone());
                    if let Some(addr) = line.split("Listening for client connections on ").nth(1) {
                        let port = addr.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                        let _ = tx.send(Ok(port.unwrap_or(0)));
                        sent = true;
                    } else if line.contains("[FTL]") || line.contains("[ERR]") {
                        let _ = tx.send(Err(log.join("\n")));
                        sent = true;
                    }
                }
                // Keep draining so the server never blocks on a full pipe.
            }
            if !sent {
                let _ = tx.send(Err(log.join("\n")));
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(port)) => port,
            Ok(Err(log)) => {
                let _ = child.kill();
                panic!("nats-server failed to start:\n{log}");
            }
            Err(_) => {
                let _ = child.kill();
                panic!("nats-server did not report its port within 20 s");
            }
        };
        self.port = port;
        self.child = Some(child);
        self.wait_for_jetstream();
    }

    fn wait_for_jetstream(&self) {
        // The listening line comes once JetStream has recovered its store; a TCP connect
        // confirms the socket is accepting.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The directory the server keeps its store (and config) in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Kills the server abruptly (SIGKILL), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        self.spawn();
    }

    /// Kill, then start again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("server.conf")
    }

    /// Replaces the configuration (the part after the server name) and makes the server
    /// re-read it.
    pub fn reconfigure(&mut self, config: &str) {
        self.config = Some(config.to_owned());
        std::fs::write(
            self.config_path(),
            format!("server_name: skynet-test\n{config}"),
        )
        .expect("writing server config");
        self.reload();
    }

    /// Makes the server re-read its configuration file, and waits until it says it did.
    pub fn reload(&self) {
        let reloads = || self.log().matches("Reloaded server configuration").count();
        let before = reloads();
        let child = self.child.as_ref().expect("server is running");
        let status = Command::new(server_binary())
            .arg("--signal")
            .arg(format!("reload={}", child.id()))
            .status()
            .expect("signalling nats-server");
        assert!(status.success(), "nats-server --signal reload failed");
        for _ in 0..500 {
            if reloads() > before {
                return;
            }
            let log = self.log();
            assert!(!log.contains("Failed to reload"), "reload failed:\n{log}");
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("nats-server did not reload within 5 s:\n{}", self.log());
    }

    /// A client connected to this server (for tests that talk NATS directly).
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connecting to the test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
