//! Policy and approval (contract: `awaiting_approval`, `approved`, `denied`, the approve and
//! deny endpoints): denied work never reaches a worker; a person's decision is final; an
//! unanswered approval expires.

use std::time::Duration;

use skynet_protocol::{EventKind, JobState, subjects};
use skynet_tests::{Options, Stack};

#[tokio::test]
async fn a_denied_step_never_reaches_the_worker() {
    let mut stack = Stack::start().await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    std::fs::write(w.home().join("precious.txt"), "keep me").unwrap();
    let job = stack
        .submit(serde_json::json!({"steps": [
            {"action": "shell", "cmd": "ls"},
            {"action": "shell", "cmd": "sh -c 'rm -rf ~'"}
        ]}))
        .await;
    let done = stack.wait_terminal(&job).await;
    let EventKind::Denied { reason, by, .. } = &done.kind else {
        panic!("{done:?}")
    };
    assert_eq!(by, "policy");
    assert!(reason.contains("step 2"), "{reason}");
    let events = stack.events(&job).await;
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.state(), JobState::Dispatched | JobState::Running))
    );
    let mut work = stack
        .js
        .get_stream(skynet_protocol::streams::WORK)
        .await
        .unwrap();
    assert_eq!(
        work.info().await.unwrap().state.last_sequence,
        0,
        "a spec was issued"
    );
    assert_eq!(
        std::fs::read_to_string(w.home().join("precious.txt")).unwrap(),
        "keep me"
    );
}

#[tokio::test]
async fn approve_runs_the_job_and_deny_ends_it() {
    let mut stack = Stack::start().await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let approve_me = stack.submit_shell("touch approved.txt").await;
    let waiting = stack
        .wait_state(&approve_me, JobState::AwaitingApproval)
        .await;
    let EventKind::AwaitingApproval {
        risk,
        reasons,
        plan_hash,
        ..
    } = &waiting.kind
    else {
        unreachable!()
    };
    assert!(
        reasons.iter().any(|r| r.contains("changes files")),
        "{reasons:?}"
    );
    assert_eq!(*risk, skynet_protocol::event::Risk::Medium);

    // A decision for another plan than the one shown is refused.
    let wrong =
        serde_json::json!({"job_id": approve_me, "by": "alice", "plan_hash": "0123456789ab"});
    let (code, _) = stack
        .api_raw(subjects::api::JOBS_APPROVE, wrong.to_string().as_bytes())
        .await
        .unwrap_err();
    assert_eq!(code, 409);
    let body =
        serde_json::json!({"job_id": approve_me, "by": "alice", "plan_hash": &plan_hash[..12]});
    let reply = stack
        .api_raw(subjects::api::JOBS_APPROVE, body.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(reply["state"], "approved");
    let approved = stack.wait_state(&approve_me, JobState::Approved).await;
    let EventKind::Approved { by, .. } = &approved.kind else {
        unreachable!()
    };
    assert_eq!(by, "alice");
    stack.wait_state(&approve_me, JobState::Succeeded).await;
    assert!(w.home().join("approved.txt").exists());
    // Deciding twice is a conflict.
    let (code, _) = stack
        .api_raw(subjects::api::JOBS_DENY, body.to_string().as_bytes())
        .await
        .unwrap_err();
    assert_eq!(code, 409);

    let deny_me = stack.submit_shell("touch denied.txt").await;
    stack.wait_state(&deny_me, JobState::AwaitingApproval).await;
    let body = serde_json::json!({"job_id": deny_me, "by": "bob", "reason": "not today"});
    let reply = stack
        .api_raw(subjects::api::JOBS_DENY, body.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(reply["state"], "denied");
    let done = stack.wait_terminal(&deny_me).await;
    let EventKind::Denied { reason, by, .. } = &done.kind else {
        panic!("{done:?}")
    };
    assert_eq!((reason.as_str(), by.as_str()), ("not today", "bob"));
    assert!(!w.home().join("denied.txt").exists());
}

#[tokio::test]
async fn an_unanswered_approval_expires_to_denied() {
    let mut stack = Stack::start_with(Options {
        approval_ttl: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack.submit_shell("touch never.txt").await;
    stack.wait_state(&job, JobState::AwaitingApproval).await;
    let done = stack.wait_terminal(&job).await;
    let EventKind::Denied { reason, .. } = &done.kind else {
        panic!("{done:?}")
    };
    assert_eq!(reason, "approval expired");
}
