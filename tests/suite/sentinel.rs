//! The sentinel (contract: `skynet.alerts`, `worker_lost`, retries): a dead or sleeping
//! worker is noticed within three heartbeats, its job fails or moves to another worker, a
//! worker that comes back cannot continue a stale attempt, and alerts are raised once per
//! condition, even by two sentinels, and never because of the sentinel's own trouble.

use std::time::Duration;

use skynet_protocol::alert::AlertKind;
use skynet_protocol::{EventKind, JobState};
use skynet_tests::process::alive;
use skynet_tests::proxy::TcpProxy;
use skynet_tests::{Options, ServiceProcess, Stack};

const TESTSVC: &str = env!("CARGO_BIN_EXE_skynet-testsvc");

/// Sends `sig` to the process group of a job that wrote its shell's pid (its group id).
fn signal_group(pid_file: &std::path::Path, sig: nix::sys::signal::Signal) -> i32 {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
    pid
}

#[tokio::test]
async fn a_worker_killed_mid_job_is_offline_within_three_heartbeats_and_its_job_ends_worker_lost() {
    let stack = Stack::start_with(Options::permissive()).await;
    let cfg = stack.worker_config("doomed");
    let heartbeat = cfg.heartbeat;
    let mut worker = ServiceProcess::worker(TESTSVC, &stack.nats.url(), &cfg);
    stack.wait_worker_registered(&cfg.id).await;
    let pid_file = cfg.home.join("pgid");
    let job = stack
        .submit_shell(&format!(
            "echo $$ > {}; echo started; sleep 30",
            pid_file.display()
        ))
        .await;
    stack.wait_output(&job, "started").await;

    let killed_at = skynet_protocol::time::now_ms();
    worker.kill9();
    let offline = stack
        .wait_alert(|a| a.kind == AlertKind::WorkerOffline && a.worker.as_ref() == Some(&cfg.id))
        .await;
    let done = stack.wait_terminal(&job).await;
    signal_group(&pid_file, nix::sys::signal::Signal::SIGKILL);

    let EventKind::Failed(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert_eq!(f.error.as_deref(), Some("worker_lost"));
    let noticed =
        skynet_protocol::time::unix_ms(skynet_protocol::time::parse(&offline.at).unwrap());
    let limit = 3 * heartbeat.as_millis() as i64 + 1000;
    assert!(
        noticed - killed_at <= limit,
        "worker_offline came {} ms after the kill; the limit is {limit} ms",
        noticed - killed_at
    );
    let lost = stack
        .wait_alert(|a| a.kind == AlertKind::JobWorkerLost)
        .await;
    assert_eq!(lost.job_id.as_ref(), Some(&job));
}

#[tokio::test]
async fn a_job_with_retries_moves_to_another_worker_and_the_sleeping_one_cannot_continue_it() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let a_cfg = stack.worker_config("a-sleepy");
    let a = ServiceProcess::worker(TESTSVC, &stack.nats.url(), &a_cfg);
    stack.wait_worker_registered(&a_cfg.id).await;
    let script = "echo $$ > $HOME/pgid; echo \"attempt $SKYNET_ATTEMPT\"; \
                  while [ ! -e $HOME/gate ]; do echo \"tick $SKYNET_ATTEMPT\" >> $HOME/ticks; sleep 0.1; done; \
                  echo finished";
    let job = stack
        .submit(serde_json::json!({"retries": 1, "steps": [{"action": "shell", "cmd": script}]}))
        .await;
    stack.wait_output(&job, "attempt 1").await;
    let b = stack.add_worker(stack.worker_config("b-awake")).await;

    // The laptop goes to sleep: the worker and its job freeze.
    a.stop();
    let a_job = signal_group(&a_cfg.home.join("pgid"), nix::sys::signal::Signal::SIGSTOP);
    stack
        .wait_alert(|x| x.kind == AlertKind::WorkerOffline && x.worker.as_ref() == Some(&a_cfg.id))
        .await;
    let requeued = stack.wait_state(&job, JobState::Queued).await;
    let EventKind::Queued { attempt, reason } = &requeued.kind else {
        unreachable!()
    };
    assert_eq!(*attempt, 2);
    assert!(
        reason.as_deref().unwrap_or("").contains("a-sleepy"),
        "{reason:?}"
    );
    let second = stack
        .wait_event(&job, |e| {
            matches!(&e.kind, EventKind::Running { attempt: 2, .. })
        })
        .await;
    let EventKind::Running { worker, .. } = &second.kind else {
        unreachable!()
    };
    assert_eq!(worker, &b.id);

    // It wakes up: it is told to stop the stale attempt, and it comes back online.
    signal_group(&a_cfg.home.join("pgid"), nix::sys::signal::Signal::SIGCONT);
    a.cont();
    stack
        .wait_alert(|x| x.kind == AlertKind::WorkerOnline && x.worker.as_ref() == Some(&a_cfg.id))
        .await;
    let deadline = tokio::time::Instant::now() + skynet_tests::WAIT;
    while alive(a_job) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stale attempt kept running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    std::fs::write(b.home().join("gate"), "").unwrap();
    let done = stack.wait_terminal(&job).await;
    let EventKind::Succeeded(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert_eq!(f.attempt, Some(2));
    assert_eq!(f.worker.as_ref(), Some(&b.id));
    // Nothing from the stale attempt was recorded after it was taken away.
    let events = stack.events(&job).await;
    let requeue_at = events
        .iter()
        .position(|e| e.state() == JobState::Queued && e.kind.attempt() == Some(2))
        .unwrap();
    assert!(
        events[requeue_at..]
            .iter()
            .all(|e| e.kind.attempt() != Some(1)),
        "{events:?}"
    );
    drop(a);
}

#[tokio::test]
async fn stalled_and_unroutable_jobs_raise_an_alert_when_they_start_and_when_they_end() {
    let mut options = Options::permissive();
    options.timing.stall_after = Duration::from_secs(1);
    options.timing.unroutable_after = Duration::from_millis(500);
    let mut stack = Stack::start_with(options).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;

    let slow = stack.submit_shell("echo first; sleep 3; echo second").await;
    let stalled = stack
        .wait_alert(|a| a.kind == AlertKind::JobStalled && a.job_id.as_ref() == Some(&slow))
        .await;
    assert!(stalled.detail.contains("no output"), "{}", stalled.detail);
    stack
        .wait_alert(|a| a.kind == AlertKind::JobResumed && a.job_id.as_ref() == Some(&slow))
        .await;
    stack.wait_state(&slow, JobState::Succeeded).await;

    let nowhere = stack
        .submit(serde_json::json!({"labels": ["nowhere"], "steps": [{"action": "shell", "cmd": "echo at last"}]}))
        .await;
    let unroutable = stack
        .wait_alert(|a| a.kind == AlertKind::JobUnroutable && a.job_id.as_ref() == Some(&nowhere))
        .await;
    assert!(
        unroutable.detail.contains("nowhere"),
        "{}",
        unroutable.detail
    );
    let mut cfg = stack.worker_config("w-nowhere");
    cfg.labels = vec!["nowhere".into()];
    let _w2 = stack.add_worker(cfg).await;
    stack
        .wait_alert(|a| a.kind == AlertKind::JobRoutable && a.job_id.as_ref() == Some(&nowhere))
        .await;
    stack.wait_state(&nowhere, JobState::Succeeded).await;
    let alerts = stack.alerts().await;
    for kind in [
        AlertKind::JobStalled,
        AlertKind::JobResumed,
        AlertKind::JobUnroutable,
        AlertKind::JobRoutable,
    ] {
        assert_eq!(
            alerts.iter().filter(|a| a.kind == kind).count(),
            1,
            "{kind}: {alerts:?}"
        );
    }
}

#[tokio::test]
async fn a_sentinel_cut_off_from_nats_does_not_declare_live_workers_dead() {
    let mut options = Options::permissive();
    options.services = vec!["ledger", "planner", "policy", "dispatcher", "archiver"];
    options.timing.unroutable_after = Duration::from_millis(200);
    let mut stack = Stack::start_with(options).await;
    let proxy = TcpProxy::start(([127, 0, 0, 1], stack.nats.port()).into()).await;
    stack
        .start_service_at("sentinel", "sentinel", &proxy.url())
        .await;
    let mut cfg = stack.worker_config("steady");
    cfg.heartbeat = Duration::from_millis(300);
    let mut w = stack.add_worker(cfg.clone()).await;
    // An alert shows the sentinel is up and watching before its connection is cut.
    let probe = stack
        .submit(serde_json::json!({"labels": ["nowhere"], "steps": [{"action": "shell", "cmd": "true"}]}))
        .await;
    stack
        .wait_alert(|a| a.kind == AlertKind::JobUnroutable && a.job_id.as_ref() == Some(&probe))
        .await;

    // The sentinel alone loses NATS for many heartbeats (long enough for the server to drop
    // its watch); the worker keeps beating.
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();

    // Only a real silence, after the reconnection, makes the worker offline.
    let stopped_at = skynet_protocol::time::now_ms();
    w.stop().await;
    let offline = stack
        .wait_alert(|a| a.kind == AlertKind::WorkerOffline && a.worker.as_ref() == Some(&cfg.id))
        .await;
    let at = skynet_protocol::time::unix_ms(skynet_protocol::time::parse(&offline.at).unwrap());
    assert!(
        at >= stopped_at,
        "declared dead during the sentinel's own outage: {offline:?}"
    );
    let offline_alerts = stack
        .alerts()
        .await
        .into_iter()
        .filter(|a| a.kind == AlertKind::WorkerOffline)
        .count();
    assert_eq!(offline_alerts, 1);
}

#[tokio::test]
async fn two_sentinels_raise_each_alert_once() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let url = stack.nats.url();
    stack.start_service_at("sentinel", "sentinel-2", &url).await;
    let cfg = stack.worker_config("flaky");
    let mut w = stack.add_worker(cfg.clone()).await;
    w.stop().await;
    stack
        .wait_alert(|a| a.kind == AlertKind::WorkerOffline && a.worker.as_ref() == Some(&cfg.id))
        .await;
    let _back = stack.add_worker(cfg.clone()).await;
    stack
        .wait_alert(|a| a.kind == AlertKind::WorkerOnline && a.worker.as_ref() == Some(&cfg.id))
        .await;
    let alerts = stack.alerts().await;
    let count = |k: AlertKind| alerts.iter().filter(|a| a.kind == k).count();
    assert_eq!(count(AlertKind::WorkerOffline), 1, "{alerts:?}");
    assert_eq!(count(AlertKind::WorkerOnline), 1, "{alerts:?}");
}

#[tokio::test]
async fn an_overdue_job_is_reported_by_the_sentinel_and_ended_by_its_owner_only() {
    let mut options = Options::permissive();
    options.timing.overdue_grace = Duration::from_millis(500);
    let mut stack = Stack::start_with(options).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack
        .submit(serde_json::json!({"timeout_s": 2, "steps": [{"action": "shell", "cmd": "echo started; sleep 30"}]}))
        .await;
    stack.wait_output(&job, "started").await;
    // With the owner gone, nobody records the worker's own time-out: the sentinel tells
    // people, and decides nothing.
    stack.stop_service("dispatcher").await;
    let overdue = stack
        .wait_alert(|a| a.kind == AlertKind::JobOverdue && a.job_id.as_ref() == Some(&job))
        .await;
    assert!(
        overdue.detail.contains("time limit of 2 s"),
        "{}",
        overdue.detail
    );
    assert_eq!(
        stack.events(&job).await.last().unwrap().state(),
        JobState::Running
    );
    // Back, the owner records the end the worker reported meanwhile, once.
    stack.start_service("dispatcher").await;
    let done = stack.wait_terminal(&job).await;
    let EventKind::TimedOut(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert!(
        f.error.as_deref().unwrap_or("").contains("time limit"),
        "{f:?}"
    );
    let after = stack.submit_shell("echo next").await;
    stack.wait_state(&after, JobState::Succeeded).await;
    let events = stack.events(&job).await;
    assert_eq!(
        events.iter().filter(|e| e.state().is_terminal()).count(),
        1,
        "{events:?}"
    );
}
