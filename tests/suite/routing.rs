//! Routing (contract: `worker`, `labels`, `queued`): jobs go to matching workers only, and
//! wait in `queued` until one appears. With two dispatcher copies only the holder of the
//! routing lease routes, so jobs of one lock still never run together, and when the holder
//! dies the other copy takes over.

use std::time::Duration;

use skynet_protocol::lifecycle::lease::RouteLease;
use skynet_protocol::{EventKind, JobId, JobState, streams};
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

/// The routing lease's holder as the bucket says, waiting until it is held by anyone but
/// `not`.
async fn lease_holder(stack: &Stack, not: Option<&str>) -> String {
    let kv = stack
        .js
        .get_key_value(streams::ROUTING_BUCKET)
        .await
        .expect("routing bucket");
    let deadline = tokio::time::Instant::now() + skynet_tests::WAIT;
    loop {
        if let Ok(Some(entry)) = kv.entry(streams::ROUTING_LEASE_KEY).await
            && let Ok(lease) = serde_json::from_slice::<RouteLease>(&entry.value)
            && let Some(holder) = lease.holder
            && Some(holder.as_str()) != not
        {
            return holder;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the routing lease was not taken (not by {not:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits `n` jobs of one lock at once, at mixed priorities.
async fn lock_sharing_jobs(stack: &Stack, n: usize) -> Vec<JobId> {
    let priorities = ["high", "normal", "low"];
    futures::future::join_all((0..n).map(|i| {
        stack.submit(serde_json::json!({
            "lock": "repo:shared",
            "priority": priorities[i % priorities.len()],
            "steps": [{"action": "shell", "cmd": "sleep 0.1"}],
        }))
    }))
    .await
}

/// Each job's time on a worker, from its events: `running` to its end.
async fn running_intervals(
    stack: &Stack,
    jobs: &[JobId],
) -> Vec<(time::OffsetDateTime, time::OffsetDateTime, JobId)> {
    let mut out = Vec::new();
    for job in jobs {
        let end = stack.wait_terminal(job).await;
        assert_eq!(end.state(), JobState::Succeeded, "{job}: {end:?}");
        let events = stack.events(job).await;
        let runs: Vec<_> = events
            .iter()
            .filter(|e| e.state() == JobState::Running)
            .collect();
        assert_eq!(runs.len(), 1, "{job} ran once: {events:?}");
        let parse = |at: &str| skynet_protocol::time::parse(at).expect("event time");
        out.push((parse(&runs[0].at), parse(&end.at), job.clone()));
    }
    out.sort();
    out
}

fn assert_no_overlap(intervals: &[(time::OffsetDateTime, time::OffsetDateTime, JobId)]) {
    for pair in intervals.windows(2) {
        let ((_, ended, a), (started, _, b)) = (&pair[0], &pair[1]);
        assert!(
            started >= ended,
            "jobs {a} and {b} of one lock ran at the same time ({b} started {started} before {a} ended {ended})"
        );
    }
}

#[tokio::test]
async fn two_dispatcher_copies_never_run_two_jobs_of_one_lock_at_once_and_routing_outlives_the_lease_holder()
 {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let first = lease_holder(&stack, None).await;
    let url = stack.nats.url();
    stack
        .start_service_at("dispatcher", "dispatcher-2", &url)
        .await;
    let mut cfg = stack.worker_config("wide");
    cfg.max_jobs = 4;
    let _w = stack.add_worker(cfg).await;

    let jobs = lock_sharing_jobs(&stack, 12).await;
    let intervals = running_intervals(&stack, &jobs).await;
    assert_no_overlap(&intervals);
    // One copy routed throughout: the lease never moved while both ran.
    assert_eq!(lease_holder(&stack, None).await, first);

    // The holder dies without letting the lease go: the other copy takes it over once it
    // went unrenewed, and routes.
    stack.kill_service("dispatcher");
    let second = lease_holder(&stack, Some(&first)).await;
    assert_ne!(second, first);
    let more = lock_sharing_jobs(&stack, 6).await;
    let later = running_intervals(&stack, &more).await;
    assert_no_overlap(&later);
    assert!(later[0].0 >= intervals.last().unwrap().1);
}
