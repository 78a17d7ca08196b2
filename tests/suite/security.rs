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
    o.sentinel.unroutable_after = Duration::from_millis(200);
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
    stack.wait_state(&gated, JobState::AwaitingApproval).await;
    let reply: skynet_protocol::api::StateReply = skynet_runtime::api::call(
        &cli,
        subjects::api::JOBS_APPROVE,
        &serde_json::json!({"job_id": gated, "by": "cli:test"}),
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
    stack.wait_state(&gated, JobState::AwaitingApproval).await;
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
    let reply = cli
        .request(subjects::api(subjects::api::JOBS_APPROVE), body.into())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&reply.payload).contains("approved"));
    stack.wait_terminal(&gated).await;
}
