//! `skynet doctor`: checks a setup from where the CLI stands and says what to fix.
//!
//! In order: the identity (which seed, is it readable and private), the NATS connection,
//! what the identity may do and which services answer (probes that change nothing: a list,
//! and requests the services refuse as malformed), the streams, the workers online, the
//! kernel sandbox (Landlock) on this machine, and this clock against the server's. Exits 0
//! when nothing failed (warnings allowed), 1 otherwise.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use skynet_protocol::api::{Empty, ListReply, ListRequest, WorkerStatus, WorkersReply};
use skynet_protocol::{streams, subjects};
use skynet_runtime::NatsArgs;
use skynet_runtime::api::CallError;

use crate::connect::{self, Conn, Failure, Identity};
use crate::{paths, render, sandbox};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Default)]
struct Report {
    failed: usize,
    warned: usize,
}

impl Report {
    fn line(&mut self, status: Status, topic: &str, text: &str, fix: Option<&str>) {
        let word = match status {
            Status::Ok => "ok",
            Status::Warn => {
                self.warned += 1;
                "warn"
            }
            Status::Fail => {
                self.failed += 1;
                "FAIL"
            }
            Status::Skip => "-",
        };
        println!(
            "  {word:<5} {topic:<12} {}",
            text.replace('\n', "\n                     ")
        );
        if let Some(fix) = fix {
            println!(
                "        {:<12} fix: {}",
                "",
                fix.replace('\n', "\n                          ")
            );
        }
    }
}

pub fn main(nats: NatsArgs) -> ExitCode {
    skynet_runtime::telemetry::init_with("off", false);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skynet doctor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(doctor(nats));
    match (report.failed, report.warned) {
        (0, 0) => println!("all good"),
        (0, w) => println!("no problems, {w} warning{}", plural(w)),
        (f, w) => println!(
            "{f} problem{} and {w} warning{}: see the fixes above",
            plural(f),
            plural(w)
        ),
    }
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

async fn doctor(nats: NatsArgs) -> Report {
    let mut r = Report::default();
    println!("skynet doctor ({})", nats.url);
    let (args, identity) = connect::discover(&nats);
    check_identity(&mut r, &identity);

    let start = Instant::now();
    let conn = match connect::connect(&args, "skynet-doctor").await {
        Ok(c) => c,
        Err(e) => {
            let fix = if matches!(identity, Identity::Anonymous) {
                "start the stack (skynet up), or point at yours with --nats-url / SKYNET_NATS_URL, \
                 and give your identity with SKYNET_NATS_SEED_FILE"
            } else {
                "start the stack (skynet up), or point at yours with --nats-url / SKYNET_NATS_URL"
            };
            r.line(Status::Fail, "nats", &format!("{e:#}"), Some(fix));
            for topic in ["permissions", "services", "streams", "workers", "clock"] {
                r.line(Status::Skip, topic, "not checked (no connection)", None);
            }
            check_sandbox(&mut r);
            return r;
        }
    };
    let info = conn.client.server_info();
    r.line(
        if info.jetstream {
            Status::Ok
        } else {
            Status::Fail
        },
        "nats",
        &format!(
            "{} answers: nats-server {} ({}), auth {}, JetStream {}, connected in {} ms",
            nats.url,
            info.version,
            info.server_name,
            if info.auth_required { "on" } else { "off" },
            if info.jetstream { "on" } else { "off" },
            start.elapsed().as_millis()
        ),
        (!info.jetstream).then_some(
            "run nats-server with JetStream (-js, or jetstream {} in its configuration)",
        ),
    );
    check_permissions(&mut r, &conn).await;
    check_streams(&mut r, &conn).await;
    check_workers(&mut r, &conn).await;
    check_sandbox(&mut r);
    check_clock(&mut r, &conn).await;
    r
}

fn check_identity(r: &mut Report, identity: &Identity) {
    let (path, how) = match identity {
        Identity::Given(p) => (p, "SKYNET_NATS_SEED_FILE / --nats-seed"),
        Identity::Found(p) => (p, "found beside the local skynet up"),
        Identity::Anonymous => {
            r.line(
                Status::Ok,
                "identity",
                "none given (SKYNET_NATS_SEED_FILE is not set): connecting without one",
                None,
            );
            return;
        }
    };
    match skynet_runtime::args::read_seed(path, "SKYNET_NATS_SEED_FILE").and_then(|s| s.key_pair())
    {
        Ok(key) => {
            let public = key.public_key();
            let dir = path.parent().map(|d| d.to_path_buf()).unwrap_or_default();
            let known = skynet_runtime::creds::CredsDir::open(&dir)
                .ok()
                .and_then(|c| {
                    c.identities()
                        .iter()
                        .find(|i| i.public_key == public)
                        .map(|i| {
                            let role = if i.kind == "cli" && i.approver {
                                "a CLI that may approve".to_owned()
                            } else {
                                format!("a {} identity", i.kind)
                            };
                            format!("{} ({role})", i.name)
                        })
                });
            r.line(
                Status::Ok,
                "identity",
                &format!(
                    "{} from {} ({how}), key {public}",
                    known.unwrap_or_else(|| "a key".into()),
                    path.display()
                ),
                None,
            );
        }
        Err(e) => r.line(
            Status::Fail,
            "identity",
            &e.message,
            Some(&format!(
                "point SKYNET_NATS_SEED_FILE at a private seed file (skynet up prints the CLI's; \
                 the local one is {})",
                paths::default_creds_dir().join("cli.nk").display()
            )),
        ),
    }
}

/// How a probe of an endpoint went.
enum Probe {
    Answered,
    Refused,
    NoService,
    Other(String),
}

/// Sends a request every service refuses as malformed (an invalid job id): it proves the
/// identity may publish there and a service answers, and changes nothing.
async fn probe(conn: &Conn, endpoint: &str) -> Probe {
    let subject = subjects::api(endpoint);
    let refused = conn.refused(subject);
    let call = skynet_runtime::api::call_raw(
        &conn.client,
        endpoint,
        bytes::Bytes::from_static(br#"{"job_id":"!"}"#),
        Duration::from_secs(5),
    );
    tokio::select! {
        r = call => match r {
            Ok(_) | Err(CallError::Api(_)) => Probe::Answered,
            Err(CallError::NoService(_)) => Probe::NoService,
            Err(e) => Probe::Other(e.to_string()),
        },
        _ = refused => Probe::Refused,
    }
}

async fn check_permissions(r: &mut Report, conn: &Conn) {
    let list = conn
        .call::<_, ListReply>(
            subjects::api::JOBS_LIST,
            &ListRequest {
                state: None,
                limit: Some(1),
            },
        )
        .await;
    let mut may = Vec::new();
    let mut services = Vec::new();
    let mut missing = Vec::new();
    match list {
        Ok(_) => {
            may.push("list and watch jobs");
            services.push("ledger");
        }
        Err(Failure::Refused(subject)) => {
            r.line(
                Status::Fail,
                "permissions",
                &format!("this identity may not use {subject}: it is not a CLI identity"),
                Some("use a CLI seed (cli.nk from skynet up, or skynet creds add-cli NAME)"),
            );
            return;
        }
        Err(Failure::Call(CallError::NoService(_))) => missing.push("skynet-ledger (jobs.list)"),
        Err(e) => missing.push(if e.code().is_some() {
            "skynet-ledger"
        } else {
            "skynet-ledger (no answer)"
        }),
    }
    let mut approver = true;
    for (endpoint, service) in [
        (subjects::api::JOBS_CANCEL, "dispatcher"),
        (subjects::api::JOBS_APPROVE, "policy"),
    ] {
        match probe(conn, endpoint).await {
            Probe::Answered => services.push(service),
            Probe::Refused if endpoint == subjects::api::JOBS_APPROVE => approver = false,
            Probe::Refused => {}
            Probe::NoService => missing.push(if service == "policy" {
                "skynet-policy (jobs.approve)"
            } else {
                "skynet-dispatcher (jobs.cancel)"
            }),
            Probe::Other(e) => {
                tracing::debug!(endpoint, error = %e, "probe");
                missing.push(service);
            }
        }
    }
    if approver {
        may.push("approve and deny");
    }
    r.line(
        Status::Ok,
        "permissions",
        &format!(
            "may {}{}",
            may.join(", "),
            if approver { "" } else { " (not an approver)" }
        ),
        None,
    );
    if missing.is_empty() {
        r.line(
            Status::Ok,
            "services",
            &format!("{} answer", services.join(", ")),
            None,
        );
    } else {
        r.line(
            Status::Fail,
            "services",
            &format!("nothing answers for {}", missing.join(", ")),
            Some("start them: skynet up runs them all, or see README: Running the services separately"),
        );
    }
}

async fn check_streams(r: &mut Report, conn: &Conn) {
    let js = jetstream::new(conn.client.clone());
    let mut seen = Vec::new();
    for name in [streams::EVENTS, streams::LOGS] {
        let refused = conn.refused(format!("$JS.API.STREAM.INFO.{name}"));
        let info = tokio::select! {
            s = js.get_stream(name) => s.map(|s| s.cached_info().state.messages).map_err(|e| e.to_string()),
            _ = refused => Err("this identity may not read it".into()),
        };
        match info {
            Ok(n) => seen.push(format!("{name} ({n} messages)")),
            Err(e) => {
                r.line(
                    Status::Fail,
                    "streams",
                    &format!("{name}: {e}"),
                    Some("skynet up creates the streams (or any service at start)"),
                );
                return;
            }
        }
    }
    r.line(Status::Ok, "streams", &seen.join(", "), None);
}

async fn check_workers(r: &mut Report, conn: &Conn) {
    match conn
        .call::<_, WorkersReply>(subjects::api::WORKERS_LIST, &Empty {})
        .await
    {
        Ok(reply) => {
            let online: Vec<String> = reply
                .workers
                .iter()
                .filter(|w| w.status == WorkerStatus::Online)
                .map(|w| format!("{} ({}/{} busy)", w.id, w.running.len(), w.max_jobs))
                .collect();
            let offline: Vec<String> = reply
                .workers
                .iter()
                .filter(|w| w.status == WorkerStatus::Offline)
                .map(|w| format!("{} (seen {})", w.id, render::ago(&w.last_seen)))
                .collect();
            if online.is_empty() {
                r.line(
                    Status::Fail,
                    "workers",
                    &if offline.is_empty() {
                        "none has registered: jobs wait in queued".to_owned()
                    } else {
                        format!("none online; offline: {}", offline.join(", "))
                    },
                    Some("start one: skynet up starts a local worker; elsewhere skynet-worker --id NAME --nats-seed SEED --trust-file trusted-keys"),
                );
            } else {
                let mut text = format!("online: {}", online.join(", "));
                if !offline.is_empty() {
                    text.push_str(&format!("; offline: {}", offline.join(", ")));
                }
                r.line(Status::Ok, "workers", &text, None);
            }
        }
        Err(e) => r.line(Status::Skip, "workers", &format!("not checked: {e}"), None),
    }
}

fn check_sandbox(r: &mut Report) {
    match sandbox::probe() {
        sandbox::Landlock::Available { abi } => r.line(
            Status::Ok,
            "sandbox",
            &format!("Landlock is available on this kernel (ABI {abi}{})", if abi >= 4 { ", network rules too" } else { "" }),
            None,
        ),
        sandbox::Landlock::Unavailable(why) => r.line(
            Status::Warn,
            "sandbox",
            &format!(
                "Landlock is not available on this kernel ({}): {why}. A worker here cannot have the kernel confine its steps; \
                 it still checks every path against its roots",
                sandbox::kernel()
            ),
            Some("use a Linux kernel >= 5.13 with Landlock enabled (CONFIG_SECURITY_LANDLOCK, lsm=landlock)"),
        ),
    }
}

async fn check_clock(r: &mut Report, conn: &Conn) {
    let js = jetstream::new(conn.client.clone());
    let before = skynet_protocol::time::now_ms();
    let created = async {
        let probe = skynet_protocol::JobId::parse("skynet-doctor-clock-probe").ok()?;
        let stream = js.get_stream_no_info(streams::EVENTS).await.ok()?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                name: Some(streams::ordered_consumer_name()),
                filter_subject: subjects::events(&probe),
                ..Default::default()
            })
            .await
            .ok()?;
        Some(consumer.cached_info().created)
    };
    let Ok(Some(created)) = tokio::time::timeout(Duration::from_secs(5), created).await else {
        r.line(
            Status::Skip,
            "clock",
            "not checked (no consumer could be created)",
            None,
        );
        return;
    };
    let after = skynet_protocol::time::now_ms();
    let server = skynet_protocol::time::unix_ms(created);
    let skew = server - (before + after) / 2;
    let margin = (after - before) / 2 + 1;
    let text = format!(
        "this clock is {} ms {} the server's (± {margin} ms)",
        skew.abs(),
        if skew > 0 { "behind" } else { "ahead of" }
    );
    let status = match skew.abs() {
        s if s <= 2_000 + margin => Status::Ok,
        s if s <= 30_000 => Status::Warn,
        _ => Status::Fail,
    };
    r.line(
        status,
        "clock",
        &text,
        (status != Status::Ok).then_some(
            "sync the clocks (timedatectl set-ntp true): signed work expires, and ages and time-outs are judged by them",
        ),
    );
}
