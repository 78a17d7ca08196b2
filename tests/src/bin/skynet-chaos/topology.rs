//! The soak's topology: a nats-server and every SKYNET part as a process of its own, from the
//! release binaries, with auth on; each can be killed (`kill -9`), frozen (SIGSTOP) and
//! started again.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use skynet_protocol::WorkerId;
use skynet_runtime::creds::{CredsDir, ServerSettings};
use skynet_tests::NatsServer;

/// The timing the whole soak runs with: short, so losses are noticed within seconds.
pub const TIMING_ENV: &[(&str, &str)] = &[
    ("SKYNET_HEARTBEAT", "1s"),
    ("SKYNET_MISSED_HEARTBEATS", "3"),
    ("SKYNET_SPEC_RESEND", "3s"),
    ("SKYNET_TIMEOUT_GRACE", "2s"),
    ("SKYNET_STOP_CONFIRM", "6s"),
    ("SKYNET_KILL_GRACE", "2s"),
    ("SKYNET_UNROUTABLE_AFTER", "30s"),
];

/// How long a worker may be silent before it counts as lost (heartbeat × missed).
pub const OFFLINE_AFTER: Duration = Duration::from_secs(3);

/// The policy of the soak: everything runs (the load's scripts use `$(...)`, `$((...))` and
/// redirections to `$m`, which the built-in policy would ask about), but `: ask-me` asks a person.
pub const POLICY: &str = r#"
[defaults]
verdict = "allow"
redirect = "allow"
dynamic = "allow"
unparsable = "allow"
[[rule]]
name = "needs a person"
verdict = "approve"
command = ['^:\s+ask-me(\s|$)']
reason = "this job asks for approval"
"#;

/// Resident memory of a process now, in KiB (`VmRSS` of `/proc/<pid>/status`).
#[allow(dead_code)] // The bench reads it; the soak does not.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time a process has used so far (user + system, `/proc/<pid>/stat`).
#[allow(dead_code)] // The bench reads it; the soak does not.
pub fn cpu_time(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Clock ticks are 1/100 s on Linux (USER_HZ).
    Some(Duration::from_millis(ticks * 10))
}

/// Bytes the process has caused to be written to storage so far (`write_bytes` of
/// `/proc/<pid>/io`).
#[allow(dead_code)] // The bench reads it; the soak does not.
pub fn written_bytes(pid: i32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))?
        .trim()
        .parse()
        .ok()
}

/// How many of each part run, and how.
pub struct Shape {
    /// Copies of planner, policy and dispatcher.
    pub copies: usize,
    pub workers: usize,
    /// `--max-jobs` of each worker.
    pub slots: usize,
    pub sync_always: bool,
    /// The soak's short timing ([`TIMING_ENV`]) instead of the defaults.
    pub soak_timing: bool,
    pub policy: &'static str,
    /// Serve the server's monitoring endpoints (`/connz`) on a loopback port.
    pub monitor: bool,
}

impl Shape {
    /// The soak's: two copies of each stage, three workers with three slots, short timing.
    pub fn soak(sync_always: bool) -> Self {
        Self {
            copies: 2,
            workers: 3,
            slots: 3,
            sync_always,
            soak_timing: true,
            policy: POLICY,
            monitor: false,
        }
    }
}

/// One SKYNET process of the soak.
pub struct Proc {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    pub stopped: bool,
}

impl Proc {
    pub fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("process log");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display())),
        );
        self.stopped = false;
    }

    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Resident memory now, in KiB (`VmRSS` of `/proc/<pid>/status`).
    #[allow(dead_code)] // The bench reads it; the soak does not.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?.as_raw())
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.stopped {
                let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stopped = false;
    }

    pub fn freeze(&mut self) {
        if let Some(p) = self.pid() {
            let _ = kill(p, Signal::SIGSTOP);
            self.stopped = true;
        }
    }

    pub fn thaw(&mut self) {
        if let Some(p) = self.pid() {
            let _ = kill(p, Signal::SIGCONT);
        }
        self.stopped = false;
    }

    /// SIGTERM, and the time it took to exit (`None`: it did not within `grace`).
    pub fn terminate(&mut self, grace: Duration) -> Option<Duration> {
        let mut c = self.child.take()?;
        let started = std::time::Instant::now();
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        while started.elapsed() < grace {
            if let Ok(Some(_)) = c.try_wait() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Everything the soak runs.
pub struct Topology {
    pub nats: NatsServer,
    pub creds: CredsDir,
    pub procs: BTreeMap<String, Proc>,
    pub workers: Vec<(WorkerId, PathBuf)>,
    pub dir: PathBuf,
    /// The port of the server's monitoring endpoints, when asked for.
    #[allow(dead_code)] // The bench reads it; the soak does not.
    pub monitor: Option<u16>,
}

impl Topology {
    /// Sets it all up in `dir` and starts it. `bin` holds the release binaries.
    pub fn start(dir: &Path, bin: &Path, shape: &Shape) -> Self {
        let sync_always = shape.sync_always;
        let creds_dir = dir.join("creds");
        let mut creds = CredsDir::init(
            &creds_dir,
            ServerSettings {
                listen: "127.0.0.1:4222".into(),
                store_dir: dir.join("unused"),
            },
        )
        .expect("credentials");
        let workers: Vec<(WorkerId, PathBuf)> = (1..=shape.workers)
            .map(|i| {
                let id = WorkerId::parse(&format!("w{i}")).expect("worker id");
                let home = dir.join(format!("home-{id}"));
                std::fs::create_dir_all(home.join("markers")).expect("worker home");
                (id, home)
            })
            .collect();
        for (id, _) in &workers {
            creds.add_worker(id).expect("worker identity");
        }
        let mut config = creds.authorization();
        if sync_always {
            config.push_str("\njetstream { sync_interval: always }\n");
        }
        let monitor = shape.monitor.then(|| {
            // A free port, taken back just before the server takes it.
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("its address").port()
        });
        if let Some(port) = monitor {
            config.push_str(&format!("\nhttp: \"127.0.0.1:{port}\"\n"));
        }
        let nats = NatsServer::start_with_config(&config);
        let url = nats.url();
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let policy_file = dir.join("policy.toml");
        std::fs::write(&policy_file, shape.policy).expect("policy file");
        let trusted = creds
            .identity("policy")
            .map(|i| i.public_key.clone())
            .expect("policy identity");
        let mut procs = BTreeMap::new();
        let mut add = |name: String,
                       program: &str,
                       identity: &str,
                       args: Vec<String>,
                       extra: Vec<(String, String)>| {
            let data = dir.join("data").join(&name);
            std::fs::create_dir_all(&data).expect("data dir");
            let mut env: Vec<(String, String)> = vec![
                ("SKYNET_NATS_URL".into(), url.clone()),
                (
                    "SKYNET_NATS_SEED_FILE".into(),
                    creds.seed_path(identity).display().to_string(),
                ),
                ("SKYNET_DATA_DIR".into(), data.display().to_string()),
                (
                    "RUST_LOG".into(),
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                ),
            ];
            if shape.soak_timing {
                env.extend(
                    TIMING_ENV
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
            }
            env.extend(extra);
            let mut p = Proc {
                log: logs.join(format!("{name}.log")),
                program: bin.join(program),
                args,
                env,
                child: None,
                stopped: false,
            };
            p.start();
            procs.insert(name, p);
        };
        for i in 1..=shape.copies {
            add(
                format!("planner-{i}"),
                "skynet-planner",
                "planner",
                vec![],
                vec![],
            );
            add(
                format!("policy-{i}"),
                "skynet-policy",
                "policy",
                vec!["--policy".into(), policy_file.display().to_string()],
                vec![],
            );
            add(
                format!("dispatcher-{i}"),
                "skynet-dispatcher",
                "dispatcher",
                vec![],
                vec![],
            );
        }
        add("ledger".into(), "skynet-ledger", "ledger", vec![], vec![]);
        add(
            "sentinel".into(),
            "skynet-sentinel",
            "sentinel",
            vec![],
            vec![],
        );
        add(
            "archiver".into(),
            "skynet-archiver",
            "archiver",
            vec![],
            vec![],
        );
        for (id, home) in &workers {
            add(
                id.to_string(),
                "skynet-worker",
                &format!("worker-{id}"),
                vec![
                    "--id".into(),
                    id.to_string(),
                    "--root".into(),
                    home.display().to_string(),
                    "--max-jobs".into(),
                    shape.slots.to_string(),
                    "--trust-key".into(),
                    trusted.clone(),
                ],
                vec![("HOME".into(), home.display().to_string())],
            );
        }
        Self {
            nats,
            creds,
            procs,
            workers,
            dir: dir.to_path_buf(),
            monitor,
        }
    }

    /// Starts again every process that is not running, and wakes every frozen one.
    pub fn revive(&mut self) {
        for p in self.procs.values_mut() {
            if p.stopped {
                p.thaw();
            }
            if !p.running() {
                p.start();
            }
        }
    }
}
