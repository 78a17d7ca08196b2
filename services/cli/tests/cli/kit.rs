//! What the CLI tests share: a temp HOME and runtime dir per test (never the real home),
//! the real `skynet` binary, `skynet up` as a child process, and a pseudo-terminal.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a test waits for something before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn skynet() -> &'static str {
    env!("CARGO_BIN_EXE_skynet")
}

/// The checkout's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The nats-server binary: `SKYNET_NATS_SERVER`, else `.tools/bin/nats-server`.
pub fn nats_server() -> PathBuf {
    if let Some(p) = std::env::var_os("SKYNET_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let tools = repo().join(".tools/bin/nats-server");
    assert!(
        tools.is_file(),
        "no nats-server: run scripts/install-nats or set SKYNET_NATS_SERVER"
    );
    tools
}

/// A free loopback port, from below the kernel's ephemeral range (32768 and up), so that
/// neither another test's `bind(0)` nor an outgoing connection takes it before
/// `skynet up` starts its server there (nextest runs each test in a process of its own).
pub fn free_port() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as u64
        ^ ((std::process::id() as u64) << 16);
    let mut x = seed | 1;
    loop {
        // xorshift: spread the tries over the range.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// True while `pid` is a live process (not a zombie).
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

/// Waits until `cond` holds, failing with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A user's world: HOME, XDG_RUNTIME_DIR and a port, all private to one test.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        Self {
            dir,
            port: free_port(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Where `skynet up` keeps the keys by default.
    pub fn creds(&self) -> PathBuf {
        self.runtime_dir().join("skynet/creds")
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `skynet ARGS` in this world, from HOME, with no colour settings or identity of the
    /// caller's leaking in.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(skynet());
        c.args(args);
        self.apply(&mut c);
        c
    }

    /// Gives `c` this world's environment and working directory.
    pub fn apply(&self, c: &mut Command) {
        for k in [
            "SKYNET_NATS_SEED_FILE",
            "SKYNET_CREDS_DIR",
            "SKYNET_DATA_DIR",
            "SKYNET_WORKER_ROOTS",
            "SKYNET_WORKER_ID",
            "SKYNET_POLICY_FILE",
            "NO_COLOR",
            "TELEGRAM_BOT_TOKEN",
            "TELOXIDE_TOKEN",
            "RUST_LOG",
        ] {
            c.env_remove(k);
        }
        c.env("HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("SKYNET_NATS_URL", self.url())
            .env("SKYNET_NATS_SERVER", nats_server())
            .env("USER", "tester")
            .current_dir(self.home());
    }

    /// Runs `skynet ARGS` to its end (at most `WAIT`).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(self.cmd(args))
    }

    /// Starts `c` with stderr piped (stdin and stdout closed), without waiting.
    pub fn run_cmd_spawn(&self, mut c: Command) -> Child {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting")
    }

    pub fn run_cmd(&self, mut c: Command) -> Run {
        c.stdin(Stdio::null());
        let start = Instant::now();
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting skynet");
        let pid = child.id() as i32;
        let watchdog = std::thread::spawn(move || {
            while start.elapsed() < WAIT {
                if !alive(pid) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        });
        let out = child.wait_with_output().expect("skynet output");
        let _ = watchdog.join();
        Run {
            out,
            took: start.elapsed(),
        }
    }

    /// Starts `skynet up ARGS` (a worker `w1` unless ARGS say otherwise) and waits until it
    /// says it is up and its worker is online.
    pub fn up(&self, args: &[&str]) -> Up {
        let up = self.spawn_up(args);
        up.wait_for("SKYNET is up");
        if !args.contains(&"--no-worker") {
            wait_until(WAIT, "the worker to be online", || {
                let r = self.run(&["workers"]);
                r.ok() && r.stdout().contains("online")
            });
        }
        up
    }

    /// Starts `skynet up ARGS` without waiting for anything.
    pub fn spawn_up(&self, args: &[&str]) -> Up {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.dir.path().join(format!("up-{n}.log"));
        let file = File::create(&log).unwrap();
        let mut c = self.cmd(&["up"]);
        if !args
            .iter()
            .any(|a| *a == "--worker-id" || *a == "--no-worker")
        {
            c.args(["--worker-id", "w1"]);
        }
        c.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = c.spawn().expect("starting skynet up");
        Up {
            child: Some(child),
            log,
        }
    }
}

/// A finished `skynet` run.
pub struct Run {
    pub out: Output,
    pub took: Duration,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    /// Everything it printed, for failure messages.
    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }
}

/// `skynet up` running as a child. Dropping it stops it (SIGINT, then SIGKILL).
pub struct Up {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Up {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_for(&self, text: &str) {
        let start = Instant::now();
        while !self.log().contains(text) {
            if start.elapsed() > WAIT || !alive(self.pid()) {
                panic!("skynet up never said {text:?}; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The line of the banner that starts with `label`, without the label.
    pub fn banner(&self, label: &str) -> String {
        self.log()
            .lines()
            .find_map(|l| {
                l.trim_start()
                    .strip_prefix(label)
                    .map(|r| r.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {label} line in:\n{}", self.log()))
    }

    pub fn signal(&self, s: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), s);
    }

    /// Waits for the exit (at most `limit`); its status code and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        let child = self.child.as_mut().expect("running");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > limit {
                panic!(
                    "skynet up did not exit within {limit:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The pids of nats-servers started with `-c CONFIG`.
pub fn servers_with_config(config: &Path) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        let is_server = argv
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).ends_with("nats-server"));
        let ours = argv
            .windows(2)
            .any(|w| w[0] == b"-c" && w[1] == config.as_os_str().as_encoded_bytes());
        if is_server && ours && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// A program on a pseudo-terminal that is its controlling terminal (through `setsid
/// --ctty`), so Ctrl-C typed on it is a SIGINT from the terminal, as for a person.
pub struct Pty {
    master: File,
    out: Arc<Mutex<Vec<u8>>>,
    pub child: Child,
}

impl Pty {
    pub fn spawn(env: &Env, args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut c = Command::new("setsid");
        c.arg("--ctty").arg(skynet()).args(args);
        env.apply(&mut c);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c.env("TERM", "xterm")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = c.spawn().expect("setsid (util-linux) runs skynet on a pty");
        drop(c);
        let master = File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave end is closed: the program is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self { master, out, child }
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    pub fn expect(&self, text: &str) {
        let start = Instant::now();
        while !self.output().contains(text) {
            assert!(
                start.elapsed() < WAIT,
                "the terminal never showed {text:?}; it shows:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    pub fn wait_exit(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < WAIT,
                "the program did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
