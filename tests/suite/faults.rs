//! Exactly once under faults (contract: a killed service, a restarted NATS or a sleeping
//! laptop neither loses a job nor runs it twice): output and ends reported across a NATS
//! restart are all recorded; a worker killed and restarted reports its abandoned attempt,
//! so the job is retried at once; a killed worker's steps die with it; a worker woken from
//! sleep never starts work that was taken back; services stop on SIGTERM without NATS, or
//! with it frozen while they start; services resume from their snapshots.

use std::time::Duration;

use skynet_protocol::alert::AlertKind;
use skynet_protocol::{EventKind, JobId, JobState};
use skynet_tests::process::alive;
use skynet_tests::{Options, ServiceProcess, Stack, WAIT};

const TESTSVC: &str = env!("CARGO_BIN_EXE_skynet-testsvc");

/// Waits until `pid` is gone (a condition with no event to wait for).
async fn wait_gone(pid: i32, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} kept running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn output_and_ends_reported_across_a_nats_restart_are_all_recorded() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let gate = w.home().join("gate");
    // The job prints its lines and ends while the server is down and just after it is back:
    // the worker's reports reach the relay while the owner's view may still lag.
    let script = format!(
        "echo start; while [ ! -e {} ]; do sleep 0.05; done; for i in $(seq 1 200); do echo line $i; done",
        gate.display()
    );
    let job = stack
        .submit(serde_json::json!({"steps": [{"action": "shell", "cmd": script}]}))
        .await;
    stack.wait_output(&job, "start").await;
    stack.nats.kill();
    std::fs::write(&gate, "").unwrap();
    stack.nats.start_again();
    let done = stack.wait_terminal(&job).await;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    let out = stack.output(&job).await;
    for i in 1..=200 {
        assert!(
            out.contains(&format!("line {i}\n")),
            "line {i} is missing: {out}"
        );
    }
    let events = stack.events(&job).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.state() == JobState::Running)
            .count(),
        1,
        "{events:?}"
    );
}

#[tokio::test]
async fn a_worker_killed_and_back_within_the_offline_window_has_its_job_retried_at_once() {
    let mut options = Options::permissive();
    // A long offline window: the retry must come from the worker's own word, not from the
    // sentinel noticing its silence.
    options.timing.missed_heartbeats = 100;
    let stack = Stack::start_with(options).await;
    let cfg = stack.worker_config("phoenix");
    let mut worker = ServiceProcess::worker(TESTSVC, &stack.nats.url(), &cfg);
    stack.wait_worker_registered(&cfg.id).await;
    let runs = cfg.home.join("runs");
    let job = stack
        .submit(serde_json::json!({
            "retries": 1,
            "timeout_s": 600,
            "steps": [{"action": "shell", "cmd": format!(
                "echo \"attempt $SKYNET_ATTEMPT\" >> {}; echo started; [ $SKYNET_ATTEMPT = 2 ] || sleep 30",
                runs.display()
            )}]
        }))
        .await;
    stack.wait_output(&job, "started").await;
    worker.kill9();
    let _back = ServiceProcess::worker(TESTSVC, &stack.nats.url(), &cfg);
    let requeued = stack.wait_state(&job, JobState::Queued).await;
    let EventKind::Queued { attempt, reason } = &requeued.kind else {
        unreachable!()
    };
    assert_eq!(*attempt, 2);
    assert!(
        reason.as_deref().unwrap_or("").contains("was lost"),
        "{reason:?}"
    );
    let done = stack.wait_terminal(&job).await;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    assert_eq!(done.kind.attempt(), Some(2));
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap(),
        "attempt 1\nattempt 2\n"
    );
}

#[tokio::test]
async fn a_killed_workers_steps_die_with_it_and_a_retry_runs_the_work_once() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let cfg = stack.worker_config("doomed");
    let mut worker = ServiceProcess::worker(TESTSVC, &stack.nats.url(), &cfg);
    stack.wait_worker_registered(&cfg.id).await;
    let ends = cfg.home.join("ends");
    let pid_file = cfg.home.join("pid");
    let job = stack
        .submit(serde_json::json!({
            "retries": 1,
            "steps": [{"action": "shell", "cmd": format!(
                "echo $$ > {}; echo started; sleep 3; echo \"end $SKYNET_ATTEMPT\" >> {}",
                pid_file.display(),
                ends.display()
            )}]
        }))
        .await;
    stack.wait_output(&job, "started").await;
    let shell = read_pid(&pid_file);
    worker.kill9();
    // The step's shell goes with its worker, without anyone restarting it.
    wait_gone(shell, "the killed worker's step").await;
    // The heir may touch the files the step writes (in the first worker's home).
    let mut heir = stack.worker_config("heir");
    heir.roots.push(cfg.home.clone());
    let _other = stack.add_worker(heir).await;
    let done = stack.wait_terminal(&job).await;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    assert_eq!(std::fs::read_to_string(&ends).unwrap(), "end 2\n");
}

#[tokio::test]
async fn a_worker_woken_from_sleep_never_starts_work_that_was_taken_back() {
    let stack = Stack::start_with(Options::permissive()).await;
    let cfg = stack.worker_config("sleepy");
    let worker = ServiceProcess::worker(TESTSVC, &stack.nats.url(), &cfg);
    stack.wait_worker_registered(&cfg.id).await;
    let marker = cfg.home.join("ran");
    // Asleep with its pull for work open: the spec is delivered to a frozen process.
    worker.stop();
    let job = stack
        .submit(serde_json::json!({
            "worker": "sleepy",
            "steps": [{"action": "shell", "cmd": format!("touch {}", marker.display())}]
        }))
        .await;
    stack.wait_state(&job, JobState::Dispatched).await;
    let done = stack.wait_terminal(&job).await;
    let EventKind::Failed(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert_eq!(f.error.as_deref(), Some("worker_lost"));
    // It wakes, comes back online, and works through its queue: the taken-back spec first.
    worker.cont();
    stack
        .wait_alert(|a| a.kind == AlertKind::WorkerOnline && a.worker.as_ref() == Some(&cfg.id))
        .await;
    let probe = stack
        .submit(serde_json::json!({"worker": "sleepy", "steps": [{"action": "shell", "cmd": "echo awake"}]}))
        .await;
    stack.wait_state(&probe, JobState::Succeeded).await;
    assert!(!marker.exists(), "a spec that was taken back ran");
    let events = stack.events(&job).await;
    assert!(
        events.iter().all(|e| e.state() != JobState::Running),
        "{events:?}"
    );
}

#[tokio::test]
async fn services_and_workers_end_on_sigterm_with_nats_gone() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let data = stack.path("procs");
    let cfg = stack.worker_config("w1");
    let mut worker = ServiceProcess::worker(TESTSVC, &stack.nats.url(), &cfg);
    stack.wait_worker_registered(&cfg.id).await;
    let mut services: Vec<(&str, ServiceProcess)> = ["ledger", "dispatcher", "sentinel"]
        .into_iter()
        .map(|s| {
            let dir = data.join(s);
            std::fs::create_dir_all(&dir).unwrap();
            (
                s,
                ServiceProcess::start(TESTSVC, s, &stack.nats.url(), &dir),
            )
        })
        .collect();
    // A job in flight, so the worker has something to give up.
    let job = stack.submit_shell("echo started; sleep 30").await;
    stack.wait_output(&job, "started").await;
    stack.nats.kill();
    let grace = Duration::from_secs(15);
    let status = worker.terminate(grace).await;
    assert!(status.is_some(), "the worker ignored SIGTERM without NATS");
    for (name, p) in &mut services {
        let status = p.terminate(grace).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} did not end cleanly on SIGTERM without NATS: {status:?}"
        );
    }
}

/// How long `skynet up` gives a service between SIGTERM and SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn services_asked_to_stop_while_starting_with_nats_frozen_end_within_their_grace() {
    use futures::StreamExt as _;
    use nix::sys::signal::{Signal, kill};
    let stack = Stack::start_with(Options::permissive()).await;
    let server = nix::unistd::Pid::from_raw(stack.nats.pid().expect("nats-server runs"));
    // Policy seals with the stack's key.
    let seed = stack.path("keys").join("policy.seed");
    std::fs::write(&seed, stack.signer.seed().unwrap()).unwrap();
    std::fs::set_permissions(&seed, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let env = [("SKYNET_TESTSVC_SIGNING_SEED", seed.display().to_string())];
    for name in ["dispatcher", "policy", "sentinel"] {
        // The JetStream API requests, to catch the service between its set-up and its
        // main loop: reading its snapshot back.
        let mut spy = stack.client.subscribe("$JS.API.>").await.unwrap();
        stack.client.flush().await.unwrap();
        let mut p = ServiceProcess::start_with_env(
            TESTSVC,
            name,
            &stack.nats.url(),
            &stack.path(name),
            &env,
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let m = tokio::time::timeout_at(deadline, spy.next())
                .await
                .unwrap_or_else(|_| panic!("{name} never read its snapshot"))
                .expect("spy subscription");
            if m.subject.contains(".GET.") && m.subject.contains("OBJ_skynet-snapshots") {
                break;
            }
        }
        // The server freezes under it mid-start (a sleeping host, a wedged server): every
        // request it makes from now on goes unanswered.
        kill(server, Signal::SIGSTOP).unwrap();
        let status = p.terminate(STOP_WITHIN).await;
        kill(server, Signal::SIGCONT).unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "{name}, asked to stop while starting with NATS frozen, did not end cleanly within \
             {STOP_WITHIN:?}: {status:?}"
        );
    }
}

#[tokio::test]
async fn a_restarted_service_resumes_from_its_snapshot() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let mut jobs: Vec<JobId> = Vec::new();
    for i in 0..20 {
        jobs.push(stack.submit_shell(&format!("echo {i}")).await);
    }
    for j in &jobs {
        stack.wait_state(j, JobState::Succeeded).await;
    }
    // A clean stop writes the snapshot at the position it reached.
    stack.stop_service("dispatcher").await;
    let last = stack
        .js
        .get_stream(skynet_protocol::streams::EVENTS)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .last_sequence;
    let store = stack
        .js
        .get_object_store(skynet_protocol::streams::SNAPSHOTS_BUCKET)
        .await
        .unwrap();
    let mut object = store.get("dispatcher.json.gz").await.unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
        .await
        .unwrap();
    let mut json = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(bytes.as_slice()),
        &mut json,
    )
    .unwrap();
    let snapshot: serde_json::Value = serde_json::from_slice(&json).unwrap();
    // At the end of the stream, but for events still on their way to the follower when it
    // stopped (its own last writes, say): those it reads again after a restart.
    let position = snapshot["open"]["position"].as_u64().unwrap();
    assert!(
        position <= last && position + 5 >= last,
        "{snapshot} (last {last})"
    );
    assert_eq!(snapshot["open"]["jobs"].as_object().unwrap().len(), 0);
    // Back, it carries on from there.
    stack.start_service("dispatcher").await;
    let next = stack.submit_shell("echo next").await;
    stack.wait_state(&next, JobState::Succeeded).await;
}

/// Puts a snapshot in place for `service` that knows no open job at the stream's current
/// end: the view of a copy that lags behind the log (as after a NATS restart, or a copy that
/// missed what another copy wrote).
async fn lagging_snapshot(stack: &Stack, service: &str) {
    let mut stream = stack
        .js
        .get_stream(skynet_protocol::streams::EVENTS)
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    let snapshot = serde_json::json!({
        "version": 1,
        "stream": info.created.unix_timestamp_nanos().to_string(),
        "open": {"position": info.state.last_sequence, "jobs": {}},
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, snapshot.to_string().as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let store = stack
        .js
        .get_object_store(skynet_protocol::streams::SNAPSHOTS_BUCKET)
        .await
        .unwrap();
    store
        .put(format!("{service}.json.gz").as_str(), &mut bytes.as_slice())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_owner_whose_view_lags_still_records_every_report_and_line() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let gate = w.home().join("gate");
    let script = format!(
        "echo start; while [ ! -e {} ]; do sleep 0.05; done; for i in $(seq 1 200); do echo line $i; done",
        gate.display()
    );
    let job = stack
        .submit(serde_json::json!({"steps": [{"action": "shell", "cmd": script}]}))
        .await;
    stack.wait_state(&job, JobState::Running).await;
    // A second job says nothing after the gate: only its end is reported.
    let mut cfg = stack.worker_config("w2");
    cfg.home = w.home().to_path_buf();
    cfg.roots = vec![w.home().to_path_buf()];
    let _w2 = stack.add_worker(cfg).await;
    let quiet = stack
        .submit(
            serde_json::json!({"worker": "w2", "steps": [{"action": "shell", "cmd": format!(
                "while [ ! -e {} ]; do sleep 0.05; done", gate.display()
            )}]}),
        )
        .await;
    stack.wait_state(&quiet, JobState::Running).await;
    // The owner that knew the jobs goes; the one that comes has a view without them.
    stack.stop_service("dispatcher").await;
    lagging_snapshot(&stack, "dispatcher").await;
    stack.start_service("dispatcher").await;
    std::fs::write(&gate, "").unwrap();
    let done = stack.wait_terminal(&job).await;
    assert_eq!(done.state(), JobState::Succeeded, "{done:?}");
    let out = stack.output(&job).await;
    for i in 1..=200 {
        assert!(out.contains(&format!("line {i}\n")), "line {i} is missing");
    }
    assert_eq!(
        stack.wait_terminal(&quiet).await.state(),
        JobState::Succeeded
    );
}

#[tokio::test]
async fn a_spec_taken_back_while_in_a_workers_hands_is_no_longer_current() {
    use futures::StreamExt;
    let stack = Stack::start_with(Options {
        services: vec![],
        ..Options::permissive()
    })
    .await;
    let me = skynet_protocol::WorkerId::parse("w1").unwrap();
    let job = JobId::generate();
    let work = stack
        .js
        .get_stream_no_info(skynet_protocol::streams::WORK)
        .await
        .unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = work
        .get_or_create_consumer(
            &skynet_protocol::streams::work_consumer_name(&me),
            skynet_protocol::streams::work_consumer(&me),
        )
        .await
        .unwrap();
    let subject = skynet_protocol::subjects::work(&me, &job);
    // A waiting pull: a no-wait fetch may come back empty before the server has the
    // message ready for this consumer.
    let fetch = || async {
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap();
        batch.next().await.unwrap().unwrap()
    };
    stack
        .js
        .publish(subject.clone(), "attempt 1".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let first = fetch().await;
    assert_eq!(
        skynet_worker::still_current(&work, &first).await,
        Some(true)
    );
    // The owner takes it back (before moving the job on) and hands out the next attempt.
    work.purge().filter(&subject).await.unwrap();
    assert_eq!(
        skynet_worker::still_current(&work, &first).await,
        Some(false)
    );
    stack
        .js
        .publish(subject.clone(), "attempt 2".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        skynet_worker::still_current(&work, &first).await,
        Some(false)
    );
    let second = fetch().await;
    assert_eq!(
        skynet_worker::still_current(&work, &second).await,
        Some(true)
    );
}
