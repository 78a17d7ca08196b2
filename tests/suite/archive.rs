//! The archiver and artifacts (contract: `jobs.logs` reads the live stream or the archive;
//! steps' `artifacts`): output outlives the live log stream, archiving survives the
//! archiver's absence, and artifacts round-trip with a size cap.

use futures::StreamExt;
use skynet_protocol::{EventKind, JobState, streams, subjects};
use skynet_tests::{Options, Stack};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn logs_stay_readable_in_full_after_the_live_stream_is_purged() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let job = stack
        .submit(serde_json::json!({"steps": [
            {"action": "shell", "cmd": "for i in $(seq 1 200); do echo line $i; done"},
            {"action": "shell", "cmd": "echo to stderr >&2"}
        ]}))
        .await;
    stack.wait_state(&job, JobState::Succeeded).await;
    let archive = stack.wait_archived(&job).await;
    assert!(
        archive
            .events
            .iter()
            .any(|e| e.state() == JobState::Succeeded)
    );

    let mut logs = stack.js.get_stream(streams::LOGS).await.unwrap();
    logs.purge().await.unwrap();
    assert_eq!(logs.info().await.unwrap().state.messages, 0);
    assert_eq!(stack.output(&job).await, "");

    let body = serde_json::json!({"job_id": job}).to_string();
    let reply = stack
        .api_raw(subjects::api::JOBS_LOGS, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(reply["source"], "archive");
    assert_eq!(reply["complete"], true);
    let output = reply["output"].as_str().unwrap();
    assert!(
        output.contains("line 1\n") && output.contains("line 200\n"),
        "{output}"
    );
    let chunks = reply["chunks"].as_array().unwrap();
    assert!(
        chunks
            .iter()
            .any(|c| c["stream"] == "stderr" && c["step"] == 1 && c["data"] == "to stderr\n"),
        "{chunks:?}"
    );
}

#[tokio::test]
async fn a_job_that_ends_while_the_archiver_is_down_is_archived_when_it_returns() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    stack.stop_service("archiver").await;
    let job = stack.submit_shell("echo archived later").await;
    stack.wait_state(&job, JobState::Succeeded).await;
    stack.start_service("archiver").await;
    let archive = stack.wait_archived(&job).await;
    let text: String = archive
        .logs()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    assert!(text.contains("archived later"), "{text}");
    // Its history began before this archiver: it is read back, whole.
    assert_eq!(archive.events, stack.events(&job).await);
}

#[tokio::test]
async fn a_job_the_archiver_saw_from_its_start_is_archived_without_reading_it_back() {
    // Reading a job's events back by subject makes the server scan everything stored since
    // the job began; the archiver has been handed each of those events already.
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let mut reads = stack
        .client
        .subscribe(format!("$JS.API.DIRECT.GET.{}", streams::EVENTS))
        .await
        .unwrap();
    stack.client.flush().await.unwrap();
    let job = stack.submit_shell("echo seen whole").await;
    stack.wait_state(&job, JobState::Succeeded).await;
    let archive = stack.wait_archived(&job).await;
    // A mark after every read the archiver made (it made them before the archive was there);
    // without a reply subject the server answers nothing.
    let mark = format!("$JS.API.DIRECT.GET.{}", streams::EVENTS);
    stack.client.publish(mark, "mark".into()).await.unwrap();
    let subject = subjects::events(&job);
    let mut read_back = 0;
    loop {
        let m = tokio::time::timeout(skynet_tests::WAIT, reads.next())
            .await
            .expect("the mark comes round")
            .unwrap();
        let body = String::from_utf8_lossy(&m.payload);
        if body == "mark" {
            break;
        }
        read_back += usize::from(body.contains(&format!("\"next_by_subj\":\"{subject}\"")));
    }
    assert_eq!(read_back, 0, "the archiver read the job's events back");
    assert_eq!(archive.events, stack.events(&job).await);
    assert!(archive.events.len() >= 5);
}

#[tokio::test]
async fn artifacts_round_trip_and_past_the_size_cap_fail_the_job_clearly() {
    let mut stack = Stack::start_with(Options::permissive()).await;
    let mut cfg = stack.worker_config("w1");
    cfg.artifact_max_bytes = 1000;
    let _w = stack.add_worker(cfg).await;
    let job = stack
        .submit(serde_json::json!({"steps": [{
            "action": "shell",
            "cmd": "mkdir -p out/sub && echo report-a > out/a.txt && echo report-b > out/sub/b.txt && echo skip > out/c.log",
            "artifacts": ["out/**/*.txt"]
        }]}))
        .await;
    stack.wait_state(&job, JobState::Succeeded).await;
    let store = stack
        .js
        .get_object_store(streams::ARTIFACTS_BUCKET)
        .await
        .unwrap();
    for (name, content) in [("out/a.txt", "report-a\n"), ("out/sub/b.txt", "report-b\n")] {
        let mut object = store.get(format!("{job}/{name}")).await.unwrap();
        let mut got = String::new();
        object.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, content, "{name}");
    }
    assert!(store.get(format!("{job}/out/c.log")).await.is_err());
    let archive = stack.wait_archived(&job).await;
    assert_eq!(archive.artifacts.len(), 2, "{:?}", archive.artifacts);

    let big = stack
        .submit(serde_json::json!({"steps": [{
            "action": "shell",
            "cmd": "head -c 5000 /dev/zero > big.bin",
            "artifacts": ["big.bin"]
        }]}))
        .await;
    let done = stack.wait_terminal(&big).await;
    let EventKind::Failed(f) = &done.kind else {
        panic!("{done:?}")
    };
    let error = f.error.clone().unwrap_or_default();
    assert!(
        error.contains("big.bin is 5000 bytes; the limit is 1000"),
        "{error}"
    );
    assert_eq!(f.steps[0].exit_code, Some(0));
}

/// Consumers on `stream` right now.
async fn consumers(stack: &Stack, stream: &str) -> usize {
    let mut s = stack.js.get_stream(stream).await.unwrap();
    s.info().await.unwrap().state.consumer_count
}

#[tokio::test]
async fn reading_jobs_back_leaves_no_consumer_behind() {
    // The archiver reads every ended job's events and output, the dispatcher reads a job
    // afresh when its view lags: over a long history a consumer per read piled up on the
    // server until creating one was refused ("maximum consumers limit reached") and
    // restarted services could not follow the events any more.
    let mut stack = Stack::start_with(Options::permissive()).await;
    let _w = stack.add_worker(stack.worker_config("w1")).await;
    let first = stack.submit_shell("echo warm").await;
    stack.wait_state(&first, JobState::Succeeded).await;
    stack.wait_archived(&first).await;
    let (events, logs) = (
        consumers(&stack, streams::EVENTS).await,
        consumers(&stack, streams::LOGS).await,
    );
    let mut jobs = Vec::new();
    for i in 0..8 {
        jobs.push(stack.submit_shell(&format!("echo job {i}")).await);
    }
    for (i, job) in jobs.iter().enumerate() {
        stack.wait_state(job, JobState::Succeeded).await;
        stack.wait_archived(job).await;
        assert!(stack.events(job).await.len() >= 5);
        assert_eq!(stack.output(job).await, format!("job {i}\n"));
    }
    assert_eq!(consumers(&stack, streams::EVENTS).await, events);
    assert_eq!(consumers(&stack, streams::LOGS).await, logs);
}

#[tokio::test]
async fn a_long_output_is_read_back_whole_and_in_order() {
    // More chunks than one batched read carries.
    let stack = Stack::start_with(Options::permissive()).await;
    let job = skynet_protocol::JobId::generate();
    let mut acks = Vec::new();
    for i in 0..700 {
        let mut h = async_nats::HeaderMap::new();
        h.insert(subjects::headers::STREAM, "stdout");
        h.insert(subjects::headers::STEP, "0");
        acks.push(
            stack
                .js
                .publish_with_headers(subjects::logs(&job), h, format!("{i}\n").into())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    let msgs = skynet_runtime::logs::read_all(&stack.js, &job)
        .await
        .unwrap();
    assert_eq!(msgs.len(), 700);
    assert!(msgs.windows(2).all(|w| w[0].seq < w[1].seq));
    let text: String = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    let want: String = (0..700).map(|i| format!("{i}\n")).collect();
    assert_eq!(text, want);
    let none = skynet_protocol::JobId::generate();
    assert!(
        skynet_runtime::logs::read_all(&stack.js, &none)
            .await
            .unwrap()
            .is_empty()
    );
}
