//! The soak's load: a steady mix of jobs (quick, a few seconds long, waiting for approval,
//! cancelled, retried, timed out), each of whose steps leaves marker lines (`start`/`end`,
//! its attempt, the time) in its worker's root and prints numbered lines, so the checks can
//! tell whether a step ran twice, ran after its job ended, or lost output.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, message::PublishMessage};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;
use skynet_protocol::{JobId, subjects};

/// What a job of the mix is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Quick,
    Long,
    Approval,
    Cancelled,
    Retried,
    TimedOut,
    Probe,
    /// Holds one of two locks for a second or three.
    Locked,
    /// A tick of the soak's schedule.
    Tick,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Quick => "quick",
            Kind::Long => "2-5 s",
            Kind::Approval => "approval",
            Kind::Cancelled => "cancelled",
            Kind::Retried => "retries: 1",
            Kind::TimedOut => "timed out",
            Kind::Probe => "probe",
            Kind::Locked => "locked",
            Kind::Tick => "schedule tick",
        }
    }
}

/// A job the soak submitted.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: Kind,
    /// The numbered lines its step prints (`line-1` ... `line-N`).
    pub lines: usize,
    /// Its submission was acknowledged as stored.
    pub acked: bool,
}

/// The soak's record of what it submitted.
pub type Ledger = Arc<Mutex<HashMap<JobId, Planned>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The shell script of a step: markers around a body that prints `lines` numbered lines and
/// sleeps `sleep_ms`.
fn script(lines: usize, sleep_ms: u64, ask: bool) -> String {
    let marker = "m=$HOME/markers/$SKYNET_JOB_ID; \
                  echo \"start $SKYNET_ATTEMPT $(date +%s%3N)\" >> $m";
    let body = format!(
        "i=1; while [ $i -le {lines} ]; do echo line-$i; i=$((i+1)); done; sleep {}.{:03}",
        sleep_ms / 1000,
        sleep_ms % 1000
    );
    let end = "echo \"end $SKYNET_ATTEMPT $(date +%s%3N)\" >> $m";
    let ask = if ask { ": ask-me; " } else { "" };
    format!("{ask}{marker}; {body}; {end}")
}

/// A random job of the mix.
pub fn pick(rng: &mut StdRng) -> (Kind, serde_json::Value, usize) {
    let roll = rng.gen_range(0..100);
    let lines = rng.gen_range(1..40);
    let which_lock = rng.gen_range(0..2);
    let (kind, sleep_ms, extra) = match roll {
        0..=34 => (Kind::Quick, 0, json!({})),
        35..=49 => (Kind::Long, rng.gen_range(2000..5000), json!({})),
        50..=59 => (
            Kind::Locked,
            rng.gen_range(1000..3000),
            json!({"lock": format!("chaos-lock-{which_lock}")}),
        ),
        60..=69 => (Kind::Approval, rng.gen_range(0..1500), json!({})),
        70..=79 => (Kind::Cancelled, rng.gen_range(3000..8000), json!({})),
        80..=94 => (
            Kind::Retried,
            rng.gen_range(2000..4000),
            json!({"retries": 1}),
        ),
        _ => (Kind::TimedOut, 20_000, json!({"timeout_s": 2})),
    };
    let mut request = json!({
        "steps": [{"action": "shell", "cmd": script(lines, sleep_ms, kind == Kind::Approval)}],
        "requested_by": "chaos",
    });
    if let (Some(r), Some(e)) = (request.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    (kind, request, lines)
}

/// The name of the soak's schedule; its ticks are `chaos-tick-<time>`.
pub const SCHEDULE: &str = "chaos-tick";
/// The lines each tick's step prints.
pub const TICK_LINES: usize = 3;

/// The soak's schedule: every 2 s a job of a second or so, queued behind a running one.
pub fn schedule() -> serde_json::Value {
    json!({
        "name": SCHEDULE,
        "cron": "@every 2s",
        "overlap": "queue",
        "by": "cli:chaos",
        "request": {"steps": [{"action": "shell", "cmd": script(TICK_LINES, 1200, false)}], "lock": "chaos-lock-0"},
    })
}

/// A quick, urgent job: how long after a NATS restart the next job runs.
pub fn probe() -> serde_json::Value {
    json!({
        "steps": [{"action": "shell", "cmd": script(1, 0, false)}],
        "priority": "high",
        "requested_by": "chaos-probe",
    })
}

/// Submits `request` as job `id` the way `nats pub` does, retrying (the same id, so never
/// twice) until JetStream acknowledges it or `give_up` passes.
pub async fn submit(
    js: &jetstream::Context,
    ledger: &Ledger,
    id: &JobId,
    kind: Kind,
    lines: usize,
    mut request: serde_json::Value,
    give_up: Duration,
) -> bool {
    request["id"] = json!(id);
    lock(ledger).insert(
        id.clone(),
        Planned {
            kind,
            lines,
            acked: false,
        },
    );
    let body = request.to_string();
    let deadline = tokio::time::Instant::now() + give_up;
    while tokio::time::Instant::now() < deadline {
        let stored = async {
            js.send_publish(
                subjects::SUBMIT,
                PublishMessage::build()
                    .payload(body.clone().into())
                    .message_id(id.as_str()),
            )
            .await?
            .await?;
            anyhow::Ok(())
        };
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(3), stored).await {
            if let Some(p) = lock(ledger).get_mut(id) {
                p.acked = true;
            }
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Calls an API endpoint until it answers (NATS or the service may be down); returns the
/// reply, or the error it gave.
pub async fn call(
    client: &Client,
    endpoint: &str,
    body: serde_json::Value,
    give_up: Duration,
) -> Option<Result<serde_json::Value, String>> {
    let deadline = tokio::time::Instant::now() + give_up;
    while tokio::time::Instant::now() < deadline {
        match skynet_runtime::api::call_raw(
            client,
            endpoint,
            body.to_string().into(),
            Duration::from_secs(3),
        )
        .await
        {
            Ok(bytes) => return Some(Ok(serde_json::from_slice(&bytes).unwrap_or_default())),
            Err(skynet_runtime::api::CallError::Api(e)) if e.code < 500 => {
                return Some(Err(e.message));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}
