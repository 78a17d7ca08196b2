//! Kernel confinement (contract: `--sandbox require|best-effort|off`; a path outside the
//! worker's roots is refused whatever the policy said): with a policy that allows
//! everything, every step still runs under Landlock, and the kernel refuses reads and
//! writes outside the roots, secrets inside a home root, TCP connections without a network
//! grant, and signals to processes outside the step, with a line in the job's output that
//! says why. A worker with `--sandbox off` does what the same jobs ask, which shows each test
//! tells confinement from its absence. The worker itself refuses its own data directory,
//! seed files and clone URLs from outside its roots.

use std::path::Path;

use skynet_protocol::api::WorkersReply;
use skynet_protocol::{EventKind, JobId, JobState, subjects};
use skynet_tests::process::alive;
use skynet_tests::{Options, Stack, WorkerHandle};
use skynet_worker::sandbox::Mode;

/// Everything allowed, but one command that asks a person (for a network grant).
const ALLOW_ALL: &str = r#"
[defaults]
verdict = "allow"
redirect = "allow"
dynamic = "allow"
unparsable = "allow"
env = "allow"

[[rule]]
name = "asks a person"
verdict = "approve"
command = ['^true\s+ask-a-person$']
reason = "this command asks a person"

[[rule]]
name = "may connect"
verdict = "allow"
command = ['^python3\s.*allow-net']
network = true
"#;

const CONFINED: &str = "skynet: confined by landlock abi";

struct Setup {
    stack: Stack,
    /// Confined, the default (`require` on this kernel).
    confined: WorkerHandle,
    /// `--sandbox off`.
    open: WorkerHandle,
    /// A directory outside both workers' roots.
    outside: std::path::PathBuf,
}

async fn setup() -> Setup {
    let mut stack = Stack::start_with(Options {
        policy: Some(ALLOW_ALL.into()),
        ..Default::default()
    })
    .await;
    let confined = stack.add_worker(stack.worker_config("boxed")).await;
    let mut off = stack.worker_config("open");
    off.sandbox = Some(Mode::Off);
    let open = stack.add_worker(off).await;
    let outside = stack.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside-secret-42\n").unwrap();
    for w in [&confined, &open] {
        std::fs::create_dir_all(w.home().join(".ssh")).unwrap();
        std::fs::write(w.home().join(".ssh/id_rsa"), "PRIVATE-KEY-77\n").unwrap();
        std::fs::create_dir_all(w.home().join("keys")).unwrap();
        std::fs::write(w.home().join("keys/worker.nk"), "SUSEED-99\n").unwrap();
        std::fs::create_dir_all(w.home().join("src")).unwrap();
    }
    Setup {
        stack,
        confined,
        open,
        outside,
    }
}

impl Setup {
    /// Runs shell `cmd` on `worker`; the terminal event and the output.
    async fn run(&self, worker: &WorkerHandle, cmd: &str) -> (skynet_protocol::Event, String) {
        let job = self
            .stack
            .submit(serde_json::json!({"worker": worker.id, "steps": [{"action": "shell", "cmd": cmd}]}))
            .await;
        self.finish(&job).await
    }

    /// The terminal event and the whole log (the worker's own lines too).
    async fn finish(&self, job: &JobId) -> (skynet_protocol::Event, String) {
        let end = self.stack.wait_terminal(job).await;
        let msgs = skynet_runtime::logs::read_all(&self.stack.js, job)
            .await
            .unwrap();
        let log = msgs
            .iter()
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .collect();
        (end, log)
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn the_kernel_refuses_reads_outside_the_roots_when_policy_allows_everything() {
    let s = setup().await;
    let secret = path(&s.outside.join("secret.txt"));
    let shadow = if Path::new("/etc/shadow").exists() {
        "; cat /etc/shadow"
    } else {
        ""
    };
    let cmd =
        format!("cat {secret}; python3 -c 'print(open(\"{secret}\").read())'{shadow}; echo done");
    let (end, out) = s.run(&s.confined, &cmd).await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?}");
    assert!(out.contains(CONFINED), "{out}");
    assert!(!out.contains("outside-secret-42"), "{out}");
    assert!(
        out.contains(&format!("cat: {secret}: Permission denied")),
        "{out}"
    );
    assert!(out.contains("PermissionError"), "{out}");
    if !shadow.is_empty() {
        assert!(out.contains("/etc/shadow: Permission denied"), "{out}");
    }
    // Unconfined, the same job reads the file: the test tells the two apart.
    let (end, out) = s.run(&s.open, &cmd).await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?}");
    assert!(out.contains("outside-secret-42"), "{out}");
    assert!(!out.contains(CONFINED), "{out}");
}

#[tokio::test]
async fn secrets_inside_a_home_root_are_unreachable() {
    let s = setup().await;
    let cmd =
        r#"awk 'BEGIN{system("cat ~/.ssh/id_rsa")}'; cat keys/worker.nk; ls ~/.ssh; echo done"#;
    let (end, out) = s.run(&s.confined, cmd).await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?}");
    assert!(out.contains(CONFINED), "{out}");
    assert!(
        !out.contains("PRIVATE-KEY-77") && !out.contains("SUSEED-99"),
        "{out}"
    );
    assert!(out.contains(".ssh/id_rsa: Permission denied"), "{out}");
    assert!(out.contains("keys/worker.nk: Permission denied"), "{out}");
    // The rest of the home is there to work with, and the home can be listed.
    let (end, out) = s
        .run(
            &s.confined,
            "echo made > src/new.txt && cat src/new.txt && ls ~ | grep -x src",
        )
        .await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?} {out}");
    assert!(out.contains("made"));
    let (_, out) = s.run(&s.open, cmd).await;
    assert!(
        out.contains("PRIVATE-KEY-77") && out.contains("SUSEED-99"),
        "{out}"
    );
}

#[tokio::test]
async fn writes_go_only_to_the_roots_and_the_private_tmpdir() {
    let s = setup().await;
    let target = s.outside.join("written.txt");
    let cmd = format!(
        "echo x > {t}; echo in-tmp > \"$TMPDIR/t\" && cat \"$TMPDIR/t\"; echo to-stderr > /dev/stderr; echo done",
        t = path(&target)
    );
    let (end, out) = s.run(&s.confined, &cmd).await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?}");
    assert!(!target.exists(), "the step wrote outside its roots");
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.contains("in-tmp") && out.contains("to-stderr"), "{out}");
    let (_, _) = s.run(&s.open, &cmd).await;
    assert!(target.exists());
}

/// Whether a connection waits on `listener`.
fn pending(listener: &std::net::TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    listener.accept().is_ok()
}

#[tokio::test]
async fn tcp_connections_need_a_network_grant() {
    let s = setup().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!(
        "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=5); print(\"connected\")'"
    );
    let cmd = format!("curl -sS -m 5 http://127.0.0.1:{port}/; {connect}");
    let (end, out) = s.run(&s.confined, &cmd).await;
    assert_eq!(end.state(), JobState::Failed, "{end:?}");
    assert!(out.contains("no network"), "{out}");
    assert!(out.contains("PermissionError"), "{out}");
    assert!(!out.lines().any(|l| l == "connected"), "{out}");
    assert!(!pending(&listener), "a connection got through");

    // A policy rule with `network = true` grants it too.
    let tagged = connect.replace("\")'", "\") # allow-net'");
    assert!(tagged.ends_with("# allow-net'"), "{tagged}");
    let (end, out) = s.run(&s.confined, &tagged).await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?} {out}");
    assert!(
        out.lines().any(|l| l == "connected") && out.contains("network allowed"),
        "{out}"
    );
    assert!(pending(&listener));

    // A person's approval grants network.
    let job = s
        .stack
        .submit(serde_json::json!({"worker": s.confined.id, "steps": [
            {"action": "shell", "cmd": "true ask-a-person"},
            {"action": "shell", "cmd": connect},
        ]}))
        .await;
    s.stack.wait_state(&job, JobState::AwaitingApproval).await;
    let body = serde_json::json!({"job_id": job, "by": "alice"}).to_string();
    s.stack
        .api_raw(subjects::api::JOBS_APPROVE, body.as_bytes())
        .await
        .unwrap();
    let running = s.stack.wait_state(&job, JobState::Running).await;
    let EventKind::Running { sandbox, .. } = &running.kind else {
        unreachable!()
    };
    assert!(
        sandbox
            .as_deref()
            .is_some_and(|s| s.contains("network allowed")),
        "{sandbox:?}"
    );
    let (end, out) = s.finish(&job).await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?} {out}");
    assert!(out.lines().any(|l| l == "connected"), "{out}");
    assert!(pending(&listener));
}

#[tokio::test]
async fn a_step_cannot_signal_processes_outside_it() {
    let s = setup().await;
    let mut victim = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = victim.id() as i32;
    let cmd = format!("kill {pid}");
    let (end, out) = s.run(&s.confined, &cmd).await;
    assert_eq!(end.state(), JobState::Failed, "{end:?}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(alive(pid), "the step killed a process outside it");
    let (end, _) = s.run(&s.open, &cmd).await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?}");
    let _ = victim.wait();
    assert!(!alive(pid));
}

#[tokio::test]
async fn running_events_and_the_worker_list_say_how_steps_are_confined() {
    let s = setup().await;
    let job = s
        .stack
        .submit(serde_json::json!({"worker": s.confined.id, "steps": [{"action": "shell", "cmd": "true"}]}))
        .await;
    let running = s.stack.wait_state(&job, JobState::Running).await;
    let EventKind::Running { sandbox, .. } = &running.kind else {
        unreachable!()
    };
    let sandbox = sandbox.clone().unwrap_or_default();
    assert!(sandbox.starts_with("landlock abi"), "{sandbox}");
    assert!(sandbox.contains(&path(s.confined.home())), "{sandbox}");
    assert!(sandbox.contains("no network"), "{sandbox}");
    let job = s
        .stack
        .submit(
            serde_json::json!({"worker": s.open.id, "steps": [{"action": "shell", "cmd": "true"}]}),
        )
        .await;
    let running = s.stack.wait_state(&job, JobState::Running).await;
    assert!(
        matches!(&running.kind, EventKind::Running { sandbox: Some(s), .. } if s == "off"),
        "{running:?}"
    );
    s.stack.wait_terminal(&job).await;

    let reply = s
        .stack
        .api_raw(subjects::api::WORKERS_LIST, b"{}")
        .await
        .unwrap();
    let list: WorkersReply = serde_json::from_value(reply).unwrap();
    let of = |id: &str| {
        list.workers
            .iter()
            .find(|w| w.id.as_str() == id)
            .and_then(|w| w.sandbox.clone())
    };
    assert!(
        of("boxed").is_some_and(|s| s.starts_with("landlock abi")),
        "{list:?}"
    );
    assert_eq!(of("open").as_deref(), Some("off"));
}

#[tokio::test]
async fn the_worker_refuses_its_own_files_and_seeds_whatever_policy_says() {
    let mut stack = Stack::start_with(Options {
        policy: Some(ALLOW_ALL.into()),
        ..Default::default()
    })
    .await;
    let mut config = stack.worker_config("w1");
    // The data directory inside the root, as `./skynet-data` in the home would be.
    config.data_dir = config.home.join("skynet-data");
    let w = stack.add_worker(config).await;
    std::fs::create_dir_all(w.home().join("keys")).unwrap();
    std::fs::write(w.home().join("keys/admin.nk"), "SUSEED\n").unwrap();
    for path in [
        "~/skynet-data/worker-w1.db",
        "~/keys/admin.nk",
        "~/.ssh/id_rsa",
    ] {
        let job = stack
            .submit(serde_json::json!({"steps": [{"action": "file_read", "path": path}]}))
            .await;
        let end = stack.wait_terminal(&job).await;
        assert_eq!(end.state(), JobState::Failed, "{path}: {end:?}");
        let error = end.kind.as_finished().and_then(|f| f.error.clone());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("out of every step's reach")),
            "{path}: {error:?}"
        );
    }
}

#[tokio::test]
async fn clones_come_from_allowed_urls_and_local_ones_only_from_inside_the_roots() {
    let s = setup().await;
    let init = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let outside = s.outside.join("repo");
    init(&outside);
    let inside = s.confined.home().join("src/origin");
    init(&inside);
    let marker = s.outside.join("pwned");
    let clone = |url: String, dest: &str| {
        serde_json::json!({"worker": s.confined.id, "steps": [
            {"action": "git", "op": "clone", "repo": dest, "url": url}
        ]})
    };
    for (url, why) in [
        (path(&outside), "outside the worker's roots"),
        (
            format!("file://{}", path(&outside)),
            "outside the worker's roots",
        ),
        (
            format!("ext::sh -c touch% {}", path(&marker)),
            "spaces or control characters",
        ),
        ("ext::sh".to_string(), "remote helper"),
        // Refused at intake already (the worker refuses them too: its unit tests).
        (
            format!("--upload-pack=touch {}", path(&marker)),
            "must not start with '-'",
        ),
        ("-uX".to_string(), "must not start with '-'"),
        ("git://example.com/x".to_string(), "not allowed"),
    ] {
        let job = s.stack.submit(clone(url.clone(), "~/src/copy")).await;
        let end = s.stack.wait_terminal(&job).await;
        let error = match &end.kind {
            EventKind::Rejected { reason, .. } => Some(reason.clone()),
            kind => {
                assert_eq!(end.state(), JobState::Failed, "{url}: {end:?}");
                kind.as_finished().and_then(|f| f.error.clone())
            }
        };
        assert!(
            error.as_deref().is_some_and(|e| e.contains(why)),
            "{url}: {error:?}"
        );
    }
    assert!(!marker.exists());
    assert!(!s.confined.home().join("src/copy").exists());
    let job = s
        .stack
        .submit(clone(format!("file://{}", path(&inside)), "~/src/copy"))
        .await;
    let (end, out) = s.finish(&job).await;
    assert_eq!(end.state(), JobState::Succeeded, "{end:?} {out}");
    assert!(s.confined.home().join("src/copy/.git").is_dir());
}
