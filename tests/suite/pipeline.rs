//! The backbone end to end (contract: subjects and events): a job published with plain
//! NATS runs on a worker, and its events and output appear on the contract subjects.

use skynet_protocol::{EventKind, JobState};
use skynet_tests::Stack;

#[tokio::test]
async fn a_job_published_with_plain_nats_runs_and_reports() {
    let mut stack = Stack::start().await;
    let _w = stack.add_worker(stack.worker_config("laptop-1")).await;
    let job = stack
        .submit_shell("echo hello from skynet; echo oops >&2")
        .await;
    let done = stack.wait_terminal(&job).await;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    // `queued` may appear if the dispatcher had not yet seen the new worker's heartbeat.
    let states: Vec<JobState> = stack
        .events(&job)
        .await
        .iter()
        .map(|e| e.state())
        .filter(|s| *s != JobState::Queued)
        .collect();
    assert_eq!(
        states,
        [
            JobState::Received,
            JobState::Planned,
            JobState::Approved,
            JobState::Dispatched,
            JobState::Running,
            JobState::Succeeded
        ]
    );
    let EventKind::Succeeded(f) = &done.kind else {
        unreachable!()
    };
    assert_eq!(f.steps.len(), 1);
    assert_eq!(f.steps[0].exit_code, Some(0));
    let out = stack.output(&job).await;
    assert!(out.contains("hello from skynet"), "{out}");
    assert!(out.contains("oops"), "{out}");
    stack.ledger_state(&job, JobState::Succeeded).await;
}
