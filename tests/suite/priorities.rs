//! Priorities and locks (contract: JobRequest `priority`, `lock`): among jobs waiting for
//! the same workers a higher priority starts first, first come first served within one;
//! jobs with one lock never run at the same time, a waiting one's `queued` event names the
//! holder, and the lock is freed however the holder ends, its worker lost included. Skills
//! that touch a repository lock it by default; bad values are refused naming the field.

use skynet_protocol::{EventKind, JobId, JobState, subjects};
use skynet_tests::{Options, ServiceProcess, Stack};

const TESTSVC: &str = env!("CARGO_BIN_EXE_skynet-testsvc");

fn gated(gate: &std::path::Path, say: &str) -> String {
    format!(
        "echo {say}; while [ ! -e {} ]; do sleep 0.05; done",
        gate.display()
    )
}

async fn at_state(stack: &Stack, job: &JobId, state: JobState) -> String {
    stack
        .events(job)
        .await
        .into_iter()
        .find(|e| e.state() == state)
        .unwrap_or_else(|| panic!("{job} never {state}"))
        .at
}

#[tokio::test]
async fn a_full_worker_starts_high_then_normal_then_low_whatever_order_they_came_in() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let mut cfg = stack.worker_config("solo");
    cfg.max_jobs = 1;
    let w = stack.add_worker(cfg).await;
    let gate = w.home().join("gate");
    let blocker = stack.submit_shell(&gated(&gate, "blocking")).await;
    stack.wait_output(&blocker, "blocking").await;
    let mut waiting = Vec::new();
    for priority in ["low", "normal", "high", "normal"] {
        let job = stack
            .submit(serde_json::json!({"priority": priority, "steps": [{"action": "shell", "cmd": "true"}]}))
            .await;
        stack.wait_state(&job, JobState::Queued).await;
        waiting.push((priority, job));
    }
    std::fs::write(&gate, "").unwrap();
    let mut started = Vec::new();
    for (priority, job) in &waiting {
        stack.wait_state(job, JobState::Succeeded).await;
        started.push((
            at_state(&stack, job, JobState::Dispatched).await,
            *priority,
            job.clone(),
        ));
    }
    started.sort();
    let order: Vec<(&str, &JobId)> = started.iter().map(|(_, p, j)| (*p, j)).collect();
    assert_eq!(
        order,
        [
            ("high", &waiting[2].1),
            ("normal", &waiting[1].1),
            ("normal", &waiting[3].1),
            ("low", &waiting[0].1),
        ]
    );
}

#[tokio::test]
async fn jobs_with_one_lock_never_run_together_and_the_waiting_one_names_the_holder() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let mut cfg = stack.worker_config("roomy");
    cfg.max_jobs = 4;
    let w = stack.add_worker(cfg).await;
    let gate = w.home().join("gate");
    let holder = stack
        .submit(serde_json::json!({"lock": "repo:~/src/app", "steps": [{"action": "shell", "cmd": gated(&gate, "holding")}]}))
        .await;
    stack.wait_output(&holder, "holding").await;
    let next = stack
        .submit(serde_json::json!({"lock": "repo:~/src/app", "steps": [{"action": "shell", "cmd": "echo next"}]}))
        .await;
    let queued = stack.wait_state(&next, JobState::Queued).await;
    let EventKind::Queued { reason, .. } = &queued.kind else {
        unreachable!()
    };
    let reason = reason.clone().unwrap_or_default();
    assert!(
        reason.contains("repo:~/src/app") && reason.contains(holder.as_str()),
        "{reason}"
    );
    // Another lock is free meanwhile.
    let other = stack
        .submit(serde_json::json!({"lock": "repo:~/src/other", "steps": [{"action": "shell", "cmd": "true"}]}))
        .await;
    stack.wait_state(&other, JobState::Succeeded).await;
    assert!(
        stack
            .events(&next)
            .await
            .iter()
            .all(|e| e.state() != JobState::Dispatched)
    );

    // The holder ends (cancelled, here): the next one goes, after it.
    stack
        .api_raw(
            subjects::api::JOBS_CANCEL,
            serde_json::json!({"job_id": holder}).to_string().as_bytes(),
        )
        .await
        .unwrap();
    let ended = stack.wait_terminal(&holder).await;
    stack.wait_state(&next, JobState::Succeeded).await;
    let dispatched = at_state(&stack, &next, JobState::Dispatched).await;
    assert!(dispatched >= ended.at, "{dispatched} < {}", ended.at);
}

#[tokio::test]
async fn a_lost_workers_lock_is_freed_for_the_next_job() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let cfg = stack.worker_config("doomed");
    let mut worker = ServiceProcess::worker(TESTSVC, &stack.nats.url(), &cfg);
    stack.wait_worker_registered(&cfg.id).await;
    let holder = stack
        .submit(serde_json::json!({"lock": "db", "worker": "doomed", "steps": [{"action": "shell", "cmd": "echo holding; sleep 30"}]}))
        .await;
    stack.wait_output(&holder, "holding").await;
    let next = stack
        .submit(
            serde_json::json!({"lock": "db", "steps": [{"action": "shell", "cmd": "echo next"}]}),
        )
        .await;
    stack.wait_state(&next, JobState::Queued).await;
    let _spare = stack.add_worker(stack.worker_config("spare")).await;
    worker.kill9();
    let lost = stack.wait_terminal(&holder).await;
    let EventKind::Failed(f) = &lost.kind else {
        panic!("{lost:?}")
    };
    assert_eq!(f.error.as_deref(), Some("worker_lost"));
    let running = stack.wait_state(&next, JobState::Running).await;
    let EventKind::Running { worker, .. } = &running.kind else {
        unreachable!()
    };
    assert_eq!(worker.as_str(), "spare");
    stack.wait_state(&next, JobState::Succeeded).await;
}

#[tokio::test]
async fn skills_that_touch_a_repository_lock_its_directory_by_default() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack
        .submit(serde_json::json!({"steps": [{"action": "skill", "name": "git_sync", "args": {"repo": "~/src/app"}}]}))
        .await;
    let planned = stack.wait_state(&job, JobState::Planned).await;
    let EventKind::Planned { lock, .. } = &planned.kind else {
        unreachable!()
    };
    assert_eq!(lock.as_deref(), Some("repo:~/src/app"));
    // A lock the request names wins over the default.
    let own = stack
        .submit(serde_json::json!({"lock": "mine", "steps": [{"action": "skill", "name": "build", "args": {"dir": "~/src/app"}}]}))
        .await;
    stack.wait_terminal(&own).await;
    let v = stack
        .ledger_state(&own, stack.wait_terminal(&own).await.state())
        .await;
    assert_eq!(v["request"]["lock"], "mine");
}

#[tokio::test]
async fn an_unknown_priority_or_an_oversize_lock_is_refused_naming_the_field() {
    let stack = Stack::start_with(Options::permissive()).await;
    for (body, field) in [
        (
            serde_json::json!({"goal": "g", "priority": "urgent"}),
            "`priority`",
        ),
        (
            serde_json::json!({"goal": "g", "lock": "l".repeat(129)}),
            "`lock`",
        ),
    ] {
        let (code, message) = stack
            .api_raw(subjects::api::JOBS_SUBMIT, body.to_string().as_bytes())
            .await
            .unwrap_err();
        assert_eq!(code, 400, "{message}");
        assert!(message.contains(field), "{message}");
    }
}
