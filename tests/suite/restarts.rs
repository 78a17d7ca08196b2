//! Restarts (contract: nothing lost, nothing run twice): the ledger killed with SIGKILL
//! mid-flow resumes with every job in exactly one terminal state; a restarted nats-server
//! is rejoined by every service and the worker.

use std::collections::HashMap;
use std::time::Duration;

use skynet_protocol::{JobId, JobState, subjects};
use skynet_tests::{Options, PERMISSIVE_POLICY, ServiceProcess, Stack, WAIT};

const TESTSVC: &str = env!("CARGO_BIN_EXE_skynet-testsvc");

#[tokio::test]
async fn the_ledger_killed_mid_flow_loses_nothing_and_duplicates_nothing() {
    let mut stack = Stack::start_with(Options {
        policy: Some(PERMISSIVE_POLICY.into()),
        services: vec!["planner", "policy", "dispatcher"],
        ..Default::default()
    })
    .await;
    let mut cfg = stack.worker_config("w1");
    cfg.max_jobs = 4;
    let w = stack.add_worker(cfg).await;
    let runs = w.home().join("runs.log");
    let ledger_dir = stack.path("ledger-proc");
    let mut ledger = ServiceProcess::start(TESTSVC, "ledger", &stack.nats.url(), &ledger_dir);
    stack.wait_endpoints(&[subjects::api::JOBS_GET]).await;

    let cmd = format!("echo $SKYNET_JOB_ID >> {}", runs.display());
    let mut jobs: Vec<JobId> = Vec::new();
    for _ in 0..10 {
        jobs.push(stack.submit_shell(&cmd).await);
    }
    stack.wait_state(&jobs[2], JobState::Succeeded).await;
    ledger.kill9();
    for _ in 0..10 {
        jobs.push(stack.submit_shell(&cmd).await);
    }
    stack.wait_state(&jobs[12], JobState::Succeeded).await;
    let mut ledger = ServiceProcess::start(TESTSVC, "ledger", &stack.nats.url(), &ledger_dir);
    for _ in 0..10 {
        jobs.push(stack.submit_shell(&cmd).await);
    }
    for job in &jobs {
        assert_eq!(stack.wait_terminal(job).await.state(), JobState::Succeeded);
    }
    // The ledger catches up with every job, each once, with its whole history.
    for job in &jobs {
        let view = stack.ledger_state(job, JobState::Succeeded).await;
        let history: Vec<&str> = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["state"].as_str().unwrap())
            .collect();
        let terminal = history.iter().filter(|s| **s == "succeeded").count();
        assert_eq!(terminal, 1, "{job}: {history:?}");
        assert_eq!(
            history.iter().filter(|s| **s == "running").count(),
            1,
            "{job}: {history:?}"
        );
    }
    let listed = stack
        .api_raw(subjects::api::JOBS_LIST, br#"{"limit": 1000}"#)
        .await
        .unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), jobs.len());
    // Every job ran exactly once.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(&runs).unwrap().lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    assert_eq!(counts.len(), jobs.len());
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    ledger.kill9();
}

#[tokio::test]
async fn services_and_workers_carry_on_after_nats_restarts() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let before = stack.submit_shell("echo before").await;
    stack.wait_state(&before, JobState::Succeeded).await;

    stack.nats.restart();
    // The test's own client reconnects too; retry the publish until it is stored.
    let after = JobId::generate();
    let body =
        serde_json::json!({"id": after, "steps": [{"action": "shell", "cmd": "echo after"}]})
            .to_string();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = async {
            stack
                .js
                .publish(subjects::SUBMIT, body.clone().into())
                .await?
                .await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(2), stored).await {
            Ok(Ok(())) => break,
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "could not publish after restart"
            ),
        }
    }
    stack.wait_state(&after, JobState::Succeeded).await;
    assert!(stack.output(&after).await.contains("after"));
    stack.ledger_state(&after, JobState::Succeeded).await;
}

#[tokio::test]
async fn the_ledger_rebuilds_its_database_from_the_stream_when_the_file_is_gone() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let done = stack.submit_shell("echo one").await;
    let denied = stack.submit_shell("rm -rf ~").await;
    stack.wait_state(&done, JobState::Succeeded).await;
    stack.wait_state(&denied, JobState::Denied).await;
    stack.ledger_state(&denied, JobState::Denied).await;

    stack.stop_service("ledger").await;
    let db = stack.path("ledger").join("ledger.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    stack.start_service("ledger").await;
    let view = stack.ledger_state(&done, JobState::Succeeded).await;
    assert_eq!(view["history"].as_array().unwrap().len(), 6, "{view}");
    stack.ledger_state(&denied, JobState::Denied).await;
    assert!(db.exists());
}

/// A follower that starts far behind (a first start over a long history, a snapshot of
/// another version) reads what the stream holds with batched direct gets, then follows
/// what comes with a consumer: every event once, in order, a deleted one skipped. No
/// consumer exists while it catches up: through a consumer, each event delivered to a
/// service that may answer requests leaves a reply permission on the server for two
/// minutes, and a replay of 600,000 events grew nats-server by ~650 MB.
#[tokio::test]
async fn a_follower_far_behind_reads_the_history_by_direct_gets_then_follows_live() {
    use futures::StreamExt;
    use skynet_protocol::{Event, EventKind, JobRequest, streams};
    let stack = Stack::start_with(Options {
        secure: true,
        services: vec![],
        ..Options::default()
    })
    .await;
    let events_stream = stack.js.get_stream(streams::EVENTS).await.unwrap();
    let request = JobRequest::from_slice(br#"{"goal":"g"}"#).unwrap();
    let publish = |i: usize| {
        let id = JobId::parse(&format!("old-{i}")).unwrap();
        let e = Event::now(
            id.clone(),
            EventKind::Received {
                request: request.clone(),
            },
        );
        let js = stack.js.clone();
        async move {
            js.publish(subjects::events(&id), e.to_json().into())
                .await
                .unwrap()
                .await
                .unwrap()
                .sequence
        }
    };
    let n = 2_000;
    let mut seqs = Vec::new();
    for i in 0..n {
        seqs.push(publish(i).await);
    }
    let gone = seqs.remove(700);
    events_stream.delete_message(gone).await.unwrap();

    // Read as a service that answers requests.
    let client = stack.connect_as("dispatcher").await;
    let log = skynet_runtime::EventLog::open(async_nats::jetstream::new(client))
        .await
        .unwrap();
    let events = log.follow(1).await.unwrap();
    futures::pin_mut!(events);
    let mut read = Vec::new();
    while read.len() < seqs.len() {
        let stored = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("the history in time")
            .unwrap()
            .unwrap();
        read.push(stored.seq);
    }
    assert_eq!(read, seqs, "every stored event once, in order");
    let consumers =
        |s: &async_nats::jetstream::stream::Stream| s.cached_info().state.consumer_count;
    let mut info = stack.js.get_stream(streams::EVENTS).await.unwrap();
    info.info().await.unwrap();
    assert_eq!(
        consumers(&info),
        0,
        "the history was read without a consumer"
    );

    // What comes next arrives live.
    let next = publish(n).await;
    let stored = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("a new event in time")
        .unwrap()
        .unwrap();
    assert_eq!(stored.seq, next);
    info.info().await.unwrap();
    assert_eq!(consumers(&info), 1, "live events come through a consumer");
}
