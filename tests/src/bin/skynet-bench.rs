//! Measures SKYNET's hot path against the floor it is built on, one raw JetStream hop, with
//! every part a process of its own from the release binaries (auth on, as deployed).
//! `scripts/bench` runs it. It prints a table and one JSON line; it asserts nothing.
//!
//! 1. raw hop: publish to a stream and receive it on a pull consumer (what every SKYNET stage
//!    does once);
//! 2. submit → running and submit → succeeded, one job at a time (latency);
//! 3. pipeline no-ops (one `file_read` step: the worker reads a small file itself, no process),
//!    all submitted at once, with the default sync and with `sync_interval: always` (beside
//!    the rate at which one stream of that server stores messages, the ceiling of that run);
//! 4. process no-ops (one `shell` step with `argv: ["true"]`, the worker's default settings),
//!    against the rate at which this machine starts and reaps `true` directly with the same
//!    concurrency, and under its supervisor as the worker starts a step (the floor under a
//!    process no-op);
//! 5. resident memory of each process, idle and under that load;
//! 6. start-up over a long history of finished jobs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A measuring tool: a broken set-up stops it.

#[path = "skynet-chaos/topology.rs"]
#[allow(dead_code)] // The soak's topology; the bench needs only part of it.
mod topology;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use clap::Parser;
use futures::StreamExt;
use serde_json::json;
use skynet_protocol::{Event, JobId, JobState, subjects};
use skynet_runtime::setup::{Existing, ensure_all};

use crate::topology::{Shape, Topology};

/// Everything runs; nothing asks a person.
/// nats-server's name among the figures of each process.
const NATS: &str = "nats-server";

/// Samples the resident memory of `pid` every 50 ms until the flag is cleared; the thread
/// returns the peak (KiB).
fn sample_peak(pid: i32) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let sampling = Arc::new(AtomicBool::new(true));
    let flag = sampling.clone();
    let thread = std::thread::spawn(move || {
        let mut peak = 0;
        while flag.load(Ordering::Relaxed) {
            peak = peak.max(topology::rss_kib(pid).unwrap_or(0));
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    });
    (sampling, thread)
}

const BENCH_POLICY: &str = r#"
[defaults]
verdict = "allow"
redirect = "allow"
dynamic = "allow"
unparsable = "allow"
"#;

/// SKYNET's benchmark: figures against the raw hop of the same run.
#[derive(Debug, Parser)]
#[command(name = "skynet-bench")]
struct Args {
    /// Where the release binaries are.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Jobs run one at a time for the latency figures.
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    /// Pipeline no-ops submitted at once.
    #[arg(long, default_value_t = 3000)]
    burst: usize,
    /// Process no-ops submitted at once (and `true` started directly as often).
    #[arg(long, default_value_t = 3000)]
    process_burst: usize,
    /// Slots of the one worker (and the concurrency of the direct spawns).
    #[arg(long, default_value_t = 16)]
    slots: usize,
    /// Raw hops measured.
    #[arg(long, default_value_t = 2000)]
    hops: usize,
    /// Finished jobs in the event stream for the start-up figures (0 skips them).
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Skip the run with `sync_interval: always`.
    #[arg(long)]
    no_sync_always: bool,
    /// Also print where one job's time goes (the server's time of each of its events).
    #[arg(long)]
    trace: bool,
    /// Work in this directory (kept) instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Dist {
    p50: Duration,
    p99: Duration,
}

fn dist(name: &str, mut samples: Vec<Duration>) -> Dist {
    samples.sort();
    let d = Dist {
        p50: pct(&samples, 0.5),
        p99: pct(&samples, 0.99),
    };
    println!(
        "{name:<36} n={:<5} p50={:>9.3?} p90={:>9.3?} p99={:>9.3?} max={:>9.3?}",
        samples.len(),
        d.p50,
        pct(&samples, 0.9),
        d.p99,
        samples[samples.len() - 1]
    );
    d
}

/// The running system and an admin connection to it.
struct Bench {
    topo: Topology,
    client: async_nats::Client,
    js: jetstream::Context,
    /// A small file inside the worker's root, for the pipeline no-ops.
    small_file: PathBuf,
    /// Print where the time of a burst goes.
    verbose: bool,
}

impl Bench {
    async fn start(dir: &Path, bin: &Path, slots: usize, sync_always: bool) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let topo = Topology::start(
            dir,
            bin,
            &Shape {
                copies: 1,
                workers: 1,
                slots,
                sync_always,
                soak_timing: false,
                policy: BENCH_POLICY,
                monitor: true,
            },
        );
        let client = skynet_runtime::connect(
            &skynet_runtime::NatsArgs {
                url: topo.nats.url(),
                seed: Some(topo.creds.seed_path("admin")),
                ca: None,
            },
            "bench",
        )
        .await
        .expect("admin connection");
        let js = jetstream::new(client.clone());
        ensure_all(&js, &Default::default(), Existing::Keep)
            .await
            .expect("streams");
        let small_file = topo.workers[0].1.join("small.txt");
        std::fs::write(&small_file, "a small file\n").unwrap();
        let b = Self {
            topo,
            client,
            js,
            small_file,
            verbose: false,
        };
        // Ready: a job goes all the way through.
        b.one(&b.process_noop()).await;
        b
    }

    fn pipeline_noop(&self) -> serde_json::Value {
        json!({"steps": [{"action": "file_read", "path": self.small_file.display().to_string()}]})
    }

    fn process_noop(&self) -> serde_json::Value {
        json!({"steps": [{"action": "shell", "argv": ["true"]}]})
    }

    /// Submits one job and returns (submit→running, submit→succeeded).
    async fn one(&self, body: &serde_json::Value) -> (Duration, Duration) {
        let id = JobId::generate();
        let mut sub = self.client.subscribe(subjects::events(&id)).await.unwrap();
        self.client.flush().await.unwrap();
        let mut body = body.clone();
        body["id"] = json!(id);
        let t = Instant::now();
        self.js
            .publish(subjects::SUBMIT, body.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
        let mut running = None;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), sub.next())
                .await
                .expect("job stuck")
                .unwrap();
            let e: Event = serde_json::from_slice(&m.payload).unwrap();
            match e.state() {
                JobState::Running => running = Some(t.elapsed()),
                JobState::Succeeded => return (running.unwrap_or_default(), t.elapsed()),
                s if s.is_terminal() => panic!("job {id} ended {s}"),
                _ => {}
            }
        }
    }

    /// Submits `n` jobs at once; returns the time until the last ended and until the ledger
    /// showed it, and the most memory each process held meanwhile.
    async fn burst(
        &self,
        body: &serde_json::Value,
        n: usize,
    ) -> (Duration, Duration, BTreeMap<String, u64>) {
        let mut done = self.client.subscribe(subjects::EVENTS_ALL).await.unwrap();
        self.client.flush().await.unwrap();
        let sampling = Arc::new(AtomicBool::new(true));
        let peak: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let mut pids: Vec<(String, i32)> = self
            .topo
            .procs
            .iter()
            .filter_map(|(name, p)| p.pid().map(|pid| (name.clone(), pid.as_raw())))
            .collect();
        if let Some(pid) = self.topo.nats.pid() {
            pids.push((NATS.into(), pid));
        }
        let sampler = {
            let sampling = sampling.clone();
            let peak = peak.clone();
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    for (name, pid) in &pids {
                        if let Some(kib) = topology::rss_kib(*pid) {
                            let mut p = peak.lock().unwrap();
                            let e = p.entry(name.clone()).or_default();
                            *e = (*e).max(kib);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let cpu_before = self.cpu();
        let written_before = self.written();
        let msgs_before = self.server_msgs().await;
        let t = Instant::now();
        let mut acks = Window::default();
        for _ in 0..n {
            let mut body = body.clone();
            body["id"] = json!(JobId::generate());
            acks.publish(&self.js, subjects::SUBMIT.to_owned(), body.to_string())
                .await;
        }
        acks.finish().await;
        let stored = t.elapsed();
        let mut finished = 0;
        let mut last = None;
        // When half and all of the jobs had reached each state: the stage that lags is the
        // one whose line grows.
        let mut reached: BTreeMap<JobState, (usize, Duration, Duration)> = BTreeMap::new();
        while finished < n {
            let m = tokio::time::timeout(Duration::from_secs(300), done.next())
                .await
                .expect("burst stuck")
                .unwrap();
            let e: Event = serde_json::from_slice(&m.payload).unwrap();
            let r = reached.entry(e.state()).or_default();
            r.0 += 1;
            if r.0 == n / 2 {
                r.1 = t.elapsed();
            }
            if r.0 == n {
                r.2 = t.elapsed();
            }
            if e.state().is_terminal() {
                assert_eq!(e.state(), JobState::Succeeded, "{e:?}");
                finished += 1;
                last = Some(e.job_id);
            }
        }
        let ended = t.elapsed();
        if self.verbose {
            println!("  all {n} stored after {stored:.2?}; half and all of them reached:");
            for (state, (_, half, all)) in &reached {
                println!("  {:>18} {half:>9.2?} {all:>9.2?}", state.as_str());
            }
        }
        self.ledger_shows(&last.unwrap(), JobState::Succeeded).await;
        let ledger = t.elapsed();
        let cpu: Vec<String> = self
            .cpu()
            .iter()
            .map(|(name, after)| {
                let used = after.saturating_sub(cpu_before.get(name).copied().unwrap_or_default());
                format!(
                    "{name} {:.0}%",
                    100.0 * used.as_secs_f64() / ledger.as_secs_f64()
                )
            })
            .collect();
        println!(
            "{:<36} {}",
            "  CPU of each process meanwhile",
            cpu.join(", ")
        );
        let written: Vec<String> = self
            .written()
            .iter()
            .map(|(name, after)| {
                let bytes = after.saturating_sub(written_before.get(name).copied().unwrap_or(0));
                format!("{name} {:.1}", bytes as f64 / 1024.0 / n as f64)
            })
            .collect();
        println!(
            "{:<36} {}",
            "  written to disk, KiB per job",
            written.join(", ")
        );
        let msgs_after = self.server_msgs().await;
        let (mut total_in, mut total_out) = (0, 0);
        let msgs: Vec<String> = msgs_after
            .iter()
            .map(|(name, (i, o))| {
                let (bi, bo) = msgs_before.get(name).copied().unwrap_or((0, 0));
                let (i, o) = (i.saturating_sub(bi), o.saturating_sub(bo));
                total_in += i;
                total_out += o;
                format!(
                    "{name} {:.1}/{:.1}",
                    i as f64 / n as f64,
                    o as f64 / n as f64
                )
            })
            .collect();
        if !msgs.is_empty() {
            println!(
                "{:<36} {:.1} in, {:.1} out: {}",
                "  server messages per job (in/out)",
                total_in as f64 / n as f64,
                total_out as f64 / n as f64,
                msgs.join(", ")
            );
        }
        sampling.store(false, Ordering::Relaxed);
        sampler.join().unwrap();
        let peak = peak.lock().unwrap().clone();
        (ended, ledger, peak)
    }

    async fn ledger_shows(&self, job: &JobId, state: JobState) {
        let body = json!({"job_id": job}).to_string();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Ok(bytes) = skynet_runtime::api::call_raw(
                &self.client,
                subjects::api::JOBS_GET,
                body.clone().into(),
                Duration::from_secs(5),
            )
            .await
                && serde_json::from_slice::<serde_json::Value>(&bytes)
                    .is_ok_and(|v| v["state"] == state.as_str())
            {
                return;
            }
            assert!(Instant::now() < deadline, "the ledger never showed {job}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Where one job's time goes: the server's timestamp of each of its events, after the
    /// time its request was stored.
    async fn trace(&self, body: &serde_json::Value) {
        use async_nats::jetstream::consumer::pull::OrderedConfig;
        let id = JobId::generate();
        let mut body = body.clone();
        body["id"] = json!(id);
        let ack = self
            .js
            .publish(subjects::SUBMIT, body.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
        self.ledger_shows(&id, JobState::Succeeded).await;
        let submit = self
            .js
            .get_stream(skynet_protocol::streams::SUBMIT)
            .await
            .unwrap();
        let stored = submit.get_raw_message(ack.sequence).await.unwrap();
        let events = self
            .js
            .get_stream(skynet_protocol::streams::EVENTS)
            .await
            .unwrap();
        let c = events
            .create_consumer(OrderedConfig {
                filter_subject: subjects::events(&id),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut m = c.messages().await.unwrap();
        let mut prev = stored.time;
        println!("  one job, server times: submit stored at 0");
        loop {
            let msg = m.next().await.unwrap().unwrap();
            let at = msg.info().unwrap().published;
            let e: Event = serde_json::from_slice(&msg.payload).unwrap();
            println!(
                "  {:>18} +{:>9.3?} (at {:>9.3?})",
                e.state().as_str(),
                (at - prev).unsigned_abs(),
                (at - stored.time).unsigned_abs()
            );
            prev = at;
            if e.state().is_terminal() {
                break;
            }
        }
    }

    /// CPU time each process (and nats-server) has used so far.
    fn cpu(&self) -> BTreeMap<String, Duration> {
        self.per_process(topology::cpu_time)
    }

    /// `read(pid)` of each process and of nats-server (as [`NATS`]), where it answers.
    fn per_process<T>(&self, read: impl Fn(i32) -> Option<T>) -> BTreeMap<String, T> {
        let mut out: BTreeMap<String, T> = self
            .topo
            .procs
            .iter()
            .filter_map(|(name, p)| Some((name.clone(), read(p.pid()?.as_raw())?)))
            .collect();
        if let Some(v) = self.topo.nats.pid().and_then(&read) {
            out.insert(NATS.into(), v);
        }
        out
    }

    /// Messages each client connection (by name, copies summed) has sent to the server and
    /// had delivered, from the server's `/connz`; empty without monitoring.
    async fn server_msgs(&self) -> BTreeMap<String, (u64, u64)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut out = BTreeMap::new();
        let Some(port) = self.topo.monitor else {
            return out;
        };
        let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return out;
        };
        let request = "GET /connz?limit=4096 HTTP/1.0\r\nHost: localhost\r\n\r\n";
        let mut reply = Vec::new();
        if conn.write_all(request.as_bytes()).await.is_err()
            || conn.read_to_end(&mut reply).await.is_err()
        {
            return out;
        }
        let body = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|at| &reply[at + 4..])
            .unwrap_or_default();
        let Ok(connz) = serde_json::from_slice::<serde_json::Value>(body) else {
            return out;
        };
        for c in connz["connections"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("(unnamed)").to_owned();
            let e: &mut (u64, u64) = out.entry(name).or_default();
            e.0 += c["in_msgs"].as_u64().unwrap_or(0);
            e.1 += c["out_msgs"].as_u64().unwrap_or(0);
        }
        out
    }

    /// Bytes each process (and nats-server) has had written to storage so far.
    fn written(&self) -> BTreeMap<String, u64> {
        self.per_process(topology::written_bytes)
    }

    /// Resident memory of each process, and of nats-server (as [`NATS`]).
    fn rss(&self) -> BTreeMap<String, u64> {
        self.per_process(topology::rss_kib)
    }
}

/// Publishes with their acks awaited in a window: the client gives out a bounded number of
/// pending acks (5,000), and a publish waits for one of them to be awaited.
#[derive(Default)]
struct Window(std::collections::VecDeque<jetstream::context::PublishAckFuture>);

impl Window {
    async fn publish(
        &mut self,
        js: &jetstream::Context,
        subject: String,
        body: impl Into<bytes::Bytes>,
    ) {
        self.0
            .push_back(js.publish(subject, body.into()).await.unwrap());
        if self.0.len() >= 4096 {
            self.0.pop_front().unwrap().await.expect("stored");
        }
    }

    /// Waits until everything published is stored.
    async fn finish(self) {
        for a in self.0 {
            a.await.expect("stored");
        }
    }
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
    js.delete_stream("BENCH").await.unwrap();
    out
}

/// How many messages a second one stream stores with `n` publishes in flight at once: with
/// `sync_interval: always` every one waits for its own fsync, so this is the most any stream
/// of this server takes on this disk.
async fn raw_stores(js: &jetstream::Context, n: usize) -> f64 {
    js.create_stream(stream::Config {
        name: "BENCH_STORES".into(),
        subjects: vec!["bench.stores.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let t = Instant::now();
    let mut acks = Window::default();
    for i in 0..n {
        acks.publish(js, format!("bench.stores.{i}"), i.to_string())
            .await;
    }
    acks.finish().await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    js.delete_stream("BENCH_STORES").await.unwrap();
    rate
}

/// How many events `SKYNET_EVENTS` holds.
async fn stored_events(js: &jetstream::Context) -> u64 {
    let mut s = js
        .get_stream(skynet_protocol::streams::EVENTS)
        .await
        .unwrap();
    s.info().await.unwrap().state.messages
}

/// How fast this machine starts and reaps `true` with `concurrency` at a time.
fn spawn_rate(n: usize, concurrency: usize) -> f64 {
    starts_per_s(n, concurrency, || {
        let s = std::process::Command::new("true").status().unwrap();
        assert!(s.success());
    })
}

/// How fast `true` starts and is reaped under its supervisor, as a worker with its default
/// settings starts a step's process (the worker binary re-executed, Landlock confinement of
/// the worker's rules for `root`), `concurrency` at a time: the floor under a process no-op
/// that the worker cannot go below, whatever the rest of the pipeline costs.
fn supervised_spawn_rate(bin: &Path, root: &Path, n: usize, concurrency: usize) -> f64 {
    use skynet_worker::{sandbox, supervise};
    let tmp = root.join("tmp-supervised");
    std::fs::create_dir_all(&tmp).unwrap();
    let level = sandbox::decide(None, sandbox::probe()).unwrap();
    let path = std::env::var("PATH").ok();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let rules = sandbox::Sandbox::new(
        level,
        &[root.to_path_buf()],
        Path::new(&home),
        &[],
        path.as_deref(),
    )
    .confinement(&tmp, false);
    let first = supervise::first_line(rules.as_ref());
    let program = bin.join("skynet-worker");
    starts_per_s(n, concurrency, move || {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(&program)
            .args(supervise::args(
                supervise::boottime_ms() + 600_000,
                Duration::from_secs(5),
                "true",
                &[],
            ))
            .current_dir(&tmp)
            .stdin(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        // Held open until the end, as the worker does: a closed pipe stops the step.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(first.as_bytes()).unwrap();
        let s = child.wait().unwrap();
        assert!(s.success(), "a supervised `true` failed: {s}");
        drop(stdin);
    })
}

/// Runs `start` `n` times, `concurrency` threads at a time; the rate.
fn starts_per_s(
    n: usize,
    concurrency: usize,
    start: impl Fn() + Send + Sync + Clone + 'static,
) -> f64 {
    let left = Arc::new(AtomicUsize::new(n));
    let t = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (left, start) = (left.clone(), start.clone());
            std::thread::spawn(move || {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                    .is_ok()
                {
                    start();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
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
    let mut pending = Window::default();
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
                sandbox: None,
            },
            EventKind::Succeeded(Finished::default()),
        ];
        for kind in kinds {
            let e = Event::now(id.clone(), kind);
            pending
                .publish(js, subjects::events(&id), e.to_json())
                .await;
        }
    }
    pending.finish().await;
}

/// Kills every SKYNET process, starts them all again and returns how long until a new job
/// has run and the ledger shows it.
async fn restart_all(b: &mut Bench) -> Duration {
    for p in b.topo.procs.values_mut() {
        p.kill9();
    }
    let t = Instant::now();
    b.topo.revive();
    let id = JobId::generate();
    let mut body = b.pipeline_noop();
    body["id"] = json!(id);
    b.js.publish(subjects::SUBMIT, body.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    b.ledger_shows(&id, JobState::Succeeded).await;
    t.elapsed()
}

fn kib_json(m: &BTreeMap<String, u64>) -> serde_json::Value {
    json!(m)
}

fn print_rss(title: &str, m: &BTreeMap<String, u64>) {
    let line: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k} {:.1} MB", *v as f64 / 1024.0))
        .collect();
    println!("{title:<36} {}", line.join(", "));
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let tmp = tempfile::tempdir().unwrap();
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let mut out = serde_json::Map::new();
    println!(
        "SKYNET benchmark: every part a process of its own, one worker with {} slots; \
         {} jobs one at a time, bursts of {} pipeline and {} process no-ops",
        args.slots, args.jobs, args.burst, args.process_burst
    );

    let mut bench = Bench::start(&dir.join("default"), &args.bin_dir, args.slots, false).await;
    bench.verbose = args.trace;
    // Warm up: the first jobs pay for connections and consumers.
    for _ in 0..20 {
        bench.one(&bench.pipeline_noop()).await;
    }
    let mut idle = bench.rss();
    let hop = dist(
        "raw JetStream hop (pub→consume)",
        raw_hop(&bench.js, args.hops).await,
    );
    let mut to_running = Vec::new();
    let mut to_done = Vec::new();
    for _ in 0..args.jobs {
        let (r, _) = bench.one(&bench.pipeline_noop()).await;
        to_running.push(r);
        let (_, d) = bench.one(&bench.process_noop()).await;
        to_done.push(d);
    }
    let running = dist("submit → running (pipeline no-op)", to_running);
    if args.trace {
        bench.trace(&bench.pipeline_noop()).await;
        bench.trace(&bench.process_noop()).await;
    }
    let succeeded = dist("submit → succeeded (`true`)", to_done);
    let over = running.p50.as_secs_f64() / hop.p50.as_secs_f64();
    let over99 = running.p99.as_secs_f64() / hop.p50.as_secs_f64();
    println!(
        "{:<36} p50 {over:.1} hops, p99 {over99:.1} hops",
        "submit → running in raw hops"
    );

    let (ended, ledger, loaded_pipeline) = bench.burst(&bench.pipeline_noop(), args.burst).await;
    let jobs_per_s = args.burst as f64 / ended.as_secs_f64();
    println!(
        "{:<36} {jobs_per_s:.0} jobs/s ({} in {ended:.2?}; the ledger had them all after {ledger:.2?})",
        "pipeline no-ops at once", args.burst
    );
    let (ended, _, loaded_process) = bench.burst(&bench.process_noop(), args.process_burst).await;
    let process_jobs_per_s = args.process_burst as f64 / ended.as_secs_f64();
    let spawn_per_s = spawn_rate(args.process_burst, args.slots);
    let supervised_per_s = supervised_spawn_rate(
        &args.bin_dir,
        &bench.topo.workers[0].1,
        args.process_burst,
        args.slots,
    );
    println!(
        "{:<36} {process_jobs_per_s:.0} jobs/s; `true` started directly, {} at a time: {spawn_per_s:.0}/s ({:.2} of it)",
        "process no-ops at once",
        args.slots,
        process_jobs_per_s / spawn_per_s
    );
    println!(
        "{:<36} {supervised_per_s:.0}/s ({:.2} of `true` directly; the process no-ops reach {:.2} of it)",
        "  `true` under its supervisor",
        supervised_per_s / spawn_per_s,
        process_jobs_per_s / supervised_per_s
    );
    let mut loaded = loaded_pipeline.clone();
    for (k, v) in &loaded_process {
        let e = loaded.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
    // The server's memory is its own figure: the goals are about SKYNET's processes.
    let nats_idle = idle.remove(NATS).unwrap_or(0);
    let nats_loaded = loaded.remove(NATS).unwrap_or(0);
    print_rss("resident memory, idle", &idle);
    print_rss("resident memory, under the bursts", &loaded);
    println!(
        "{:<36} {:.1} MB idle, at most {:.1} MB under the bursts",
        "nats-server resident memory",
        nats_idle as f64 / 1024.0,
        nats_loaded as f64 / 1024.0
    );
    out.insert("nats_rss_idle_kib".into(), json!(nats_idle));
    out.insert("nats_rss_loaded_kib".into(), json!(nats_loaded));
    out.insert("hop_p50_us".into(), json!(hop.p50.as_micros() as u64));
    out.insert(
        "running_p50_us".into(),
        json!(running.p50.as_micros() as u64),
    );
    out.insert(
        "running_p99_us".into(),
        json!(running.p99.as_micros() as u64),
    );
    out.insert(
        "succeeded_p50_us".into(),
        json!(succeeded.p50.as_micros() as u64),
    );
    out.insert("running_over_hop".into(), json!(round1(over)));
    out.insert("running_p99_over_hop".into(), json!(round1(over99)));
    out.insert("jobs_per_s".into(), json!(jobs_per_s.round()));
    out.insert(
        "process_jobs_per_s".into(),
        json!(process_jobs_per_s.round()),
    );
    out.insert("spawn_per_s".into(), json!(spawn_per_s.round()));
    out.insert(
        "supervised_spawn_per_s".into(),
        json!(supervised_per_s.round()),
    );
    out.insert("rss_idle_kib".into(), kib_json(&idle));
    out.insert("rss_loaded_kib".into(), kib_json(&loaded));
    drop(bench);

    if !args.no_sync_always {
        let bench = Bench::start(&dir.join("sync-always"), &args.bin_dir, args.slots, true).await;
        for _ in 0..20 {
            bench.one(&bench.pipeline_noop()).await;
        }
        let events_before = stored_events(&bench.js).await;
        let (ended, _, _) = bench.burst(&bench.pipeline_noop(), args.burst).await;
        let rate = args.burst as f64 / ended.as_secs_f64();
        println!(
            "{:<36} {rate:.0} jobs/s ({} in {ended:.2?})",
            "pipeline no-ops, sync always", args.burst
        );
        out.insert("jobs_per_s_sync_always".into(), json!(rate.round()));
        // The ceiling over it: every event of a job is stored in one stream (the contract's
        // `skynet.events.<job_id>`), each with its own fsync. A job that runs at once has six
        // (`received`, `planned`, `approved`, `dispatched`, `running`, its end); one that
        // waits for a slot has `queued` too.
        let per_job = (stored_events(&bench.js).await - events_before) as f64 / args.burst as f64;
        let stores = raw_stores(&bench.js, args.burst).await;
        println!(
            "{:<36} {stores:.0} messages/s into one stream, {} in flight: at most {:.0} jobs/s for the {per_job:.1} events each job of the burst stored",
            "  raw stores, sync always",
            args.burst,
            stores / per_job
        );
        out.insert("stores_per_s_sync_always".into(), json!(stores.round()));
        out.insert("events_per_job".into(), json!(round1(per_job)));
    }

    if args.history > 0 {
        let mut bench = Bench::start(&dir.join("history"), &args.bin_dir, args.slots, false).await;
        for p in bench.topo.procs.values_mut() {
            p.kill9();
        }
        let t = Instant::now();
        fill_history(&bench.js, args.history).await;
        println!(
            "{:<36} {} finished jobs ({} events) written in {:.2?}",
            "history",
            args.history,
            args.history * 6,
            t.elapsed()
        );
        let (sampling, sampler) = sample_peak(bench.topo.nats.pid().unwrap_or(0));
        let first = restart_all(&mut bench).await;
        sampling.store(false, Ordering::Relaxed);
        let nats_peak = sampler.join().unwrap();
        println!(
            "{:<36} {first:.2?} (reads the history once; nats-server at most {:.1} MB)",
            "first start over it: ready in",
            nats_peak as f64 / 1024.0
        );
        out.insert("nats_rss_first_start_kib".into(), json!(nats_peak));
        let again = restart_all(&mut bench).await;
        println!(
            "{:<36} {again:.2?} (snapshots and positions)",
            "restart: every service ready in"
        );
        out.insert("history_jobs".into(), json!(args.history));
        out.insert("ready_first_ms".into(), json!(first.as_millis() as u64));
        out.insert("ready_restart_ms".into(), json!(again.as_millis() as u64));
    }
    println!("{}", serde_json::Value::Object(out));
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
