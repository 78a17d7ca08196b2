//! Routing (contract: `worker`, `labels`, `queued`): jobs go to matching workers only, and
//! wait in `queued` until one appears.

use skynet_protocol::{EventKind, JobState};
use skynet_tests::{Options, Stack};

#[tokio::test]
async fn labels_route_jobs_and_unmatched_jobs_wait_for_a_worker() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let mut linux = stack.worker_config("box-linux");
    linux.labels = vec!["linux".into()];
    let mut gpu = stack.worker_config("box-gpu");
    gpu.labels = vec!["linux".into(), "gpu".into()];
    let _a = stack.add_worker(linux).await;
    let _b = stack.add_worker(gpu).await;

    let job = stack
        .submit(
            serde_json::json!({"labels": ["gpu"], "steps": [{"action": "shell", "cmd": "true"}]}),
        )
        .await;
    let running = stack.wait_state(&job, JobState::Running).await;
    let EventKind::Running { worker, .. } = &running.kind else {
        unreachable!()
    };
    assert_eq!(worker.as_str(), "box-gpu");

    let named = stack
        .submit(serde_json::json!({"worker": "box-linux", "steps": [{"action": "shell", "cmd": "true"}]}))
        .await;
    let running = stack.wait_state(&named, JobState::Running).await;
    let EventKind::Running { worker, .. } = &running.kind else {
        unreachable!()
    };
    assert_eq!(worker.as_str(), "box-linux");

    let mac = stack
        .submit(serde_json::json!({"labels": ["mac"], "steps": [{"action": "shell", "cmd": "echo on the mac"}]}))
        .await;
    let queued = stack.wait_state(&mac, JobState::Queued).await;
    let EventKind::Queued { reason, .. } = &queued.kind else {
        unreachable!()
    };
    assert!(
        reason.as_deref().unwrap_or("").contains("mac"),
        "{reason:?}"
    );

    let mut m = stack.worker_config("box-mac");
    m.labels = vec!["mac".into()];
    let _c = stack.add_worker(m).await;
    let running = stack.wait_state(&mac, JobState::Running).await;
    let EventKind::Running { worker, .. } = &running.kind else {
        unreachable!()
    };
    assert_eq!(worker.as_str(), "box-mac");
    stack.wait_state(&mac, JobState::Succeeded).await;
}

#[tokio::test]
async fn a_worker_runs_no_more_than_max_jobs_at_once() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let mut cfg = stack.worker_config("solo");
    cfg.max_jobs = 1;
    let w = stack.add_worker(cfg).await;
    let gate = w.home().join("gate");
    let first = stack
        .submit_shell(&format!(
            "echo first; while [ ! -e {} ]; do sleep 0.05; done",
            gate.display()
        ))
        .await;
    stack.wait_output(&first, "first").await;
    let second = stack.submit_shell("echo second").await;
    stack.wait_state(&second, JobState::Queued).await;
    std::fs::write(&gate, "").unwrap();
    stack.wait_state(&first, JobState::Succeeded).await;
    stack.wait_state(&second, JobState::Succeeded).await;
    // The second job was dispatched only after the first ended.
    let ended_first = stack.events(&first).await.last().unwrap().at.clone();
    let dispatched_second = stack
        .events(&second)
        .await
        .into_iter()
        .find(|e| e.state() == JobState::Dispatched)
        .unwrap()
        .at;
    assert!(
        dispatched_second >= ended_first,
        "{dispatched_second} < {ended_first}"
    );
}
