//! Intake (contract: JobRequest, `skynet.jobs.submit`, `skynet.rejected`, API errors):
//! repeated ids make one job, and garbage anywhere gets a clear error while valid work
//! keeps flowing.

use futures::StreamExt;
use skynet_protocol::job::Rejection;
use skynet_protocol::{EventKind, JobState, subjects};
use skynet_tests::{Options, Stack, WAIT};

#[tokio::test]
async fn submitting_the_same_id_twice_gives_one_job_and_one_run() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let marker = w.home().join("runs.log");
    let body = serde_json::json!({
        "id": "only-once",
        "steps": [{"action": "shell", "cmd": format!("echo run >> {}", marker.display())}]
    })
    .to_string();
    stack.publish(&body).await;
    // The same request through the API, and again by plain publish with a changed body.
    let reply = stack
        .api_raw(subjects::api::JOBS_SUBMIT, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply["job_id"], "only-once");
    let job = skynet_protocol::JobId::parse("only-once").unwrap();
    let done = stack.wait_terminal(&job).await;
    assert_eq!(done.state(), JobState::Succeeded);
    let changed = body.replace("echo run", "echo second");
    stack.publish(&changed).await;
    // A later job proves the intake has processed everything before it.
    let later = stack.submit_shell("true").await;
    stack.wait_state(&later, JobState::Succeeded).await;

    let events = stack.events(&job).await;
    let count = |s: JobState| events.iter().filter(|e| e.state() == s).count();
    assert_eq!(count(JobState::Received), 1, "{events:?}");
    assert_eq!(count(JobState::Running), 1);
    assert_eq!(count(JobState::Succeeded), 1);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n");
}

#[tokio::test]
async fn garbage_on_the_intake_is_rejected_with_reasons_and_valid_work_still_runs() {
    let mut stack = Stack::start().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let rejected = stack
        .js
        .get_stream(skynet_protocol::streams::REJECTED)
        .await
        .unwrap();
    let consumer = rejected
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut rejections = consumer.messages().await.unwrap();

    let oversize = format!(r#"{{"goal":"{}"}}"#, "x".repeat(600 * 1024));
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00],
        b"not json at all".to_vec(),
        br#"{"id":"has space","goal":"g"}"#.to_vec(),
        br#"[1,2,3]"#.to_vec(),
        oversize.into_bytes(),
    ];
    for g in &garbage {
        stack
            .js
            .publish(subjects::SUBMIT, g.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut reasons = Vec::new();
    for _ in &garbage {
        let msg = tokio::time::timeout(WAIT, rejections.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let r: Rejection = serde_json::from_slice(&msg.payload).unwrap();
        reasons.push(r.reason);
    }
    assert!(reasons[0].contains("UTF-8"), "{reasons:?}");
    assert!(reasons[1].contains("not a valid JobRequest"), "{reasons:?}");
    assert!(reasons[2].contains("job id"), "{reasons:?}");
    assert!(reasons[4].contains("limit"), "{reasons:?}");

    // With a usable id, the rejection lands on the job's own subject.
    stack
        .publish(r#"{"id":"typo-job","goal":"g","colour":"red"}"#)
        .await;
    let typo = skynet_protocol::JobId::parse("typo-job").unwrap();
    let done = stack.wait_state(&typo, JobState::Rejected).await;
    let EventKind::Rejected { reason, .. } = &done.kind else {
        unreachable!()
    };
    assert!(reason.contains("unknown field `colour`"), "{reason}");
    stack
        .publish(r#"{"id":"bad-step","steps":[{"action":"shell","cmd":"ls","argv":["ls"]}]}"#)
        .await;
    let bad = skynet_protocol::JobId::parse("bad-step").unwrap();
    let done = stack.wait_state(&bad, JobState::Rejected).await;
    let EventKind::Rejected { reason, .. } = &done.kind else {
        unreachable!()
    };
    assert!(
        reason.contains("exactly one of `cmd` and `argv`"),
        "{reason}"
    );

    let ok = stack.submit_shell("echo still alive").await;
    stack.wait_state(&ok, JobState::Succeeded).await;
}

#[tokio::test]
async fn every_api_endpoint_answers_bad_input_with_a_400() {
    let mut stack = Stack::start().await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let big = vec![b'{'; 600 * 1024];
    for endpoint in subjects::api::ALL {
        for body in [
            &b"\xff\xfe"[..],
            b"{not json",
            br#"{"job_id":"a b"}"#,
            br#"{"job_id":"ok","surprise":true}"#,
            &big[..],
        ] {
            // workers.list takes `{}`; anything with fields is refused too.
            let result = stack.api_raw(endpoint, body).await;
            let (code, message) = result.expect_err(endpoint);
            assert_eq!(
                code,
                400,
                "{endpoint} {:?}: {message}",
                String::from_utf8_lossy(&body[..body.len().min(30)])
            );
            assert!(!message.is_empty());
        }
    }
    // Unknown jobs are 404, not 400 or a crash.
    for endpoint in [
        subjects::api::JOBS_GET,
        subjects::api::JOBS_CANCEL,
        subjects::api::JOBS_APPROVE,
        subjects::api::JOBS_LOGS,
    ] {
        let (code, _) = stack
            .api_raw(endpoint, br#"{"job_id":"no-such-job"}"#)
            .await
            .unwrap_err();
        assert_eq!(code, 404, "{endpoint}");
    }
    let ok = stack.submit_shell("echo fine").await;
    stack.wait_state(&ok, JobState::Succeeded).await;
    let listed = stack
        .api_raw(subjects::api::JOBS_LIST, b"{}")
        .await
        .unwrap();
    assert!(listed["jobs"].is_array());
}

#[tokio::test]
async fn hostile_payloads_anywhere_on_the_bus_crash_nothing() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let w = stack.add_worker(stack.worker_config("w1")).await;
    let big = vec![b'x'; 900 * 1024];
    let payloads: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff, 0xfe, 0xfd],
        b"{".to_vec(),
        b"null".to_vec(),
        br#"{"state":"running","job_id":"x","at":"now"}"#.to_vec(),
        br#"{"report":"finished","attempt":1,"outcome":"succeeded","steps":[]}"#.to_vec(),
        big,
    ];
    let subjects_to_poison = [
        // Streams every service follows.
        "skynet.events.poisoned-job".to_string(),
        "skynet.logs.poisoned-job".into(),
        "skynet.alerts".into(),
        "skynet.rejected".into(),
        // A worker's inputs and outputs.
        format!("skynet.work.{}.poisoned-job", w.id),
        format!("skynet.out.{}.poisoned-job.event", w.id),
        format!("skynet.out.{}.poisoned-job.log", w.id),
        format!("$KV.skynet-workers.{}", "impostor"),
    ];
    for subject in &subjects_to_poison {
        for p in &payloads {
            // Through JetStream where a stream takes the subject, so the poison is stored
            // and replayed to every follower.
            let _ = stack.js.publish(subject.clone(), p.clone().into()).await;
        }
    }
    for p in &payloads {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            stack
                .client
                .request(format!("skynet.control.{}", w.id), p.clone().into()),
        )
        .await;
    }
    stack.js.wait_for_acks().await;

    let ok = stack.submit_shell("echo survived").await;
    stack.wait_state(&ok, JobState::Succeeded).await;
    assert!(stack.output(&ok).await.contains("survived"));
    stack.assert_services_running();
    let listed = stack
        .api_raw(subjects::api::WORKERS_LIST, b"{}")
        .await
        .unwrap();
    let ids: Vec<&str> = listed["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["w1"], "a garbage registry entry became a worker");
}
