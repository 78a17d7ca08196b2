//! Creating the streams, buckets and stores of `skynet_protocol::streams`, idempotently.
//! Services call [`ensure_all`] at start; tests call it in their set-up.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, Context};
use skynet_protocol::streams::{self, Retention};

use crate::args::ConfigError;

/// What to do with a stream that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Leave it as it is (services starting up).
    Keep,
    /// Bring it to the given definition (`skynet up`, administrators).
    Update,
}

/// Creates every stream, the key-value buckets (worker registry, sentinel conditions,
/// planner usage, Telegram conversations and delivered alerts, schedules, the routing lease) and the object stores. Safe
/// to call from many services at once.
pub async fn ensure_all(js: &Context, r: &Retention, existing: Existing) -> anyhow::Result<()> {
    for config in streams::all(r) {
        ensure_stream(js, config, existing).await?;
    }
    for kv in [
        streams::workers_kv(r),
        streams::sentinel_kv(r),
        streams::planner_usage_kv(r),
        streams::telegram_kv(r),
        streams::telegram_alerts_kv(r),
        streams::schedules_kv(r),
        streams::routing_kv(r),
    ] {
        let bucket = kv.bucket.clone();
        if existing == Existing::Update || js.get_key_value(&bucket).await.is_err() {
            js.create_or_update_key_value(kv)
                .await
                .with_context(|| format!("creating the KV bucket {bucket}"))?;
        }
    }
    for store in [
        streams::artifacts_store(r),
        streams::archive_store(r),
        streams::snapshots_store(r),
    ] {
        let bucket = store.bucket.clone();
        if js.get_object_store(&bucket).await.is_err() {
            js.create_object_store(store)
                .await
                .with_context(|| format!("creating object store {bucket}"))?;
        }
    }
    Ok(())
}

/// How long one set-up request may take before it is asked again.
const SETUP_TIMEOUT: Duration = Duration::from_secs(1);

/// What every control-plane service starts with: its JetStream context and the event log,
/// once the streams, buckets and stores exist (created if missing, never changed). While
/// NATS does not answer it keeps trying; `None` when `shutdown` came first.
pub async fn open(
    client: &async_nats::Client,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<(Context, crate::EventLog)>> {
    let js = jetstream::new(client.clone());
    // Setting up asks the server short questions; a request the server drops unanswered
    // (a create this identity may not make, before the control plane made the streams, or
    // one lost with a server that restarts meanwhile) is given up after a moment and asked
    // again, not waited for the whole default timeout.
    let mut quick = js.clone();
    quick.set_timeout(SETUP_TIMEOUT);
    let retention = retention_from_env()?;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            ensure_all(&quick, &retention, Existing::Keep).await?;
            crate::EventLog::open(js.clone()).await
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = shutdown.cancelled() => return Ok(None),
        };
        match result {
            Ok(log) => return Ok(Some((js, log))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up the streams yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Creates `config`'s stream, or (with [`Existing::Update`]) brings an existing one to it.
pub async fn ensure_stream(
    js: &Context,
    config: jetstream::stream::Config,
    existing: Existing,
) -> anyhow::Result<()> {
    let name = config.name.clone();
    // Two services starting together may both try to create; retry on a race.
    for attempt in 0..3 {
        match js.get_stream(&name).await {
            Ok(mut stream) => {
                let current = stream.info().await?.config.clone();
                if existing == Existing::Update && !same_config(&current, &config) {
                    js.update_stream(&config)
                        .await
                        .with_context(|| format!("updating stream {name}"))?;
                }
                return Ok(());
            }
            Err(_) => match js.create_stream(config.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt < 2 => {
                    tracing::debug!(stream = %name, error = %e, "create raced; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("creating stream {name}")),
            },
        }
    }
    Ok(())
}

fn same_config(a: &jetstream::stream::Config, b: &jetstream::stream::Config) -> bool {
    a.subjects == b.subjects
        && a.max_age == b.max_age
        && a.max_bytes == b.max_bytes
        && a.max_messages == b.max_messages
        && a.num_replicas == b.num_replicas
        && a.retention == b.retention
        && a.duplicate_window == b.duplicate_window
        && a.allow_direct == b.allow_direct
}

/// Retention from the environment, each variable falling back to the documented default:
/// `SKYNET_REPLICAS`, `SKYNET_EVENTS_MAX_AGE`, `SKYNET_LOGS_MAX_AGE`, `SKYNET_LOGS_MAX_BYTES`,
/// `SKYNET_ALERTS_MAX_AGE`, `SKYNET_ARCHIVE_MAX_AGE`, `SKYNET_ARTIFACTS_MAX_AGE`,
/// `SKYNET_ARTIFACT_MAX_BYTES`. Ages are humane durations (`7d`, `12h`).
pub fn retention_from_env() -> Result<Retention, ConfigError> {
    retention_from(|k| std::env::var(k).ok())
}

fn retention_from(get: impl Fn(&str) -> Option<String>) -> Result<Retention, ConfigError> {
    let mut r = Retention::default();
    let age = |key: &str, slot: &mut Duration| -> Result<(), ConfigError> {
        if let Some(v) = get(key) {
            *slot = humantime::parse_duration(v.trim())
                .map_err(|e| ConfigError::new(key, format!("{v:?} is not a duration: {e}")))?;
        }
        Ok(())
    };
    age("SKYNET_EVENTS_MAX_AGE", &mut r.events_max_age)?;
    age("SKYNET_LOGS_MAX_AGE", &mut r.logs_max_age)?;
    age("SKYNET_ALERTS_MAX_AGE", &mut r.alerts_max_age)?;
    age("SKYNET_ARCHIVE_MAX_AGE", &mut r.archive_max_age)?;
    age("SKYNET_ARTIFACTS_MAX_AGE", &mut r.artifacts_max_age)?;
    if r.events_max_age < Duration::from_secs(7 * 24 * 3600) {
        return Err(ConfigError::new(
            "SKYNET_EVENTS_MAX_AGE",
            "events must be kept at least 7 days",
        ));
    }
    let num = |key: &str| -> Result<Option<u64>, ConfigError> {
        get(key)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| ConfigError::new(key, format!("{v:?} is not a whole number")))
            })
            .transpose()
    };
    if let Some(n) = num("SKYNET_REPLICAS")? {
        r.replicas = n.clamp(1, 5) as usize;
    }
    if let Some(n) = num("SKYNET_LOGS_MAX_BYTES")? {
        r.logs_max_bytes = n as i64;
    }
    if let Some(n) = num("SKYNET_ARTIFACT_MAX_BYTES")? {
        r.artifact_max_bytes = n;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_reads_humane_durations_and_refuses_nonsense() {
        let r = retention_from(|k| match k {
            "SKYNET_LOGS_MAX_AGE" => Some("2d".into()),
            "SKYNET_LOGS_MAX_BYTES" => Some("1000".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(r.logs_max_age, Duration::from_secs(2 * 86400));
        assert_eq!(r.logs_max_bytes, 1000);
        let e =
            retention_from(|k| (k == "SKYNET_EVENTS_MAX_AGE").then(|| "1d".into())).unwrap_err();
        assert_eq!(e.flag, "SKYNET_EVENTS_MAX_AGE");
        let e = retention_from(|k| (k == "SKYNET_REPLICAS").then(|| "x".into())).unwrap_err();
        assert_eq!(e.flag, "SKYNET_REPLICAS");
    }
}
