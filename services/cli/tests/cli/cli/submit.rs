//! `skynet submit` when things do not go as planned (issue 13 points 2 and 3): an id that is
//! already a job is said to be one and never runs the new command; Ctrl-C while waiting
//! detaches with its own exit status; a mistyped worker is said at once and the job's
//! unroutable alert is shown in the waiting terminal.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::kit::{Env, Pty, WAIT};

#[test]
fn an_existing_id_is_said_to_exist_and_never_runs_the_new_command() {
    let env = Env::new();
    let _up = env.up(&[]);
    let first = env.run(&[
        "submit",
        "--wait",
        "--id",
        "nightly-42",
        "--",
        "echo",
        "first run",
    ]);
    assert!(first.ok(), "{}", first.all());
    assert!(first.stdout().contains("first run"));

    // --wait refuses with 65 and says what the job is.
    let again = env.run(&[
        "submit",
        "--wait",
        "--id",
        "nightly-42",
        "--",
        "echo",
        "second",
    ]);
    assert_eq!(again.code(), 65, "{}", again.all());
    assert!(
        again
            .stderr()
            .contains("job nightly-42 already exists: succeeded"),
        "{}",
        again.all()
    );
    assert!(again.stderr().contains("echo 'first run'") || again.stderr().contains("first run"));
    assert!(again.stderr().contains("--attach"), "{}", again.all());
    assert!(!again.stdout().contains("second"), "{}", again.all());

    // Without --wait: the id (as scripts expect) and a note.
    let plain = env.run(&["submit", "--id", "nightly-42", "--", "echo", "second"]);
    assert!(plain.ok(), "{}", plain.all());
    assert_eq!(plain.stdout().trim(), "nightly-42");
    assert!(plain.stderr().contains("already exists"), "{}", plain.all());

    // --file of an existing id says so too.
    let file = env.home().join("job.json");
    std::fs::write(
        &file,
        r#"{"id":"nightly-42","steps":[{"action":"shell","cmd":"echo second"}]}"#,
    )
    .unwrap();
    let from_file = env.run(&["submit", "--file", file.to_str().unwrap()]);
    assert!(
        from_file.stderr().contains("already exists"),
        "{}",
        from_file.all()
    );

    // --attach watches the old job: its output, its exit status.
    let attach = env.run(&[
        "submit",
        "--attach",
        "--id",
        "nightly-42",
        "--",
        "echo",
        "second",
    ]);
    assert!(attach.ok(), "{}", attach.all());
    assert!(attach.stdout().contains("first run"), "{}", attach.all());
    assert!(!attach.stdout().contains("second"), "{}", attach.all());

    // The job ran once.
    let logs = env.run(&["logs", "nightly-42"]);
    assert_eq!(
        logs.stdout().matches("first run").count(),
        1,
        "{}",
        logs.all()
    );
}

#[test]
fn ctrl_c_while_waiting_detaches_and_the_job_goes_on() {
    let env = Env::new();
    let _up = env.up(&[]);
    let mut term = Pty::spawn(
        &env,
        &[
            "submit",
            "--wait",
            "--id",
            "long-one",
            "--",
            "sleep 30; echo done",
        ],
        &[],
    );
    term.expect("running on w1");
    term.type_bytes(b"\x03");
    term.expect("detached: job long-one continues");
    term.expect("skynet logs -f long-one");
    assert_eq!(term.wait_exit(), 75, "{}", term.output());
    let status = env.run(&["status", "long-one"]);
    assert!(status.stdout().contains("running"), "{}", status.all());
    let cancel = env.run(&["cancel", "long-one"]);
    assert!(cancel.ok(), "{}", cancel.all());
}

#[test]
fn a_mistyped_worker_is_said_at_once_and_its_alert_reaches_the_waiting_terminal() {
    let env = Env::new();
    let _up = env.up(&["--unroutable-after", "2s"]);
    let mut child = env
        .cmd(&["submit", "--wait", "--worker", "w11", "--", "echo", "hi"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut warned = None;
    let mut alerted = None;
    while alerted.is_none() && start.elapsed() < WAIT {
        let Some(Ok(line)) = lines.next() else { break };
        if line.contains("no worker named w11 has registered (workers: w1)") {
            warned = Some(start.elapsed());
        }
        if line.contains("alert (job_unroutable)") {
            alerted = Some(start.elapsed());
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.join("\n");
    assert!(warned.is_some_and(|t| t < Duration::from_secs(5)), "{seen}");
    assert!(alerted.is_some(), "no alert shown:\n{seen}");
}
