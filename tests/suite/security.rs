//! Least privilege on the bus (contract: nkey identities, subject permissions, signed
//! specs): with auth on, everything works for the identities meant to do it, and every
//! forbidden action is refused by the server itself.

use std::time::Duration;

use skynet_protocol::{JobState, subjects};
use skynet_tests::{Options, PERMISSIVE_POLICY, Stack};

fn secure() -> Options {
    let mut o = Options {
        secure: true,
        workers: vec!["w1", "w2"],
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    };
    o.timing.unroutable_after = Duration::from_millis(200);
    o
}

#[tokio::test]
async fn the_whole_pipeline_runs_with_every_identity_confined_to_its_permissions() {
    let mut stack = Stack::start_with(secure()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let cli = stack.connect_as("cli").await;
    let cli_js = async_nats::jetstream::new(cli.clone());

    // The CLI submits (to the intake stream) and reads the job back.
    let job = skynet_protocol::JobId::generate();
    let body = serde_json::json!({"id": job, "steps": [
        {"action": "shell", "cmd": "echo hello with auth on > report.txt; cat report.txt", "artifacts": ["report.txt"]},
        {"action": "file_write", "path": "made.txt", "content": "x"}
    ]});
    cli_js
        .publish(subjects::SUBMIT, body.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    stack.wait_state(&job, JobState::Succeeded).await;
    assert!(w.home().join("made.txt").exists());
    // The ledger's view follows the stream a moment later.
    stack.ledger_state(&job, JobState::Succeeded).await;
    let view: serde_json::Value = skynet_runtime::api::call(
        &cli,
        subjects::api::JOBS_GET,
        &serde_json::json!({"job_id": job}),
    )
    .await
    .unwrap();
    assert_eq!(view["state"], "succeeded");
    let logs: skynet_protocol::api::LogsReply = skynet_runtime::api::call(
        &cli,
        subjects::api::JOBS_LOGS,
        &serde_json::json!({"job_id": job}),
    )
    .await
    .unwrap();
    assert!(logs.output.contains("hello with auth on"));
    let listed = skynet_runtime::logs::read_all(&cli_js, &job).await.unwrap();
    assert!(!listed.is_empty());
    // The archiver archived it, and the CLI can fetch the worker's artifact.
    let archive = stack.wait_archived(&job).await;
    assert_eq!(archive.artifacts.len(), 1);
    let store = cli_js
        .get_object_store(skynet_protocol::streams::ARTIFACTS_BUCKET)
        .await
        .unwrap();
    let mut artifact = store.get(format!("{job}/report.txt")).await.unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut artifact, &mut text)
        .await
        .unwrap();
    assert_eq!(text, "hello with auth on\n");

    // The sentinel raises alerts with its own identity.
    let nowhere = stack
        .submit(serde_json::json!({"labels": ["nowhere"], "steps": [{"action": "shell", "cmd": "true"}]}))
        .await;
    stack
        .wait_alert(|a| a.job_id.as_ref() == Some(&nowhere))
        .await;

    // Approval by the approving CLI identity.
    let gated = stack.submit_shell("approve-me now").await;
    let waiting = stack.wait_state(&gated, JobState::AwaitingApproval).await;
    let reply: skynet_protocol::api::StateReply = skynet_runtime::api::call(
        &cli,
        subjects::api::JOBS_APPROVE,
        &stack.signed_decision("cli", &gated, &plan_hash(&waiting), true, "cli:test"),
    )
    .await
    .unwrap();
    assert_eq!(reply.state, JobState::Approved);
    stack.wait_terminal(&gated).await;

    // Cancel by the CLI identity.
    let long = stack.submit_shell("echo go; sleep 30").await;
    stack.wait_output(&long, "go").await;
    let reply: skynet_protocol::api::StateReply = skynet_runtime::api::call(
        &cli,
        subjects::api::JOBS_CANCEL,
        &serde_json::json!({"job_id": long}),
    )
    .await
    .unwrap();
    assert_eq!(reply.state, JobState::CancelRequested);
    assert_eq!(
        stack.wait_terminal(&long).await.state(),
        JobState::Cancelled
    );
    let _ = Duration::ZERO;
}

/// The plan hash an `awaiting_approval` event shows.
pub(crate) fn plan_hash(waiting: &skynet_protocol::Event) -> String {
    match &waiting.kind {
        skynet_protocol::EventKind::AwaitingApproval { plan_hash, .. } => plan_hash.clone(),
        other => panic!("not awaiting approval: {other:?}"),
    }
}

/// Waits for the server to refuse an action on `subject` (a permissions violation).
async fn refused(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, subject: &str) {
    let wanted = format!("\"{subject}\"");
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = errors.recv().await {
            if e.to_lowercase().contains("permissions violation") && e.contains(&wanted) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "the server did not refuse {subject}"
    );
}

async fn publish_refused(
    client: &async_nats::Client,
    errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    subject: &str,
) {
    client
        .publish(subject.to_owned(), "{}".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    refused(errors, subject).await;
}

async fn subscribe_refused(
    client: &async_nats::Client,
    errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    subject: &str,
) {
    let _sub = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    refused(errors, subject).await;
}

#[tokio::test]
async fn a_worker_identity_is_refused_everything_that_is_not_its_own() {
    let mut stack = Stack::start_with(secure()).await;
    let w1 = stack.add_worker(stack.worker_config("w1")).await;
    let gated = stack.submit_shell("approve-me please").await;
    stack.wait_state(&gated, JobState::AwaitingApproval).await;

    let (client, mut errors) = stack.raw_client("worker-w1").await;
    // Approve, submit, and write events: not a worker's business.
    let approve = serde_json::json!({"job_id": gated, "by": "a worker"}).to_string();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(subjects::api(subjects::api::JOBS_APPROVE), approve.into()),
    )
    .await;
    refused(&mut errors, "skynet.api.jobs.approve").await;
    for subject in [
        "skynet.jobs.submit",
        "skynet.events.some-job",
        "skynet.logs.some-job",
        "skynet.alerts",
        // Work for another worker, or reports and heartbeats in its name.
        "skynet.work.w2.some-job",
        "skynet.out.w2.some-job.event",
        "$KV.skynet-workers.w2",
        // Stream configuration.
        "$JS.API.STREAM.DELETE.SKYNET_EVENTS",
        "$JS.API.STREAM.UPDATE.SKYNET_WORK",
        "$JS.API.STREAM.PURGE.SKYNET_WORK",
        "$JS.API.STREAM.CREATE.EVIL",
        "$JS.API.CONSUMER.DELETE.SKYNET_WORK.worker-w2",
        // Another worker's queue.
        "$JS.API.CONSUMER.MSG.NEXT.SKYNET_WORK.worker-w2",
        "$JS.API.CONSUMER.CREATE.SKYNET_WORK.snoop.skynet.work.w2.>",
        "$JS.API.DIRECT.GET.SKYNET_WORK",
    ] {
        publish_refused(&client, &mut errors, subject).await;
    }
    for subject in [
        "skynet.work.>",
        "skynet.work.w2.>",
        "skynet.control.w2",
        "skynet.events.>",
        "skynet.logs.>",
        "_INBOX.>",
        ">",
    ] {
        subscribe_refused(&client, &mut errors, subject).await;
    }
    // Nothing it tried had any effect, and the job still waits for a person.
    let last = stack.events(&gated).await.last().unwrap().state();
    assert_eq!(last, JobState::AwaitingApproval);
    let mut events = stack
        .js
        .get_stream(skynet_protocol::streams::EVENTS)
        .await
        .unwrap();
    assert!(events.info().await.unwrap().state.subjects_count >= 1);
    drop(w1);
}

#[tokio::test]
async fn the_cli_identity_submits_reads_and_cancels_but_only_approvers_approve() {
    let mut stack = Stack::start_with(secure()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    stack
        .creds
        .as_mut()
        .unwrap()
        .add_cli("viewer", false)
        .unwrap();
    // The server learns new identities when it reloads its configuration.
    let conf = stack.creds.as_ref().unwrap().authorization();
    stack.nats.reconfigure(&conf);

    let gated = stack.submit_shell("approve-me please").await;
    let waiting = stack.wait_state(&gated, JobState::AwaitingApproval).await;
    stack.ledger_state(&gated, JobState::AwaitingApproval).await;
    let (viewer, mut errors) = stack.raw_client("cli-viewer").await;
    let body = serde_json::json!({"job_id": gated}).to_string();
    let got = viewer
        .request(subjects::api(subjects::api::JOBS_GET), body.clone().into())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&got.payload).contains("awaiting_approval"));
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        viewer.request(
            subjects::api(subjects::api::JOBS_APPROVE),
            body.clone().into(),
        ),
    )
    .await;
    refused(&mut errors, "skynet.api.jobs.approve").await;

    let (cli, mut errors) = stack.raw_client("cli").await;
    for subject in [
        "skynet.events.x",
        "skynet.work.w1.x",
        "skynet.out.w1.x.event",
        "$JS.API.STREAM.DELETE.SKYNET_EVENTS",
        "$JS.API.STREAM.PURGE.SKYNET_LOGS",
    ] {
        publish_refused(&cli, &mut errors, subject).await;
    }
    subscribe_refused(&cli, &mut errors, "skynet.work.>").await;
    subscribe_refused(&cli, &mut errors, "skynet.control.w1").await;
    let signed = stack
        .signed_decision("cli", &gated, &plan_hash(&waiting), true, "cli")
        .to_string();
    let reply = cli
        .request(subjects::api(subjects::api::JOBS_APPROVE), signed.into())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&reply.payload).contains("approved"));
    stack.wait_terminal(&gated).await;
}

/// Waits for worker `w`'s report about `job` on its outbox subject.
async fn next_report(sub: &mut async_nats::Subscriber) -> serde_json::Value {
    use futures::StreamExt;
    let msg = tokio::time::timeout(skynet_tests::WAIT, sub.next())
        .await
        .expect("no report from the worker")
        .expect("subscription");
    serde_json::from_slice(&msg.payload).expect("report json")
}

#[tokio::test]
async fn the_worker_refuses_specs_it_cannot_trust_and_says_why() {
    use futures::StreamExt;
    use skynet_protocol::spec::{ExecutionSpec, Grant, plan_hash};
    use skynet_protocol::{JobId, Step, WorkerId};

    let mut stack = Stack::start_with(secure()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let marker = w.home().join("ran.log");
    let step = |text: &str| {
        vec![Step::Shell {
            cmd: Some(format!("echo {text} >> {}", marker.display())),
            argv: None,
            cwd: None,
            env: Default::default(),
            timeout_s: None,
            artifacts: vec![],
        }]
    };
    let steps = step("ran");
    let now = skynet_protocol::time::now_ms() / 1000;
    let grant = |job: &JobId, not_after: i64| Grant {
        job_id: job.clone(),
        plan_hash: plan_hash(&steps),
        max_attempt: 1,
        timeout_s: 60,
        worker: None,
        labels: vec![],
        env: vec![],
        network: false,
        by: "policy".into(),
        issued_at: now,
        not_after,
    };
    let spec = |job: &JobId, worker: &str, not_after: i64, key: &nkeys::KeyPair| ExecutionSpec {
        job_id: job.clone(),
        attempt: 1,
        worker: WorkerId::parse(worker).unwrap(),
        steps: steps.clone(),
        seal: grant(job, not_after).seal(key).unwrap(),
    };
    let me = WorkerId::parse("w1").unwrap();
    let stranger = nkeys::KeyPair::new_user();
    let signer = stack.signer.clone();
    type MakeSpec<'a> = Box<dyn Fn(&JobId) -> Vec<u8> + 'a>;
    let cases: Vec<(&str, MakeSpec)> = vec![
        (
            "not an execution spec",
            Box::new(|j| serde_json::to_vec(&grant(j, now + 60)).unwrap()),
        ),
        (
            "does not verify",
            Box::new(|j| {
                let mut s = spec(j, "w1", now + 60, &signer);
                s.seal.grant = s
                    .seal
                    .grant
                    .replace("\"max_attempt\":1", "\"max_attempt\":5");
                s.to_json()
            }),
        ),
        (
            "not the plan that was approved",
            Box::new(|j| {
                let mut s = spec(j, "w1", now + 60, &signer);
                s.steps = step("pwned");
                s.to_json()
            }),
        ),
        (
            "more than the 1 the approval allows",
            Box::new(|j| {
                let mut s = spec(j, "w1", now + 60, &signer);
                s.attempt = 2;
                s.to_json()
            }),
        ),
        (
            "expired",
            Box::new(|j| spec(j, "w1", now - 10, &signer).to_json()),
        ),
        (
            "for worker w2",
            Box::new(|j| spec(j, "w2", now + 60, &signer).to_json()),
        ),
        (
            "does not trust",
            Box::new(|j| spec(j, "w1", now + 60, &stranger).to_json()),
        ),
    ];
    for (why, make) in cases {
        let job = JobId::generate();
        let mut reports = stack
            .client
            .subscribe(subjects::outbox(&me, &job, subjects::OutKind::Event))
            .await
            .unwrap();
        stack
            .js
            .publish(subjects::work(&me, &job), make(&job).into())
            .await
            .unwrap()
            .await
            .unwrap();
        let report = next_report(&mut reports).await;
        assert_eq!(report["report"], "refused", "{why}: {report}");
        assert!(
            report["reason"].as_str().unwrap().contains(why),
            "{why}: {report}"
        );
    }
    assert!(!marker.exists(), "a refused spec ran");

    // A real spec runs once; replaying it is refused.
    let mut specs = stack.client.subscribe("skynet.work.w1.>").await.unwrap();
    let job = stack
        .submit(serde_json::json!({"steps": [{"action": "shell", "cmd": format!("echo ran >> {}", marker.display())}]}))
        .await;
    let original = tokio::time::timeout(skynet_tests::WAIT, specs.next())
        .await
        .unwrap()
        .unwrap();
    stack.wait_state(&job, JobState::Succeeded).await;
    let mut reports = stack
        .client
        .subscribe(subjects::outbox(&me, &job, subjects::OutKind::Event))
        .await
        .unwrap();
    stack
        .js
        .send_publish(
            subjects::work(&me, &job),
            async_nats::jetstream::message::PublishMessage::build()
                .payload(original.payload.clone())
                .message_id("replay"),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let report = next_report(&mut reports).await;
    assert_eq!(report["report"], "refused", "{report}");
    assert!(
        report["reason"].as_str().unwrap().contains("replayed"),
        "{report}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");
}

#[tokio::test]
async fn steps_get_a_scrubbed_environment_and_secrets_are_redacted_from_output() {
    const TESTSVC: &str = env!("CARGO_BIN_EXE_skynet-testsvc");
    let stack = Stack::start_with(secure()).await;
    let mut cfg = stack.worker_config("w1");
    cfg.redact = vec!["s3cr3t-token-value".into()];
    // The worker process carries a secret in its environment.
    let spec =
        serde_json::to_string(&skynet_tests::process::WorkerSpec::from_config(&cfg)).unwrap();
    let creds = stack.creds.as_ref().unwrap();
    let _worker = skynet_tests::ServiceProcess::start_with_env(
        TESTSVC,
        "worker",
        &stack.nats.url(),
        &cfg.data_dir,
        &[
            ("SKYNET_TESTSVC_WORKER", spec),
            (
                "SKYNET_TESTSVC_SEED",
                creds.seed_path("worker-w1").display().to_string(),
            ),
            ("WORKER_ONLY_SECRET", "do-not-leak-this".into()),
        ],
    );
    stack.wait_worker_registered(&cfg.id).await;
    let job = stack
        .submit(serde_json::json!({"steps": [{
            "action": "shell",
            "cmd": "env; echo token=$TOKEN; printf 's3cr3t-'; sleep 0.2; printf 'token-value\\n'",
            "env": {"TOKEN": "s3cr3t-token-value", "VISIBLE": "yes"}
        }]}))
        .await;
    stack.wait_state(&job, JobState::Succeeded).await;
    let out = stack.output(&job).await;
    assert!(!out.contains("do-not-leak-this"), "{out}");
    assert!(out.contains("VISIBLE=yes"), "{out}");
    assert!(out.contains(&format!("SKYNET_JOB_ID={job}")), "{out}");
    assert!(!out.contains("s3cr3t-token-value"), "{out}");
    assert!(out.contains("token=[REDACTED]"), "{out}");
    assert!(
        out.contains("[REDACTED]\n"),
        "a secret split across output chunks leaked: {out}"
    );
}

#[tokio::test]
async fn an_approval_forged_by_another_service_never_reaches_a_worker() {
    let mut stack = Stack::start_with(secure()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let marker = w.home().join("forged.txt");
    let job = stack
        .submit_shell(&format!("approve-me && touch {}", marker.display()))
        .await;
    stack.wait_state(&job, JobState::AwaitingApproval).await;

    // The planner's identity may write events; it cannot make policy's approval. Without a
    // seal, the job never reaches a worker.
    let planner = stack.connect_as("planner").await;
    let log = skynet_runtime::EventLog::open(async_nats::jetstream::new(planner))
        .await
        .unwrap();
    let job_view = log.job(&job).await.unwrap();
    log.append(
        &job_view,
        skynet_protocol::EventKind::Approved {
            by: "someone".into(),
            reasons: vec![],
            seal: None,
        },
    )
    .await
    .unwrap();
    let done = stack.wait_terminal(&job).await;
    let skynet_protocol::EventKind::Failed(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert!(
        f.error
            .as_deref()
            .unwrap_or("")
            .contains("approval was not made by policy"),
        "{f:?}"
    );
    let mut work = stack
        .js
        .get_stream(skynet_protocol::streams::WORK)
        .await
        .unwrap();
    assert_eq!(
        work.info().await.unwrap().state.last_sequence,
        0,
        "a spec was sent"
    );

    // With a seal that claims to be policy's, the worker refuses it: it does not open.
    let second = stack
        .submit_shell(&format!("approve-me && touch {}", marker.display()))
        .await;
    stack.wait_state(&second, JobState::AwaitingApproval).await;
    let view = log.job(&second).await.unwrap();
    let forged = skynet_protocol::Grant {
        job_id: second.clone(),
        plan_hash: view.plan.as_ref().unwrap().hash.clone(),
        max_attempt: 1,
        timeout_s: 60,
        worker: None,
        labels: vec![],
        env: vec![],
        network: false,
        by: "policy".into(),
        issued_at: 0,
        not_after: i64::MAX / 2,
    };
    let mut seal = forged.seal(&nkeys::KeyPair::new_user()).unwrap();
    seal.signer = stack.signer.public_key();
    log.append(
        &view,
        skynet_protocol::EventKind::Approved {
            by: "policy".into(),
            reasons: vec![],
            seal: Some(seal),
        },
    )
    .await
    .unwrap();
    let done = stack.wait_terminal(&second).await;
    let skynet_protocol::EventKind::Failed(f) = &done.kind else {
        panic!("{done:?}")
    };
    assert!(
        f.error.as_deref().unwrap_or("").contains("does not verify"),
        "{f:?}"
    );
    assert!(!marker.exists());
}

#[tokio::test]
async fn the_telegram_ingress_runs_approves_and_relays_alerts_with_its_own_identity() {
    use skynet_tests::fake_telegram::FakeTelegram;
    const ALICE: u64 = 1001;
    let mut stack = Stack::start_with(secure()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let fake = FakeTelegram::start().await;
    fake.open_chat(ALICE as i64);
    let _bot = stack
        .start_telegram(fake.config(&[ALICE], Some(&[ALICE])))
        .await;

    fake.user_says(
        ALICE,
        &format!(
            "/run `approve-me; touch {}`",
            w.home().join("tg.txt").display()
        ),
    );
    let status = fake.wait_sent(ALICE as i64, &["Job "]).await;
    fake.wait_shown(ALICE as i64, status.message_id, &["needs approval"])
        .await;
    let job = stack
        .wait_event_matching(|e| {
            matches!(&e.kind, skynet_protocol::EventKind::Received { request }
                if request.origin.as_deref() == Some("telegram:1001"))
        })
        .await
        .job_id;
    let press = fake.press(
        ALICE,
        ALICE as i64,
        status.message_id,
        &format!("approve:{job}"),
    );
    assert_eq!(fake.wait_answer(&press).await.text, "Approved.");
    // Recorded as the Telegram user the ingress signed for, through its own key.
    let approved = stack.wait_state(&job, JobState::Approved).await;
    let skynet_protocol::EventKind::Approved { by, .. } = &approved.kind else {
        unreachable!()
    };
    assert_eq!(by, "telegram:1001");
    assert_eq!(stack.wait_terminal(&job).await.state(), JobState::Succeeded);
    assert!(w.home().join("tg.txt").exists());

    // The sentinel's alerts reach the approver through the ingress's own consumers.
    let nowhere = stack
        .submit(serde_json::json!({"labels": ["nowhere"], "steps": [{"action": "shell", "cmd": "true"}]}))
        .await;
    fake.wait_sent(ALICE as i64, &["job unroutable", nowhere.as_str()])
        .await;
}

#[tokio::test]
async fn variables_that_change_what_runs_reach_a_step_only_when_its_approval_covers_them() {
    use skynet_protocol::spec::{ExecutionSpec, Grant, plan_hash};
    use skynet_protocol::{JobId, Step, WorkerId};

    // Specs go straight to the worker, for jobs no owner knows: without a dispatcher, which
    // would (rightly) tell the worker to stop an attempt of a job it never dispatched.
    let mut o = secure();
    o.services.retain(|s| *s != "dispatcher");
    let mut stack = Stack::start_with(o).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let me = WorkerId::parse("w1").unwrap();
    let now = skynet_protocol::time::now_ms() / 1000;
    let run = |allowed: Vec<String>, file: &str| {
        let out = w.home().join(file);
        let steps = vec![Step::Shell {
            cmd: Some(format!(
                "echo \"[$BASH_ENV][$GIT_CONFIG_COUNT][$GREETING]\" > {}",
                out.display()
            )),
            argv: None,
            cwd: None,
            env: [
                ("BASH_ENV".to_string(), "/tmp/evil".to_string()),
                ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
                ("GREETING".to_string(), "hi".to_string()),
            ]
            .into(),
            timeout_s: None,
            artifacts: vec![],
        }];
        let job = JobId::generate();
        let grant = Grant {
            job_id: job.clone(),
            plan_hash: plan_hash(&steps),
            max_attempt: 1,
            timeout_s: 60,
            worker: None,
            labels: vec![],
            env: allowed,
            network: false,
            by: "policy".into(),
            issued_at: now,
            not_after: now + 60,
        };
        let spec = ExecutionSpec {
            job_id: job.clone(),
            attempt: 1,
            worker: me.clone(),
            steps,
            seal: grant.seal(&stack.signer).unwrap(),
        };
        (job, spec, out)
    };
    for (allowed, file, want) in [
        (vec![], "none.txt", "[][][hi]"),
        (vec!["GIT_CONFIG_COUNT".to_string()], "git.txt", "[][1][hi]"),
    ] {
        let (job, spec, out) = run(allowed, file);
        stack
            .js
            .publish(subjects::work(&me, &job), spec.to_json().into())
            .await
            .unwrap()
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + skynet_tests::WAIT;
        while !out.exists() {
            assert!(tokio::time::Instant::now() < deadline, "the step never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Written by the step in one go; read it once it has its line.
        let mut text = String::new();
        while !text.ends_with('\n') {
            text = std::fs::read_to_string(&out).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(text.trim(), want);
    }
}
