//! The worker registry (`skynet-workers` KV bucket): one entry per worker, rewritten by its
//! heartbeats. Readers get every current entry first, then each change.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use skynet_protocol::worker::WorkerInfo;
use skynet_protocol::{WorkerId, streams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A change in the registry.
#[derive(Debug, Clone)]
pub enum Update {
    /// A heartbeat (or first sight) of a worker, with the entry's revision in the bucket.
    Put(Box<WorkerInfo>, u64),
    Removed(WorkerId),
}

/// Watches the registry until `shutdown`, surviving server restarts.
pub fn watch(js: jetstream::Context, shutdown: CancellationToken) -> mpsc::Receiver<Update> {
    watch_bucket(js, streams::WORKERS_BUCKET, shutdown, |entry| {
        let id = WorkerId::parse(&entry.key).ok()?;
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<WorkerInfo>(&entry.value) {
                Ok(info) if info.id == id => Some(Update::Put(Box::new(info), entry.revision)),
                Ok(_) => {
                    tracing::warn!(worker = %id, "registry entry names another worker; ignored");
                    None
                }
                Err(e) => {
                    tracing::warn!(worker = %id, error = %e, "unreadable registry entry");
                    None
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => Some(Update::Removed(id)),
        }
    })
}

/// Watches every key of KV `bucket` until `shutdown`: current values first, then each
/// change, through server restarts. `read` turns an entry into an update (`None` skips it).
pub fn watch_bucket<T, F>(
    js: jetstream::Context,
    bucket: &'static str,
    shutdown: CancellationToken,
    read: F,
) -> mpsc::Receiver<T>
where
    T: Send + 'static,
    F: Fn(kv::Entry) -> Option<T> + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let client = js.client();
            let connects = crate::connect::connects(&client);
            let result = async {
                let store = js.get_key_value(bucket).await?;
                let mut watch = store.watch_with_history(">").await?;
                loop {
                    let entry = tokio::select! {
                        _ = shutdown.cancelled() => return anyhow::Ok(()),
                        e = watch.next() => e,
                        // A restarted server forgot the watch: watch anew at once.
                        _ = crate::connect::reconnected(&client, connects) => return Ok(()),
                    };
                    let Some(entry) = entry else {
                        anyhow::bail!("watch of {bucket} ended");
                    };
                    let Some(update) = read(entry?) else { continue };
                    if tx.send(update).await.is_err() {
                        return Ok(());
                    }
                }
            }
            .await;
            if shutdown.is_cancelled() || tx.is_closed() {
                return;
            }
            let pause = match result {
                Err(e) => {
                    tracing::warn!(bucket, error = %e, "watching a bucket; retrying");
                    Duration::from_millis(500)
                }
                Ok(()) => Duration::ZERO,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
    rx
}
