//! The archiver and artifacts (contract: `jobs.logs` reads the live stream or the archive;
//! steps' `artifacts`): output outlives the live log stream, archiving survives the
//! archiver's absence, and artifacts round-trip with a size cap.

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
