//! Who is who on the bus (SECURITY.md, "Identities and subject permissions"): every identity
//! reads only its own replies, uses only its own durable consumers, writes artifacts only
//! for the jobs given to it, and a decision is recorded as the identity that signed it.

use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use skynet_protocol::{EventKind, JobId, JobState, streams, subjects};
use skynet_tests::{Options, PERMISSIVE_POLICY, Stack};

use crate::security::plan_hash;

fn secure() -> Options {
    Options {
        secure: true,
        workers: vec!["w1", "w2"],
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    }
}

type Errors = tokio::sync::mpsc::UnboundedReceiver<String>;

/// Waits for the server to refuse `subject` (a permissions violation).
async fn refused(errors: &mut Errors, subject: &str) {
    let wanted = format!("\"{subject}\"");
    let found = tokio::time::timeout(skynet_tests::WAIT, async {
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

async fn public_key(stack: &Stack, name: &str) -> String {
    let creds = stack.creds.as_ref().unwrap();
    creds.identity(name).unwrap().public_key.clone()
}

/// Adds a read-only CLI identity `cli-<name>` and reloads the server.
fn add_viewer(stack: &mut Stack, name: &str) {
    let creds = stack.creds.as_mut().unwrap();
    creds.add_cli(name, false).unwrap();
    let conf = creds.authorization();
    stack.nats.reconfigure(&conf);
}

#[tokio::test]
async fn a_cli_reads_only_the_replies_to_its_own_requests() {
    let mut stack = Stack::start_with(secure()).await;
    add_viewer(&mut stack, "viewer");
    let (viewer, mut errors) = stack.raw_client("cli-viewer").await;
    let cli_inbox = skynet_protocol::permissions::inbox_prefix(&public_key(&stack, "cli").await);

    // Every inbox but its own is refused: the shared prefix, another CLI's, a worker's.
    let mut snoops = Vec::new();
    for subject in [
        "_INBOX.>".to_string(),
        format!("{cli_inbox}.>"),
        format!(
            "{}.>",
            skynet_protocol::permissions::inbox_prefix(&public_key(&stack, "worker-w1").await)
        ),
    ] {
        snoops.push(viewer.subscribe(subject.clone()).await.unwrap());
        viewer.flush().await.unwrap();
        refused(&mut errors, &subject).await;
    }

    // The approving CLI's replies reach it and nobody else.
    let (cli, _cli_errors) = stack.raw_client("cli").await;
    let reply = cli
        .request(
            subjects::api(subjects::api::WORKERS_LIST),
            "{}".to_string().into(),
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&reply.payload).contains("workers"));
    viewer.flush().await.unwrap();
    for mut s in snoops {
        assert!(
            s.next().now_or_never().flatten().is_none(),
            "another identity's reply reached the viewer"
        );
    }
    // Its own requests still get their answers.
    let mine = viewer
        .request(
            subjects::api(subjects::api::WORKERS_LIST),
            "{}".to_string().into(),
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&mine.payload).contains("workers"));
}

async fn archiver(stack: &Stack) -> async_nats::jetstream::consumer::Config {
    let stream = stack.js.get_stream(streams::EVENTS).await.unwrap();
    stream
        .consumer_info(streams::ARCHIVER_CONSUMER)
        .await
        .unwrap()
        .config
        .clone()
}

#[tokio::test]
async fn a_cli_cannot_rewrite_pull_or_read_the_durables_of_other_services() {
    let mut stack = Stack::start_with(secure()).await;
    // The Telegram ingress's durables, as the ingress makes them.
    for (stream, config) in [
        (streams::EVENTS, streams::telegram_events_consumer()),
        (streams::ALERTS, streams::telegram_alerts_consumer()),
    ] {
        stack
            .js
            .get_stream(stream)
            .await
            .unwrap()
            .get_or_create_consumer(config.durable_name.clone().unwrap().as_str(), config)
            .await
            .unwrap();
    }
    stack
        .js
        .get_stream(streams::EVENTS)
        .await
        .unwrap()
        .get_or_create_consumer(streams::ARCHIVER_CONSUMER, streams::archiver_consumer())
        .await
        .unwrap();
    let before = archiver(&stack).await;
    assert_eq!(before.filter_subject, subjects::EVENTS_ALL);

    add_viewer(&mut stack, "viewer");
    let (cli, mut errors) = stack.raw_client("cli").await;
    let rewrite = |name: &str| {
        serde_json::json!({"stream_name": streams::EVENTS, "config": {
            "durable_name": name, "name": name, "filter_subject": "skynet.events.nothing",
            "deliver_policy": "all", "ack_policy": "explicit"
        }})
        .to_string()
    };
    for (stream, consumer) in [
        (streams::EVENTS, streams::ARCHIVER_CONSUMER),
        (streams::EVENTS, streams::TELEGRAM_EVENTS_CONSUMER),
        (streams::ALERTS, streams::TELEGRAM_ALERTS_CONSUMER),
        (streams::SUBMIT, streams::PLANNER_CONSUMER),
        (streams::OUTBOX, streams::RELAY_CONSUMER),
    ] {
        for subject in [
            format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.{consumer}.skynet.events.nothing"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{consumer}"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.{consumer}"),
            format!("$JS.ACK.{stream}.{consumer}.1.1.1.1.1"),
        ] {
            cli.publish(subject.clone(), rewrite(consumer).into())
                .await
                .unwrap();
            cli.flush().await.unwrap();
            refused(&mut errors, &subject).await;
        }
    }
    // Nor the unnamed create, where JetStream takes the name from the config (with a
    // durable name, or the name alone): readers name their own consumers.
    let unnamed = format!("$JS.API.CONSUMER.CREATE.{}", streams::EVENTS);
    let by_name = serde_json::json!({"stream_name": streams::EVENTS, "config": {
        "name": streams::ARCHIVER_CONSUMER, "filter_subject": "skynet.events.nothing",
        "deliver_policy": "all", "ack_policy": "explicit"
    }})
    .to_string();
    for body in [rewrite(streams::ARCHIVER_CONSUMER), by_name] {
        cli.publish(unnamed.clone(), body.into()).await.unwrap();
        cli.flush().await.unwrap();
        refused(&mut errors, &unnamed).await;
    }
    let after = archiver(&stack).await;
    assert_eq!(after.filter_subject, before.filter_subject);
    assert_eq!(after.ack_policy, before.ack_policy);

    // Its own ordered consumers still follow a job's events and logs.
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack.submit_shell("echo still readable").await;
    stack.wait_state(&job, JobState::Succeeded).await;
    let (viewer, _) = stack.raw_client("cli-viewer").await;
    let viewer_js = async_nats::jetstream::new(viewer);
    let logs = skynet_runtime::logs::read_all(&viewer_js, &job)
        .await
        .unwrap();
    assert!(!logs.is_empty());
    let events = skynet_runtime::EventLog::open(viewer_js)
        .await
        .unwrap()
        .history(&job)
        .await
        .unwrap();
    assert!(events.len() >= 3);
}

/// The text of artifact `name` in the store, as any reader gets it.
async fn artifact_text(stack: &Stack, name: &str) -> String {
    let store = stack
        .js
        .get_object_store(streams::ARTIFACTS_BUCKET)
        .await
        .unwrap();
    let mut object = store.get(name).await.unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut object, &mut text)
        .await
        .unwrap();
    text
}

#[tokio::test]
async fn a_worker_writes_artifacts_only_for_the_jobs_given_to_it() {
    let mut stack = Stack::start_with(secure()).await;
    let w1 = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack
        .submit(serde_json::json!({"worker": "w1", "steps": [{
            "action": "shell", "cmd": "echo from w1 > report.txt", "artifacts": ["report.txt"]
        }]}))
        .await;
    stack.wait_state(&job, JobState::Succeeded).await;
    let name = format!("{job}/report.txt");
    assert_eq!(artifact_text(&stack, &name).await, "from w1\n");
    drop(w1);

    // Worker w2's credential: neither the object's name nor w1's chunks are writable.
    let (w2, mut errors) = stack.raw_client("worker-w2").await;
    let store = stack
        .js
        .get_object_store(streams::ARTIFACTS_BUCKET)
        .await
        .unwrap();
    let info = store.info(&name).await.unwrap();
    let mut forged = info.clone();
    forged.nuid = "w2.forged".into();
    let meta = subjects::artifact_meta(&name);
    let chunks = subjects::artifact_chunks(&info.nuid);
    for subject in [meta.clone(), chunks.clone()] {
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_ROLLUP, "sub");
        w2.publish_with_headers(
            subject.clone(),
            h,
            serde_json::to_vec(&forged).unwrap().into(),
        )
        .await
        .unwrap();
        w2.flush().await.unwrap();
        refused(&mut errors, &subject).await;
    }
    // Through its own outbox the dispatcher refuses it: the job is not w2's.
    let w2_id = skynet_protocol::WorkerId::parse("w2").unwrap();
    let own_chunks = subjects::artifact_chunks("w2.forged");
    let w2_js = async_nats::jetstream::new(w2.clone());
    w2_js
        .publish(own_chunks, "forged by w2\n".into())
        .await
        .unwrap()
        .await
        .unwrap();
    forged.size = "forged by w2\n".len();
    forged.digest = None;
    let mut h = async_nats::HeaderMap::new();
    h.insert(subjects::headers::ATTEMPT, "1");
    w2_js
        .publish_with_headers(
            subjects::outbox(&w2_id, &job, subjects::OutKind::Artifact),
            h,
            serde_json::to_vec(&forged).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    // The relay has judged it once a later message from w1's side of things is through:
    // wait until the relay consumer has nothing pending.
    wait_relayed(&stack).await;
    assert_eq!(artifact_text(&stack, &name).await, "from w1\n");
    assert_eq!(store.info(&name).await.unwrap().nuid, info.nuid);
    let _ = Duration::ZERO;
}

/// Waits until the dispatcher's relay has acknowledged every worker message so far.
async fn wait_relayed(stack: &Stack) {
    let deadline = tokio::time::Instant::now() + skynet_tests::WAIT;
    let mut outbox = stack.js.get_stream(streams::OUTBOX).await.unwrap();
    loop {
        let last = outbox.info().await.unwrap().state.last_sequence;
        let s = stack.js.get_stream(streams::OUTBOX).await.unwrap();
        let c = s.consumer_info(streams::RELAY_CONSUMER).await.unwrap();
        if c.ack_floor.stream_sequence >= last && c.num_ack_pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_approval_is_recorded_as_its_signer_never_as_a_claimed_name() {
    let mut stack = Stack::start_with(secure()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack.submit_shell("approve-me now").await;
    let waiting = stack.wait_state(&job, JobState::AwaitingApproval).await;
    let hash = plan_hash(&waiting);
    let cli = stack.connect_as("cli").await;
    let call = |body: serde_json::Value| {
        let cli = cli.clone();
        async move {
            let reply = cli
                .request(
                    subjects::api(subjects::api::JOBS_APPROVE),
                    body.to_string().into(),
                )
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&reply.payload).unwrap()
        }
    };
    // Sent with a reply inbox that is not an approver's (a worker's key): refused, and the
    // job still waits. (The refusal goes to that inbox; the job's events tell.)
    let worker_key = stack.creds_public_key("worker-w1");
    cli.publish_with_reply(
        subjects::api(subjects::api::JOBS_APPROVE),
        format!("_INBOX.{worker_key}.forged"),
        serde_json::json!({"job_id": job, "plan_hash": hash, "by": "policy"})
            .to_string()
            .into(),
    )
    .await
    .unwrap();
    // Signed by a key policy does not know as an approver (a worker's).
    let r = call(stack.signed_decision("worker-w1", &job, &hash, true, "policy")).await;
    assert_eq!(r["error"]["code"], 403, "{r}");
    // Signed for a deny, sent as an approve.
    let mut wrong = stack.signed_decision("cli", &job, &hash, false, "policy");
    wrong["job_id"] = serde_json::json!(job);
    let r = call(wrong).await;
    assert_eq!(r["error"]["code"], 403, "{r}");
    assert_eq!(
        stack.events(&job).await.last().unwrap().state(),
        JobState::AwaitingApproval
    );

    // Signed by the approving CLI, still claiming policy: recorded as the CLI.
    let r = call(stack.signed_decision("cli", &job, &hash, true, "policy")).await;
    assert_eq!(r["state"], "approved", "{r}");
    let approved = stack.wait_state(&job, JobState::Approved).await;
    let EventKind::Approved { by, seal, .. } = &approved.kind else {
        unreachable!()
    };
    assert_eq!(by, "cli:cli");
    assert_eq!(seal.as_ref().unwrap().peek().unwrap().by, "cli:cli");

    // Unsigned (a plain NATS request, as the contract has it) from the approving CLI,
    // claiming policy: the server vouches for the caller's inbox, and that is what is
    // recorded.
    let job = stack.submit_shell("approve-me again").await;
    stack.wait_state(&job, JobState::AwaitingApproval).await;
    let r = call(serde_json::json!({"job_id": job, "by": "policy"})).await;
    assert_eq!(r["state"], "approved", "{r}");
    let approved = stack.wait_state(&job, JobState::Approved).await;
    let EventKind::Approved { by, .. } = &approved.kind else {
        unreachable!()
    };
    assert_eq!(by, "cli:cli");
}

#[tokio::test]
async fn without_identities_nobody_decides_in_policys_name() {
    let stack = Stack::start_with(Options::permissive()).await;
    let job = stack.submit_shell("approve-me now").await;
    stack.wait_state(&job, JobState::AwaitingApproval).await;
    for by in ["policy", "Policy", "schedule:nightly"] {
        let body = serde_json::json!({"job_id": job, "by": by});
        let (code, _) = stack
            .api_raw(subjects::api::JOBS_APPROVE, body.to_string().as_bytes())
            .await
            .unwrap_err();
        assert_eq!(code, 403, "{by}");
    }
    let _: JobId = job;
}
