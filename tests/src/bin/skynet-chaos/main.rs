//! skynet-chaos: SKYNET's own soak. The whole system as separate processes from the release
//! binaries (two planners, two policies, two dispatchers, a ledger, a sentinel, an archiver,
//! three workers with three slots each, auth on), a steady mixed load, and seeded faults:
//! `kill -9` of any process (nats-server included) and a worker frozen past the offline
//! window. At the end it lets everything settle, checks the invariants, prints a table and
//! exits non-zero on any violation.
//!
//! `scripts/chaos --seconds 600 --seed 7 [--sync-always]` builds and runs it.

#![allow(clippy::expect_used, clippy::unwrap_used)] // A test tool: a broken set-up stops it.

mod check;
mod load;
mod topology;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skynet_protocol::{EventKind, JobId, JobState, subjects};
use skynet_runtime::setup::{Existing, ensure_all};
use tokio::sync::mpsc;

use crate::load::{Kind, Ledger};
use crate::topology::{OFFLINE_AFTER, Shape, Topology};

/// SKYNET's chaos soak: a mixed load under seeded kills, then a table of invariants.
#[derive(Debug, Parser)]
#[command(name = "skynet-chaos")]
struct Args {
    /// How long the load and the faults last.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The seed of every random choice (printed, so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Run nats-server with `sync_interval: always` (every write on disk before its ack).
    #[arg(long)]
    sync_always: bool,
    /// Jobs submitted per second.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Where the release binaries are.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Work in this directory (kept afterwards) instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How long everything may take to settle after the load.
    #[arg(long, default_value_t = 180)]
    settle_seconds: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What the event watcher learned.
#[derive(Default)]
struct Seen {
    ended: HashSet<JobId>,
    /// The time (ms) each job was first seen running.
    running_at: HashMap<JobId, i64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skynet-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(soak(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("skynet-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn soak(args: Args) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(|| rand::thread_rng().r#gen());
    let mut rng = StdRng::seed_from_u64(seed);
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    eprintln!(
        "chaos: seed {seed}, {} s, {} jobs/s, sync {}, in {}",
        args.seconds,
        args.rate,
        if args.sync_always {
            "always"
        } else {
            "default"
        },
        dir.display()
    );
    let topology = Topology::start(&dir, &args.bin_dir, &Shape::soak(args.sync_always));
    let url = topology.nats.url();
    let admin = skynet_runtime::connect(
        &skynet_runtime::NatsArgs {
            url: url.clone(),
            seed: Some(topology.creds.seed_path("admin")),
            ca: None,
        },
        "chaos",
    )
    .await?;
    let js = async_nats::jetstream::new(admin.clone());
    ensure_all(&js, &Default::default(), Existing::Keep).await?;
    let homes: Vec<PathBuf> = topology.workers.iter().map(|(_, h)| h.clone()).collect();

    let ledger: Ledger = Arc::default();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (approvals_tx, mut approvals_rx) = mpsc::unbounded_channel::<(JobId, String)>();
    // Every event, as it happens.
    {
        let log = skynet_runtime::EventLog::open(js.clone()).await?;
        let seen = seen.clone();
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let Ok(events) = log.follow(1).await else {
                return;
            };
            futures::pin_mut!(events);
            while let Some(e) = events.next().await {
                let Ok(e) = e else { continue };
                let e = e.event;
                let mut s = lock(&seen);
                if e.state().is_terminal() {
                    s.ended.insert(e.job_id.clone());
                }
                if e.state() == JobState::Running {
                    let at = skynet_protocol::time::parse(&e.at)
                        .map(skynet_protocol::time::unix_ms)
                        .unwrap_or(0);
                    s.running_at.entry(e.job_id.clone()).or_insert(at);
                }
                if let EventKind::AwaitingApproval { plan_hash, .. } = &e.kind
                    && lock(&ledger)
                        .get(&e.job_id)
                        .is_some_and(|p| p.kind == Kind::Approval)
                {
                    let _ = approvals_tx.send((e.job_id.clone(), plan_hash.clone()));
                }
            }
        });
    }
    // People answering approval requests, after a while.
    {
        let client = admin.clone();
        let mut rng = StdRng::seed_from_u64(rng.r#gen());
        // Decisions are signed by the approving CLI identity: policy records who decided.
        let cli = std::sync::Arc::new(
            skynet_runtime::args::read_seed(&topology.creds.seed_path("cli"), "cli")?.key_pair()?,
        );
        tokio::spawn(async move {
            while let Some((job, hash)) = approvals_rx.recv().await {
                let approve = rng.gen_bool(0.8);
                let wait = Duration::from_millis(rng.gen_range(200..2500));
                let client = client.clone();
                let cli = cli.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let endpoint = if approve {
                        subjects::api::JOBS_APPROVE
                    } else {
                        subjects::api::JOBS_DENY
                    };
                    let verdict = if approve {
                        skynet_protocol::approval::Verdict::Approve
                    } else {
                        skynet_protocol::approval::Verdict::Deny
                    };
                    let signature = skynet_protocol::approval::sign(
                        &cli,
                        &skynet_protocol::approval::Decision {
                            job_id: &job,
                            plan_hash: &hash,
                            verdict,
                        },
                        skynet_protocol::time::now_ms() / 1000,
                        None,
                    )
                    .ok();
                    let body = serde_json::json!({"job_id": job, "plan_hash": hash, "by": "cli:chaos", "signature": signature});
                    load::call(&client, endpoint, body, Duration::from_secs(120)).await;
                });
            }
        });
    }

    // The schedule, created once the services answer.
    {
        let client = admin.clone();
        tokio::spawn(async move {
            let made = load::call(
                &client,
                subjects::api::SCHEDULES_CREATE,
                load::schedule(),
                Duration::from_secs(60),
            )
            .await;
            if !matches!(made, Some(Ok(_))) {
                eprintln!("chaos: the schedule was not created: {made:?}");
            }
        });
    }

    let started = Instant::now();
    let end = started + Duration::from_secs(args.seconds);
    // The load.
    let load = {
        let js = js.clone();
        let ledger = ledger.clone();
        let client = admin.clone();
        let mut rng = StdRng::seed_from_u64(rng.r#gen());
        let rate = args.rate.max(0.1);
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut tasks = Vec::new();
            while Instant::now() < end {
                n += 1;
                let id = JobId::parse(&format!("c{seed}-{n}")).expect("job id");
                let (kind, request, lines) = load::pick(&mut rng);
                let cancel_after = Duration::from_millis(rng.gen_range(500..3000));
                let (js, ledger, client) = (js.clone(), ledger.clone(), client.clone());
                tasks.push(tokio::spawn(async move {
                    let acked = load::submit(
                        &js,
                        &ledger,
                        &id,
                        kind,
                        lines,
                        request,
                        Duration::from_secs(60),
                    )
                    .await;
                    if acked && kind == Kind::Cancelled {
                        tokio::time::sleep(cancel_after).await;
                        let body = serde_json::json!({"job_id": id, "by": "cli:chaos"});
                        load::call(
                            &client,
                            subjects::api::JOBS_CANCEL,
                            body,
                            Duration::from_secs(120),
                        )
                        .await;
                    }
                }));
                let gap = rng.gen_range(0.5..1.5) / rate;
                tokio::time::sleep(Duration::from_secs_f64(gap)).await;
            }
            for t in tasks {
                let _ = t.await;
            }
            n
        })
    };

    // The faults.
    let mut topology = topology;
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut restarts: Vec<(i64, JobId)> = Vec::new();
    let mut probes = 0u64;
    let mut due: Vec<(Instant, String)> = Vec::new();
    let mut thaw: Option<(Instant, String)> = None;
    let mut next_fault = Instant::now() + Duration::from_secs(3);
    let mut quiet_until = Instant::now();
    let names: Vec<String> = topology.procs.keys().cloned().collect();
    let workers: Vec<String> = topology
        .workers
        .iter()
        .map(|(w, _)| w.to_string())
        .collect();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        // Restarts that are due.
        due.retain(|(at, name)| {
            if *at <= now {
                if let Some(p) = topology.procs.get_mut(name) {
                    p.start();
                }
                false
            } else {
                true
            }
        });
        if let Some((at, name)) = &thaw
            && *at <= now
        {
            if let Some(p) = topology.procs.get_mut(name) {
                p.thaw();
            }
            thaw = None;
        }
        if now < next_fault || now < quiet_until {
            continue;
        }
        next_fault = now + Duration::from_millis(rng.gen_range(1500..4000));
        let roll = rng.gen_range(0..100);
        if roll < 8 {
            // NATS itself: killed, back after a moment; then how long until a job runs.
            *kills.entry("nats-server".into()).or_default() += 1;
            topology.nats.kill();
            tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
            tokio::task::block_in_place(|| topology.nats.start_again());
            let back = skynet_protocol::time::now_ms();
            probes += 1;
            let id = JobId::parse(&format!("c{seed}-probe-{probes}")).expect("job id");
            restarts.push((back, id.clone()));
            let (js, ledger) = (js.clone(), ledger.clone());
            tokio::spawn(async move {
                load::submit(
                    &js,
                    &ledger,
                    &id,
                    Kind::Probe,
                    1,
                    load::probe(),
                    Duration::from_secs(60),
                )
                .await;
            });
            // Nothing else for a while, so the recovery is measured on its own.
            quiet_until = Instant::now() + Duration::from_secs(6);
        } else if roll < 16 && thaw.is_none() {
            // A laptop going to sleep for longer than the offline window.
            let name = workers[rng.gen_range(0..workers.len())].clone();
            if let Some(p) = topology.procs.get_mut(&name)
                && p.running()
            {
                *kills.entry(format!("{name} (SIGSTOP)")).or_default() += 1;
                p.freeze();
                let nap = OFFLINE_AFTER + Duration::from_millis(rng.gen_range(1000..4000));
                thaw = Some((Instant::now() + nap, name));
            }
        } else {
            let name = names[rng.gen_range(0..names.len())].clone();
            let frozen = thaw.as_ref().is_some_and(|(_, n)| n == &name);
            if let Some(p) = topology.procs.get_mut(&name)
                && p.running()
                && !frozen
            {
                *kills.entry(name.clone()).or_default() += 1;
                p.kill9();
                let back = Duration::from_millis(rng.gen_range(200..4000));
                due.push((Instant::now() + back, name));
            }
        }
    }
    // Settle: everything back up, the load finished, every job ended.
    topology.revive();
    let submitted = load.await.unwrap_or(0);
    eprintln!("chaos: {submitted} jobs submitted; settling");
    // The schedule stops making jobs; its ticks so far are checked like every job.
    load::call(
        &admin,
        subjects::api::SCHEDULES_PAUSE,
        serde_json::json!({"name": load::SCHEDULE, "by": "cli:chaos"}),
        Duration::from_secs(60),
    )
    .await;
    for id in check::tick_jobs(&js).await? {
        lock(&ledger).entry(id).or_insert(load::Planned {
            kind: Kind::Tick,
            lines: load::TICK_LINES,
            acked: true,
        });
    }
    let settle_until = Instant::now() + Duration::from_secs(args.settle_seconds);
    let open = loop {
        let open: Vec<JobId> = {
            let planned = lock(&ledger);
            let s = lock(&seen);
            planned
                .iter()
                .filter(|(id, p)| p.acked && !s.ended.contains(*id))
                .map(|(id, _)| id.clone())
                .collect()
        };
        if open.is_empty() || Instant::now() > settle_until {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let planned = lock(&ledger).clone();
    let (mut rows, states) = check::run(&js, &admin, &planned, &homes).await?;
    let mut settled = check_row("every job ended within the settle time", planned.len());
    settled.violations = open.iter().map(|j| j.to_string()).collect();
    rows.push(settled);
    let mut recovery = check_row("NATS restarts: a job runs within 2 s", restarts.len());
    let mut worst = 0i64;
    let history = check::events(&js).await?;
    for (back, probe) in &restarts {
        // When each state came, counted from the server being back.
        let steps: Vec<String> = history
            .get(probe)
            .map(|h| {
                h.iter()
                    .map(|(_, e)| {
                        let at = skynet_protocol::time::parse(&e.at)
                            .map(skynet_protocol::time::unix_ms)
                            .unwrap_or(0);
                        format!("{} +{} ms", e.state(), at - back)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ran = lock(&seen).running_at.get(probe).copied();
        match ran {
            Some(at) => {
                let took = at - back;
                worst = worst.max(took);
                println!(
                    "recovery after a NATS restart: {probe}: {}",
                    steps.join(", ")
                );
                if took > 2000 {
                    recovery.violations.push(format!(
                        "{probe} ran {took} ms after the server was back: {}",
                        steps.join(", ")
                    ));
                }
            }
            None => recovery
                .violations
                .push(format!("{probe} never ran: {}", steps.join(", "))),
        }
    }
    recovery.name = format!("{} (slowest {worst} ms)", recovery.name);
    rows.push(recovery);
    // Every process ends on SIGTERM within its grace.
    let mut term = check_row(
        "every process ends on SIGTERM within 15 s",
        topology.procs.len(),
    );
    let mut slowest = Duration::ZERO;
    for (name, p) in topology.procs.iter_mut() {
        match tokio::task::block_in_place(|| p.terminate(Duration::from_secs(15))) {
            Some(d) => slowest = slowest.max(d),
            None => term.violations.push(name.clone()),
        }
    }
    term.name = format!("{} (slowest {} ms)", term.name, slowest.as_millis());
    rows.push(term);

    println!(
        "\nfaults: {}",
        kills
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "outcomes: {}",
        states
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("\n{:<62} {:>7} {:>10}", "invariant", "count", "violations");
    let mut ok = true;
    for r in &rows {
        println!("{:<62} {:>7} {:>10}", r.name, r.count, r.violations.len());
        ok &= r.violations.is_empty();
    }
    for r in rows.iter().filter(|r| !r.violations.is_empty()) {
        println!("\n{}:", r.name);
        for v in r.violations.iter().take(20) {
            println!("  {v}");
        }
        if r.violations.len() > 20 {
            println!("  ... and {} more", r.violations.len() - 20);
        }
    }
    println!(
        "\nchaos: seed {seed}: {} (work dir {})",
        if ok { "no violation" } else { "VIOLATIONS" },
        topology.dir.display()
    );
    if args.dir.is_none() && !ok {
        // Keep what it takes to look into a failure.
        let kept = std::env::temp_dir().join(format!("skynet-chaos-{seed}"));
        // An earlier failure of the same seed makes way (a rename onto it would fail, and
        // this run's logs would be lost with the temporary directory).
        let _ = std::fs::remove_dir_all(&kept);
        match std::fs::rename(&topology.dir, &kept) {
            Ok(()) => println!("chaos: logs and data kept in {}", kept.display()),
            Err(e) => println!("chaos: could not keep the logs in {}: {e}", kept.display()),
        }
    }
    Ok(ok)
}

fn check_row(name: &str, count: usize) -> check::Row {
    check::Row {
        name: name.into(),
        count,
        violations: Vec::new(),
    }
}
