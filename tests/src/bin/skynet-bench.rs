//! Measures SKYNET's hot path against the floor it is built on: one raw JetStream hop.
//! `scripts/bench` runs it in release mode. It prints figures; it asserts nothing.
//!
//! 1. raw hop: publish to a stream and receive it on a pull consumer (what every SKYNET
//!    stage does once);
//! 2. submit → running and submit → succeeded for one job at a time (latency);
//! 3. many jobs at once (throughput).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use skynet_protocol::{Event, JobId, JobState, subjects};
use skynet_tests::{Options, PERMISSIVE_POLICY, Stack};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = pct(&samples, 0.5);
    println!(
        "{name:<34} n={:<5} p50={:>9.3?} p90={:>9.3?} p99={:>9.3?} max={:>9.3?}",
        samples.len(),
        p50,
        pct(&samples, 0.9),
        pct(&samples, 0.99),
        samples[samples.len() - 1]
    );
    p50
}

async fn raw_hop(js: &jetstream::Context, n: usize) -> Vec<Duration> {
    let s = js
        .create_stream(stream::Config {
            name: "BENCH".into(),
            subjects: vec!["bench.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = s
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let t = Instant::now();
        js.publish("bench.x", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
        let m = messages.next().await.unwrap().unwrap();
        m.ack().await.unwrap();
        if i >= 50 {
            out.push(t.elapsed());
        }
    }
    out
}

/// Submits one `true` job and returns (submit→running, submit→succeeded).
async fn one_job(stack: &Stack) -> (Duration, Duration) {
    let id = JobId::generate();
    let mut sub = stack.client.subscribe(subjects::events(&id)).await.unwrap();
    stack.client.flush().await.unwrap();
    let body =
        serde_json::json!({"id": id, "steps": [{"action": "shell", "cmd": "true"}]}).to_string();
    let t = Instant::now();
    stack
        .js
        .publish(subjects::SUBMIT, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut running = None;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("job stuck")
            .unwrap();
        let e: Event = serde_json::from_slice(&m.payload).unwrap();
        match e.state() {
            JobState::Running => running = Some(t.elapsed()),
            JobState::Succeeded => return (running.unwrap_or_default(), t.elapsed()),
            s if s.is_terminal() => panic!("job ended {s}"),
            _ => {}
        }
    }
}

async fn burst(stack: &Stack, n: usize) -> Duration {
    let mut done = stack.client.subscribe("skynet.events.>").await.unwrap();
    stack.client.flush().await.unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let id = JobId::generate();
        let body = serde_json::json!({"id": id, "steps": [{"action": "shell", "cmd": "true"}]})
            .to_string();
        stack
            .js
            .publish(subjects::SUBMIT, body.into())
            .await
            .unwrap();
    }
    let mut finished = 0;
    while finished < n {
        let m = tokio::time::timeout(Duration::from_secs(120), done.next())
            .await
            .expect("burst stuck")
            .unwrap();
        let e: Event = serde_json::from_slice(&m.payload).unwrap();
        if e.state().is_terminal() {
            assert_eq!(e.state(), JobState::Succeeded);
            finished += 1;
        }
    }
    t.elapsed()
}

/// Where one job's time goes: the server's timestamp of each of its events.
async fn trace_one(stack: &Stack) {
    let id = JobId::generate();
    let body =
        serde_json::json!({"id": id, "steps": [{"action": "shell", "cmd": "true"}]}).to_string();
    let t0 = time::OffsetDateTime::now_utc();
    let ack = stack
        .js
        .publish(subjects::SUBMIT, body.into())
        .await
        .unwrap()
        .await
        .unwrap();
    one_wait(stack, &id).await;
    let submit = stack
        .js
        .get_stream(skynet_protocol::streams::SUBMIT)
        .await
        .unwrap();
    let stored = submit.get_raw_message(ack.sequence).await.unwrap();
    println!(
        "  {:>18} +{:>8.3?}",
        "submit stored",
        (stored.time - t0).unsigned_abs()
    );
    let t0 = stored.time;
    let s = stack
        .js
        .get_stream(skynet_protocol::streams::EVENTS)
        .await
        .unwrap();
    let c = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: subjects::events(&id),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut m = c.messages().await.unwrap();
    let mut prev = t0;
    loop {
        let msg = m.next().await.unwrap().unwrap();
        let info = msg.info().unwrap();
        let e: Event = serde_json::from_slice(&msg.payload).unwrap();
        let at = info.published;
        println!(
            "  {:>18} +{:>8.3?}",
            e.state().as_str(),
            (at - prev).unsigned_abs()
        );
        prev = at;
        if e.state().is_terminal() {
            break;
        }
    }
}

async fn one_wait(stack: &Stack, id: &JobId) {
    let mut sub = stack
        .js
        .get_stream(skynet_protocol::streams::EVENTS)
        .await
        .unwrap();
    let _ = sub.info().await;
    for _ in 0..200 {
        if let Ok(m) = sub.direct_get_last_for_subject(subjects::events(id)).await
            && serde_json::from_slice::<Event>(&m.payload)
                .unwrap()
                .state()
                .is_terminal()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fills the event stream with `n` finished jobs (six events each), as fast as the server
/// takes them.
async fn fill_history(js: &jetstream::Context, n: usize) {
    use skynet_protocol::EventKind;
    use skynet_protocol::event::Finished;
    let w = skynet_protocol::WorkerId::parse("old").unwrap();
    let request =
        skynet_protocol::JobRequest::from_slice(br#"{"steps":[{"action":"shell","cmd":"true"}]}"#)
            .unwrap();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let id = JobId::parse(&format!("old-{i}")).unwrap();
        let kinds = [
            EventKind::Received {
                request: request.clone(),
            },
            EventKind::Planned {
                steps: vec![],
                summary: "s".into(),
                planner: "passthrough".into(),
                plan_hash: "h".into(),
                model: None,
                usage: None,
                lock: None,
            },
            EventKind::Approved {
                by: "policy".into(),
                reasons: vec![],
                seal: None,
            },
            EventKind::Dispatched {
                worker: w.clone(),
                attempt: 1,
            },
            EventKind::Running {
                worker: w.clone(),
                attempt: 1,
            },
            EventKind::Succeeded(Finished::default()),
        ];
        for kind in kinds {
            let e = Event::now(id.clone(), kind);
            pending.push_back(
                js.publish(subjects::events(&id), e.to_json().into())
                    .await
                    .unwrap(),
            );
            if pending.len() >= 4096 {
                pending.pop_front().unwrap().await.unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap();
    }
}

/// Starts every control-plane service and returns how long until a new job has run and the
/// ledger shows it.
async fn until_ready(stack: &mut Stack) -> Duration {
    let t = Instant::now();
    for s in [
        "ledger",
        "planner",
        "policy",
        "dispatcher",
        "sentinel",
        "archiver",
    ] {
        stack.start_service(s).await;
    }
    let id = stack.submit_shell("true").await;
    stack.wait_state(&id, JobState::Succeeded).await;
    stack.ledger_state(&id, JobState::Succeeded).await;
    t.elapsed()
}

/// Start-up against a long history: the first start reads it all (and leaves snapshots),
/// a restart resumes from the snapshots and the ledger's position.
async fn startup(history: usize) {
    let mut stack = Stack::start_with(Options {
        policy: Some(PERMISSIVE_POLICY.into()),
        services: vec![],
        ..Default::default()
    })
    .await;
    let t = Instant::now();
    fill_history(&stack.js, history).await;
    println!(
        "history: {history} finished jobs ({} events) written in {:.2?}",
        history * 6,
        t.elapsed()
    );
    let _w = stack.add_worker(stack.worker_config("bench")).await;
    let first = until_ready(&mut stack).await;
    println!("first start over that history (reads it all once): ready in {first:.2?}");
    for s in [
        "ledger",
        "planner",
        "policy",
        "dispatcher",
        "sentinel",
        "archiver",
    ] {
        stack.stop_service(s).await;
    }
    let again = until_ready(&mut stack).await;
    println!("restart (snapshots and positions): every service ready in {again:.2?}");
}

#[tokio::main]
async fn main() {
    let jobs: usize = std::env::var("SKYNET_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let burst_jobs: usize = std::env::var("SKYNET_BENCH_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);

    let mut stack = Stack::start_with(Options {
        policy: Some(PERMISSIVE_POLICY.into()),
        ..Default::default()
    })
    .await;
    let mut cfg = stack.worker_config("bench");
    cfg.max_jobs = 16;
    let _w = stack.add_worker(cfg).await;

    println!(
        "SKYNET benchmark ({} jobs one at a time, a burst of {burst_jobs})",
        jobs
    );
    let hop = report(
        "raw JetStream hop (pub→consume)",
        raw_hop(&stack.js, 2000).await,
    );

    // Warm up: the first jobs pay for connections and consumers.
    for _ in 0..20 {
        one_job(&stack).await;
    }
    let mut to_running = Vec::new();
    let mut to_done = Vec::new();
    for _ in 0..jobs {
        let (r, d) = one_job(&stack).await;
        to_running.push(r);
        to_done.push(d);
    }
    let running = report("submit → running", to_running);
    if std::env::var_os("SKYNET_BENCH_TRACE").is_some() {
        trace_one(&stack).await;
    }
    report("submit → succeeded (`true`)", to_done);
    println!(
        "submit → running is {:.1}× one raw hop (p50 against p50)",
        running.as_secs_f64() / hop.as_secs_f64()
    );
    let took = burst(&stack, burst_jobs).await;
    println!(
        "{burst_jobs} jobs at once on one worker (16 slots): {took:.2?}, {:.0} jobs/s",
        burst_jobs as f64 / took.as_secs_f64()
    );
    drop(stack);
    let history: usize = std::env::var("SKYNET_BENCH_HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if history > 0 {
        startup(history).await;
    }
}
