//! Running steps (contract: Step actions, terminal events, cancel): cancel kills the whole
//! process group, time limits end jobs `timed_out`, and the worker keeps every path inside
//! its roots whatever policy allowed.

use skynet_protocol::{EventKind, JobState, subjects};
use skynet_tests::process::alive;
use skynet_tests::{Options, Stack};

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let pids = w.home().join("pids");
    let cmd = format!(
        "sleep 300 & echo $! > {p}; (sleep 300; echo never) & echo $! >> {p}; echo started; wait",
        p = pids.display()
    );
    let job = stack.submit_shell(&cmd).await;
    stack.wait_output(&job, "started").await;
    let pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)));

    let body = serde_json::json!({"job_id": job, "by": "test"}).to_string();
    let reply = stack
        .api_raw(subjects::api::JOBS_CANCEL, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply["state"], "cancel_requested");
    let done = stack.wait_terminal(&job).await;
    assert_eq!(done.state(), JobState::Cancelled, "{done:?}");
    for pid in pids {
        assert!(!alive(pid), "process {pid} of the job survived the cancel");
    }
    // Cancelling an ended job is a conflict, not an error.
    let (code, _) = stack
        .api_raw(subjects::api::JOBS_CANCEL, body.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(code, 409);
}

#[tokio::test]
async fn cancelling_before_dispatch_ends_the_job_at_once() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    // No worker can take it, so it waits.
    let job = stack
        .submit(serde_json::json!({"labels": ["nowhere"], "steps": [{"action": "shell", "cmd": "true"}]}))
        .await;
    stack.wait_state(&job, JobState::Queued).await;
    let body = serde_json::json!({"job_id": job}).to_string();
    let reply = stack
        .api_raw(subjects::api::JOBS_CANCEL, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply["state"], "cancelled");
    stack.wait_state(&job, JobState::Cancelled).await;
    let _ = &mut stack;
}

#[tokio::test]
async fn a_step_over_its_timeout_ends_timed_out() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack
        .submit(serde_json::json!({"steps": [
            {"action": "shell", "cmd": "echo before"},
            {"action": "shell", "cmd": "sleep 60", "timeout_s": 1},
            {"action": "shell", "cmd": "echo never"}
        ]}))
        .await;
    let done = stack.wait_terminal(&job).await;
    let EventKind::TimedOut(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert_eq!(f.steps.len(), 2);
    assert_eq!(f.steps[0].exit_code, Some(0));
    assert!(f.steps[1].duration_ms < 10_000, "{:?}", f.steps[1]);
    assert!(f.error.as_deref().unwrap_or("").contains("step 2"), "{f:?}");
    assert!(!stack.output(&job).await.contains("never"));

    let whole = stack
        .submit(
            serde_json::json!({"timeout_s": 1, "steps": [{"action": "shell", "cmd": "sleep 60"}]}),
        )
        .await;
    let done = stack.wait_terminal(&whole).await;
    let EventKind::TimedOut(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert!(
        f.error.as_deref().unwrap_or("").contains("job exceeded"),
        "{f:?}"
    );
}

#[tokio::test]
async fn the_worker_refuses_paths_outside_its_roots_even_when_policy_allows() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let outside = stack.path("outside");
    std::fs::write(outside.join("secret.txt"), "do not read").unwrap();
    std::os::unix::fs::symlink(&outside, w.home().join("escape")).unwrap();
    for step in [
        serde_json::json!({"action": "file_read", "path": outside.join("secret.txt")}),
        serde_json::json!({"action": "file_read", "path": "escape/secret.txt"}),
        serde_json::json!({"action": "file_read", "path": "~/../outside/secret.txt"}),
        serde_json::json!({"action": "shell", "cmd": "cat secret.txt", "cwd": outside}),
        serde_json::json!({"action": "file_write", "path": "escape/new.txt", "content": "x"}),
        serde_json::json!({"action": "git", "op": "status", "repo": "/"}),
    ] {
        let job = stack.submit(serde_json::json!({"steps": [step]})).await;
        let done = stack.wait_terminal(&job).await;
        let EventKind::Failed(f) = &done.kind else {
            panic!("{step}: {done:?}")
        };
        let error = f.error.clone().unwrap_or_default();
        assert!(error.contains("refused by the worker"), "{step}: {error}");
        assert!(!stack.output(&job).await.contains("do not read"), "{step}");
    }
    assert!(!outside.join("new.txt").exists());

    // Inside the roots, the same actions work.
    let job = stack
        .submit(serde_json::json!({"steps": [
            {"action": "file_write", "path": "notes/today.txt", "content": "hello"},
            {"action": "file_read", "path": "~/notes/today.txt"}
        ]}))
        .await;
    stack.wait_state(&job, JobState::Succeeded).await;
    assert!(stack.output(&job).await.contains("hello"));
}

#[tokio::test]
async fn the_worker_refuses_forbidden_commands_even_when_policy_allows() {
    let everything = r#"
[defaults]
verdict = "allow"
redirect = "allow"
"#;
    let mut stack = Stack::start_with(Options {
        policy: Some(everything.into()),
        ..Default::default()
    })
    .await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    std::fs::write(w.home().join("precious.txt"), "keep").unwrap();
    let job = stack.submit_shell("rm -rf ~").await;
    let done = stack.wait_terminal(&job).await;
    let EventKind::Failed(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert!(
        f.error.as_deref().unwrap_or("").contains("forbidden"),
        "{f:?}"
    );
    assert!(w.home().join("precious.txt").exists());
}

#[tokio::test]
async fn a_failing_step_stops_the_job_with_its_exit_code() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack
        .submit(serde_json::json!({"steps": [
            {"action": "shell", "argv": ["sh", "-c", "exit 3"]},
            {"action": "shell", "cmd": "echo never"}
        ]}))
        .await;
    let done = stack.wait_terminal(&job).await;
    let EventKind::Failed(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert_eq!(f.steps.len(), 1);
    assert_eq!(f.steps[0].exit_code, Some(3));
    let view = stack.ledger_state(&job, JobState::Failed).await;
    assert_eq!(view["result"]["exit_code"], 3);
}

#[tokio::test]
async fn a_cancel_nobody_confirms_ends_force_cancelled_and_the_waking_worker_stops_the_job() {
    const TESTSVC: &str = env!("CARGO_BIN_EXE_skynet-testsvc");
    let mut options = Options::permissive();
    options.timing.stop_confirm = std::time::Duration::from_secs(1);
    let stack = Stack::start_with(options).await;
    let cfg = stack.worker_config("sleepy");
    let worker = skynet_tests::ServiceProcess::worker(TESTSVC, &stack.nats.url(), &cfg);
    stack.wait_worker_registered(&cfg.id).await;
    let pid_file = cfg.home.join("pid");
    let job = stack
        .submit_shell(&format!(
            "echo $$ > {}; echo started; sleep 60",
            pid_file.display()
        ))
        .await;
    stack.wait_output(&job, "started").await;
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // The laptop sleeps: nobody can confirm the cancel.
    worker.stop();
    let body = serde_json::json!({"job_id": job}).to_string();
    let reply = stack
        .api_raw(subjects::api::JOBS_CANCEL, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply["state"], "cancel_requested");
    let done = stack.wait_terminal(&job).await;
    let EventKind::ForceCancelled(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert!(
        f.error.as_deref().unwrap_or("").contains("did not confirm"),
        "{f:?}"
    );

    // It wakes up and is told to stop what it still runs of the job.
    worker.cont();
    let deadline = tokio::time::Instant::now() + skynet_tests::WAIT;
    while alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cancelled job kept running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let events = stack.events(&job).await;
    assert_eq!(
        events.iter().filter(|e| e.state().is_terminal()).count(),
        1,
        "{events:?}"
    );
}
